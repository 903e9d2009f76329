"""``loopml data ...``: list, show, compare and export dataset versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, age, emit, open_workspace

app = typer.Typer(help="Datasets and their versions.", no_args_is_help=True)


def _version_dict(version: Any) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(version)
    data["ref"] = version.ref
    return data


@app.command("ls")
def ls(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List datasets with their latest version."""
    with open_workspace(workspace) as ws:
        rows = ws.data.ls()
    data = {
        "datasets": [
            {
                "name": d.name,
                "owner": d.owner,
                "versions": n,
                "latest": v.number if v else None,
                "id": v.id if v else None,
                "rows": v.row_count if v else None,
                "updated": v.created_at if v else d.created_at,
            }
            for d, v, n in rows
        ]
    }

    def render(out) -> None:  # type: ignore[no-untyped-def]
        from rich.table import Table

        table = Table("dataset", "latest", "id", "rows", "versions", "owner", "updated")
        for item in data["datasets"]:
            table.add_row(
                item["name"],
                str(item["latest"]),
                (item["id"] or "")[:12],
                f"{item['rows'] or 0:,}",
                str(item["versions"]),
                item["owner"],
                age(item["updated"]),
            )
        out.print(
            table if data["datasets"] else "no datasets yet; `loopml ingest NAME SOURCE` adds one"
        )

    emit(as_json, data, render)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@3 or NAME@<hash prefix>.")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a version: schema, counts, quarantine reasons, PII and the column profile."""
    with open_workspace(workspace) as ws:
        version = ws.data.get(ref)
        history = ws.data.versions(version.dataset)
    data = _version_dict(version)
    data["versions"] = [
        {"number": v.number, "id": v.id, "rows": v.row_count, "created_at": v.created_at}
        for v in history
    ]

    def render(out) -> None:  # type: ignore[no-untyped-def]
        from rich.table import Table

        out.print(f"{version.ref}  id {version.id}")
        out.print(
            f"owner {version.owner}, committed {age(version.created_at)}, source {version.source}"
        )
        out.print(
            f"rows {version.row_count:,} accepted, {version.rows_quarantined:,} quarantined "
            f"of {version.rows_read:,} read; {len(version.files)} file(s), tier {version.tier}"
        )
        reasons = sorted(version.quarantine_reasons.items(), key=lambda kv: -kv[1])
        for reason, count in reasons:
            out.print(f"  quarantined {count:>8,}  {reason}")
        if version.pii:
            out.print("PII policies: " + ", ".join(f"{c}={p}" for c, p in version.pii.items()))
        if version.pii_warnings:
            out.print("likely PII without a policy: " + ", ".join(version.pii_warnings))
        if version.schema_changes:
            out.print(f"schema changes: {dict(version.schema_changes)}")
        table = Table("column", "type", "nulls", "distinct", "min", "max", "mean", "top")
        for column in version.schema:
            stats = version.profile.get(column.name, {})
            top = ", ".join(f"{v}" for v, _ in stats.get("top", [])[:3])
            table.add_row(
                column.name,
                column.type,
                str(stats.get("nulls", "")),
                str(stats.get("distinct", "")),
                _short(stats.get("min")),
                _short(stats.get("max")),
                _short(stats.get("mean")),
                top,
            )
        out.print(table)
        out.print("versions: " + ", ".join(f"@{v.number}" for v in history))

    emit(as_json, data, render)


def _short(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)[:24]


@app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="The first version, e.g. transactions@1.")],
    b: Annotated[str, typer.Argument(help="The second version, e.g. transactions@2.")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare two versions: schema changes, row counts and column statistics."""
    with open_workspace(workspace) as ws:
        data = ws.data.diff(a, b)

    def render(out) -> None:  # type: ignore[no-untyped-def]
        from rich.table import Table

        same = " (same content)" if data["same_content"] else ""
        out.print(
            f"{data['a']} → {data['b']}{same}: rows {data['rows']['a']:,} → "
            f"{data['rows']['b']:,} ({data['rows']['delta']:+,})"
        )
        for change, detail in data["schema"].items():
            out.print(f"schema {change}: {detail}")
        table = Table("column", "statistic", "a", "b", "change")
        for column, stats in data["columns"].items():
            for key, entry in stats.items():
                if key == "top":
                    table.add_row(
                        column, "top values", f"-{entry['removed']}", f"+{entry['added']}", ""
                    )
                    continue
                ratio = f"{entry['ratio']:.2f}×" if "ratio" in entry else ""
                table.add_row(column, key, _short(entry["a"]), _short(entry["b"]), ratio)
        out.print(table if data["columns"] else "no column statistics changed")

    emit(as_json, data, render)


@app.command("export")
def export(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@3 or NAME@<hash prefix>.")],
    path: Annotated[Path, typer.Argument(help="Output file: .csv, .csv.gz or .parquet.")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a version to a CSV or Parquet file, chosen by the extension."""
    with open_workspace(workspace) as ws:
        version = ws.data.get(ref)
        rows = ws.data.export(version.ref, path)
    data = {"dataset": version.dataset, "version": version.number, "path": str(path), "rows": rows}
    emit(as_json, data, lambda out: out.print(f"wrote {rows:,} rows of {version.ref} to {path}"))


@app.command("quarantine")
def quarantine(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@3 or NAME@<hash prefix>.")],
    limit: Annotated[int, typer.Option("--limit", "-n", help="Rows to show.")] = 20,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a version's quarantined rows: file, row number, reason and contents."""
    with open_workspace(workspace) as ws:
        version = ws.data.get(ref)
        table = ws.data.quarantine(version)
    rows = table.slice(0, limit).to_pylist()
    data = {"ref": version.ref, "total": table.num_rows, "rows": rows}

    def render(out) -> None:  # type: ignore[no-untyped-def]
        from rich.table import Table

        view = Table("file", "row", "reason", "record")
        for row in rows:
            view.add_row(
                Path(row["file"]).name, str(row["row"]), row["reason"], (row["record"] or "")[:60]
            )
        out.print(f"{version.ref}: {table.num_rows:,} quarantined row(s)")
        if rows:
            out.print(view)

    emit(as_json, data, render)
