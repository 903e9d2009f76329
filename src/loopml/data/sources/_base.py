"""What every source shares: the Source contract, rejects, row numbering and casting."""

from __future__ import annotations

import gzip
import os
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.data import _duckdb
from loopml.data._arrow import booleans
from loopml.data.contract import DUCKDB_TYPES, Contract, arrow_type
from loopml.data.validate import bool_mask
from loopml.errors import InputError

BATCH_ROWS = 122_880
# Columns loopml adds inside its scans; a source's own columns may not start so.
RESERVED_PREFIX = "__loopml"
REASON_COLUMN = "__loopml_reason"
FILE_COLUMN = "__loopml_file"
RAW_PREFIX = "__loopml_raw_"


def strict_int_sql(text: str) -> str:
    """SQL casting the text expression ``text`` to BIGINT without changing any value.

    DuckDB's own cast rounds ('6.5' becomes 7); here a decimal is accepted only when
    it is whole ('7.0'), and anything else that does not cast exactly becomes NULL.
    """
    as_double = f"TRY_CAST({text} AS DOUBLE)"
    return (
        f"CASE WHEN contains({text}, '.') THEN (CASE WHEN {as_double} = floor({as_double}) "
        f"THEN TRY_CAST({as_double} AS BIGINT) END) ELSE TRY_CAST({text} AS BIGINT) END"
    )


@dataclass(frozen=True)
class Reject:
    """A source row that could not be read into the schema."""

    file: str
    row: int
    reason: str
    detail: str
    record: str | None


@dataclass
class SourceBatch:
    """Rows read from one file: ``offset`` is the index, among that file's accepted rows,
    of the batch's first row."""

    batch: pa.RecordBatch
    file: str
    offset: int
    reasons: pa.Array | None = None


@dataclass
class _RejectedRows:
    """Per file, the record numbers a reader rejected (8 bytes each)."""

    by_file: dict[str, array[int]] = field(default_factory=dict)

    def add(self, file: str, row: int) -> None:
        self.by_file.setdefault(file, array("q")).append(row)

    def row_numbers(self, file: str, accepted_index: np.ndarray) -> np.ndarray:
        """Map accepted-row indexes (0-based) to source record numbers (1-based)."""
        rejected = np.sort(np.frombuffer(self.by_file.get(file, array("q")), dtype=np.int64))
        # Before the j-th rejected record sit rejected[j] - 1 - j accepted ones.
        accepted_before = rejected - 1 - np.arange(len(rejected))
        skipped = np.searchsorted(accepted_before, accepted_index, side="right")
        return accepted_index + 1 + skipped


class Source(ABC):
    """The shared contract of the source readers."""

    def __init__(self) -> None:
        self.rejected = 0
        self._rejected = _RejectedRows()
        self._sink: Callable[[Reject], None] | None = None

    def send_rejects_to(self, sink: Callable[[Reject], None]) -> None:
        """Hand every rejected row to ``sink`` as it is found (the quarantine spools them)."""
        self._sink = sink

    @property
    @abstractmethod
    def description(self) -> str:
        """What was read, as recorded in the version's ``source`` (no secrets)."""

    @abstractmethod
    def batches(self) -> Iterator[SourceBatch]:
        """Yield the accepted rows; every reject has been sent once this is exhausted."""

    def known_schema(self) -> pa.Schema | None:
        """The columns as the source declares them before any row (a header, a footer)."""
        return None

    def total_rows(self) -> int | None:
        """The number of rows, when known without reading them (for progress bars)."""
        return None

    def total_bytes(self) -> int | None:
        """The size of the input in bytes, when known."""
        return None

    def reject(self, file: str, row: int, reason: str, detail: str, record: str | None) -> None:
        """Record that row ``row`` of ``file`` could not be read, and why."""
        self.rejected += 1
        self._rejected.add(file, row)
        if self._sink is not None:
            self._sink(Reject(file, row, reason, detail, record))

    def row_numbers(self, file: str, accepted_index: np.ndarray) -> np.ndarray:
        """Source record numbers of accepted rows, given their indexes among the accepted."""
        return self._rejected.row_numbers(file, accepted_index)

    def split_record(self, record: str) -> dict[str, object] | None:
        """A rejected raw record as field name -> value, or None when it cannot be split.

        Fields are named by column only when the record lines up with the columns;
        otherwise they are named ``field_1``, ``field_2``... so no column's policy is
        applied to a value that may not be that column's.
        """
        import orjson

        try:
            value = orjson.loads(record)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None


