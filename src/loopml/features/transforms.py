"""Transforms: DuckDB SQL or Python functions over dataset versions, making new versions.

Each output version records its transform (kind, definition, parameters and their
hash, and the exact input versions) in its metadata, and its inputs in lineage.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from loopml.context import Context
from loopml.data._sql import identifier
from loopml.data.writer import audits_failures
from loopml.errors import InputError, NotFound, UserCodeError
from loopml.features._relations import connection_with, resolve_inputs, write_arrow, write_query
from loopml.features.boundary import load_function, user_code
from loopml.records import DatasetVersion


@audits_failures("dataset.transform")
def sql_transform(
    ctx: Context,
    name: str,
    sql: str,
    inputs: Sequence[str],
) -> DatasetVersion:
    """Run DuckDB SQL over input versions and commit the result as a version of ``name``.

    Each input is a table named after its dataset: ``--input tx@3`` is ``tx``.

    Raises:
        InputError: no inputs, or the SQL fails (the message says which transform).
        NotFound: an input does not exist.

    Example:
        >>> sql_transform(ctx, "daily", "SELECT date_trunc('day', ts) d, sum(amount) "
        ...               "FROM tx GROUP BY 1", ["tx"])
    """
    if not inputs:
        raise InputError(f"transform {name}: no inputs", hint="pass --input DATASET[@VERSION]")
    if not sql.strip():
        raise InputError(f"transform {name}: the SQL is empty")
    versions = resolve_inputs(ctx, inputs)
    with connection_with(ctx, versions) as con:
        return write_query(
            ctx,
            name,
            con,
            sql,
            versions,
            kind="sql",
            definition=sql,
            params={},
            step=f"transform {name}",
        )


def read_sql_file(path: str | Path) -> str:
    """The text of a SQL file, with a clear error when it cannot be read."""
    try:
        return Path(path).read_text()
    except FileNotFoundError as exc:
        raise NotFound(f"SQL file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"SQL file {path} cannot be read: {exc}") from exc


@audits_failures("dataset.transform")
def python_transform(
    ctx: Context,
    name: str,
    function: str | Callable[..., Any],
    inputs: Sequence[str],
    params: dict[str, Any] | None = None,
    label: str | None = None,
) -> DatasetVersion:
    """Call a Python function on the inputs and commit what it returns.

    The function gets one argument per input, in order, as Arrow tables, or as pandas
    DataFrames when its first parameter is annotated ``pd.DataFrame`` (or named
    ``df``); ``params`` are passed as keyword arguments. It returns an Arrow table or a
    pandas DataFrame. Whatever it raises comes out as UserCodeError naming the step.

    Raises:
        UserCodeError: the function raised, or returned something else.
    """
    if not inputs:
        raise InputError(f"transform {name}: no inputs", hint="pass --input DATASET[@VERSION]")
    step = f"transform {name}"
    target = load_function(function) if isinstance(function, str) else function
    label = label or (function if isinstance(function, str) else _qualified(function))
    versions = resolve_inputs(ctx, inputs)
    with connection_with(ctx, versions) as con:
        tables = [
            con.sql(f"SELECT * FROM {identifier(v.dataset)}").to_arrow_table() for v in versions
        ]
    as_pandas = _wants_pandas(target)
    arguments = [t.to_pandas() for t in tables] if as_pandas else tables
    with user_code(step):
        result = target(*arguments, **(params or {}))
    table = _as_table(result, step)
    return write_arrow(
        ctx,
        name,
        iter(table.to_batches()),
        table.schema,
        versions,
        kind="python",
        definition=label,
        params=dict(params or {}),
    )


def _qualified(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', '?')}"


def _wants_pandas(function: Callable[..., Any]) -> bool:
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False
    if not parameters:
        return False
    first = parameters[0]
    annotation = first.annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return "DataFrame" in str(text) or first.name == "df"


def _as_table(result: Any, step: str) -> pa.Table:
    if isinstance(result, pa.Table):
        return result
    if isinstance(result, pa.RecordBatch):
        return pa.Table.from_batches([result])
    try:
        import pandas as pd
    except ModuleNotFoundError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(result, pd.DataFrame):
        with user_code(step):
            return pa.Table.from_pandas(result, preserve_index=False)
    raise UserCodeError(
        f"{step} returned {type(result).__name__}, not a table",
        hint="return a pyarrow.Table or a pandas.DataFrame",
    )
