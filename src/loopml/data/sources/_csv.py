"""CSV files (gzip too), parsed by DuckDB's parallel reader."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from loopml.data import _duckdb
from loopml.data._sql import identifier, string, string_list
from loopml.data.contract import DUCKDB_TYPES, Contract
from loopml.data.sources._base import (
    BATCH_ROWS,
    FILE_COLUMN,
    RAW_PREFIX,
    REASON_COLUMN,
    RESERVED_PREFIX,
    FileSource,
    SourceBatch,
    _first_line,
    _open_text,
    check_columns,
    strict_int_sql,
)
from loopml.data.validate import rules_sql
from loopml.errors import InputError


class CSVSource(FileSource):
    """CSV files (gzip too) parsed by DuckDB's parallel reader.

    Rows DuckDB cannot parse (ragged rows, bad quoting, undecodable bytes, values that
    do not cast to the column type) are collected from its reject tables.
    """

    def __init__(self, files: list[str], contract: Contract | None, delimiter: str = ",") -> None:
        super().__init__(files)
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
        if reserved := [n for n in names if n.startswith(RESERVED_PREFIX)]:
            raise InputError(
                f"{path}, line 1: column name(s) {', '.join(reserved)} are reserved",
                hint=f"rename columns starting with {RESERVED_PREFIX!r}",
            )
        if len(set(names)) != len(names) or any(not n for n in names):
            raise InputError(f"{path}, line 1: the header has empty or repeated column names")
        return names

    def known_schema(self) -> pa.Schema | None:
        return pa.schema([pa.field(name, pa.string()) for name in self.header])

    def split_record(self, record: str) -> dict[str, object] | None:
        import csv

        try:
            fields = next(csv.reader(io.StringIO(record), delimiter=self.delimiter))
        except (csv.Error, StopIteration):
            return None
        if len(fields) != len(self.header):
            return {f"field_{i}": value for i, value in enumerate(fields, start=1)}
        return dict(zip(self.header, fields, strict=True))

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
        files = string_list(self.files)
        options = [
            "header=true",
            f"delim={string(self.delimiter)}",
            "quote='\"'",
            "escape='\"'",
            "store_rejects=true",
            f"filename={string(FILE_COLUMN)}",
            "strict_mode=true",
        ]
        try:
            types = self._types(con, f"read_csv({files}, {', '.join(options)})")
            # DuckDB's integer parsing is lenient (it rounds '6.5' and reads '1e3'), so
            # int columns are read as text and cast here, strictly.
            declared = ", ".join(
                f"{string(name)}: {string('VARCHAR' if kind == 'int' else DUCKDB_TYPES[kind])}"
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
            casts = ", ".join(f"{strict_int_sql(identifier(n))} AS {identifier(n)}" for n in ints)
            raws = ", ".join(f"{identifier(n)} AS {identifier(RAW_PREFIX + n)}" for n in ints)
            inner = f"* REPLACE ({casts}), {raws}"
        prefix = [
            f"WHEN {identifier(RAW_PREFIX + n)} IS NOT NULL AND {identifier(n)} IS NULL "
            f"THEN {string(f'{n}: not a valid int')}"
            for n in ints
        ]
        if self.contract is not None:
            reason = rules_sql(self.contract, prefix)
        else:
            reason = f"CASE {' '.join(prefix)} END" if prefix else None
        outer = "*"
        if ints:
            outer += " EXCLUDE (" + ", ".join(identifier(RAW_PREFIX + n) for n in ints) + ")"
        if reason:
            outer += f", {reason} AS {REASON_COLUMN}"
        return f"SELECT {outer} FROM (SELECT {inner} FROM {read})"

    def _collect_rejects(self, con: Any) -> None:
        result = con.execute(
            "SELECT s.file_path, e.line, e.column_name, e.error_type, e.csv_line, e.error_message "
            "FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id) "
            "ORDER BY s.file_path, e.line"
        )
        last: tuple[str, int] | None = None
        while chunk := result.fetchmany(10_000):
            for file, line, column, kind, raw, message in chunk:
                row = int(line) - 1
                if (file, row) == last:  # DuckDB reports each bad cell; the row counts once
                    continue
                last = (file, row)
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
    files = batch.column(batch.schema.get_field_index(FILE_COLUMN))
    reasons = None
    if REASON_COLUMN in batch.schema.names:
        reasons = batch.column(batch.schema.get_field_index(REASON_COLUMN))
        batch = batch.drop_columns([REASON_COLUMN])
    data = batch.drop_columns([FILE_COLUMN])
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
