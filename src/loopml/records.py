"""The core records, as frozen dataclasses with no I/O; the stores persist them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Column:
    """One column of a dataset version's schema.

    Attributes:
        name: the column name.
        type: the Arrow type, as Arrow prints it (``int64``, ``timestamp[us]``, ``string``).
        nullable: whether the column may hold nulls.
    """

    name: str
    type: str
    nullable: bool = True


@dataclass(frozen=True)
class StoredObject:
    """A write-once, content-addressed object in the artifact store.

    Attributes:
        sha256: the hex digest of the bytes; also the object's address.
        size: the size in bytes.
        rows: the row count when the object is a data file, else None.
    """

    sha256: str
    size: int
    rows: int | None = None


@dataclass(frozen=True)
class Dataset:
    """A named, owned series of immutable versions."""

    name: str
    owner: str
    created_at: datetime
    description: str = ""


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset.

    Attributes:
        dataset: the dataset's name.
        number: 1, 2, 3... per dataset, in commit order.
        id: the content hash of the schema and the data files; equal content, equal id.
        schema: the columns, in order.
        row_count: the rows accepted into the version.
        files: the Parquet data files, in order.
        source: where the rows came from (paths, a query), as given.
        owner: who owns the version.
        created_at: when the version was committed (UTC).
        rows_read: every row read from the source, accepted or not.
        rows_quarantined: the rows rejected into the quarantine.
        quarantine: the Parquet file of rejected rows with their reasons, if any.
        quarantine_reasons: reason -> count.
        profile: column name -> statistics.
        schema_changes: what changed against the previous version.
        pii: column -> the policy applied at ingest.
        pii_warnings: columns that look like PII but had no policy.
        tier: the storage tier the files live in.
        meta: anything else a stage records (for example the transform that made it).
    """

    dataset: str
    number: int
    id: str
    schema: tuple[Column, ...]
    row_count: int
    files: tuple[StoredObject, ...]
    source: str
    owner: str
    created_at: datetime
    rows_read: int = 0
    rows_quarantined: int = 0
    quarantine: StoredObject | None = None
    quarantine_reasons: Mapping[str, int] = field(default_factory=dict)
    profile: Mapping[str, Any] = field(default_factory=dict)
    schema_changes: Mapping[str, Any] = field(default_factory=dict)
    pii: Mapping[str, str] = field(default_factory=dict)
    pii_warnings: tuple[str, ...] = ()
    tier: str = "hot"
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """The version's stable name, ``dataset@number``."""
        return f"{self.dataset}@{self.number}"


@dataclass(frozen=True)
class AuditEvent:
    """One link of the audit chain; its hash covers its fields and the previous hash."""

    seq: int
    time: datetime
    actor: str
    action: str
    target: str
    outcome: str
    details: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Run:
    """One tracked run: a training, one trial of a search, or any tracked work.

    Attributes:
        id: a random hex id.
        experiment: what the run works on (a model's name for trainings).
        kind: ``train``, ``trial`` or ``custom``.
        status: ``running``, ``finished``, ``failed`` or ``pruned``.
        owner: who started it.
        started_at: when it started (UTC).
        ended_at: when it ended, or None while it runs.
        parent_id: the run a trial belongs to.
        params: the parameters, as given.
        metrics: each metric's latest value (every step is in the metric log).
        tags: free-form labels.
        inputs: the dataset versions read, each with the split used.
        artifacts: role -> stored object (sha256, size, format).
        environment: Python, platform and package versions.
        code: the git sha and dirty flag of the project, when it is a git checkout.
        resources: cpu_seconds, wall_seconds, peak_rss_bytes, gpu_seconds.
        cost: the cost from the workspace's price table, or None without one.
        error: why it failed.
    """

    id: str
    experiment: str
    kind: str
    status: str
    owner: str
    started_at: datetime
    ended_at: datetime | None = None
    parent_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[Mapping[str, Any], ...] = ()
    artifacts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    code: Mapping[str, Any] = field(default_factory=dict)
    resources: Mapping[str, float] = field(default_factory=dict)
    cost: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Model:
    """A named, owned series of model versions."""

    name: str
    owner: str
    created_at: datetime
    task: str
    description: str = ""


@dataclass(frozen=True)
class ModelVersion:
    """One immutable, registered version of a model.

    Attributes:
        model: the model's name.
        number: 1, 2, 3... per model, in registration order.
        id: the content hash of the artifacts; equal artifacts, equal id.
        flavor: how it was trained and is loaded (``sklearn``, ``lightgbm``, ``xgboost``,
            ``torch-mlp``, ``custom``).
        task: ``binary``, ``multiclass``, ``regression`` or ``anomaly``.
        run_id: the run that trained it.
        owner: who owns it.
        created_at: when it was registered (UTC).
        artifacts: role -> stored object and format (``model``, ``preprocess``, ``onnx``).
        signature: the input columns with their types, and the output.
        metrics: the holdout metrics measured at training.
        params: the estimator's parameters (the best ones when searched).
        inputs: the dataset versions it was trained on, with the split.
        status: ``candidate`` until evaluation and promotion say otherwise.
        meta: anything else (classes, feature handling, the estimator's import path).
    """

    model: str
    number: int
    id: str
    flavor: str
    task: str
    run_id: str
    owner: str
    created_at: datetime
    artifacts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    signature: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[Mapping[str, Any], ...] = ()
    status: str = "candidate"
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """The version's stable name, ``model@number``."""
        return f"{self.model}@{self.number}"


@dataclass(frozen=True)
class Evaluation:
    """A model version measured on a dataset version; stored with the model version.

    Attributes:
        id: a random id (32 hex characters).
        model: the model's name.
        number: the version evaluated.
        dataset: the dataset evaluated on, and ``dataset_version`` its number.
        dataset_id: the dataset version's content id.
        split: which rows: ``holdout:MODEL@N`` (that version's training holdout, rebuilt
            exactly), ``test`` (the version's split column), or ``all``; with
            ``|unseen:MODEL@M`` when the rows version M trained on were left out.
        rows: how many rows were scored.
        summary: the headline figures: metrics, fairness gaps, robustness drops.
        report: the stored object holding the whole result (JSON).
        created_by: who ran it.
        created_at: when (UTC).
    """

    id: str
    model: str
    number: int
    dataset: str
    dataset_version: int
    dataset_id: str
    split: str
    rows: int
    summary: Mapping[str, Any]
    report: StoredObject
    created_by: str
    created_at: datetime

    @property
    def model_ref(self) -> str:
        """The version evaluated, ``model@number``."""
        return f"{self.model}@{self.number}"

    @property
    def data_ref(self) -> str:
        """The dataset version evaluated on, ``dataset@number``."""
        return f"{self.dataset}@{self.dataset_version}"
