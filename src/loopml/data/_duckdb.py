"""One way to open DuckDB for the data plane: bounded memory and no progress bar of its own."""

from __future__ import annotations

from typing import Any

MEMORY_LIMIT = "512MB"


def connect() -> Any:
    """An in-memory DuckDB connection with loopml's settings.

    DuckDB's own progress bar is off: it would print to stderr from inside library
    calls; the CLI draws its own.
    """
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit='{MEMORY_LIMIT}'")
    con.execute("SET enable_progress_bar=false")
    return con
