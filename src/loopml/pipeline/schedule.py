"""Schedules: pipelines that run by cron, with heavy steps held to an off-peak window.

A spec with ``schedule: {cron, off_peak}`` is registered when it is added (``loopml
schedule add``) or run. ``run_due`` starts every pipeline whose cron time has come
since its last run; outside the off-peak window its heavy steps are held, and the
run resumes them once the window opens. Cron times are in UTC.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from loopml.context import Context
from loopml.errors import LoopMLError, SpecError
from loopml.pipeline import retrain as retraining
from loopml.pipeline.runner import RunResult, run_pipeline
from loopml.pipeline.spec import SPEC_FILE, Schedule, Spec, load_spec, parse_off_peak
from loopml.store.tables import pipeline_runs, schedules


@dataclass(frozen=True)
class ScheduleEntry:
    """A registered schedule and when it fires next."""

    pipeline: str
    spec_path: str
    cron: str
    off_peak: str | None
    last_run_at: datetime | None
    last_run_id: str | None
    next_run_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "spec": self.spec_path,
            "cron": self.cron,
            "off_peak": self.off_peak,
            "last_run_at": self.last_run_at,
            "last_run_id": self.last_run_id,
            "next_run_at": self.next_run_at,
        }


def schedule_of(spec: Spec) -> Schedule | None:
    """The spec's schedule: top-level, or the one under ``train``."""
    return spec.schedule or (spec.train.schedule if spec.train else None)


def in_window(window: str | None, moment: datetime) -> bool:
    """Whether ``moment`` (UTC) falls in an ``HH:MM-HH:MM`` window; no window is always."""
    if window is None:
        return True
    start, end = parse_off_peak(window)
    minute = moment.astimezone(UTC).hour * 60 + moment.astimezone(UTC).minute
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end  # the window spans midnight


def register(ctx: Context, spec_path: str | Path) -> ScheduleEntry:
    """Register (or update) the schedule of the spec at ``spec_path``.

    Raises:
        SpecError: the spec has no schedule.
    """
    spec, _ = load_spec(spec_path)
    schedule = schedule_of(spec)
    if schedule is None:
        raise SpecError(f"{spec_path}: the spec has no schedule", hint="add schedule: {cron: ...}")
    given = Path(spec_path).absolute()
    path = str(given / SPEC_FILE if given.is_dir() else given)
    now = datetime.now(UTC)
    with ctx.write() as conn:
        exists = conn.execute(
            sa.select(schedules.c.pipeline).where(schedules.c.pipeline == spec.name)
        ).first()
        values = {"spec_path": path, "cron": schedule.cron, "off_peak": schedule.off_peak}
        if exists:
            conn.execute(
                schedules.update().where(schedules.c.pipeline == spec.name).values(**values)
            )
        else:
            conn.execute(schedules.insert().values(pipeline=spec.name, created_at=now, **values))
        ctx.audit(conn, "schedule.register", f"pipeline:{spec.name}", details=values)
    return next(e for e in list_schedules(ctx) if e.pipeline == spec.name)


def list_schedules(ctx: Context, now: datetime | None = None) -> list[ScheduleEntry]:
    """Every registered schedule with its next fire time after its last run."""
    from croniter import croniter

    with ctx.read() as conn:
        rows = conn.execute(sa.select(schedules).order_by(schedules.c.pipeline)).all()
    entries = []
    for row in rows:
        base = _utc(row.last_run_at or row.created_at)
        following = croniter(row.cron, base).get_next(datetime)
        entries.append(
            ScheduleEntry(
                row.pipeline,
                row.spec_path,
                row.cron,
                row.off_peak,
                _utc(row.last_run_at) if row.last_run_at else None,
                row.last_run_id,
                _utc(following),
            )
        )
    return entries


def run_due(ctx: Context, now: datetime | None = None, executor: str = "local") -> list[RunResult]:
    """Run every pipeline whose time has come, and resume held runs in their window.

    Returns:
        The runs started or resumed.
    """
    now = _utc(now or datetime.now(UTC))
    results = []
    for entry in list_schedules(ctx):
        open_window = in_window(entry.off_peak, now)
        held = _held_runs(ctx, entry.pipeline)
        if held and open_window:
            for run_id in held:
                try:
                    resumed = run_pipeline(ctx, resume=run_id, executor=executor)
                    results.append(resumed)
                    retraining.after_scheduled_run(ctx, load_spec(entry.spec_path)[0], resumed)
                except LoopMLError as exc:
                    _record(ctx, entry.pipeline, now, run_id, error=exc.message)
            continue
        if entry.next_run_at > now:
            continue
        # One broken pipeline (a spec that no longer loads, an input gone) is recorded
        # and skipped; the others still run.
        try:
            spec, root = load_spec(entry.spec_path)
            # A policy that retrains on schedule makes the run a retrain: decided first,
            # then gated (and maybe promoted) on what it trained.
            result, _ = retraining.scheduled_run(
                ctx, spec, root, executor=executor, hold_heavy=not open_window
            )
        except LoopMLError as exc:
            _record(ctx, entry.pipeline, now, None, error=exc.message)
            continue
        if result is None:
            _record(ctx, entry.pipeline, now, None, error="skipped: a retrain is in flight")
            continue
        _record(ctx, entry.pipeline, now, result.id)
        results.append(result)
    return results


def run_scheduler(
    ctx: Context, interval: float = 60.0, iterations: int | None = None, executor: str = "local"
) -> int:
    """Call ``run_due`` every ``interval`` seconds (forever, or ``iterations`` times).

    Returns:
        How many runs it started or resumed.
    """
    count = done = 0
    while iterations is None or done < iterations:
        count += len(run_due(ctx, executor=executor))
        done += 1
        if iterations is None or done < iterations:
            time.sleep(interval)
    return count


def _held_runs(ctx: Context, pipeline: str) -> list[str]:
    with ctx.read() as conn:
        return list(
            conn.execute(
                sa.select(pipeline_runs.c.id)
                .where(pipeline_runs.c.pipeline == pipeline, pipeline_runs.c.status == "held")
                .order_by(pipeline_runs.c.started_at)
            ).scalars()
        )


def _record(
    ctx: Context, pipeline: str, now: datetime, run_id: str | None, error: str | None = None
) -> None:
    with ctx.write() as conn:
        conn.execute(
            schedules.update()
            .where(schedules.c.pipeline == pipeline)
            .values(last_run_at=now, last_run_id=run_id)
        )
        ctx.audit(
            conn,
            "schedule.fire",
            f"pipeline:{pipeline}",
            outcome="failed" if error else "ok",
            details={"run": run_id, **({"error": error} if error else {})},
        )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
