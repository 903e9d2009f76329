"""``loopml model ...``: registered models and their versions."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
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
        decisions = {v.number: ws.models.decisions(v.model, v.number) for v in versions}
        evaluations = {v.number: ws.evaluations.ls(v.model, v.number) for v in versions}
    by_number: dict[int, list[str]] = {}
    for alias, number in sorted(aliases.items()):
        by_number.setdefault(number, []).append(alias)
    data: dict[str, Any] = {
        "aliases": aliases,
        "versions": [
            {
                **asdict(v),
                "aliases": by_number.get(v.number, []),
                "decisions": decisions[v.number],
                "evaluations": [_evaluation(e) for e in evaluations[v.number]],
            }
            for v in versions
        ],
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
            for decision in decisions[version.number]:
                out.print(
                    f"  {decision['status']} by {decision['actor']} "
                    f"{age(decision['time'])}: {decision['reason']}"  # type: ignore[arg-type]
                )
            for found in evaluations[version.number][:3]:
                values = found.summary.get("values", {})
                shown = ", ".join(
                    f"{k} {v:.4f}" for k, v in list(values.items())[:6] if v is not None
                )
                out.print(
                    f"  evaluated {found.id[:12]} on {found.data_ref} ({found.split}): {shown}"
                )

    emit(as_json, data, render)


def _evaluation(found: Any) -> dict[str, Any]:
    return {
        "id": found.id,
        "data": found.data_ref,
        "split": found.split,
        "rows": found.rows,
        "values": found.summary.get("values", {}),
        "created_at": found.created_at,
        "created_by": found.created_by,
    }


@app.command("gates")
def gates(
    model: Annotated[str, typer.Argument(help="The model's name.")],
    set_gates: Annotated[
        str | None,
        typer.Option(
            "--set",
            help="The gates as YAML/JSON, or @FILE: "
            "'{roc_auc: \">= 0.9\", beat_champion_by: {roc_auc: 0.0}}'.",
        ),
    ] = None,
    sensitive: Annotated[
        list[str] | None,
        typer.Option("--sensitive", help="Fairness columns a promotion evaluates (with --set)."),
    ] = None,
    check: Annotated[
        str | None, typer.Option("--check", help="Check this version against them (MODEL@V).")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show, declare (--set) or check (--check) a model's promotion gates."""
    from loopml.cli._common import yaml_value
    from loopml.errors import SpecError

    with open_workspace(workspace) as ws:
        if set_gates is not None:
            declared = yaml_value(set_gates, "--set")
            if not isinstance(declared, dict):
                raise SpecError("--set: gates are a mapping", hint="for example '{roc_auc: 0.9}'")
            ws.evaluations.set_gates(model, declared, sensitive=sensitive or ())
        current = ws.evaluations.gates(model)
        results = ws.evaluations.check(check) if check else []
    data: dict[str, Any] = {
        "model": model,
        "gates": current.get_params() if current else None,
        "check": [r.to_dict() for r in results] if check else None,
    }

    def render(out) -> None:  # type: ignore[no-untyped-def]
        if current is None:
            out.print(f"{model} has no gates; declare them with --set")
            return
        params = current.get_params()
        for figure, expression in params["thresholds"].items():
            out.print(f"  {figure} {expression}")
        for figure, margin in params["beat_champion_by"].items():
            out.print(f"  beat the champion on {figure} by at least {margin}")
        if params["sensitive"]:
            out.print(f"  fairness across {', '.join(params['sensitive'])}")
        for result in results:
            out.print(f"  {'pass' if result.passed else 'FAIL'}  {result.message}")

    emit(as_json, data, render)
    if results and not all(r.passed for r in results):
        raise typer.Exit(1)


@app.command("card")
def card(
    ref: Annotated[str, typer.Argument(help="MODEL, MODEL@VERSION or MODEL@ALIAS.")],
    intended_use: Annotated[
        str | None, typer.Option("--intended-use", help="Write what the model is for.")
    ] = None,
    limitations: Annotated[
        str | None, typer.Option("--limitations", help="Write what it must not be used for.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the card as Markdown to this file.")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a version's model card: owner, intended use, lineage, metrics, fairness, limits."""
    from loopml.evaluate.cards import markdown
    from loopml.evaluate.report import check_target, write

    if out is not None:
        check_target(out)
    with open_workspace(workspace) as ws:
        if intended_use is not None or limitations is not None:
            ws.evaluations.set_card(ref, intended_use=intended_use, limitations=limitations)
        found = ws.evaluations.card(ref)
    text = markdown(found)
    if out is not None:
        write(out, text)
    emit(as_json, found, lambda console: console.print(text))


def _decide(status: str):  # type: ignore[no-untyped-def]
    def decide(
        model: Annotated[str, typer.Argument(help="The model's name.")],
        version: Annotated[int, typer.Argument(help="The version number.")],
        reason: Annotated[str, typer.Option("--reason", help="Why; recorded and audited.")] = "",
        workspace: WorkspaceOption = None,
        as_json: JsonOption = False,
    ) -> None:
        with open_workspace(workspace) as ws:
            decided = ws.models.set_status(model, version, status, reason=reason)
        emit(
            as_json,
            {"model": model, "version": version, "status": decided.status, "reason": reason},
            lambda out: out.print(f"{decided.ref} is {decided.status}"),
        )

    decide.__doc__ = f"Mark a version {status}, saying why (recorded with who decided)."
    return decide


for _status, _verb in (("approved", "approve"), ("rejected", "reject"), ("archived", "archive")):
    app.command(_verb)(_decide(_status))
