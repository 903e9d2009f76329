"""Sources: files and queries read as a stream of typed Arrow record batches.

A source yields the rows it could parse, in order, as ``SourceBatch``es, and keeps
the rows it could not (ragged rows, undecodable bytes, values of the wrong type) as
``Reject``s with their row numbers. Memory stays bounded whatever the input size.

Row numbers count data records from 1 in each file (the header is not a record).
"""

from __future__ import annotations

import glob
import gzip
import io
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.data import _duckdb
from loopml.data.contract import DUCKDB_TYPES, Contract
from loopml.data.validate import bool_mask, rules_sql
from loopml.errors import InputError, NotFound

BATCH_ROWS = 122_880
REASON_COLUMN = "__loopml_reason"
REDACTED_EXTRA = "[REDACTED]"


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


_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
_JSON_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".json.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")


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
    """Per file, the sorted record numbers a reader rejected."""

    by_file: dict[str, list[int]] = field(default_factory=dict)

    def add(self, file: str, row: int) -> None:
        self.by_file.setdefault(file, []).append(row)

    def row_numbers(self, file: str, accepted_index: np.ndarray) -> np.ndarray:
        """Map accepted-row indexes (0-based) to source record numbers (1-based)."""
        rejected = np.sort(np.asarray(self.by_file.get(file, []), dtype=np.int64))
        # Before the j-th rejected record sit rejected[j] - 1 - j accepted ones.
        accepted_before = rejected - 1 - np.arange(len(rejected))
        skipped = np.searchsorted(accepted_before, accepted_index, side="right")
        return accepted_index + 1 + skipped


class Source(ABC):
    """The shared contract of the source readers."""

    def __init__(self) -> None:
        self.rejects: list[Reject] = []
        self._rejected = _RejectedRows()

    @property
    @abstractmethod
    def description(self) -> str:
        """What was read, as recorded in the version's ``source`` (no secrets)."""

    @abstractmethod
    def batches(self) -> Iterator[SourceBatch]:
        """Yield the accepted rows; ``rejects`` is complete once this is exhausted."""

    def total_rows(self) -> int | None:
        """The number of rows, when known without reading them (for progress bars)."""
        return None

    def total_bytes(self) -> int | None:
        """The size of the input in bytes, when known."""
        return None

    def reject(self, file: str, row: int, reason: str, detail: str, record: str | None) -> None:
        self.rejects.append(Reject(file, row, reason, detail, record))
        self._rejected.add(file, row)

    def row_numbers(self, file: str, accepted_index: np.ndarray) -> np.ndarray:
        """Source record numbers of accepted rows, given their indexes among the accepted."""
        return self._rejected.row_numbers(file, accepted_index)

    def split_record(self, record: str) -> dict[str, object] | None:
        """A rejected raw record as field name -> value, or None when it cannot be split."""
        import orjson

        try:
            value = orjson.loads(record)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None


