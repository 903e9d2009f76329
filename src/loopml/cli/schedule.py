"""``loopml schedule ...`` and ``loopml scheduler``: pipelines that run by cron."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, age, emit, open_workspace

app = typer.Typer(help="Scheduled pipelines (cron times in UTC).", no_args_is_help=True)


def _parse_now(now: str | None) -> datetime | None:
    if now is None:
        return None
    try:
        moment = datetime.fromisoformat(now)
    except ValueError as exc:
        raise typer.BadParameter(
            f"--now {now!r} is not an ISO time such as 2026-01-01T02:00"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("add")
def add(
    spec: Annotated[Path, typer.Argument(help="The workload spec with a schedule.")] = Path(
        "loopml.yaml"
    ),
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a spec's schedule (loopml run also registers it)."""
    with open_workspace(workspace) as ws:
        entry = ws.pipelines.schedule(spec)
    emit(
        as_json,
        entry.to_dict(),
        lambda out: out.print(
            f"{entry.pipeline}: cron {entry.cron!r}, next run {age(entry.next_run_at)}"
            + (f", heavy steps in {entry.off_peak} UTC" if entry.off_peak else "")
        ),
    )


@app.command("ls")
def ls(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List scheduled pipelines and when each runs next."""
    with open_workspace(workspace) as ws:
        entries = ws.pipelines.schedules()
    data = {"schedules": [e.to_dict() for e in entries]}

    def render(out) -> None:  # type: ignore[no-untyped-def]
        from rich.table import Table

        table = Table("pipeline", "cron", "off-peak", "last run", "next run", "spec")
        for e in entries:
            table.add_row(
                e.pipeline,
                e.cron,
                e.off_peak or "",
                age(e.last_run_at) if e.last_run_at else "",
                age(e.next_run_at),
                e.spec_path,
            )
        out.print(
            table
            if entries
            else "no schedules; add `schedule: {cron: ...}` to a spec and `loopml schedule add`"
        )

    emit(as_json, data, render)


@app.command("run-due")
def run_due(
    now: Annotated[
        str | None, typer.Option("--now", help="Pretend it is this UTC time (ISO).")
    ] = None,
    executor: Annotated[str, typer.Option("--executor", "-e", help="local or ray.")] = "local",
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run every pipeline whose time has come; resume held runs inside their window."""
    with open_workspace(workspace) as ws:
        results = ws.pipelines.run_due(_parse_now(now), executor=executor)
    data = {"runs": [r.to_dict() for r in results]}

    def render(out) -> None:  # type: ignore[no-untyped-def]
        if not results:
            out.print("nothing due")
        for r in results:
            held = [s.name for s in r.steps if s.status == "held"]
            out.print(
                f"run {r.id} of {r.pipeline}: {r.status}"
                + (f" (held: {', '.join(held)})" if held else "")
            )

    emit(as_json, data, render)


def scheduler(
    interval: Annotated[
        float, typer.Option("--interval", min=0, help="Seconds between checks.")
    ] = 60.0,
    iterations: Annotated[
        int | None,
        typer.Option("--iterations", help="Stop after this many checks (default: never)."),
    ] = None,
    executor: Annotated[str, typer.Option("--executor", "-e", help="local or ray.")] = "local",
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Keep running due pipelines, checking every --interval seconds (Ctrl-C stops)."""
    with open_workspace(workspace) as ws:
        count = ws.pipelines.scheduler(interval, iterations, executor)
    emit(as_json, {"runs": count}, lambda out: out.print(f"scheduler stopped after {count} run(s)"))
