"""The metadata schema, as SQLAlchemy Core tables. Alembic migrations create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """A time stamp read back timezone-aware, in UTC, from every backend.

    PostgreSQL keeps the zone; SQLite stores none and hands back naive values. Every
    time loopml writes is UTC, so a naive value read back is UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


datasets = Table(
    "datasets",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("description", Text, nullable=False, default=""),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("dataset", String(200), ForeignKey("datasets.name"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("id", String(64), nullable=False, index=True),
    Column("schema", JSON, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("files", JSON, nullable=False),
    Column("source", Text, nullable=False),
    Column("owner", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("rows_read", BigInteger, nullable=False),
    Column("rows_quarantined", BigInteger, nullable=False),
    Column("quarantine", JSON, nullable=True),
    Column("quarantine_reasons", JSON, nullable=False),
    Column("profile", JSON, nullable=False),
    Column("schema_changes", JSON, nullable=False),
    Column("pii", JSON, nullable=False),
    Column("pii_warnings", JSON, nullable=False),
    Column("tier", String(20), nullable=False),
    Column("meta", JSON, nullable=False),
)

# Every content-addressed object a committed record refers to, so fsck and gc know
# what is live without walking every record kind.
objects = Table(
    "objects",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", UTCDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", Text, nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# The newest link of the audit chain, updated with each append: deleting the last
# events leaves the chain consistent, but no longer ending at this head.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# What made what: each edge says an input (a dataset version, later a run or model
# version) was used by an activity (ingest, transform, training) to make an output.
lineage_edges = Table(
    "lineage_edges",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(300), nullable=False, index=True),
    Column("target", String(300), nullable=False, index=True),
    Column("activity", String(300), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# Pipelines: one row per run, one per step of a run; enough to resume a crashed run.
pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pipeline", String(200), nullable=False, index=True),
    Column("spec", JSON, nullable=False),
    Column("spec_root", Text, nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("executor", String(50), nullable=False),
    Column("status", String(20), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
    Column("error", Text, nullable=True),
)

step_runs = Table(
    "step_runs",
    metadata,
    Column("run_id", String(32), ForeignKey("pipeline_runs.id"), primary_key=True),
    Column("step", String(250), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("cache_key", String(64), nullable=True),
    Column("cache_hit", Integer, nullable=False),
    Column("output", String(250), nullable=True),
    Column("output_id", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("ended_at", UTCDateTime(), nullable=True),
)

# The content-addressed step cache: same kind, definition, code and input versions,
# same output version.
step_cache = Table(
    "step_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("output", String(250), nullable=False),
    Column("output_id", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

schedules = Table(
    "schedules",
    metadata,
    Column("pipeline", String(200), primary_key=True),
    Column("spec_path", Text, nullable=False),
    Column("cron", String(100), nullable=False),
    Column("off_peak", String(20), nullable=True),
    Column("last_run_at", UTCDateTime(), nullable=True),
    Column("last_run_id", String(32), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

# Tracked runs. ``metrics`` holds each metric's latest value so listing and comparing
# runs reads one row per run; every logged value is in run_metrics.
runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment", String(200), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("parent_id", String(32), nullable=True, index=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
    Column("params", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("artifacts", JSON, nullable=False),
    Column("environment", JSON, nullable=False),
    Column("code", JSON, nullable=False),
    Column("resources", JSON, nullable=False),
    Column("cost", Float, nullable=True),
    Column("error", Text, nullable=True),
)

# The metric log: every value logged, written in batches. NaN is stored as NULL.
run_metrics = Table(
    "run_metrics",
    metadata,
    Column("run_id", String(32), nullable=False, index=True),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("value", Float, nullable=True),
    Column("time", Float, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("task", String(20), nullable=False),
    Column("description", Text, nullable=False, default=""),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model", String(200), ForeignKey("models.name"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("id", String(64), nullable=False, index=True),
    Column("flavor", String(50), nullable=False),
    Column("task", String(20), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("artifacts", JSON, nullable=False),
    Column("signature", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("meta", JSON, nullable=False),
)

# Aliases name one version of a model each (``champion``, ``challenger``...); every
# move is kept, so a rollback knows where the alias was before.
model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model", String(200), ForeignKey("models.name"), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("number", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", String(200), nullable=False),
)

alias_moves = Table(
    "alias_moves",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("alias", String(100), nullable=False),
    Column("number", Integer, nullable=False),
    Column("previous", Integer, nullable=True),
    Column("kind", String(20), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("time", UTCDateTime(), nullable=False),
)

# Status decisions on versions (approved, rejected, archived): who and why.
model_decisions = Table(
    "model_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("number", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("time", UTCDateTime(), nullable=False),
)

# One row per evaluation of a model version on a dataset version; ``report`` is the
# StoredObject (JSON) holding the whole result, ``summary`` its headline figures.
evaluations = Table(
    "evaluations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("number", Integer, nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("dataset_version", Integer, nullable=False),
    Column("dataset_id", String(64), nullable=False),
    Column("split", String(50), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("report", JSON, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# The promotion gates of a model, as declared in the spec or the SDK.
model_gates = Table(
    "model_gates",
    metadata,
    Column("model", String(200), ForeignKey("models.name"), primary_key=True),
    Column("gates", JSON, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# What a model card says that the records cannot: intended use and known limits.
model_cards = Table(
    "model_cards",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("intended_use", Text, nullable=False),
    Column("limitations", Text, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Monitoring: one row per checked window (``kind`` drift or decay), the statistics in
# JSON, so a model's drift and decay read back as a time series.
monitor_results = Table(
    "monitor_results",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("number", Integer, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("source", Text, nullable=False),
    Column("window_start", UTCDateTime(), nullable=True),
    Column("window_end", UTCDateTime(), nullable=True),
    Column("rows", BigInteger, nullable=False),
    Column("flagged", Boolean, nullable=False),
    Column("statistics", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# An alert per (rule, fingerprint) while it is open: repeats bump ``count`` rather
# than notifying again; ``notified`` lists the channels reached, escalation included.
alerts = Table(
    "alerts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Column("count", Integer, nullable=False),
    Column("first_at", UTCDateTime(), nullable=False),
    Column("last_at", UTCDateTime(), nullable=False),
    Column("notified", JSON, nullable=False),
    Column("escalated_at", UTCDateTime(), nullable=True),
    Column("acked_by", String(200), nullable=True),
    Column("acked_at", UTCDateTime(), nullable=True),
)

# A retrain policy's decisions: due (trigger and reason), then running, promoted,
# rejected (gates) or failed; at most one in flight per model.
retrain_decisions = Table(
    "retrain_decisions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("trigger", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("details", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
)
