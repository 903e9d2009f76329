"""The Workspace: the façade users hold. It opens a Context and hands out one API per stage."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from loopml.config import Settings, load_settings
from loopml.errors import InputError

if TYPE_CHECKING:
    from loopml.context import Context
    from loopml.data.api import DataAPI
    from loopml.data.ingest import IngestResult
    from loopml.evaluate.api import EvaluationsAPI
    from loopml.evaluate.promotion import Promotion
    from loopml.features.api import FeaturesAPI
    from loopml.governance.api import AuditAPI
    from loopml.monitor.alerts import AlertsAPI
    from loopml.monitor.api import MonitorAPI
    from loopml.pipeline.api import PipelineAPI
    from loopml.records import Evaluation
    from loopml.registry.api import ModelsAPI
    from loopml.serve.batch import BatchResult
    from loopml.store.maintenance import FsckReport, GcReport
    from loopml.train.api import RunsAPI
    from loopml.train.training import TrainResult


class Workspace:
    """An open workspace: ``ws.data``, ``ws.runs``, ``ws.models``, ``ws.audit``, and shortcuts.

    Open one with ``loopml.open()``. Close it with ``close()`` or a ``with`` block.
    """

    def __init__(self, settings: Settings) -> None:
        from loopml.context import Context

        self.settings = settings
        self.ctx: Context = Context.open(settings)
        self._data: DataAPI | None = None
        self._audit: AuditAPI | None = None
        self._features: FeaturesAPI | None = None
        self._pipelines: PipelineAPI | None = None
        self._runs: RunsAPI | None = None
        self._models: ModelsAPI | None = None
        self._monitor: MonitorAPI | None = None
        self._alerts: AlertsAPI | None = None
        self._evaluations: EvaluationsAPI | None = None

    @property
    def data(self) -> DataAPI:
        """Datasets and their versions."""
        if self._data is None:
            from loopml.data.api import DataAPI

            self._data = DataAPI(self.ctx)
        return self._data

    @property
    def features(self) -> FeaturesAPI:
        """Transforms, time-series features and splits."""
        if self._features is None:
            from loopml.features.api import FeaturesAPI

            self._features = FeaturesAPI(self.ctx)
        return self._features

    @property
    def pipelines(self) -> PipelineAPI:
        """Workload specs run as pipelines, and their runs."""
        if self._pipelines is None:
            from loopml.pipeline.api import PipelineAPI

            self._pipelines = PipelineAPI(self.ctx)
        return self._pipelines

    @property
    def runs(self) -> RunsAPI:
        """Tracked runs: trainings, their trials, and runs you log to yourself."""
        if self._runs is None:
            from loopml.train.api import RunsAPI

            self._runs = RunsAPI(self.ctx)
        return self._runs

    @property
    def models(self) -> ModelsAPI:
        """Registered models and their versions."""
        if self._models is None:
            from loopml.registry.api import ModelsAPI

            self._models = ModelsAPI(self.ctx)
        return self._models

    @property
    def monitor(self) -> MonitorAPI:
        """Drift checks of models over their prediction log or a dataset, as a time series."""
        if self._monitor is None:
            from loopml.monitor.api import MonitorAPI

            self._monitor = MonitorAPI(self.ctx)
        return self._monitor

    @property
    def alerts(self) -> AlertsAPI:
        """Monitoring alerts: list, acknowledge, escalate, and evaluate rules."""
        if self._alerts is None:
            from loopml.monitor.alerts import AlertsAPI

            self._alerts = AlertsAPI(self.ctx)
        return self._alerts

    @property
    def evaluations(self) -> EvaluationsAPI:
        """Evaluations, reports, model cards, gates and promotion."""
        if self._evaluations is None:
            from loopml.evaluate.api import EvaluationsAPI

            self._evaluations = EvaluationsAPI(self.ctx)
        return self._evaluations

    def evaluate(self, ref: str, data: str | None = None, **options: Any) -> Evaluation:
        """Evaluate a model version and store the result with it.

        See ``loopml.evaluate.evaluation.evaluate`` for the options (target, sensitive,
        slices, check_robustness, threshold).

        Example:
            >>> found = ws.evaluate("fraud@champion", sensitive=["age_band"])
            >>> found.summary["values"]["roc_auc"]
        """
        return self.evaluations.run(ref, data, **options)

    def promote(
        self, model: str, number: int, alias: str = "champion", **options: Any
    ) -> Promotion:
        """Point ``alias`` at a version once it passes the model's gates (``force``,
        ``reason`` override a failure, audited)."""
        return self.evaluations.promote(model, number, alias=alias, **options)

    def rollback(self, model: str, alias: str = "champion", reason: str = "") -> Promotion:
        """Move ``alias`` back to the version it pointed at before."""
        return self.evaluations.rollback(model, alias, reason=reason)

    def predict(self, model: str, *, data: str, out: str, **options: Any) -> BatchResult:
        """Score dataset version ``data`` with ``model`` into a new version of ``out``.

        See ``loopml.serve.batch.predict_dataset`` for the options (executor,
        batch_rows, keep, address, workers).

        Example:
            >>> result = ws.predict("fraud@champion", data="transactions@7", out="tx_scored")
            >>> result.version.ref
            'tx_scored@1'
        """
        from loopml.serve.batch import predict_dataset

        return predict_dataset(self.ctx, model, data, out, **options)

    def train(self, name: str, data: str, target: str | None = None, **options: Any) -> TrainResult:
        """Train model ``name`` on ``data`` and register its next version.

        See ``loopml.train.training.train`` for the options (model, params, space,
        trials, executor, gpus...).

        Example:
            >>> result = ws.train("fraud", "tx_split", "is_fraud", model="lightgbm")
            >>> result.version.ref
            'fraud@1'
        """
        return self.runs.train(name, data, target, **options)

    def serve(self, ref: str, **options: Any) -> None:
        """Serve model ``ref`` over HTTP until interrupted (blocking).

        See ``loopml.serve.server.serve`` for the options (host, port, workers,
        max_batch, max_wait_ms, canary, shadow, ssl_certfile, executor, replicas...).

        Example:
            >>> ws.serve("fraud@champion", port=8000, workers=2)
        """
        from loopml.serve.server import serve

        serve(self.ctx, ref, **options)

    def lineage(self, asset: str, direction: str = "upstream") -> list[Any]:
        """Lineage edges from ``asset`` (``dataset:tx@3``, or ``tx@3``) up or downstream."""
        from loopml.governance import lineage

        if direction not in {"upstream", "downstream"}:
            raise InputError(f"direction {direction!r}", hint="use upstream or downstream")
        if ":" not in asset:
            asset = f"dataset:{self.data.get(asset).ref}"
        with self.ctx.read() as conn:
            return lineage.walk(conn, asset, direction)  # type: ignore[arg-type]

    @property
    def audit(self) -> AuditAPI:
        """The audit chain."""
        if self._audit is None:
            from loopml.governance.api import AuditAPI

            self._audit = AuditAPI(self.ctx.metadata)
        return self._audit

    @property
    def actor(self) -> str:
        """Who acts in this workspace."""
        return self.ctx.actor

    def ingest(self, name: str, source: str | None = None, **options: Any) -> IngestResult:
        """Ingest a source as a new version of dataset ``name`` (see ``ws.data.ingest``)."""
        return self.data.ingest(name, source, **options)

    def fsck(self) -> FsckReport:
        """Verify every committed object against its hash."""
        from loopml.store.maintenance import fsck

        return fsck(self.ctx.metadata, self.ctx.artifacts)

    def gc(self, older_than: float = 3600.0) -> GcReport:
        """Remove staging data and uncommitted objects older than ``older_than`` seconds."""
        from loopml.store.maintenance import gc

        report = gc(self.ctx.metadata, self.ctx.artifacts, older_than)
        with self.ctx.write() as conn:
            self.ctx.audit(
                conn,
                "store.gc",
                self.settings.artifacts_url,
                details={
                    "staging_removed": report.staging_removed,
                    "objects_removed": report.objects_removed,
                    "bytes_freed": report.bytes_freed,
                },
            )
        return report

    def close(self) -> None:
        """Release the workspace's connections."""
        self.ctx.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.settings.root)!r})"


