"""Column profiles: count, nulls, distinct estimate, min/max/mean/std, quantiles, top values.

Computed while a version's rows are written, not in a second pass over its files:
each group of rows gets a partial profile on the writer thread that encodes it
(``profile_group``), and ``Profiler`` merges the partials in the groups' order.
Every partial is mergeable and deterministic, so the same rows give the same
profile however they were split and threaded:

- counts and nulls add up; min and max combine;
- mean and std merge exactly (Chan et al.'s pairwise update of mean and M2);
- distinct counts are exact while a column holds few values and a HyperLogLog
  estimate (about 1% error) past that;
- quantiles come from a systematic sample of about QUANTILE_SAMPLE values (every
  value while there are at most twice as many), interpolated as DuckDB's
  ``quantile_cont`` does;
- top values are exact counts, kept for columns with at most MAX_TOP_DISTINCT
  distinct values: for near-unique columns (ids, emails) they would say nothing.

Monitoring compares these profiles later.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data import _arrow, _duckdb
from loopml.data._sketch import HyperLogLog, SystematicSample, quantiles

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_K = 10
MAX_TOP_DISTINCT = 10_000
QUANTILE_SAMPLE = 100_000
# A column with more distinct values than MAX_TOP_DISTINCT in its first rows is
# counted by sketch alone: counting all its values first would be wasted work.
_PROBE_ROWS = 2 * MAX_TOP_DISTINCT


def _kind(type_: pa.DataType) -> str:
    if pa.types.is_boolean(type_):
        return "bool"
    if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return "numeric"
    if pa.types.is_temporal(type_):
        return "temporal"
    return "categorical"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class ValueHasher:
    """64-bit hashes of values that are not fixed-width numbers (text, bytes, nested).

    DuckDB's ``hash`` runs vectorised over Arrow data and is deterministic; one
    connection serves every writer thread through its own cursor.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: Any = None

    def hashes(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The hash of each value of ``values`` (which holds no nulls), as uint64."""
        with self._lock:
            if self._connection is None:
                self._connection = _duckdb.connect()
            cursor = self._connection.cursor()
        try:
            cursor.register("loopml_values", pa.table({"v": values}))
            result = cursor.execute("SELECT hash(v) AS h FROM loopml_values").fetchnumpy()
        finally:
            cursor.close()
        return np.asarray(result["h"], dtype=np.uint64)

    def close(self) -> None:
        """Close the DuckDB connection, if one was opened."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


@dataclass
class ColumnPart:
    """One column's statistics over one group of rows (see ``profile_group``)."""

    count: int = 0
    minimum: Any = None
    maximum: Any = None
    mean: float = 0.0
    m2: float = 0.0
    trues: int = 0
    sample: np.ndarray | None = None
    sketch: HyperLogLog | None = None
    # Exact counts: key -> [value, count]; the key is the value itself, or its hash
    # for values Python cannot use as a key (lists, dicts).
    counts: dict[Any, list[Any]] | None = None


@dataclass
class GroupProfile:
    """The partial profile of one group of rows: its row count and its columns' parts."""

    rows: int
    columns: dict[str, ColumnPart] = field(default_factory=dict)
    types: dict[str, pa.DataType] = field(default_factory=dict)


def profile_group(
    table: pa.Table, hasher: ValueHasher, sketched: frozenset[str] = frozenset()
) -> GroupProfile:
    """Profile one group of rows, to be merged by ``Profiler.add``.

    Args:
        table: the rows, as they are written.
        hasher: hashes values that are not fixed-width numbers.
        sketched: columns known to hold too many values for exact counts
            (``Profiler.sketched``); a hint that saves work, never changes the result.
    """
    group = GroupProfile(table.num_rows)
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        part = ColumnPart(count=len(column) - column.null_count)
        group.columns[name], group.types[name] = part, column.type
        if not part.count:
            continue
        values = column.drop_null() if column.null_count else column
        kind = _kind(column.type)
        if kind == "numeric":
            _numeric(part, values)
        elif kind == "temporal":
            _temporal(part, values)
        elif kind == "bool":
            part.trues = pc.sum(values).as_py() or 0
        elif pa.types.is_nested(column.type):
            _nested(part, values, hasher, name in sketched)
        else:
            _flat(part, values, hasher, name in sketched)
    return group


def _numeric(part: ColumnPart, values: pa.ChunkedArray) -> None:
    floats = values.cast(pa.float64())
    part.mean = pc.mean(floats).as_py()
    part.m2 = pc.variance(floats, ddof=0).as_py() * part.count
    part.sample = _arrow.numbers(floats)
    part.sketch = HyperLogLog()
    if pa.types.is_integer(values.type):
        extremes = pc.min_max(values)
        part.minimum, part.maximum = extremes["min"].as_py(), extremes["max"].as_py()
        for chunk in values.chunks:
            part.sketch.add_values(_arrow.numbers(chunk).astype(np.int64, copy=False))
        return
    # As DuckDB compares them: NaN is the largest value, and -0.0 equals 0.0.
    part.minimum = float(np.fmin.reduce(part.sample))
    has_nan = np.isnan(part.sample).any()
    part.maximum = math.nan if has_nan else float(np.fmax.reduce(part.sample))
    part.sketch.add_values(part.sample + 0.0)


def _temporal(part: ColumnPart, values: pa.ChunkedArray) -> None:
    extremes = pc.min_max(values)
    low, high = extremes["min"], extremes["max"]
    if pa.types.is_timestamp(values.type) and values.type.unit == "ns":
        # In microseconds, as Python's datetime (and DuckDB) hold them.
        micros = pa.timestamp("us", values.type.tz)
        low, high = low.cast(micros, safe=False), high.cast(micros, safe=False)
    part.minimum, part.maximum = low.as_py(), high.as_py()
    part.sketch = HyperLogLog()
    part.sketch.add_values(_arrow.numbers(values).astype(np.int64, copy=False))


def _flat(part: ColumnPart, values: pa.ChunkedArray, hasher: ValueHasher, sketched: bool) -> None:
    """Text and bytes: exact counts while few values, else a sketch; min and max."""
    if not sketched and (
        len(values) <= _PROBE_ROWS
        or pc.count_distinct(values.slice(0, _PROBE_ROWS)).as_py() <= MAX_TOP_DISTINCT
    ):
        counted = pc.value_counts(values)
        distinct = counted.field("values")
        if len(distinct) <= MAX_TOP_DISTINCT:
            part.minimum, part.maximum = _extremes(distinct)
            numbers = counted.field("counts").to_pylist()
            part.counts = {v: [v, n] for v, n in zip(distinct.to_pylist(), numbers, strict=True)}
            return
        values = pa.chunked_array([distinct])  # hashing each value once is enough
    part.minimum, part.maximum = _extremes(values)
    part.sketch = HyperLogLog()
    part.sketch.add_hashes(hasher.hashes(values))


def _extremes(values: pa.Array | pa.ChunkedArray) -> tuple[Any, Any]:
    """Min and max in byte order, or None for types Arrow cannot order."""
    try:
        extremes = pc.min_max(values)
    except pa.ArrowNotImplementedError:
        return None, None
    return extremes["min"].as_py(), extremes["max"].as_py()


def _nested(part: ColumnPart, values: pa.ChunkedArray, hasher: ValueHasher, sketched: bool) -> None:
    """Lists, structs, maps: no order, so no min or max; values counted by their hash."""
    hashes = hasher.hashes(values)
    part.sketch = HyperLogLog()
    part.sketch.add_hashes(hashes)
    if sketched:
        return
    keys, first, numbers = np.unique(hashes, return_index=True, return_counts=True)
    if len(keys) <= MAX_TOP_DISTINCT:
        examples = values.take(_arrow.int64s(first)).to_pylist()
        part.counts = {int(k): [v, int(n)] for k, v, n in zip(keys, examples, numbers, strict=True)}


class _ColumnState:
    """One column's merged statistics."""

    def __init__(self, type_: pa.DataType) -> None:
        self.type = type_
        self.kind = _kind(type_)
        self.count = 0
        self.minimum: Any = None
        self.maximum: Any = None
        self.mean = 0.0
        self.m2 = 0.0
        self.trues = 0
        self.sample = SystematicSample(QUANTILE_SAMPLE) if self.kind == "numeric" else None
        self.sketch = HyperLogLog()
        # Exact value counts, while the column has at most MAX_TOP_DISTINCT values.
        self.counts: dict[Any, list[Any]] | None = {} if self.kind == "categorical" else None

    def add(self, part: ColumnPart, hasher: ValueHasher) -> None:
        if not part.count:
            return
        self.minimum = _lower(self.minimum, part.minimum)
        self.maximum = _upper(self.maximum, part.maximum)
        total = self.count + part.count
        delta = part.mean - self.mean
        self.m2 += part.m2 + delta * delta * self.count * part.count / total
        self.mean += delta * part.count / total
        self.count = total
        self.trues += part.trues
        if self.sample is not None and part.sample is not None:
            self.sample.add(part.sample)
        if part.sketch is not None:
            self.sketch.merge(part.sketch)
        if self.kind != "categorical":
            return
        if part.counts is None:
            self._stop_counting(hasher)  # the part had too many values to count
        elif self.counts is None:
            # Counted on a thread that had not yet heard this column is past counting.
            self.sketch.add_hashes(self._hashes(part.counts, hasher))
        else:
            for key, (value, number) in part.counts.items():
                entry = self.counts.get(key)
                if entry is None:
                    self.counts[key] = [value, number]
                else:
                    entry[1] += number
            if len(self.counts) > MAX_TOP_DISTINCT:
                self._stop_counting(hasher)

    def _hashes(self, counts: dict[Any, list[Any]], hasher: ValueHasher) -> np.ndarray:
        """The hashes of counted values, as the sketch takes them."""
        if pa.types.is_nested(self.type):
            return np.fromiter(counts, dtype=np.uint64, count=len(counts))  # already hashes
        if pa.types.is_string(self.type):
            return hasher.hashes(_arrow.strings(list(counts)))
        return hasher.hashes(pa.array(list(counts), self.type))

    def _stop_counting(self, hasher: ValueHasher) -> None:
        """Too many values for exact counts: carry on with a sketch of them."""
        if self.counts:
            self.sketch.add_hashes(self._hashes(self.counts, hasher))
        self.counts = None

    def result(self, rows: int) -> dict[str, Any]:
        stats: dict[str, Any] = {"kind": self.kind, "count": rows}
        if self.kind == "bool":
            falses = self.count - self.trues
            stats["distinct"] = int(self.trues > 0) + int(falses > 0)
            stats["mean"] = self.trues / self.count if self.count else None
            pairs = [[value, n] for value, n in ((False, falses), (True, self.trues)) if n]
            stats["nulls"] = rows - self.count
            stats["top"] = sorted(pairs, key=lambda pair: -pair[1])
            return stats
        counted = self.counts is not None
        stats["distinct"] = len(self.counts) if self.counts is not None else self.sketch.estimate()
        if not pa.types.is_nested(self.type):
            stats["min"], stats["max"] = _clean(self.minimum), _clean(self.maximum)
        if self.kind == "numeric":
            stats["mean"] = _clean(self.mean) if self.count else None
            stats["std"] = _clean(math.sqrt(self.m2 / (self.count - 1))) if self.count > 1 else None
            values = self.sample.values() if self.sample is not None else np.empty(0)
            stats["quantiles"] = {
                str(q): _clean(v)
                for q, v in zip(QUANTILES, quantiles(values, QUANTILES), strict=False)
            }
        stats["nulls"] = rows - self.count
        if counted:
            stats["top"] = [[_clean(v), n] for v, n in _top(self.counts or {}, self.type)]
        return stats


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _lower(current: Any, other: Any) -> Any:
    """The smaller of two minimums (either may be None); NaN is the largest value."""
    if current is None or _is_nan(current):
        return other if other is not None else current
    if other is None or _is_nan(other):
        return current
    return min(current, other)


def _upper(current: Any, other: Any) -> Any:
    """The larger of two maximums (either may be None); NaN is the largest value."""
    if current is None or _is_nan(other):
        return other if other is not None else current
    if other is None or _is_nan(current):
        return current
    return max(current, other)


def _top(counts: dict[Any, list[Any]], type_: pa.DataType) -> list[tuple[Any, int]]:
    """The TOP_K most frequent values; ties in value order (nested ones by their JSON)."""
    entries = [(value, n) for value, n in counts.values()]
    if pa.types.is_nested(type_):
        return sorted(entries, key=lambda e: (-e[1], _json(e[0])))[:TOP_K]
    return sorted(entries, key=lambda e: (-e[1], e[0]))[:TOP_K]


def _json(value: Any) -> bytes:
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS)


