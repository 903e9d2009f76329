"""``loopml predict``: score a dataset version with a model into a new dataset version."""

from __future__ import annotations

from typing import Annotated

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, emit, open_workspace


def predict(
    model: Annotated[
        str, typer.Argument(help="The model: NAME, NAME@ALIAS (champion) or NAME@VERSION.")
    ],
    data: Annotated[
        str, typer.Option("--data", "-d", help="The dataset version to score: NAME or NAME@V.")
    ],
    out: Annotated[str, typer.Option("--out", "-o", help="Dataset that receives the predictions.")],
    executor: Annotated[
        str, typer.Option("--executor", "-e", help="Score on: local or ray.")
    ] = "local",
    batch_rows: Annotated[
        int, typer.Option("--batch-rows", help="Rows per streamed batch (bounds memory).")
    ] = 65_536,
    keep: Annotated[
        str | None,
        typer.Option(
            "--keep", help="Comma-separated input columns to copy to the output (default: all)."
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="Ray cluster: auto or ray://HOST:PORT (default: a local one)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Ray actors scoring side by side.")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stream a dataset version through a model into a new version of dataset OUT.

    The output holds the input's columns (or --keep's) plus `prediction`, and for
    classifiers and anomaly models `score` (multiclass: also one `proba_CLASS` per
    class). Memory stays bounded by a few batches; the new version records the model
    and input versions in its lineage.
    """
    columns = [c.strip() for c in keep.split(",") if c.strip()] if keep is not None else None
    with open_workspace(workspace) as ws:
        result = ws.predict(
            model,
            data=data,
            out=out,
            executor=executor,
            batch_rows=batch_rows,
            keep=columns,
            address=address,
            workers=workers,
        )
    report = result.to_dict()

    def render(console) -> None:  # type: ignore[no-untyped-def]
        rate = report["rows_per_second"]
        console.print(
            f"{report['output']} ({result.version.id[:12]}): {result.rows:,} rows of "
            f"{report['input']} scored by {report['model']} in {result.batches} batches, "
            f"{report['seconds']['total']:.2f}s" + (f" ({rate:,} rows/s)" if rate else "")
        )

    emit(as_json, report, render)