def open(
    location: str | os.PathLike[str] | None = None,
    *,
    metadata_url: str | None = None,
    artifacts_url: str | None = None,
    s3_endpoint_url: str | None = None,
    user: str | None = None,
) -> Workspace:
    """Open a workspace, creating it on first use.

    Args:
        location: a folder (default: ``LOOPML_WORKSPACE`` or ``./loopml-workspace``), or a
            metadata URL such as ``postgresql+psycopg://host/db``.
        metadata_url: a SQLAlchemy URL for the metadata (SQLite in the folder by default).
        artifacts_url: a folder or ``s3://bucket/prefix`` for data and artifacts.
        s3_endpoint_url: the endpoint of an S3-compatible store.
        user: the acting identity (the OS user by default).

    Raises:
        StoreError: a store cannot be reached.
        SpecError: the workspace file is invalid.

    Example:
        >>> import loopml
        >>> ws = loopml.open("./ws")
        >>> ws.ingest("transactions", "data/tx.csv")
    """
    location = location or os.environ.get("LOOPML_WORKSPACE") or "loopml-workspace"
    settings = load_settings(
        location,
        metadata_url=metadata_url,
        artifacts_url=artifacts_url,
        s3_endpoint_url=s3_endpoint_url,
        user=user,
    )
    return Workspace(settings)
