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


def retrain(
    spec: Annotated[Path, typer.Argument(help="The workload spec.")] = Path("loopml.yaml"),
    trigger: Annotated[
        str, typer.Option("--trigger", help="manual, drift, decay or schedule.")
    ] = "manual",
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded and audited.")] = "",
    executor: Annotated[str, typer.Option("--executor", "-e", help="local or ray.")] = "local",
    history: Annotated[
        bool, typer.Option("--history", help="List the spec's model's retrains instead.")
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Retrain the spec's model on the latest data; gate it; promote it if the policy says.

    The new version must pass the gates and beat the champion on the same holdout.
    Exits 1 when the retrain failed or was rejected.
    """
    from loopml.pipeline.spec import load_spec

    with open_workspace(workspace) as ws:
        if history:
            loaded, _ = load_spec(spec)
            model = loaded.model_name
            found = [d.to_dict() for d in ws.pipelines.retrains(model)]

            def listing(out) -> None:  # type: ignore[no-untyped-def]
                if not found:
                    out.print(f"{model} was never retrained")
                for d in found:
                    when = d["created_at"][:19]
                    out.print(f"{when} {d['trigger']:<8} {d['status']:<18} {d['reason']}")

            emit(as_json, {"model": model, "retrains": found}, listing)
            return
        decision = ws.pipelines.retrain(spec, trigger=trigger, reason=reason, executor=executor)
    if decision is None:
        data: dict[str, Any] = {
            "status": "skipped",
            "why": "not this policy's trigger, or a retrain is in flight",
        }
        emit(as_json, data, lambda out: out.print(f"retrain skipped: {data['why']}"))
        return
    data = decision.to_dict()

    def render(out) -> None:  # type: ignore[no-untyped-def]
        details = data["details"]
        out.print(f"retrain {data['id'][:12]} of {data['model']}: {data['status']}")
        if details.get("candidate"):
            out.print(f"  candidate {details['candidate']}")
        for gate in details.get("gates", []):
            out.print(f"  {'pass' if gate['passed'] else 'FAIL'}  {gate['message']}")
        for key in ("why", "error"):
            if details.get(key):
                out.print(f"  {key}: {details[key]}")

    emit(as_json, data, render)
    unchanged = data["status"] == "rejected" and "no new version" in data["details"].get("why", "")
    if data["status"] == "failed" or (data["status"] == "rejected" and not unchanged):
        raise typer.Exit(1)


def watch(
    spec: Annotated[Path, typer.Argument(help="The workload spec.")] = Path("loopml.yaml"),
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between passes of the loop.")
    ] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    window: Annotated[
        str | None,
        typer.Option("--window", help="Rows (10000) or age (1h) of the log to check for drift."),
    ] = None,
    executor: Annotated[str, typer.Option("--executor", "-e", help="local or ray.")] = "local",
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Close the loop: check drift and decay of the served model, raise alerts, and
    retrain, gate and promote when the spec's retrain policy says so."""
    parsed: int | str | None = int(window) if window and window.isdigit() else window

    def show(found: Any) -> None:
        data = found.to_dict()
        if as_json:
            from loopml.cli._common import print_json

            print_json(data)
            return
        out = console()
        drift, decay, retrained = data["drift"], data["decay"], data["retrain"]
        parts = [
            f"drift {'FLAGGED' if drift['flagged'] else 'ok'} ({drift['rows']} rows)"
            if drift
            else "drift n/a",
            f"decay {'FLAGGED' if decay['flagged'] else 'ok'}" if decay else "decay n/a",
            f"{len(data['alerts'])} alert(s)",
        ]
        if retrained:
            details = retrained["details"]
            parts.append(f"retrain {retrained['status']} {details.get('candidate', '')}".strip())
        out.print(f"{data['model']}: " + "; ".join(parts))
        for note in data["notes"]:
            out.print(f"  {note}")

    with open_workspace(workspace) as ws:
        ws.pipelines.watch(
            spec,
            interval=interval,
            iterations=1 if once else None,
            window=parsed,
            executor=executor,
            on_tick=show,
        )
