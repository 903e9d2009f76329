"""Data contracts: the declared shape of a dataset, checked row by row at ingest.

A contract is YAML::

    columns:
      tx_id: {type: int, nullable: false}
      amount: {type: float, min: 0, max: 100000}
      merchant_category: {type: string, allowed: [grocery, travel]}
      customer_email: {type: string, regex: '^[^@]+@[^@]+$', pii: hash}
    unique: [tx_id]
    max_quarantine_fraction: 0.05

Types are ``int``, ``float``, ``string``, ``bool``, ``timestamp`` and ``date``.
A row that breaks a rule is quarantined with the rule as its reason; the ingest as a
whole fails when the quarantined share passes ``max_quarantine_fraction``.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from loopml.config import parse_model
from loopml.errors import NotFound, SpecError

ColumnType = Literal["int", "float", "string", "bool", "timestamp", "date"]
PiiPolicy = Literal["drop", "hash", "mask", "redact"]

# The contract's type names, as DuckDB casts to them and as Arrow stores them.
DUCKDB_TYPES: dict[str, str] = {
    "int": "BIGINT",
    "float": "DOUBLE",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
}


def arrow_type(kind: str) -> pa.DataType:
    """The Arrow type a contract type is stored as."""
    return {
        "int": pa.int64(),
        "float": pa.float64(),
        "string": pa.string(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us"),
        "date": pa.date32(),
    }[kind]


def _check_value(value: Any, kind: str, what: str) -> Any:
    """Return ``value`` as the contract type ``kind`` holds it, or raise ValueError."""
    if kind in {"int", "float"}:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{what} {value!r} is not a number")
        if not math.isfinite(value):
            raise ValueError(f"{what} {value!r} is not a finite number")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{what} {value!r} is not true or false")
    elif kind in {"timestamp", "date"}:
        text = value.isoformat() if isinstance(value, date | datetime) else str(value)
        try:
            datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{what} {value!r} is not an ISO {kind}") from exc
        return text
    else:
        return str(value)
    return value


def _order(value: Any) -> Any:
    """A bound as it compares: timestamps by time, not by their text."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


class ColumnRule(BaseModel):
    """What one column must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ColumnType = "string"
    nullable: bool = True
    min: int | float | datetime | date | str | None = None
    max: int | float | datetime | date | str | None = None
    allowed: list[Any] | None = None
    regex: str | None = None
    pii: PiiPolicy | None = None

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        # Rules run in DuckDB, whose RE2 engine lacks some of Python's syntax
        # (lookarounds, backreferences): compile the pattern where it will run.
        if value is not None:
            from loopml.data import _duckdb

            con = _duckdb.connect()
            try:
                con.execute("SELECT regexp_full_match('', ?)", [value]).fetchall()
            except Exception as exc:  # DuckDB raises one of several types for bad patterns
                message = str(exc).strip().splitlines()[0]
                raise ValueError(f"regex {value!r} does not compile: {message}") from exc
            finally:
                con.close()
        return value

    @model_validator(mode="after")
    def _rules_fit_type(self) -> ColumnRule:
        if self.regex is not None and self.type != "string":
            raise ValueError("regex applies to string columns only")
        if (self.min is not None or self.max is not None) and self.type in {"string", "bool"}:
            raise ValueError(f"min/max do not apply to {self.type} columns")
        for name in ("min", "max"):
            if (value := getattr(self, name)) is not None:
                object.__setattr__(self, name, _check_value(value, self.type, name))
        if self.allowed is not None:
            values = [_check_value(v, self.type, "allowed value") for v in self.allowed]
            object.__setattr__(self, "allowed", values)
        if self.min is not None and self.max is not None and _order(self.min) > _order(self.max):
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Contract(BaseModel):
    """A dataset's declared columns, unique key and quarantine limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, ColumnRule] = Field(min_length=1)
    unique: list[str] = Field(default_factory=list)
    max_quarantine_fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    allow_extra_columns: bool = False

    @field_validator("unique")
    @classmethod
    def _unique_columns_exist(cls, value: list[str], info: ValidationInfo) -> list[str]:
        columns = info.data.get("columns") or {}
        missing = [name for name in value if name not in columns]
        if missing:
            raise ValueError(f"unique key column(s) {', '.join(missing)} are not in columns")
        return value

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the declared columns, in order."""
        return pa.schema([pa.field(n, arrow_type(r.type)) for n, r in self.columns.items()])

    @property
    def pii(self) -> dict[str, str]:
        """Column -> PII policy, for the columns that declare one."""
        return {name: rule.pii for name, rule in self.columns.items() if rule.pii}

    @classmethod
    def load(cls, path: str | Path) -> Contract:
        """Read and validate a contract file.

        Raises:
            NotFound: the file does not exist.
            SpecError: the YAML does not parse or does not validate; the message names
                the field and its line.
        """
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError as exc:
            raise NotFound(f"contract {path} does not exist") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"contract {path} cannot be read: {exc}") from exc
        return cls.parse_yaml(text, source=str(path))

    @classmethod
    def parse_yaml(cls, text: str, *, source: str = "<contract>") -> Contract:
        """Parse and validate contract YAML; see ``load``."""
        return parse_model(cls, text, source=source, what="a contract")
