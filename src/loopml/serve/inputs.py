"""Request bodies as Arrow tables of a model's signature, or a 4xx a caller can act on.

``POST /predict`` takes JSON records (``{"records": [{...}, ...]}``), JSON columns
(``{"columns": {"x1": [...], ...}}``) or an Arrow IPC stream. Every column of the
signature must be there, nothing else; values must have the column's type (a number,
text, or a boolean) and may be missing only where the signature allows it. Each
problem names its column, so the caller can fix the request.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from loopml.registry.compiled import arrow_type

JSON = "application/json"
ARROW = "application/vnd.apache.arrow.stream"
CONTENT_TYPES = (JSON, ARROW)


_INT64 = 2**63


@dataclass(frozen=True)
class Rows:
    """Checked JSON rows as Python columns of a signature; Arrow is made once per batch.

    Every value already has its column's type, so ``to_table`` cannot fail.
    """

    schema: pa.Schema
    columns: Mapping[str, list[Any]]
    num_rows: int

    def to_table(self) -> pa.Table:
        """The rows as an Arrow table of the signature's types."""
        return pa.Table.from_arrays(
            [pa.array(self.columns[f.name], f.type) for f in self.schema], schema=self.schema
        )


def as_table(items: pa.Table | Rows | Sequence[pa.Table | Rows]) -> pa.Table:
    """One Arrow table of requests' rows, in order (JSON rows are joined before Arrow)."""
    if isinstance(items, pa.Table):
        return items
    if isinstance(items, Rows):
        return items.to_table()
    if len(items) == 1:
        return as_table(items[0])
    rows = [i for i in items if isinstance(i, Rows)]
    if len(rows) == len(items) and all(r.schema is rows[0].schema for r in rows):
        schema = rows[0].schema
        columns = {
            name: list(itertools.chain.from_iterable(r.columns[name] for r in rows))
            for name in schema.names
        }
        return Rows(schema, columns, sum(r.num_rows for r in rows)).to_table()
    return pa.concat_tables([as_table(i) for i in items])


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and what to fix."""

    def __init__(self, status: int, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = list(fields)

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        body: dict[str, Any] = {"error": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


@dataclass(frozen=True)
class InputColumn:
    """One column of a signature, as serving checks it."""

    name: str
    type: pa.DataType
    nullable: bool

    @property
    def kind(self) -> str:
        """``integer``, ``number``, ``text`` or ``boolean``: how errors name the type."""
        if pa.types.is_integer(self.type):
            return "integer"
        if pa.types.is_floating(self.type):
            return "number"
        if pa.types.is_boolean(self.type):
            return "boolean"
        return "text"


class InputSchema:
    """The input columns of a model version's signature, and the parsers that check them.

    Args:
        signature: the version's signature (``{"inputs": [{name, type, nullable}]}``).
    """

    def __init__(self, signature: Mapping[str, Any]) -> None:
        self.columns = [
            InputColumn(c["name"], arrow_type(str(c["type"])), bool(c.get("nullable", True)))
            for c in signature.get("inputs", [])
        ]
        self.names = [c.name for c in self.columns]
        self._names = frozenset(self.names)
        self._kinds = [(_ACCEPTED[c.kind], c.kind) for c in self.columns]
        self.schema = pa.schema([pa.field(c.name, c.type) for c in self.columns])

    def parse(self, body: bytes, content_type: str) -> pa.Table | Rows:
        """The body as rows of the signature's columns (``as_table`` makes them a table).

        Raises:
            RequestError: 415 for another content type, 422 for anything wrong inside.
        """
        media = content_type.split(";")[0].strip().lower()
        if media == JSON:
            return self.from_json(body)
        if media == ARROW:
            return self.from_arrow(body)
        raise RequestError(
            415,
            f"unsupported content type {media or '(none)'!r}; "
            f"send {JSON} (records or columns) or {ARROW}",
        )

    def from_json(self, body: bytes) -> Rows:
        """``{"records": [...]}`` or ``{"columns": {...}}`` as checked rows.

        Raises:
            RequestError: 422 for malformed JSON or bad columns or values.
        """
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(422, f"malformed JSON: {exc}") from None
        if not isinstance(data, dict) or len(data.keys() & {"records", "columns"}) != 1:
            raise RequestError(
                422, 'send {"records": [{column: value, ...}, ...]} or {"columns": {column: [...]}}'
            )
        if "records" in data:
            records = data["records"]
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise RequestError(422, '"records" must be a list of objects', ["records"])
            seen: set[str] = set()
            for record in records:
                seen.update(record)
                missing = [n for n in self.names if n not in record]
                if missing:
                    self._check_names(seen | set(self.names), missing)
            self._check_names(seen, [])
            columns = {n: [r.get(n) for r in records] for n in self.names}
        else:
            columns = data["columns"]
            if not isinstance(columns, dict) or not all(
                isinstance(v, list) for v in columns.values()
            ):
                raise RequestError(422, '"columns" must map each column to a list', ["columns"])
            self._check_names(set(columns), [n for n in self.names if n not in columns])
            lengths = {len(columns[n]) for n in self.names}
            if len(lengths) > 1:
                raise RequestError(422, "the columns have different lengths", self.names)
        for column, (ok, kind) in zip(self.columns, self._kinds, strict=True):
            self._check_json_column(column, ok, kind, columns[column.name])
        rows = len(columns[self.names[0]]) if self.names else 0
        return Rows(self.schema, {n: columns[n] for n in self.names}, rows)

    def from_arrow(self, body: bytes) -> pa.Table:
        """An Arrow IPC stream as a table; numbers and text are cast to the signature's types.

        Raises:
            RequestError: 422 for a stream that does not read, or bad columns or values.
        """
        try:
            table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        except (pa.ArrowInvalid, pa.ArrowException, OSError, ValueError) as exc:
            raise RequestError(422, f"malformed Arrow IPC stream: {exc}") from None
        names = table.schema.names
        if len(set(names)) != len(names):
            raise RequestError(422, "the stream repeats a column", names)
        self._check_names(set(names), [n for n in self.names if n not in names])
        arrays = []
        for column in self.columns:
            values = table.column(column.name)
            if not _castable(values.type, column):
                raise RequestError(
                    422,
                    f"column {column.name!r} must be {column.kind}, got Arrow {values.type}",
                    [column.name],
                )
            try:
                cast = values.cast(column.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise RequestError(422, f"column {column.name!r}: {exc}", [column.name]) from None
            self._check_missing(column, cast)
            arrays.append(cast)
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _check_names(self, given: set[str], missing: list[str]) -> None:
        extra = sorted(given - self._names)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if extra:
                parts.append(f"unknown column(s) {', '.join(extra)}")
            raise RequestError(
                422,
                "; ".join(parts) + f"; the model takes {', '.join(self.names)}",
                [*missing, *extra],
            )

    def _check_json_column(
        self, column: InputColumn, ok: tuple[type, ...], kind: str, values: list[Any]
    ) -> None:
        for row, value in enumerate(values):
            if value is None:
                if not column.nullable:
                    raise RequestError(
                        422, f"column {column.name!r} may not be missing (row {row})", [column.name]
                    )
                continue
            # bool is an int in Python but not a number here (type(), not isinstance()).
            kind_of = type(value)
            if kind_of not in ok and not (
                kind == "integer" and kind_of is float and value.is_integer()
            ):
                raise RequestError(
                    422,
                    f"column {column.name!r} must be {kind}, got {_json_type(value)} at row {row}",
                    [column.name],
                )
            # Arrow refuses integers beyond 64 bits (orjson reads huge ones as floats).
            if (kind_of is int or kind == "integer") and not -_INT64 <= value < _INT64:
                raise RequestError(
                    422,
                    f"column {column.name!r}: {value} is out of range at row {row}",
                    [column.name],
                )

    def _check_missing(self, column: InputColumn, values: Any) -> None:
        import pyarrow.compute as pc

        if column.kind == "number" and bool(pc.any(pc.is_inf(values)).as_py()):
            # JSON cannot say infinity; Arrow can, and models refuse it.
            raise RequestError(422, f"column {column.name!r} holds an infinity", [column.name])
        if column.nullable:
            return
        bad = values.null_count > 0
        if not bad and column.kind == "number":
            bad = bool(pc.any(pc.is_nan(values)).as_py())
        if bad:
            raise RequestError(
                422, f"column {column.name!r} may not hold missing values or NaN", [column.name]
            )


_ACCEPTED: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "text": (str,),
}


def _castable(source: pa.DataType, column: InputColumn) -> bool:
    """Whether Arrow values of ``source`` may stand for ``column`` (no text as numbers)."""
    if pa.types.is_null(source):
        return True
    if pa.types.is_dictionary(source):
        source = source.value_type
    if column.kind in {"integer", "number"}:
        return pa.types.is_integer(source) or pa.types.is_floating(source)
    if column.kind == "boolean":
        return pa.types.is_boolean(source)
    return pa.types.is_string(source) or pa.types.is_large_string(source)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number" if not (isinstance(value, float) and math.isnan(value)) else "NaN"
    if isinstance(value, str):
        return f"text {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
