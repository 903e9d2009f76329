"""Reading the prediction log back: a window of the latest rows, or of a time range.

The log's files are read newest first (their names carry their flush time, see
``loopml.serve.prediction_log``), and reading stops as soon as the window is full,
so memory is bounded by the window, not by the log.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml.context import Context
from loopml.errors import InputError, StoreError
from loopml.serve.prediction_log import LogFile, StoreFiles, iter_log_files

EMPTY = pa.schema(
    [
        ("request_id", pa.string()),
        ("row", pa.int32()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("version", pa.int64()),
        ("shadow", pa.bool_()),
        ("latency_ms", pa.float64()),
    ]
)


def read_window(
    ctx: Context,
    model: str,
    *,
    last_rows: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    include_shadow: bool = False,
) -> pa.Table:
    """The logged predictions of ``model`` in a window, oldest first.

    Args:
        ctx: the workspace's context.
        model: the model's name.
        last_rows: at most this many of the latest rows (combined with the time range).
        since: only rows logged at or after this time (naive times are UTC).
        until: only rows logged before this time.
        include_shadow: include the shadow version's predictions (never returned to
            callers) as well as the served ones.

    Returns:
        The rows, sorted by ``time``; an empty table (the log's own columns) when no
        row is in the window.

    Raises:
        InputError: ``last_rows`` is below 1, or ``since`` is not before ``until``.
        StoreError: a log file cannot be read.

    Example:
        >>> window = read_window(ctx, "fraud", last_rows=10_000)
        >>> window.num_rows
        10000
    """
    if last_rows is not None and last_rows < 1:
        raise InputError(f"last_rows {last_rows} is below 1", hint="ask for at least one row")
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise InputError(f"the window {since} to {until} is empty", hint="since must be < until")
    files = StoreFiles(ctx.artifacts)
    tables: list[pa.Table] = []
    total = 0
    for entry in iter_log_files(files, model, since):
        # No row is logged after its file's flush stamp: older files hold older rows only.
        if since is not None and entry.flushed < since:
            break
        table = _read(files, entry, until)
        if table is None:
            continue
        mask = None
        if not include_shadow:
            mask = pc.invert(pc.fill_null(table["shadow"], False))
        if since is not None:
            mask = _and(mask, pc.greater_equal(table["time"], pa.scalar(since, table["time"].type)))
        if until is not None:
            mask = _and(mask, pc.less(table["time"], pa.scalar(until, table["time"].type)))
        if mask is not None:
            table = table.filter(mask)
        if table.num_rows:
            tables.append(table)
            total += table.num_rows
        if last_rows is not None and total >= last_rows:
            break
    if not tables:
        return EMPTY.empty_table()
    window = concat(tables[::-1])
    window = window.take(pc.sort_indices(window, [("time", "ascending")]))
    if last_rows is not None and window.num_rows > last_rows:
        window = window.slice(window.num_rows - last_rows)
    return window


def _read(files: StoreFiles, entry: LogFile, until: datetime | None) -> pa.Table | None:
    source = files.open(entry.key)
    try:
        parquet = pq.ParquetFile(source)
        if until is not None and _starts_at_or_after(parquet, until):
            return None
        return parquet.read()
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(
            f"prediction log file {entry.key} cannot be read: {exc}",
            hint="move the damaged file out of the log folder",
        ) from exc
    finally:
        if not isinstance(source, str):
            source.close()


def _starts_at_or_after(parquet: pq.ParquetFile, until: datetime) -> bool:
    """Whether the file's statistics say every row's time is at or after ``until``."""
    metadata = parquet.metadata
    names = parquet.schema_arrow.names
    if "time" not in names or metadata.num_row_groups == 0:
        return False
    index = names.index("time")
    lows = []
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max:
            return False
        lows.append(stats.min)
    low = min(lows)
    if isinstance(low, datetime):
        return _utc(low) >= until  # type: ignore[operator]
    return False


def concat(tables: list[pa.Table]) -> pa.Table:
    """Tables with compatible columns as one; columns whose types clash become text."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            types.setdefault(field.name, set()).add(field.type)
    clashing = set()
    for name, kinds in types.items():
        try:
            pa.unify_schemas([pa.schema([(name, k)]) for k in kinds], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            clashing.add(name)
    fixed = []
    for table in tables:
        for name in clashing & set(table.column_names):
            index = table.column_names.index(name)
            table = table.set_column(index, name, pc.cast(table[name], pa.string()))
        fixed.append(table)
    return pa.concat_tables(fixed, promote_options="permissive")


def _and(mask: pa.ChunkedArray | None, other: pa.ChunkedArray) -> pa.ChunkedArray:
    other = pc.fill_null(other, False)
    return other if mask is None else pc.and_(mask, other)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


__all__ = ["concat", "read_window"]
