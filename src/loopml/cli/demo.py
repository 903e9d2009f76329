"""``loopml demo``: the whole cycle on the fraud example, closed, on an embedded workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOption, console, emit, invocation, open_workspace


def demo(
    rows: Annotated[int, typer.Option("--rows", help="Transactions before the drift.")] = 40_000,
    drift_rows: Annotated[
        int, typer.Option("--drift-rows", help="Drifted transactions injected later.")
    ] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the generated data.")] = 7,
    trials: Annotated[
        int, typer.Option("--trials", help="Trials of the hyper-parameter search.")
    ] = 4,
    report: Annotated[
        Path, typer.Option("--report", help="Where to write the HTML report.")
    ] = Path("demo-report.html"),
    workspace: Annotated[
        str | None,
        typer.Option("--workspace", "-w", help="Workspace to create [default: ./demo-workspace]."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the whole closed loop on generated card transactions.

    Ingest (contract, PII), features, training with a search, evaluation with
    fairness, promotion through gates; serve on localhost under traffic; inject drift;
    the drift alert fires, a retrain passes the gates and is promoted, and the server
    hot-swaps. Prints what happened at each step and the failed requests (0).
    """
    from loopml.examples.closed_loop import run_demo

    # Not LOOPML_WORKSPACE: the demo writes generated data, never into a real workspace
    # by accident.
    location = workspace or invocation.workspace_flag or "demo-workspace"
    progress = console(stderr=True)
    with open_workspace(location) as ws:
        summary = run_demo(
            ws,
            rows=rows,
            drift_rows=drift_rows,
            seed=seed,
            trials=trials,
            report=report,
            step=(lambda text: None) if as_json else (lambda text: progress.print(f"... {text}")),
        )

    def render(out) -> None:  # type: ignore[no-untyped-def]
        out.print("loopml demo: the card-fraud cycle, closed")
        for index, step in enumerate(summary["steps"], 1):
            out.print(f"{index}. {step['step']}")
        served = ", ".join(f"v{k}: {v}" for k, v in summary["versions_served"].items())
        out.print(f"requests: {summary['requests']} ({served})")
        out.print(f"failed requests: {summary['failed_requests']}")
        out.print(f"champion: {summary['champion']}; report: {summary.get('report')}")
        out.print(
            f"fsck: {'ok' if summary['fsck_ok'] else 'FAILED'}; audit chain: "
            f"{'intact' if summary['audit_ok'] else 'BROKEN'} ({summary['audit_events']} events); "
            f"{summary['seconds']:.0f}s"
        )

    emit(as_json, summary, render)
    if not (summary["fsck_ok"] and summary["audit_ok"]) or summary["failed_requests"]:
        raise typer.Exit(1)
    if not (summary["promoted"] and summary["swapped"]):
        raise typer.Exit(1)
