"""``ws.runs``: tracked runs, and the SDK's training entry point."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loopml.context import Context
from loopml.records import Run
from loopml.train import tracking
from loopml.train.training import TrainResult, train


class RunsAPI:
    """Start, list, show and compare tracked runs.

    Example:
        >>> with ws.runs.start("churn-experiments", params={"alpha": 0.1}) as run:
        ...     run.log_metric("loss", 0.42)
        >>> ws.runs.compare([a.id, b.id])
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def start(
        self,
        experiment: str,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
        flush_every: int = 1000,
        flush_seconds: float = 1.0,
    ) -> tracking.ActiveRun:
        """Start a run you log to yourself; end it, or use it as a context manager."""
        return tracking.start(
            self._ctx,
            experiment,
            kind="custom",
            params=params,
            tags=tags,
            parent_id=parent_id,
            flush_every=flush_every,
            flush_seconds=flush_seconds,
        )

    def get(self, run_id: str) -> Run:
        """The run ``run_id`` (or a unique prefix of it)."""
        with self._ctx.read() as conn:
            return tracking.get(conn, run_id)

    def ls(
        self,
        experiment: str | None = None,
        *,
        parent_id: str | None = None,
        include_trials: bool = False,
        limit: int = 100,
    ) -> list[Run]:
        """Runs, newest first: of one experiment (model), or one search's trials."""
        with self._ctx.read() as conn:
            return tracking.list_runs(
                conn, experiment, parent_id=parent_id, include_trials=include_trials, limit=limit
            )

    def metrics(self, run_id: str, key: str | None = None) -> list[tuple[str, int, float, float]]:
        """Every value a run logged: (key, step, value, unix time)."""
        with self._ctx.read() as conn:
            return tracking.metric_history(conn, tracking.get(conn, run_id).id, key)

    def compare(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """Params and metrics of several runs side by side, and which params differ."""
        with self._ctx.read() as conn:
            found = [tracking.get(conn, run_id) for run_id in run_ids]
        return tracking.compare(found)

    def train(self, name: str, data: str, target: str | None = None, **options: Any) -> TrainResult:
        """Train a model and register its next version (see ``loopml.train.training.train``)."""
        return train(self._ctx, name, data, target, **options)
