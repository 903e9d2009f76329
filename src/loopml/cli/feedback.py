"""``loopml feedback``: join labels that arrived later to the logged predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, console, emit, open_workspace


def feedback(
    model: Annotated[str, typer.Argument(help="The model whose predictions the labels are for.")],
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Labels: a CSV (or .parquet) file with a header.")
    ],
    key: Annotated[
        str,
        typer.Option("--key", "-k", help="Join on: request_id, or an input column the log holds."),
    ] = "request_id",
    label: Annotated[
        str, typer.Option("--label", "-l", help="The column holding the true outcome.")
    ] = "label",
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Store labels for MODEL and report how many match its logged predictions.

    Every label is kept (a prediction logged later still joins). Labels that match no
    logged prediction are counted and a few are shown; the command fails (exit 2) only
    when none matches.
    """
    from loopml.monitor.feedback import record_feedback

    with open_workspace(workspace) as ws:
        result = record_feedback(ws.ctx, model, data, key=key, label=label)
    report = result.to_dict()

    def render(out) -> None:  # type: ignore[no-untyped-def]
        out.print(
            f"{model}: {result.rows:,} labels on {key}: {result.matched:,} matched, "
            f"{result.unmatched:,} unmatched (stored in {result.stored})"
        )

    emit(as_json, report, render)
    if result.unmatched:
        sample = ", ".join(result.unmatched_keys)
        more = " ..." if result.unmatched > len(result.unmatched_keys) else ""
        console(stderr=True).print(
            f"warning: {result.unmatched:,} label(s) match no logged prediction of {model} "
            f"by {key}: {sample}{more}"
        )
    if not result.matched:
        console(stderr=True).print(
            f"error: no label matches a logged prediction of {model} by {key} "
            "(check --key, and that the server logs predictions)"
        )
        raise typer.Exit(2)
