"""``loopml audit ...``: read and verify the audit chain."""

from __future__ import annotations

from typing import Annotated

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, age, emit, open_workspace

app = typer.Typer(help="The audit trail.", no_args_is_help=True)


@app.command("ls")
def ls(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Events to show, newest first.")] = 50,
    action: Annotated[str | None, typer.Option("--action", help="Only this action.")] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Only targets starting so.")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """List audit events, newest first."""
    with open_workspace(workspace) as ws:
        events = ws.audit.ls(limit=limit, action=action, target=target)
    data = {"events": events}

    def render(out) -> None:  # type: ignore[no-untyped-def]
        from rich.table import Table

        table = Table("seq", "time", "actor", "action", "target", "outcome")
        for event in events:
            style = "" if event.outcome == "ok" else "red"
            table.add_row(
                str(event.seq),
                age(event.time),
                event.actor,
                event.action,
                event.target,
                event.outcome,
                style=style,
            )
        out.print(table)

    emit(as_json, data, render)


@app.command("verify")
def verify(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Recompute the hash chain; exit 4 and name the events if any was edited or deleted."""
    with open_workspace(workspace) as ws:
        report = ws.audit.verify()
    data = {"ok": report.ok, "checked": report.checked, "problems": list(report.problems)}

    def render(out) -> None:  # type: ignore[no-untyped-def]
        if report.ok:
            out.print(f"audit chain intact: {report.checked} event(s) verified")
        else:
            out.print(f"audit chain broken: {len(report.problems)} problem(s)")
            for problem in report.problems:
                out.print(f"  ✗ {problem}")

    emit(as_json, data, render)
    if not report.ok:
        raise typer.Exit(4)
