"""Dataset versions as DuckDB tables, and SQL results written back as versions.

Every transform reads its inputs the same way (a view per input, named after its
dataset, over the version's verified Parquet files) and writes its output the same
way (streamed through ``write_version``, with lineage to the inputs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from loopml.context import Context
from loopml.data import _duckdb, versions
from loopml.data._sql import identifier, string, string_list
from loopml.data.writer import write_version
from loopml.errors import InputError
from loopml.records import DatasetVersion

# DuckDB's names for the types a time column may have.
TEMPORAL_TYPES = frozenset(
    {"DATE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE"}
)


def column_types(con: Any, table: str) -> dict[str, str]:
    """Each column of a table (or view) and its DuckDB type, in order."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {identifier(table)}").fetchall()
    return {row[0]: str(row[1]) for row in rows}


def resolve_inputs(ctx: Context, refs: Sequence[str]) -> list[DatasetVersion]:
    """Look up each input reference; two inputs may not share a dataset name."""
    with ctx.read() as conn:
        found = [versions.resolve(conn, ref) for ref in refs]
    names = [v.dataset for v in found]
    if len(set(names)) != len(names):
        raise InputError(
            f"inputs {', '.join(refs)} name one dataset twice",
            hint="each input is a table named after its dataset, so each must be distinct",
        )
    return found


@contextmanager
def connection_with(ctx: Context, inputs: Sequence[DatasetVersion]) -> Iterator[Any]:
    """A DuckDB connection with one view per input, named after its dataset.

    The connection can read its inputs' files and nothing else: user SQL cannot reach
    other files (``read_csv('/etc/passwd')``) or the network, and cannot undo that.
    """
    con = _duckdb.connect()
    try:
        scratch = ctx.settings.root / "cache" / "duckdb-tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory={string(str(scratch))}")
        allowed = {str(scratch) + "/"}
        for version in inputs:
            files = [str(ctx.artifacts.local_path(f.sha256)) for f in version.files]
            allowed.update(str(Path(name).parent) + "/" for name in files)
            con.execute(
                f"CREATE VIEW {identifier(version.dataset)} AS "
                f"SELECT * FROM read_parquet({string_list(files)})"
            )
        con.execute(f"SET allowed_directories={string_list(sorted(allowed))}")
        con.execute("SET enable_external_access=false")
        con.execute("SET lock_configuration=true")
        yield con
    finally:
        con.close()


def definition_hash(kind: str, definition: Any, params: dict[str, Any]) -> str:
    """A stable hash of what a transform does: its kind, definition and parameters."""
    body = orjson.dumps([kind, definition, params], option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(body).hexdigest()


def write_query(
    ctx: Context,
    name: str,
    con: Any,
    sql: str,
    inputs: Sequence[DatasetVersion],
    *,
    kind: str,
    definition: Any,
    params: dict[str, Any],
    step: str,
) -> DatasetVersion:
    """Run ``sql`` on ``con`` and commit its rows as a new version of ``name``.

    Raises:
        InputError: the SQL fails; the message names the step.
    """
    import duckdb

    tables = ", ".join(v.dataset for v in inputs)
    try:
        reader = con.sql(sql).to_arrow_reader(122_880)
    except duckdb.Error as exc:
        raise InputError(
            f"{step}: the SQL failed: {_first_line(exc)}", hint=f"the input tables are {tables}"
        ) from exc
    return write_arrow(
        ctx,
        name,
        _guarded(reader, step),
        reader.schema,
        inputs,
        kind=kind,
        definition=definition,
        params=params,
    )


def write_arrow(
    ctx: Context,
    name: str,
    batches: Iterator[pa.RecordBatch],
    schema: pa.Schema,
    inputs: Sequence[DatasetVersion],
    *,
    kind: str,
    definition: Any,
    params: dict[str, Any],
) -> DatasetVersion:
    """Commit ``batches`` as a new version of ``name`` made by a transform of ``inputs``."""
    digest = definition_hash(kind, definition, params)
    meta = {
        "transform": {
            "kind": kind,
            "definition": definition,
            "params": params,
            "hash": digest,
            "inputs": [{"ref": v.ref, "id": v.id} for v in inputs],
        }
    }
    return write_version(
        ctx,
        name,
        batches,
        schema,
        source=f"{kind} transform of {', '.join(v.ref for v in inputs)}",
        meta=meta,
        action="dataset.transform",
        inputs=[f"dataset:{v.ref}" for v in inputs],
        activity=f"transform:{kind}:{digest[:12]}",
    )


def _guarded(reader: Any, step: str) -> Iterator[pa.RecordBatch]:
    import duckdb

    try:
        yield from reader
    except duckdb.Error as exc:
        raise InputError(f"{step}: the SQL failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
