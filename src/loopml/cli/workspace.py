"""``loopml init``, ``fsck`` and ``gc``: create and look after a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, emit, human_bytes, open_workspace


def init(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Workspace folder to create [default: -w, LOOPML_WORKSPACE or .]."),
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option("--metadata", help="Metadata URL, e.g. postgresql+psycopg://host/db."),
    ] = None,
    artifacts: Annotated[
        str | None,
        typer.Option("--artifacts", help="Artifact store: a folder or s3://bucket/prefix."),
    ] = None,
    s3_endpoint_url: Annotated[
        str | None, typer.Option("--s3-endpoint-url", help="Endpoint of an S3-compatible store.")
    ] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="Default owner of new assets.")
    ] = None,
    example: Annotated[
        str | None,
        typer.Option("--example", help="Write an example project (fraud) for `loopml run`."),
    ] = None,
    rows: Annotated[int, typer.Option("--rows", help="Rows of example data.")] = 50_000,
    as_json: JsonOption = False,
) -> None:
    """Create a workspace, or with --example fraud a project folder ready for `loopml run`."""
    import os

    import loopml
    from loopml.config import write_settings

    if example is not None:
        from loopml.examples.project import write_fraud_project

        if example != "fraud":
            raise typer.BadParameter(f"unknown example {example!r}; the examples are: fraud")
        written = write_fraud_project(directory or Path("."), rows=rows)
        emit(
            as_json,
            written,
            lambda out: out.print(
                f"wrote the fraud example to {written['folder']}; run it with: "
                f"cd {written['folder']} && loopml run"
            ),
        )
        return
    directory = directory or Path(os.environ.get("LOOPML_WORKSPACE") or ".")
    values = {
        "metadata": metadata,
        "artifacts": artifacts,
        "s3_endpoint_url": s3_endpoint_url,
        "owner": owner,
    }
    if any(values.values()):
        write_settings(directory.absolute(), values)
    with loopml.open(directory) as ws:
        settings = ws.settings
        data = {
            "workspace": str(settings.root),
            "metadata": ws.ctx.metadata.safe_url,
            "artifacts": settings.artifacts_url,
            "owner": ws.actor,
        }
    emit(
        as_json,
        data,
        lambda out: out.print(
            f"workspace ready at {data['workspace']}\n  metadata  {data['metadata']}\n"
            f"  artifacts {data['artifacts']}\n  owner     {data['owner']}"
        ),
    )


def fsck(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Verify every committed object against its sha256; exit 4 if any is missing or corrupt."""
    with open_workspace(workspace) as ws:
        report = ws.fsck()
    data = {
        "ok": report.ok,
        "checked": report.checked,
        "problems": list(report.problems),
        "orphans": report.orphans,
        "staging": report.staging,
    }

    def render(out) -> None:  # type: ignore[no-untyped-def]
        status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        out.print(
            f"fsck: {status}; {report.checked} committed object(s) checked, "
            f"{report.orphans} orphan(s), {report.staging} staging entr(ies)"
        )
        for problem in report.problems:
            out.print(f"  ✗ {problem}")
        if report.orphans or report.staging:
            out.print("  `loopml gc` removes orphans and staging data")

    emit(as_json, data, render)
    if not report.ok:
        raise typer.Exit(4)


def gc(
    older_than: Annotated[
        float,
        typer.Option("--older-than", help="Only remove what is older than this many seconds."),
    ] = 3600.0,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove orphaned staging data and uncommitted objects left by crashed writers."""
    with open_workspace(workspace) as ws:
        report = ws.gc(older_than=older_than)
    data = {
        "staging_removed": report.staging_removed,
        "objects_removed": report.objects_removed,
        "bytes_freed": report.bytes_freed,
    }
    emit(
        as_json,
        data,
        lambda out: out.print(
            f"gc: removed {report.staging_removed} staging entr(ies) and {report.objects_removed} "
            f"orphaned object(s), {human_bytes(report.bytes_freed)} freed"
        ),
    )
