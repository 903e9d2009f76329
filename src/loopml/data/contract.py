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

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from loopml.errors import SpecError

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
ARROW_TYPES: dict[str, str] = {
    "int": "int64",
    "float": "double",
    "string": "string",
    "bool": "bool",
    "timestamp": "timestamp[us]",
    "date": "date32[day]",
}


class ColumnRule(BaseModel):
    """What one column must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ColumnType = "string"
    nullable: bool = True
    min: int | float | str | None = None
    max: int | float | str | None = None
    allowed: list[Any] | None = None
    regex: str | None = None
    pii: PiiPolicy | None = None

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex {value!r} does not compile: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _rules_fit_type(self) -> ColumnRule:
        if self.regex is not None and self.type != "string":
            raise ValueError("regex applies to string columns only")
        if (self.min is not None or self.max is not None) and self.type in {"string", "bool"}:
            raise ValueError(f"min/max do not apply to {self.type} columns")
        numbers = (int, float)
        if isinstance(self.min, numbers) and isinstance(self.max, numbers) and self.min > self.max:
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
        from loopml.errors import NotFound

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
        import yaml

        try:
            node = yaml.compose(text)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(yaml_error(exc, source)) from exc
        if not isinstance(data, dict):
            raise SpecError(f"{source}: a contract is a mapping with a 'columns' key")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_describe(exc, node, source)) from exc


def yaml_error(exc: Exception, source: str) -> str:
    """One line for a YAML syntax error: the file, the line and the problem."""
    mark = getattr(exc, "problem_mark", None)
    # At the end of the stream the problem is where the unclosed construct began.
    if getattr(exc, "context_mark", None) is not None and "<stream end>" in str(exc):
        mark = exc.context_mark  # type: ignore[attr-defined]
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    return f"{where}: not valid YAML: {problem}"


def _describe(exc: ValidationError, node: Any, source: str) -> str:
    """One line per problem, naming the field's path and its line in the file."""
    lines = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        line = _line_of(node, location)
        where = f"{source}:{line}" if line else source
        field = ".".join(location) or "(top level)"
        lines.append(f"{where}: {field}: {error['msg']}")
    return "; ".join(lines)


def _line_of(node: Any, path: list[str]) -> int | None:
    """The 1-based line of the YAML node at ``path``, or of its nearest parent."""
    import yaml

    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            return line
    return line