def expand_paths(source: str | os.PathLike[str]) -> list[str]:
    """Expand a file, a folder or a glob into a sorted list of files.

    Raises:
        NotFound: nothing matches.
    """
    source = os.fspath(source)
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(
            str(p) for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
    elif any(ch in source for ch in "*?["):
        files = sorted(
            p for p in glob.glob(os.path.expanduser(source), recursive=True) if os.path.isfile(p)
        )
    elif path.is_file():
        files = [str(path)]
    else:
        raise NotFound(f"source {source} does not exist", hint="check the path")
    if not files:
        raise NotFound(f"source {source} matches no files")
    return files


def detect_format(files: list[str], declared: str | None = None) -> str:
    """Return ``csv``, ``jsonl`` or ``parquet`` from ``declared`` or the file names."""
    if declared:
        if declared not in {"csv", "jsonl", "parquet"}:
            raise InputError(f"unknown format {declared!r}", hint="use csv, jsonl or parquet")
        return declared
    kinds = set()
    for name in files:
        lower = name.lower()
        if lower.endswith(_CSV_SUFFIXES):
            kinds.add("csv")
        elif lower.endswith(_JSON_SUFFIXES):
            kinds.add("jsonl")
        elif lower.endswith(_PARQUET_SUFFIXES):
            kinds.add("parquet")
        else:
            raise InputError(
                f"{name}: unknown format",
                hint="name files .csv, .csv.gz, .jsonl, .jsonl.gz or .parquet, or pass --format",
            )
    if len(kinds) > 1:
        raise InputError(
            f"the source mixes formats ({', '.join(sorted(kinds))})",
            hint="ingest each format separately",
        )
    return kinds.pop()


def open_source(
    source: str | os.PathLike[str] | None,
    *,
    contract: Contract | None = None,
    format: str | None = None,
    query: str | None = None,
    delimiter: str = ",",
) -> Source:
    """Open a file, folder or glob (CSV, JSON Lines, Parquet) or a SQL query as a Source.

    Args:
        source: a path, folder or glob; or, with ``query``, a SQLAlchemy URL.
        contract: the declared schema; inferred from the data when None.
        format: force ``csv``, ``jsonl`` or ``parquet`` instead of guessing by suffix.
        query: a SQL query to run against the database at ``source``.
        delimiter: the CSV field delimiter.
    """
    if query is not None:
        if not source:
            raise InputError("--query needs --from URL", hint="for example --from sqlite:///app.db")
        return SQLSource(os.fspath(source), query, contract)
    if not source:
        raise InputError("no source given", hint="pass a file, folder or glob, or --query/--from")
    files = expand_paths(source)
    kind = detect_format(files, format)
    if kind == "csv":
        return CSVSource(files, contract, delimiter)
    if kind == "jsonl":
        return JSONLinesSource(files, contract)
    return ParquetSource(files, contract)


def _open_text(path: str) -> Any:
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


class CSVSource(Source):
    """CSV files (gzip too) parsed by DuckDB's parallel reader.

    Rows DuckDB cannot parse (ragged rows, bad quoting, undecodable bytes, values that
    do not cast to the column type) are collected from its reject tables.
    """

    def __init__(self, files: list[str], contract: Contract | None, delimiter: str = ",") -> None:
        super().__init__()
        self.files = files
        self.contract = contract
        self.delimiter = delimiter
        self.header = self._read_header(files[0])
        for other in files[1:]:
            if self._read_header(other) != self.header:
                raise InputError(
                    f"{other}: its header differs from {files[0]}'s",
                    hint="ingest files with different columns as separate datasets",
                )
        if contract is not None:
            check_columns(files[0], self.header, contract)

    @property
    def description(self) -> str:
        return (
            self.files[0]
            if len(self.files) == 1
            else f"{self.files[0]} (+{len(self.files) - 1} files)"
        )

    def total_bytes(self) -> int | None:
        return sum(os.path.getsize(name) for name in self.files)

    def _read_header(self, path: str) -> list[str]:
        import csv

        try:
            with _open_text(path) as handle:
                first = handle.readline()
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: cannot be read: {exc}") from exc
        try:
            text = first.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path}, line 1: the header is not UTF-8 text", hint="convert the file to UTF-8"
            ) from exc
        if not text.strip():
            raise InputError(f"{path}: the file is empty or has no header row")
        names = next(csv.reader(io.StringIO(text), delimiter=self.delimiter))
        names = [name.strip() for name in names]
        if len(set(names)) != len(names) or any(not n for n in names):
            raise InputError(f"{path}, line 1: the header has empty or repeated column names")
        return names

    def split_record(self, record: str) -> dict[str, object] | None:
        import csv

        try:
            fields = next(csv.reader(io.StringIO(record), delimiter=self.delimiter))
        except (csv.Error, StopIteration):
            return None
        named: dict[str, object] = dict(zip(self.header, fields, strict=False))
        for i, value in enumerate(fields[len(self.header) :], start=1):
            named[f"_extra_{i}"] = REDACTED_EXTRA if value else value
        return named

    def _types(self, con: Any, read: str) -> dict[str, str]:
        """Each header column's contract type: declared, else as DuckDB sniffs it."""
        if self.contract is not None:
            return {
                name: self.contract.columns[name].type
                if name in self.contract.columns
                else "string"
                for name in self.header
            }
        described = con.execute(f"DESCRIBE SELECT * FROM {read}").fetchall()
        return {
            name: _from_duckdb_type(row[1])
            for name, row in zip(self.header, described, strict=False)
        }

    def batches(self) -> Iterator[SourceBatch]:
        import duckdb

        con = _duckdb.connect()
        files = "[" + ", ".join(_sql_string(name) for name in self.files) + "]"
        options = [
            "header=true",
            f"delim={_sql_string(self.delimiter)}",
            "quote='\"'",
            "escape='\"'",
            "store_rejects=true",
            "filename='__loopml_file'",
            "strict_mode=true",
        ]
        try:
            types = self._types(con, f"read_csv({files}, {', '.join(options)})")
            # DuckDB's integer parsing is lenient (it rounds '6.5' and reads '1e3'), so
            # int columns are read as text and cast here, strictly.
            declared = ", ".join(
                f"{_sql_string(name)}: "
                f"{_sql_string('VARCHAR' if kind == 'int' else DUCKDB_TYPES[kind])}"
                for name, kind in types.items()
            )
            options.append(f"columns={{{declared}}}")
            query = self._query(f"read_csv({files}, {', '.join(options)})", types)
            reader = con.sql(query).to_arrow_reader(BATCH_ROWS)
            counts: dict[str, int] = {}
            for batch in reader:
                yield from _split_by_file(batch, counts)
        except duckdb.Error as exc:
            raise InputError(
                f"{self.description}: cannot be read as CSV: {_first_line(exc)}"
            ) from exc
        self._collect_rejects(con)
        con.close()

    def _query(self, read: str, types: dict[str, str]) -> str:
        """The scan: strict casts of int columns, then every rule as one reason column."""
        ints = [name for name, kind in types.items() if kind == "int"]
        inner = "*"
        if ints:
            casts = ", ".join(f"{strict_int_sql(_column(n))} AS {_column(n)}" for n in ints)
            raws = ", ".join(f"{_column(n)} AS {_column('__raw_' + n)}" for n in ints)
            inner = f"* REPLACE ({casts}), {raws}"
        prefix = [
            f"WHEN {_column('__raw_' + n)} IS NOT NULL AND {_column(n)} IS NULL "
            f"THEN {_sql_string(f'{n}: not a valid int')}"
            for n in ints
        ]
        if self.contract is not None:
            reason = rules_sql(self.contract, prefix)
        else:
            reason = f"CASE {' '.join(prefix)} END" if prefix else None
        outer = "*"
        if ints:
            outer += " EXCLUDE (" + ", ".join(_column("__raw_" + n) for n in ints) + ")"
        if reason:
            outer += f", {reason} AS {REASON_COLUMN}"
        return f"SELECT {outer} FROM (SELECT {inner} FROM {read})"

    def _collect_rejects(self, con: Any) -> None:
        rows = con.execute(
            "SELECT s.file_path, e.line, e.column_name, e.error_type, e.csv_line, e.error_message "
            "FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id) "
            "ORDER BY s.file_path, e.line"
        ).fetchall()
        seen: set[tuple[str, int]] = set()
        for file, line, column, kind, raw, message in rows:
            row = int(line) - 1
            if (file, row) in seen:  # DuckDB reports each bad cell; the row counts once
                continue
            seen.add((file, row))
            self.reject(file, row, _csv_reason(kind, column, self.contract), message, raw)


