"""``loopml alerts ...``: list, show, acknowledge and escalate monitoring alerts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, age, emit, open_workspace

if TYPE_CHECKING:
    from loopml.monitor.alerts import Alert

app = typer.Typer(
    help="Monitoring alerts: list, show, acknowledge, escalate.", no_args_is_help=True
)

IdArgument = Annotated[
    str, typer.Argument(help="The alert's id, or its first 6 characters or more.")
]


def _deliveries(alert: Alert) -> str:
    """``log sent, webhook:https://host/...#ab12 failed`` for a table cell."""
    return ", ".join(f"{entry['channel']} {entry['status']}" for entry in alert.notified)


def _print_one(out: Any, alert: Alert) -> None:
    out.print(f"{alert.id} {alert.severity} {alert.status}: {alert.message}")
    out.print(
        f"  model {alert.model}, rule {alert.rule}, seen {alert.count} time(s), "
        f"first {age(alert.first_at)}, last {age(alert.last_at)}"
    )
    if alert.escalated_at:
        out.print(f"  escalated {age(alert.escalated_at)}")
    if alert.acked_by and alert.acked_at:
        out.print(f"  acknowledged by {alert.acked_by} at {age(alert.acked_at)}")
    for entry in alert.notified:
        error = f": {entry['error']}" if entry.get("error") else ""
        out.print(
            f"  {entry['stage']} {entry['channel']}: {entry['status']}, "
            f"{entry.get('attempts', 0)} attempt(s){error}"
        )


@app.command("ls")
def ls(
    status: Annotated[
        str, typer.Option("--status", "-s", help="open, acked, resolved or all.")
    ] = "open",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """List alerts, the latest first (open ones by default)."""
    with open_workspace(workspace) as ws:
        found = ws.alerts.ls(status=status, model=model, limit=limit)

    def render(out) -> None:  # type: ignore[no-untyped-def]
        from rich.table import Table

        if not found:
            out.print(f"no {'' if status == 'all' else status + ' '}alerts")
            return
        table = Table("id", "severity", "status", "model", "rule", "count", "last", "message")
        table.columns[0].no_wrap = True
        for alert in found:
            table.add_row(
                alert.id[:12],
                alert.severity,
                alert.status + (" (escalated)" if alert.escalated_at else ""),
                alert.model,
                alert.rule,
                str(alert.count),
                age(alert.last_at),
                alert.message,
            )
        out.print(table)

    emit(as_json, {"alerts": [alert.to_dict() for alert in found]}, render)


@app.command("show")
def show(
    alert_id: IdArgument, workspace: WorkspaceOption = None, as_json: JsonOption = False
) -> None:
    """Show one alert: its rule, value, observation and every delivery."""
    with open_workspace(workspace) as ws:
        alert = ws.alerts.get(alert_id)
    emit(as_json, alert.to_dict(), lambda out: _print_one(out, alert))


@app.command("ack")
def ack(
    alert_id: IdArgument, workspace: WorkspaceOption = None, as_json: JsonOption = False
) -> None:
    """Acknowledge an alert: it will not escalate, and repeats notify nobody."""
    with open_workspace(workspace) as ws:
        alert = ws.alerts.ack(alert_id)
    emit(
        as_json,
        alert.to_dict(),
        lambda out: out.print(f"acknowledged {alert.id} ({alert.message}) as {alert.acked_by}"),
    )


@app.command("check")
def check(
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for deliveries before exiting.")
    ] = 120.0,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Escalate the open alerts nobody acknowledged in time, and wait for the deliveries."""
    with open_workspace(workspace) as ws:
        escalated = ws.alerts.escalate()
        finished = ws.alerts.flush(wait)
        # Read back: the deliveries have written their outcomes into each alert.
        escalated = [ws.alerts.get(alert.id) for alert in escalated]
    failed = [
        entry
        for alert in escalated
        for entry in alert.notified
        if entry["stage"] == "escalate" and entry["status"] != "sent"
    ]

    def render(out) -> None:  # type: ignore[no-untyped-def]
        if not escalated:
            out.print("nothing to escalate")
        for alert in escalated:
            out.print(f"escalated {alert.id[:12]} ({alert.message}): {_deliveries(alert)}")

    emit(
        as_json,
        {
            "escalated": [alert.to_dict() for alert in escalated],
            "deliveries_finished": finished,
            "failed": len(failed),
        },
        render,
    )
    if failed:
        raise typer.Exit(1)
