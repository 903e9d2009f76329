"""``ws.pipelines``: run a workload spec, resume a run, and list runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from loopml.context import Context
from loopml.errors import InputError, NotFound
from loopml.monitor import retrain as retrain_policy
from loopml.monitor.retrain import RetrainDecision
from loopml.pipeline import loop, schedule
from loopml.pipeline import retrain as retraining
from loopml.pipeline.loop import Tick
from loopml.pipeline.runner import EventFn, RunResult, run_pipeline
from loopml.pipeline.schedule import ScheduleEntry
from loopml.pipeline.spec import load_spec
from loopml.store.tables import pipeline_runs, step_runs


class PipelineAPI:
    """Pipelines compiled from ``loopml.yaml``.

    Example:
        >>> result = ws.pipelines.run("loopml.yaml")
        >>> [(s.name, s.status) for s in result.steps]
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def run(
        self,
        spec_path: str | Path = "loopml.yaml",
        *,
        executor: str = "local",
        address: str | None = None,
        hold_heavy: bool = False,
        on_event: EventFn | None = None,
    ) -> RunResult:
        """Validate the spec and run its pipeline."""
        spec, root = load_spec(spec_path)
        result = run_pipeline(
            self._ctx,
            spec,
            root,
            executor=executor,
            address=address,
            hold_heavy=hold_heavy,
            on_event=on_event,
        )
        if schedule.schedule_of(spec) is not None:
            schedule.register(self._ctx, spec_path)
        return result

    def resume(
        self,
        run_id: str,
        *,
        executor: str = "local",
        address: str | None = None,
        hold_heavy: bool = False,
        on_event: EventFn | None = None,
    ) -> RunResult:
        """Continue a run: its finished steps are kept, the rest run again."""
        return run_pipeline(
            self._ctx,
            resume=run_id,
            executor=executor,
            address=address,
            hold_heavy=hold_heavy,
            on_event=on_event,
        )

    def retrain(
        self,
        spec_path: str | Path = "loopml.yaml",
        *,
        trigger: str = "manual",
        reason: str = "",
        details: dict[str, Any] | None = None,
        executor: str = "local",
        on_event: EventFn | None = None,
    ) -> RetrainDecision | None:
        """Retrain the spec's model if its policy acts on ``trigger``: run the pipeline
        on the latest data, check the gates and the champion, promote or not.

        Returns:
            The final decision, or None when the policy does not act on the trigger or
            a retrain of the model is already in flight.

        Raises:
            SpecError: the spec does not parse.
            InputError: the spec has no train step.
        """
        spec, root = load_spec(spec_path)
        if spec.train is None:
            raise InputError(f"{spec_path} has no train step: nothing to retrain")
        model = spec.model_name
        decision = retrain_policy.decide(
            self._ctx,
            model,
            retraining.policy_of(spec),
            trigger,
            reason or f"{trigger} retrain",
            details,
        )
        if decision is None:
            return None
        return retraining.execute(
            self._ctx, decision, spec, root, executor=executor, on_event=on_event
        )

    def watch(
        self,
        spec_path: str | Path = "loopml.yaml",
        *,
        interval: float = 60.0,
        iterations: int | None = None,
        window: int | str | None = None,
        executor: str = "local",
        on_tick: Callable[[Tick], None] | None = None,
    ) -> list[Tick]:
        """Close the loop for the spec's model (see ``loopml.pipeline.loop``): drift and
        decay checks, alerts, and retrains as its policy says, every ``interval`` s."""
        return loop.watch(
            self._ctx,
            spec_path,
            interval=interval,
            iterations=iterations,
            window=window,
            executor=executor,
            on_tick=on_tick,
        )

    def retrains(self, model: str | None = None, limit: int = 50) -> list[RetrainDecision]:
        """Retrain decisions, newest first, with what came of each."""
        with self._ctx.read() as conn:
            return retrain_policy.list_decisions(conn, model, limit)

    def schedule(self, spec_path: str | Path = "loopml.yaml") -> ScheduleEntry:
        """Register the spec's schedule (its cron and off-peak window)."""
        return schedule.register(self._ctx, spec_path)

    def schedules(self, now: datetime | None = None) -> list[ScheduleEntry]:
        """Registered schedules with their next fire time."""
        return schedule.list_schedules(self._ctx, now)

    def run_due(self, now: datetime | None = None, executor: str = "local") -> list[RunResult]:
        """Run the pipelines whose time has come; resume held ones in their window."""
        return schedule.run_due(self._ctx, now, executor)

    def scheduler(
        self, interval: float = 60.0, iterations: int | None = None, executor: str = "local"
    ) -> int:
        """Run due pipelines every ``interval`` seconds; return how many runs it made."""
        return schedule.run_scheduler(self._ctx, interval, iterations, executor)

    def runs(self, limit: int = 50, pipeline: str | None = None) -> list[dict[str, Any]]:
        """Recent runs, newest first."""
        query = sa.select(pipeline_runs).order_by(pipeline_runs.c.started_at.desc()).limit(limit)
        if pipeline:
            query = query.where(pipeline_runs.c.pipeline == pipeline)
        with self._ctx.read() as conn:
            return [_run_dict(row) for row in conn.execute(query)]

    def show(self, run_id: str) -> dict[str, Any]:
        """One run with its steps."""
        with self._ctx.read() as conn:
            row = conn.execute(sa.select(pipeline_runs).where(pipeline_runs.c.id == run_id)).first()
            if row is None:
                raise NotFound(
                    f"pipeline run {run_id!r} does not exist",
                    hint="`loopml pipeline ls` lists them",
                )
            steps = conn.execute(
                sa.select(step_runs)
                .where(step_runs.c.run_id == run_id)
                .order_by(step_runs.c.started_at)
            ).all()
        data = _run_dict(row)
        data["steps"] = [
            {
                "step": s.step,
                "status": s.status,
                "cache_hit": bool(s.cache_hit),
                "attempts": s.attempts,
                "output": s.output,
                "id": s.output_id,
                "error": s.error,
                "started_at": s.started_at,
                "ended_at": s.ended_at,
            }
            for s in steps
        ]
        return data


def _run_dict(row: Any) -> dict[str, Any]:
    return {
        "run_id": row.id,
        "pipeline": row.pipeline,
        "status": row.status,
        "executor": row.executor,
        "owner": row.owner,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "error": row.error,
    }