def _csv_reason(kind: str, column: str | None, contract: Contract | None) -> str:
    if kind == "CAST":
        wanted = (
            contract.columns[column].type
            if contract and column in contract.columns
            else "the inferred type"
        )
        return f"{column}: not a valid {wanted}"
    return {
        "TOO MANY COLUMNS": "ragged row: too many fields",
        "MISSING COLUMNS": "ragged row: too few fields",
        "INVALID ENCODING": "undecodable bytes: not UTF-8",
        "INVALID UNICODE": "undecodable bytes: not UTF-8",
        "UNQUOTED VALUE": "malformed quoting",
        "LINE SIZE OVER MAXIMUM": "row too long",
    }.get(kind, f"unreadable row: {kind.lower()}")


def _split_by_file(batch: pa.RecordBatch, counts: dict[str, int]) -> Iterator[SourceBatch]:
    """Split a DuckDB batch at file boundaries and take off the file and reason columns."""
    files = batch.column(batch.schema.get_field_index("__loopml_file"))
    reasons = None
    if REASON_COLUMN in batch.schema.names:
        reasons = batch.column(batch.schema.get_field_index(REASON_COLUMN))
        batch = batch.drop_columns([REASON_COLUMN])
    data = batch.drop_columns(["__loopml_file"])
    first = files[0].as_py() if len(files) else None
    if first is not None and files[len(files) - 1].as_py() == first:
        runs = [(first, 0, len(files))]
    else:
        import pyarrow.compute as pc

        encoded = pc.run_end_encode(files)
        runs, start = [], 0
        for value, end in zip(
            encoded.values.to_pylist(), encoded.run_ends.to_pylist(), strict=True
        ):
            runs.append((value, start, end))
            start = end
    for file, start, end in runs:
        offset = counts.get(file, 0)
        counts[file] = offset + (end - start)
        yield SourceBatch(
            data.slice(start, end - start),
            file,
            offset,
            None if reasons is None else reasons.slice(start, end - start),
        )