class FileSource(Source):
    """A source reading a list of files, named in messages by the first."""

    def __init__(self, files: list[str]) -> None:
        super().__init__()
        self.files = files

    @property
    def description(self) -> str:
        if len(self.files) == 1:
            return self.files[0]
        return f"{self.files[0]} (+{len(self.files) - 1} files)"

    def total_bytes(self) -> int | None:
        return sum(os.path.getsize(name) for name in self.files)


def _open_text(path: str) -> Any:
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_columns(file: str, present: list[str], contract: Contract) -> None:
    """Fail when the data lacks contract columns or, unless allowed, has extra ones."""
    missing = [name for name in contract.columns if name not in present]
    if missing:
        raise InputError(
            f"{file}: column(s) {', '.join(missing)} required by the contract are missing",
            hint=f"the file has: {', '.join(present)}",
        )
    extra = [name for name in present if name not in contract.columns]
    if extra and not contract.allow_extra_columns:
        raise InputError(
            f"{file}: column(s) {', '.join(extra)} are not in the contract",
            hint="add them to the contract, or set allow_extra_columns: true",
        )


def coerce(
    source: Source,
    file: str,
    batch: pa.RecordBatch,
    first_row: int,
    accepted: int,
    contract: Contract | None,
) -> pa.RecordBatch:
    """Cast a typed batch to the contract's types; rows whose values do not cast are rejected.

    ``first_row`` is the 0-based record index of the batch's first row in ``file``.
    """
    if contract is None:
        return batch
    import pyarrow.compute as pc

    names = list(contract.columns) + [n for n in batch.schema.names if n not in contract.columns]
    arrays = []
    bad = np.zeros(batch.num_rows, dtype=bool)
    reasons: dict[int, str] = {}
    for name in names:
        column = batch.column(name)
        rule = contract.columns.get(name)
        if rule is None:
            arrays.append(column)
            continue
        target = arrow_type(rule.type)
        if column.type == target:
            arrays.append(column)
            continue
        try:
            arrays.append(pc.cast(column, target))
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        cast, failed = _try_cast(column, rule.type)
        arrays.append(cast)
        for index in np.flatnonzero(failed & ~bad):
            reasons[int(index)] = f"{name}: not a valid {rule.type}"
        bad |= failed
    result = pa.RecordBatch.from_arrays(arrays, names=names)
    if not bad.any():
        return result
    import orjson

    records = batch.to_pylist()
    for index in np.flatnonzero(bad):
        source.reject(
            file,
            first_row + int(index) + 1,
            reasons[int(index)],
            "the value cannot be cast",
            orjson.dumps(records[index], default=str).decode(),
        )
    return result.filter(booleans(~bad))


def _try_cast(column: pa.Array, type_name: str) -> tuple[pa.Array, np.ndarray]:
    """Cast with DuckDB's TRY_CAST: values that do not cast become null and are flagged."""
    import pyarrow.compute as pc

    sql_type = DUCKDB_TYPES[type_name]
    con = _duckdb.connect()
    try:
        con.register("loopml_input", pa.table({"v": column}))
        if type_name == "int" and pa.types.is_floating(column.type):
            # Only whole numbers: DuckDB would round 6.5 to 7.
            expression = "CASE WHEN v = floor(v) THEN TRY_CAST(v AS BIGINT) END"
        else:
            text = "v" if pa.types.is_string(column.type) else "CAST(v AS VARCHAR)"
            expression = (
                strict_int_sql(text) if type_name == "int" else f"TRY_CAST({text} AS {sql_type})"
            )
        cast = con.sql(f"SELECT {expression} AS v FROM loopml_input").to_arrow_table()
    finally:
        con.close()
    values = cast.column("v").combine_chunks().cast(arrow_type(type_name))
    failed = pc.and_(pc.is_null(values), pc.is_valid(column))
    return values, bool_mask(failed)
