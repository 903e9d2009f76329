"""The workload spec, ``loopml.yaml``: one file that declares a whole workload.

Every section is validated when the spec is loaded, with messages that name the field
and its line. Sources, features, the split and training (with its evaluation and
gates) run as pipeline steps; ``deploy`` and ``monitor`` are read by the servers,
``loopml watch`` and ``loopml retrain``.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loopml.config import parse_model
from loopml.errors import InputError, NotFound, SpecError
from loopml.evaluate.gates import check_gates_spec
from loopml.features.timeseries import MAX_LAGS, parse_window
from loopml.monitor.alert_rules import parse_rules

SPEC_FILE = "loopml.yaml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_memory(value: str | int) -> int:
    """Bytes from ``4GiB``, ``512MB`` or a plain number of bytes."""
    if isinstance(value, int):
        return value
    match = _MEMORY.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size such as 512MiB or 4GiB")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()])


class Resources(_Model):
    """What a step needs; the scheduler runs a step only when it fits."""

    cpus: float = Field(default=1, gt=0)
    memory: int = Field(default=0, ge=0)
    gpus: float = Field(default=0, ge=0)

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> int:
        return parse_memory(value) if isinstance(value, str | int) else value


class StepOptions(_Model):
    """Retries and resources of one step."""

    retries: int = Field(default=0, ge=0, le=20)
    backoff: float = Field(default=1.0, ge=0, description="seconds before the first retry")
    resources: Resources = Resources()
    heavy: bool = False


class Source(StepOptions):
    """A dataset ingested from files or a query."""

    path: str | None = None
    query: str | None = None
    from_: str | None = Field(default=None, alias="from")
    format: Literal["csv", "jsonl", "parquet"] | None = None
    contract: str | None = None
    pii: dict[str, Literal["drop", "hash", "mask", "redact"]] = {}

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_origin(self) -> Source:
        if (self.path is None) == (self.query is None):
            raise ValueError("give either path or query (with from)")
        if self.query is not None and not self.from_:
            raise ValueError("query needs from: a database URL")
        return self


class Rolling(_Model):
    """Per-entity rolling windows over event time (see ``loopml features rolling``)."""

    input: str
    entity: str
    time: str
    value: str
    windows: list[str] = Field(min_length=1)
    aggs: list[Literal["count", "sum", "mean", "std", "min", "max"]] = Field(min_length=1)
    lags: int = Field(default=0, ge=0, le=MAX_LAGS)
    time_since_previous: bool = True

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for window in value:
            try:
                parse_window(window)
            except InputError as exc:
                raise ValueError(exc.message) from exc
        return value


class PointInTimeJoin(_Model):
    """Events joined to the latest feature row strictly before each event."""

    events: str
    features: str
    entity: str
    time: str
    feature_time: str | None = None
    columns: list[str] | None = None


class Feature(StepOptions):
    """One derived dataset: exactly one of sql, python, rolling or pit_join."""

    sql: str | None = None
    python: str | None = None
    inputs: list[str] = []
    params: dict[str, Any] = {}
    rolling: Rolling | None = None
    pit_join: PointInTimeJoin | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Feature:
        kinds = [
            k for k in ("sql", "python", "rolling", "pit_join") if getattr(self, k) is not None
        ]
        if len(kinds) != 1:
            raise ValueError("give exactly one of sql, python, rolling or pit_join")
        if kinds[0] in {"sql", "python"} and not self.inputs:
            raise ValueError(f"a {kinds[0]} feature needs inputs")
        return self

    @property
    def kind(self) -> str:
        """sql, python, rolling or pit_join."""
        return next(
            k for k in ("sql", "python", "rolling", "pit_join") if getattr(self, k) is not None
        )

    def depends_on(self) -> list[str]:
        """The datasets this feature reads."""
        if self.rolling is not None:
            return [self.rolling.input]
        if self.pit_join is not None:
            return [self.pit_join.events, self.pit_join.features]
        return list(self.inputs)


class Split(StepOptions):
    """How the training data is split; seeded, so it repeats."""

    input: str | None = None
    output: str | None = None
    by: Literal["random", "stratified", "time", "group"] = "random"
    column: str | None = None
    test: float = Field(default=0.2, ge=0, lt=1)
    valid: float = Field(default=0.0, ge=0, lt=1)
    seed: int = 0
    cutoff: str | None = None

    @field_validator("cutoff", mode="before")
    @classmethod
    def _cutoff(cls, value: Any) -> Any:
        # An unquoted YAML date or time arrives as a date object.
        return value.isoformat() if isinstance(value, date | datetime) else value

    @model_validator(mode="after")
    def _fits(self) -> Split:
        if self.test + self.valid >= 1:
            raise ValueError("test + valid must be below 1")
        if self.by != "random" and not self.column:
            raise ValueError(f"a {self.by} split needs column")
        if self.by == "random" and self.column:
            raise ValueError("a random split takes no column")
        if self.cutoff is not None and self.by != "time":
            raise ValueError("cutoff applies to time splits only")
        return self


class Search(_Model):
    """Hyper-parameter search: trials and a space (validated now, run by training)."""

    trials: int = Field(default=20, ge=1)
    space: dict[str, Any] = {}
    seed: int = 0


class Schedule(_Model):
    """When the pipeline runs by itself, and when heavy steps may run."""

    cron: str
    off_peak: str | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression such as '0 2 * * *'")
        return value

    @field_validator("off_peak")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_off_peak(value)
        return value


def parse_off_peak(text: str) -> tuple[int, int]:
    """Minutes after midnight of ``HH:MM-HH:MM`` (the end may be past midnight)."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a window such as 00:00-06:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59:
        raise ValueError(f"{text!r} has an impossible time")
    return h1 * 60 + m1, h2 * 60 + m2


