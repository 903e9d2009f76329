"""``loopml ingest``: read a source into a new dataset version."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, console, emit, open_workspace


def ingest(
    name: Annotated[str, typer.Argument(help="Dataset name; created on first ingest.")],
    source: Annotated[
        str | None,
        typer.Argument(help="A CSV (or .csv.gz), JSON Lines or Parquet file, folder or glob."),
    ] = None,
    contract: Annotated[
        Path | None,
        typer.Option("--contract", "-c", help="Data contract YAML (types, rules, key)."),
    ] = None,
    pii: Annotated[
        list[str] | None,
        typer.Option("--pii", help="COL=POLICY with drop, hash, mask or redact; repeatable."),
    ] = None,
    query: Annotated[str | None, typer.Option("--query", help="SQL to read from --from.")] = None,
    from_url: Annotated[
        str | None, typer.Option("--from", help="SQLAlchemy URL of the database --query reads.")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option("--format", help="csv, jsonl or parquet, when the suffix does not tell."),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option("--delimiter", help="CSV field delimiter [default: tab for .tsv, else ,]."),
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest a source as a new, immutable version of dataset NAME.

    Rows that break the contract (or do not parse) go to the version's quarantine
    with their row number and reason; rows_read = rows_accepted + rows_quarantined.
    """
    from rich.progress import (
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    if query is not None and source is not None:
        raise typer.BadParameter("give either SOURCE or --query/--from, not both")
    if from_url is not None and query is None:
        raise typer.BadParameter("--from needs --query, the SQL to run there")
    ws = open_workspace(workspace)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("ingesting {task.fields[name]}"),
        TextColumn("{task.completed:,.0f} rows"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    with ws, progress:
        task = progress.add_task("ingest", total=None, name=name, rate="")

        def on_progress(rows: int, total: int | None, _bytes: int | None) -> None:
            elapsed = progress.tasks[0].elapsed or 0
            rate = f"{rows / elapsed:,.0f} rows/s" if elapsed > 0.5 else ""
            progress.update(task, completed=rows, total=total, rate=rate)

        result = ws.ingest(
            name,
            from_url if query is not None else source,
            contract=contract,
            pii=pii,
            query=query,
            format=format,
            delimiter=delimiter,
            on_progress=on_progress,
        )
    data = result.to_dict()

    def render(out) -> None:  # type: ignore[no-untyped-def]
        out.print(
            f"{data['ref']} ({data['id'][:12]}): {data['rows_accepted']:,} rows "
            f"accepted, {data['rows_quarantined']:,} quarantined of {data['rows_read']:,} read "
            f"in {data['seconds']:.2f}s"
        )
        for reason, count in sorted(data["quarantine_reasons"].items(), key=lambda kv: -kv[1]):
            out.print(f"  quarantined {count:>8,}  {reason}")
        for column, kind in data["pii_warning_kinds"].items():
            out.print(
                f"  warning: column {column!r} looks like PII ({kind}) and has "
                f"no policy; add --pii {column}=hash|mask|redact|drop"
            )
        for change, detail in data["schema_changes"].items():
            out.print(f"  schema {change}: {detail}")

    emit(as_json, data, render)
