"""``loopml model ...``: registered models and their versions."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, age, emit, open_workspace

app = typer.Typer(help="Registered models and their versions.", no_args_is_help=True)


@app.command("ls")
def ls(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List models with their latest version."""
    with open_workspace(workspace) as ws:
        found = ws.models.ls()
    rows = [
        {
            "model": model.name,
            "task": model.task,
            "owner": model.owner,
            "versions": count,
            "latest": asdict(latest) if latest else None,
        }
        for model, latest, count in found
    ]

    def render(out) -> None:  # type: ignore[no-untyped-def]
        from rich.table import Table

        table = Table("model", "task", "versions", "latest", "flavor", "created", "owner")
        for model, latest, count in found:
            table.add_row(
                model.name,
                model.task,
                str(count),
                latest.ref if latest else "",
                latest.flavor if latest else "",
                age(latest.created_at) if latest else "",
                model.owner,
            )
        out.print(table if found else "no models yet; `loopml train` makes one")

    emit(as_json, {"models": rows}, render)


@app.command("show")
def show(
    ref: Annotated[
        str, typer.Argument(help="MODEL (every version), MODEL@VERSION or MODEL@ALIAS.")
    ],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a model's versions, or one version: signature, metrics, artifacts, lineage."""
    with open_workspace(workspace) as ws:
        versions = [ws.models.get(ref)] if "@" in ref else ws.models.versions(ref)
        aliases = ws.models.aliases(versions[0].model)
    by_number: dict[int, list[str]] = {}
    for alias, number in sorted(aliases.items()):
        by_number.setdefault(number, []).append(alias)
    data: dict[str, Any] = {
        "aliases": aliases,
        "versions": [{**asdict(v), "aliases": by_number.get(v.number, [])} for v in versions],
    }
    if "@" in ref:
        data = {**data["versions"][0], "model_aliases": aliases}

    def render(out) -> None:  # type: ignore[no-untyped-def]
        for version in versions:
            named = by_number.get(version.number)
            out.print(
                f"{version.ref} ({version.id[:12]}) {version.flavor} {version.task}, "
                f"{version.status}, run {version.run_id[:12]}, {age(version.created_at)}"
                + (f"  [{', '.join(named)}]" if named else "")
            )
            out.print("  " + ", ".join(f"{k} {v:.4f}" for k, v in version.metrics.items()))
            if len(versions) == 1:
                for column in version.signature.get("inputs", []):
                    out.print(f"  input  {column['name']}: {column['type']}")
                out.print(f"  output {version.signature.get('output')}")
                for role, entry in version.artifacts.items():
                    out.print(
                        f"  artifact {role}: {entry['format']} {entry['sha256'][:12]} "
                        f"({entry['size']:,} B)"
                    )
                for item in version.inputs:
                    out.print(f"  trained on {item.get('dataset')}")

    emit(as_json, data, render)
