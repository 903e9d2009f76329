"""Quoting for the SQL the data plane builds: every name and value goes through here.

Column names, file paths and contract values come from users, so nothing is spliced
into SQL without ``identifier`` or ``literal``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from loopml.data.contract import DUCKDB_TYPES


def identifier(name: str) -> str:
    """A quoted SQL identifier (a column or table name)."""
    return '"' + name.replace('"', '""') + '"'


def string(text: str) -> str:
    """A quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def literal(value: object, kind: str = "string") -> str:
    """A SQL literal for a contract value of the contract type ``kind``.

    Raises:
        ValueError: a number that is not finite.
    """
    if kind in {"timestamp", "date"}:
        return f"CAST({string(str(value))} AS {DUCKDB_TYPES[kind]})"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        return repr(value)
    return string(str(value))


def string_list(items: Iterable[str]) -> str:
    """A SQL list of string literals, such as the files a scan reads."""
    return "[" + ", ".join(string(item) for item in items) + "]"
