"""``loopml transform``: make a dataset version from others with SQL or a Python function."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import (
    JsonOption,
    WorkspaceOption,
    emit,
    open_workspace,
    transform_report,
    transform_summary,
)


def transform(
    name: Annotated[str, typer.Argument(help="The dataset to write a new version of.")],
    inputs: Annotated[
        list[str],
        typer.Option(
            "--input",
            "-i",
            help="DATASET[@VERSION]; repeatable. Each is a table named after its dataset.",
        ),
    ],
    sql: Annotated[
        Path | None, typer.Option("--sql", help="A file of DuckDB SQL over the inputs.")
    ] = None,
    fn: Annotated[
        str | None,
        typer.Option(
            "--fn", help="module:function taking the inputs (Arrow or pandas), returning a table."
        ),
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a DuckDB SQL file or a Python function over dataset versions into a new version."""
    from loopml.features.transforms import read_sql_file

    if (sql is None) == (fn is None):
        raise typer.BadParameter("give exactly one of --sql FILE or --fn module:function")
    if fn is not None and "" not in sys.path and os.getcwd() not in sys.path:
        # Like `python -m`: a module in the current folder is found.
        sys.path.insert(0, os.getcwd())
    started = time.perf_counter()
    with open_workspace(workspace) as ws:
        if sql is not None:
            version = ws.features.sql(name, read_sql_file(sql), inputs)
        else:
            assert fn is not None  # for the type checker; checked above
            version = ws.features.python(name, fn, inputs)
    data = transform_report(version, started)
    emit(as_json, data, lambda out: out.print(transform_summary(version, data)))


def lineage(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION] of a dataset.")],
    upstream: Annotated[
        bool, typer.Option("--upstream", help="What it was made from (default).")
    ] = False,
    downstream: Annotated[
        bool, typer.Option("--downstream", help="What was made from it.")
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what a dataset version was made from, or what was made from it."""
    if upstream and downstream:
        raise typer.BadParameter("give --upstream or --downstream, not both")
    direction = "downstream" if downstream else "upstream"
    with open_workspace(workspace) as ws:
        version = ws.data.get(ref)
        edges = ws.lineage(f"dataset:{version.ref}", direction)
    data = {
        "asset": f"dataset:{version.ref}",
        "direction": direction,
        "edges": [
            {"source": e.source, "target": e.target, "activity": e.activity, "time": e.created_at}
            for e in edges
        ],
    }

    def render(out) -> None:  # type: ignore[no-untyped-def]
        out.print(f"{data['asset']} ({direction}):")
        if not edges:
            out.print("  nothing recorded")
        for edge in edges:
            out.print(f"  {edge.source} --[{edge.activity}]--> {edge.target}")

    emit(as_json, data, render)