class Train(StepOptions):
    """Training: a step that registers the next version of the model.

    ``name`` is the model's name (default: the spec's); ``input`` the dataset it trains
    on (default: the split's output); ``model`` as ``loopml train --model`` takes it.
    """

    name: str | None = None
    model: str = "auto"
    target: str | None = None
    task: Literal["binary", "multiclass", "regression", "anomaly"] | None = None
    input: str | None = None
    params: dict[str, Any] = {}
    features: list[str] | None = None
    exclude: list[str] = []
    metric: str | None = None
    search: Search | None = None
    schedule: Schedule | None = None
    gpu_fallback: bool = False
    onnx: bool = False

    @model_validator(mode="after")
    def _target(self) -> Train:
        if self.target is None and self.task != "anomaly":
            raise ValueError("target is missing (only task: anomaly trains without one)")
        return self

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not (
            value in {"auto", "lightgbm", "xgboost", "torch-mlp"}
            or value.startswith(("sklearn:", "python:"))
        ):
            raise ValueError(
                f"{value!r}: use auto, sklearn:PKG.MODULE.CLASS, lightgbm, xgboost, torch-mlp "
                "or python:MODULE:FUNCTION"
            )
        return value

    @field_validator("search")
    @classmethod
    def _space(cls, value: Search | None) -> Search | None:
        if value is not None:
            from loopml.train.search import parse_space

            try:
                parse_space(value.space)
            except SpecError as exc:
                raise ValueError(exc.message) from exc
        return value


class Evaluate(_Model):
    """Evaluation after training, and the model's promotion gates.

    The gates are checked against every task's figures here, and against the
    model's own task when the training step declares them.
    """

    sensitive: list[str] = []
    slices: list[str] = []
    gates: dict[str, Any] = {}

    @field_validator("gates")
    @classmethod
    def _gates(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            check_gates_spec(value)
        except InputError as exc:
            raise ValueError(str(exc)) from exc
        return value


class Deploy(_Model):
    """Serving: the alias servers watch, and how they run."""

    alias: str = "champion"
    workers: int = Field(default=1, ge=1)
    canary: str | None = None
    shadow: str | None = None
    slo: dict[str, float] = {}


class Drift(_Model):
    test: Literal["psi", "ks", "chi2", "js"] = "psi"
    threshold: float = Field(default=0.2, gt=0)
    window: int | str = 10_000
    # The share of drifted input columns that makes a window drifted.
    share: float = Field(default=0.5, gt=0, le=1)


# "0", "0s", "0m"...: no cooldown at all.
_NO_TIME = re.compile(r"\s*0+\s*[smhdw]?\s*")


class Retrain(_Model):
    on: list[Literal["drift", "decay", "schedule"]] = ["drift"]
    auto_promote: bool = False
    # After a rejected (or waiting) retrain, persisting drift or decay waits this long.
    cooldown: str = "1h"

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, value: str) -> str:
        if _NO_TIME.fullmatch(str(value)):
            return value
        try:
            parse_window(value)
        except InputError as exc:
            raise ValueError(f"cooldown {value!r}: {exc.hint or exc.message}") from exc
        return value

    @property
    def cooldown_seconds(self) -> float:
        if _NO_TIME.fullmatch(str(self.cooldown)):
            return 0.0
        return parse_window(self.cooldown) / 1_000_000


class Monitor(_Model):
    """Monitoring, alerts and retraining (what ``loopml watch`` and ``loopml retrain`` read)."""

    drift: Drift = Drift()
    # Alert rules keep the form ``loopml.monitor.alert_rules`` reads (and validates here).
    alerts: list[dict[str, Any]] = []
    retrain: Retrain | None = None

    @field_validator("alerts")
    @classmethod
    def _alerts(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            parse_rules(value)
        except InputError as exc:
            raise ValueError(exc.message) from exc
        return value


class Spec(_Model):
    """A whole workload, as ``loopml.yaml`` declares it."""

    name: str
    owner: str | None = None
    resources: Resources = Resources()
    sources: dict[str, Source] = {}
    features: dict[str, Feature] = {}
    split: Split | None = None
    train: Train | None = None
    evaluate: Evaluate | None = None
    deploy: Deploy | None = None
    monitor: Monitor | None = None
    schedule: Schedule | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "use letters, digits, '_', '-' and '.', starting with a letter or digit"
            )
        return value

    @property
    def model_name(self) -> str:
        """The model the train step registers versions of (``train.name``, or the
        spec's name)."""
        return (self.train.name if self.train is not None else None) or self.name

    @model_validator(mode="after")
    def _names(self) -> Spec:
        for name in [*self.sources, *self.features]:
            if not _NAME.match(name):
                raise ValueError(f"dataset name {name!r}: use letters, digits, '_', '-' and '.'")
        clash = set(self.sources) & set(self.features)
        if clash:
            raise ValueError(f"{', '.join(sorted(clash))} is both a source and a feature")
        return self


def load_spec(path: str | Path) -> tuple[Spec, Path]:
    """Read and validate a spec; return it and the folder its relative paths start from.

    Raises:
        NotFound: the file does not exist.
        SpecError: it does not parse or validate (the message names field and line).
    """
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILE
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise NotFound(
            f"spec {path} does not exist",
            hint=f"write a {SPEC_FILE}, or `loopml init --example fraud DIR`",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"spec {path} cannot be read: {exc}") from exc
    return parse_model(Spec, text, source=str(path), what="a spec"), path.parent.absolute()