class Profiler:
    """Merges the partial profiles of a version's groups of rows, in their order."""

    def __init__(self) -> None:
        self.hasher = ValueHasher()
        self.rows = 0
        self._columns: dict[str, _ColumnState] = {}
        self._sketched: frozenset[str] = frozenset()

    @property
    def sketched(self) -> frozenset[str]:
        """Columns with too many distinct values for exact counts (a hint for threads)."""
        return self._sketched

    def add(self, group: GroupProfile) -> None:
        """Merge the partial profile of the next group of rows."""
        self.rows += group.rows
        for name, part in group.columns.items():
            state = self._columns.get(name)
            if state is None:
                state = self._columns[name] = _ColumnState(group.types[name])
            state.add(part, self.hasher)
            if state.kind == "categorical" and state.counts is None:
                self._sketched |= {name}

    def result(self, schema: pa.Schema) -> dict[str, dict[str, Any]]:
        """The profile of every column of ``schema`` over all the groups added.

        Returns:
            column name -> statistics (``kind``, ``count``, ``nulls``, ``distinct``, and
            for numbers ``min max mean std quantiles``; for the rest ``min max`` when
            ordered and ``top`` as [value, count] pairs when there are few values).
        """
        self.close()
        return {
            field_.name: (
                self._columns.get(field_.name) or _ColumnState(_value_type(field_.type))
            ).result(self.rows)
            for field_ in schema
        }

    def close(self) -> None:
        """Release the hasher's connection (also after a failure)."""
        self.hasher.close()


def _value_type(type_: pa.DataType) -> pa.DataType:
    """The type of the values: a dictionary's values are profiled as plain values."""
    return type_.value_type if pa.types.is_dictionary(type_) else type_
