"""``loopml split``: a seeded, recorded train/valid/test split of a dataset version."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, emit, open_workspace


def split(
    name: Annotated[str, typer.Argument(help="Dataset the split is written to, as a new version.")],
    input_ref: Annotated[
        str, typer.Option("--input", "-i", help="The version to split: NAME or NAME@VERSION.")
    ],
    by: Annotated[str, typer.Option("--by", help="random, stratified, time or group.")] = "random",
    test: Annotated[float, typer.Option("--test", help="Fraction of rows for test.")] = 0.2,
    valid: Annotated[float, typer.Option("--valid", help="Fraction of rows for validation.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random draws.")] = 0,
    column: Annotated[
        str | None,
        typer.Option(
            "--column",
            "-c",
            help="The label (stratified), date or timestamp (time) or group id (group) column.",
        ),
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--cutoff", help="With --by time: rows at or after this time are test (2024-03-01)."
        ),
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Split a version's rows into train, valid and test, as a new version of NAME.

    The new version holds every input row, in input order, plus a `split` column. The
    split's parameters, seed and input are recorded with it, so the same command always
    gives the same version id.
    """
    from loopml.features.splits import split_counts

    started = time.perf_counter()
    with open_workspace(workspace) as ws:
        version = ws.features.split(
            name,
            input_ref,
            by=by,
            test=test,
            valid=valid,
            seed=seed,
            column=column,
            cutoff=cutoff,
        )
    seconds = time.perf_counter() - started
    counts = split_counts(version)
    inputs = version.meta["transform"]["inputs"]
    data = {
        "dataset": version.dataset,
        "version": version.number,
        "id": version.id,
        "ref": version.ref,
        "input": inputs[0]["ref"] if inputs else input_ref,
        "by": by,
        "seed": seed,
        "rows": version.row_count,
        "counts": counts,
        "seconds": round(seconds, 3),
    }

    def render(out) -> None:  # type: ignore[no-untyped-def]
        shares = ", ".join(
            f"{label} {count:,} ({count / max(version.row_count, 1):.1%})"
            for label, count in counts.items()
        )
        out.print(
            f"{version.ref} ({version.id[:12]}): {version.row_count:,} rows of {data['input']} "
            f"split {by}: {shares} in {seconds:.2f}s"
        )

    emit(as_json, data, render)
