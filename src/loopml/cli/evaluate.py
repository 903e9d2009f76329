"""``loopml evaluate``, ``loopml promote`` and ``loopml rollback``: measure a version,
and move an alias only through the model's gates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, emit, open_workspace


def evaluate(
    ref: Annotated[str, typer.Argument(help="MODEL, MODEL@VERSION or MODEL@ALIAS.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="Dataset version NAME[@V] (default: the training data's holdout).",
        ),
    ] = None,
    sensitive: Annotated[
        list[str] | None,
        typer.Option("--sensitive", help="A column to measure fairness across (repeatable)."),
    ] = None,
    slices: Annotated[
        list[str] | None,
        typer.Option("--slice", help="A column to measure metrics within each value of."),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="The label column (default: training's).")
    ] = None,
    robustness: Annotated[
        bool, typer.Option("--robustness/--no-robustness", help="Measure perturbed inputs.")
    ] = True,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Decision threshold for fairness.")
    ] = 0.5,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the HTML report here (reads offline).")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate a model version: metrics, calibration, slices, fairness, robustness.

    The result is stored with the version (`loopml model show`); --report writes a
    self-contained HTML report with its plots inline.
    """
    if report is not None:
        from loopml.evaluate.report import check_target

        check_target(report)  # before the work, not after it
    with open_workspace(workspace) as ws:
        found = ws.evaluate(
            ref,
            data,
            target=target,
            sensitive=sensitive or (),
            slices=slices or (),
            check_robustness=robustness,
            threshold=threshold,
        )
        full = ws.evaluations.report(found)
        written = ws.evaluations.write_report(found, report) if report else None
    result: dict[str, Any] = {
        "evaluation": found.id,
        "model": found.model_ref,
        "data": found.data_ref,
        "split": found.split,
        "rows": found.rows,
        "values": found.summary["values"],
        "metrics": full["metrics"],
        "slices": full["slices"],
        "fairness": full["fairness"],
        "robustness": full["robustness"],
        "report": str(written) if written else None,
    }

    def render(out) -> None:  # type: ignore[no-untyped-def]
        out.print(
            f"{found.model_ref} on {found.data_ref} ({found.split}, {found.rows:,} rows): "
            f"evaluation {found.id[:12]}"
        )
        values = found.summary["values"]
        out.print("  " + ", ".join(f"{k} {v:.4f}" for k, v in values.items() if v is not None))
        for column, f in full["fairness"].items():
            out.print(
                f"  fairness by {column}: demographic parity difference "
                f"{f['demographic_parity_difference']}, equalized odds difference "
                f"{f['equalized_odds_difference']}"
            )
        if written:
            out.print(f"  report: {written}")

    emit(as_json, result, render)


def promote(
    model: Annotated[str, typer.Argument(help="The model's name.")],
    version: Annotated[int, typer.Argument(help="The version number to promote.")],
    alias: Annotated[str, typer.Option("--alias", help="The alias to move.")] = "champion",
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if gates fail (needs --reason; audited).")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded with the move.")] = "",
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Point an alias at a version once it passes the model's gates.

    A failing gate refuses the promotion (exit 2) and lists every failing gate;
    --force --reason TEXT overrides it, and the audit trail records both.
    """
    with open_workspace(workspace) as ws:
        done = ws.promote(model, version, alias, force=force, reason=reason)
    _report_move(done, as_json, "promoted")


def rollback(
    model: Annotated[str, typer.Argument(help="The model's name.")],
    alias: Annotated[str, typer.Option("--alias", help="The alias to move back.")] = "champion",
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded with the move.")] = "",
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move an alias back to the version it pointed at before its current one."""
    with open_workspace(workspace) as ws:
        done = ws.rollback(model, alias, reason=reason)
    _report_move(done, as_json, "rolled back")


def _report_move(done: Any, as_json: bool, verb: str) -> None:
    def render(out) -> None:  # type: ignore[no-untyped-def]
        before = f" (was {done.previous})" if done.previous is not None else ""
        forced = " FORCED past failing gates" if done.forced else ""
        out.print(
            f"{verb} {done.version.model}@{done.alias} -> {done.version.number}{before}{forced}"
        )
        for gate in done.gates:
            out.print(f"  {'pass' if gate.passed else 'FAIL'}  {gate.message}")

    emit(as_json, done.to_dict(), render)
