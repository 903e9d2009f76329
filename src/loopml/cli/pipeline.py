"""``loopml run`` and ``loopml pipeline ...``: run a workload spec, and look at pipeline runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, age, console, emit, open_workspace

pipeline_app = typer.Typer(help="Pipeline runs of workload specs.", no_args_is_help=True)


def run(
    spec: Annotated[Path, typer.Argument(help="The workload spec.")] = Path("loopml.yaml"),
    executor: Annotated[str, typer.Option("--executor", "-e", help="local or ray.")] = "local",
    address: Annotated[
        str | None,
        typer.Option("--address", help="Ray cluster: ray://host:port or auto; default starts one."),
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue run RUN (from `loopml pipeline ls`).")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run the pipeline a loopml.yaml declares; unchanged steps are cache hits."""
    err = console(stderr=True)
    show = sys.stderr.isatty() and not as_json

    def on_event(status: str, state: Any) -> None:
        if show and status in {"running", "succeeded", "cached", "failed", "held"}:
            note = f" -> {state.output}" if state.output and status != "running" else ""
            err.print(f"  {state.name:<24} {status}{note}")

    with open_workspace(workspace) as ws:
        if resume is not None:
            result = ws.pipelines.resume(
                resume, executor=executor, address=address, on_event=on_event
            )
        else:
            result = ws.pipelines.run(spec, executor=executor, address=address, on_event=on_event)
    data = result.to_dict()

    def render(out) -> None:  # type: ignore[no-untyped-def]
        out.print(
            f"run {data['run_id']} of {data['pipeline']}: {data['status']} "
            f"({data['executor']}, {data['seconds']:.2f}s)"
        )
        for step in data["steps"]:
            mark = "cache hit" if step["cache_hit"] else step["status"]
            line = f"  {step['step']:<24} {mark:<10} {step['output'] or ''}"
            out.print(line + (f"  {step['error']}" if step["error"] else ""))

    emit(as_json, data, render)
    if data["status"] == "failed":
        raise typer.Exit(1)


@pipeline_app.command("ls")
def runs_ls(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Runs to show, newest first.")] = 20,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """List pipeline runs, newest first."""
    with open_workspace(workspace) as ws:
        rows = ws.pipelines.runs(limit=limit)

    def render(out) -> None:  # type: ignore[no-untyped-def]
        from rich.table import Table

        table = Table("run", "pipeline", "status", "executor", "started", "owner")
        for row in rows:
            table.add_row(
                row["run_id"],
                row["pipeline"],
                row["status"],
                row["executor"],
                age(row["started_at"]),
                row["owner"],
            )
        out.print(table if rows else "no pipeline runs yet; `loopml run` starts one")

    emit(as_json, {"runs": rows}, render)


@pipeline_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a pipeline run and each step's state."""
    with open_workspace(workspace) as ws:
        data = ws.pipelines.show(run_id)

    def render(out) -> None:  # type: ignore[no-untyped-def]
        out.print(
            f"run {data['run_id']} of {data['pipeline']}: {data['status']} ({data['executor']})"
        )
        for step in data["steps"]:
            mark = "cache hit" if step["cache_hit"] else step["status"]
            out.print(
                f"  {step['step']:<24} {mark:<10} attempts {step['attempts']}  "
                f"{step['output'] or ''}  {step['error'] or ''}"
            )

    emit(as_json, data, render)