def _column(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _from_duckdb_type(sql_type: str) -> str:
    """The contract type for a type DuckDB sniffed."""
    upper = sql_type.upper()
    if upper in {
        "BIGINT",
        "INTEGER",
        "SMALLINT",
        "TINYINT",
        "UBIGINT",
        "UINTEGER",
        "USMALLINT",
        "UTINYINT",
    }:
        return "int"
    if upper in {"DOUBLE", "FLOAT", "REAL"} or upper.startswith("DECIMAL"):
        return "float"
    if upper == "BOOLEAN":
        return "bool"
    if upper.startswith("TIMESTAMP"):
        return "timestamp"
    if upper == "DATE":
        return "date"
    return "string"


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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


class JSONLinesSource(Source):
    """JSON Lines files (gzip too), parsed by Arrow in blocks.

    A block that fails to parse is re-read line by line, so one bad line costs only
    its own row.
    """

    _BLOCK_BYTES = 8 << 20

    def __init__(self, files: list[str], contract: Contract | None) -> None:
        super().__init__()
        self.files = files
        self.contract = contract
        self.schema: pa.Schema | None = _arrow_schema(contract) if contract else None

    @property
    def description(self) -> str:
        return (
            self.files[0]
            if len(self.files) == 1
            else f"{self.files[0]} (+{len(self.files) - 1} files)"
        )

    def total_bytes(self) -> int | None:
        return sum(os.path.getsize(name) for name in self.files)

    def batches(self) -> Iterator[SourceBatch]:
        for file in self.files:
            accepted = 0
            row = 0
            for lines in self._blocks(file):
                if row == 0:
                    self._check_fields(file, lines)
                table = self._parse_block(file, lines, row)
                row += len(lines)
                for batch in table.to_batches(BATCH_ROWS):
                    yield SourceBatch(batch, file, accepted)
                    accepted += batch.num_rows
            if row == 0:
                raise InputError(f"{file}: the file is empty", hint="remove it from the source")

    def _check_fields(self, file: str, lines: list[bytes]) -> None:
        """Fail early when a later file's first record has fields the schema lacks."""
        import orjson

        if self.schema is None or file == self.files[0]:
            return
        for line in lines:
            if line.strip():
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    return  # the line is quarantined as it is parsed
                if isinstance(record, dict) and (extra := set(record) - set(self.schema.names)):
                    raise InputError(
                        f"{file}: its fields ({', '.join(sorted(extra))}) are not in "
                        f"{self.files[0]}'s",
                        hint="ingest files with different fields as separate datasets",
                    )
                return

    def _blocks(self, file: str) -> Iterator[list[bytes]]:
        try:
            with _open_text(file) as handle:
                block: list[bytes] = []
                size = 0
                for line in handle:
                    block.append(line)
                    size += len(line)
                    if size >= self._BLOCK_BYTES:
                        yield block
                        block, size = [], 0
                if block:
                    yield block
        except (OSError, EOFError) as exc:
            raise InputError(f"{file}: cannot be read: {exc}") from exc

    def _parse_block(self, file: str, lines: list[bytes], first_row: int) -> pa.Table:
        import pyarrow.json as pj

        # Once the schema is known (declared, or inferred from the first block), a field
        # outside it is an error for the line, never silently dropped.
        options = pj.ParseOptions(
            explicit_schema=self.schema,
            unexpected_field_behavior="error" if self.schema is not None else "infer",
        )
        blank = [i for i, line in enumerate(lines) if not line.strip()]
        try:
            if blank:
                raise pa.ArrowInvalid("blank lines")
            table = pj.read_json(io.BytesIO(b"".join(lines)), parse_options=options)
            if self.schema is None:
                self.schema = table.schema
            elif table.schema != self.schema:
                table = table.cast(self.schema)
            return table
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return self._parse_lines(file, lines, first_row)

    def _parse_lines(self, file: str, lines: list[bytes], first_row: int) -> pa.Table:
        import orjson
        import pyarrow.json as pj

        good: list[bytes] = []
        for i, line in enumerate(lines):
            row = first_row + i + 1
            if not line.strip():
                self.reject(file, row, "blank line", "the line is empty", None)
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                reason = (
                    "undecodable bytes: not UTF-8"
                    if "utf-8" in str(exc).lower()
                    else "invalid JSON"
                )
                self.reject(file, row, reason, str(exc), line.decode("utf-8", "replace")[:2000])
                continue
            if not isinstance(value, dict):
                self.reject(
                    file,
                    row,
                    "not a JSON object",
                    f"got {type(value).__name__}",
                    line.decode("utf-8", "replace")[:2000],
                )
                continue
            if self.schema is not None:
                try:
                    options = pj.ParseOptions(
                        explicit_schema=self.schema,
                        unexpected_field_behavior="error",
                    )
                    pj.read_json(io.BytesIO(line), parse_options=options).cast(self.schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                    self.reject(
                        file,
                        row,
                        _json_reason(str(exc)),
                        _first_line(exc),
                        line.decode("utf-8", "replace")[:2000],
                    )
                    continue
            good.append(line if line.endswith(b"\n") else line + b"\n")
        if not good:
            return pa.table(
                {f.name: pa.array([], f.type) for f in self.schema} if self.schema else {}
            )
        options = pj.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="ignore")
        table = pj.read_json(io.BytesIO(b"".join(good)), parse_options=options)
        if self.schema is None:
            self.schema = table.schema
        return table.cast(self.schema)


def _json_reason(message: str) -> str:
    if "unexpected field" in message.lower():
        return "field not in the schema"
    return "value of the wrong type"


def _arrow_schema(contract: Contract) -> pa.Schema:
    from loopml.data.contract import ARROW_TYPES

    return pa.schema(
        [
            pa.field(name, _arrow_type(ARROW_TYPES[rule.type]))
            for name, rule in contract.columns.items()
        ]
    )


def _arrow_type(name: str) -> pa.DataType:
    return {
        "int64": pa.int64(),
        "double": pa.float64(),
        "string": pa.string(),
        "bool": pa.bool_(),
        "timestamp[us]": pa.timestamp("us"),
        "date32[day]": pa.date32(),
    }[name]


class ParquetSource(Source):
    """Parquet files, read batch by batch and cast to the contract's types."""

    def __init__(self, files: list[str], contract: Contract | None) -> None:
        super().__init__()
        import pyarrow.parquet as pq

        self.files = files
        self.contract = contract
        try:
            self.metas = [pq.ParquetFile(name) for name in files]
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(
                f"{files[0]}: not a readable Parquet file: {_first_line(exc)}"
            ) from exc
        first = self.metas[0].schema_arrow
        for name, meta in zip(files[1:], self.metas[1:], strict=True):
            if meta.schema_arrow.names != first.names:
                raise InputError(f"{name}: its columns differ from {files[0]}'s")
        if contract is not None:
            check_columns(files[0], first.names, contract)

    @property
    def description(self) -> str:
        return (
            self.files[0]
            if len(self.files) == 1
            else f"{self.files[0]} (+{len(self.files) - 1} files)"
        )

    def total_rows(self) -> int | None:
        return sum(meta.metadata.num_rows for meta in self.metas)

    def batches(self) -> Iterator[SourceBatch]:
        for file, meta in zip(self.files, self.metas, strict=True):
            accepted = 0
            row = 0
            try:
                for batch in meta.iter_batches(batch_size=BATCH_ROWS):
                    good = coerce(self, file, batch, row, accepted, self.contract)
                    row += batch.num_rows
                    if good.num_rows:
                        yield SourceBatch(good, file, accepted)
                        accepted += good.num_rows
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputError(f"{file}: Parquet data is unreadable: {_first_line(exc)}") from exc


class SQLSource(Source):
    """The rows of a SQL query against any SQLAlchemy URL, fetched in chunks."""

    def __init__(self, url: str, query: str, contract: Contract | None) -> None:
        super().__init__()
        import sqlalchemy as sa

        try:
            self.url = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise InputError(
                "--from is not a database URL",
                hint="for example sqlite:///app.db or postgresql+psycopg://host/db",
            ) from exc
        self.query = query
        self.contract = contract

    @property
    def description(self) -> str:
        safe = self.url.render_as_string(hide_password=True)
        return f"{safe} :: {self.query}"

    def batches(self) -> Iterator[SourceBatch]:
        import sqlalchemy as sa

        file = "query"
        try:
            engine = sa.create_engine(self.url)
        except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
            raise InputError(
                f"cannot connect to {self.url.render_as_string(hide_password=True)}: {exc}"
            ) from exc
        accepted = 0
        row = 0
        try:
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True).execute(sa.text(self.query))
                names = list(result.keys())
                if self.contract is not None:
                    check_columns(file, names, self.contract)
                while chunk := result.fetchmany(BATCH_ROWS):
                    columns = list(zip(*chunk, strict=True))
                    batch = pa.RecordBatch.from_arrays(
                        [_to_arrow(column) for column in columns], names=names
                    )
                    good = coerce(self, file, batch, row, accepted, self.contract)
                    row += batch.num_rows
                    if good.num_rows:
                        yield SourceBatch(good, file, accepted)
                        accepted += good.num_rows
        except sa.exc.SQLAlchemyError as exc:
            raise InputError(
                f"the query failed: {_first_line(exc)}", hint="check the SQL and the database URL"
            ) from exc
        finally:
            engine.dispose()


def _to_arrow(values: tuple[Any, ...]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


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

    from loopml.data.contract import ARROW_TYPES

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
        target = _arrow_type(ARROW_TYPES[rule.type])
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
    return result.filter(pa.array(~bad))


def _try_cast(column: pa.Array, type_name: str) -> tuple[pa.Array, np.ndarray]:
    """Cast with DuckDB's TRY_CAST: values that do not cast become null and are flagged."""
    import pyarrow.compute as pc

    from loopml.data.contract import ARROW_TYPES

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
    values = cast.column("v").combine_chunks().cast(_arrow_type(ARROW_TYPES[type_name]))
    failed = pc.and_(pc.is_null(values), pc.is_valid(column))
    return values, bool_mask(failed)
