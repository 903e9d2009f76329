"""Model cards: what a version is, who owns it, what it was made from, how well and how
fairly it does, and what it is (not) for.

A card is assembled from the records each time it is shown, so it is never stale:
the version (owner, signature, training metrics), its run (code version, data), its
newest evaluation (metrics, fairness, robustness), its aliases and decisions, and the
written part (intended use, limitations) kept in ``loopml.registry.cards``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopml.context import Context
from loopml.evaluate import evaluation as evaluations
from loopml.evaluate.gates import get_gates
from loopml.registry import aliases, cards, versions
from loopml.train import tracking


def card(ctx: Context, ref: str) -> dict[str, Any]:
    """The model card of the version ``ref`` names, JSON-ready.

    Raises:
        NotFound: no such model or version.
    """
    with ctx.read() as conn:
        version = versions.resolve(conn, ref)
        run = tracking.get(conn, version.run_id)
        text = cards.card_text(conn, version.model, version.number)
        named = sorted(
            a for a, n in aliases.aliases(conn, version.model).items() if n == version.number
        )
        decisions = aliases.decisions(conn, version.model, version.number)
        found = evaluations.list_for(conn, version.model, version.number)
        gates = get_gates(conn, version.model)
    newest = found[0] if found else None
    report = evaluations.read_report(ctx, newest) if newest else None
    return {
        "model": version.model,
        "version": version.number,
        "id": version.id,
        "owner": version.owner,
        "created_at": version.created_at.isoformat(),
        "task": version.task,
        "flavor": version.flavor,
        "status": version.status,
        "aliases": named,
        "intended_use": text["intended_use"] or "(not written: `loopml model card --intended-use`)",
        "limitations": text["limitations"] or "(not written: `loopml model card --limitations`)",
        "lineage": {
            "run": version.run_id,
            "data": [i.get("dataset") for i in version.inputs],
            "code": dict(run.code),
            "target": run.params.get("target"),
        },
        "inputs": [f"{c['name']}: {c['type']}" for c in version.signature.get("inputs", [])],
        "training_metrics": dict(version.metrics),
        "evaluation": _evaluation(newest, report),
        "fairness": _fairness(report),
        "gates": gates.get_params() if gates else None,
        "decisions": [
            {**d, "time": d["time"].isoformat() if hasattr(d["time"], "isoformat") else d["time"]}
            for d in decisions
        ],
    }


def _evaluation(found: Any, report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if found is None or report is None:
        return None
    return {
        "id": found.id,
        "data": found.data_ref,
        "split": found.split,
        "rows": found.rows,
        "at": found.created_at.isoformat(),
        "values": dict(found.summary.get("values", {})),
    }


def _fairness(report: Mapping[str, Any] | None) -> dict[str, Any]:
    if not report:
        return {}
    return {
        column: {
            "demographic_parity_difference": f["demographic_parity_difference"],
            "equalized_odds_difference": f["equalized_odds_difference"],
            "groups": sorted(f["groups"]),
        }
        for column, f in report.get("fairness", {}).items()
    }


def markdown(found: Mapping[str, Any]) -> str:
    """The card as Markdown, for a README or a review."""
    lines = [
        f"# Model card: {found['model']}@{found['version']}",
        "",
        f"- Owner: {found['owner']}",
        f"- Task: {found['task']} ({found['flavor']}); status {found['status']}"
        + (f"; aliases {', '.join(found['aliases'])}" if found["aliases"] else ""),
        f"- Created: {found['created_at']}; id {found['id'][:12]}",
        "",
        "## Intended use",
        "",
        found["intended_use"],
        "",
        "## Limitations",
        "",
        found["limitations"],
        "",
        "## Lineage",
        "",
        f"- Run {found['lineage']['run']}, target `{found['lineage']['target']}`",
        f"- Data: {', '.join(str(d) for d in found['lineage']['data'])}",
        f"- Code: {found['lineage']['code'] or 'not a git checkout'}",
        f"- Inputs: {', '.join(found['inputs'])}",
        "",
        "## Metrics",
        "",
        "Training holdout: "
        + ", ".join(f"{k} {v:.4f}" for k, v in found["training_metrics"].items()),
    ]
    evaluation = found["evaluation"]
    if evaluation:
        values = ", ".join(
            f"{k} {v:.4f}" for k, v in evaluation["values"].items() if isinstance(v, int | float)
        )
        lines += [
            "",
            f"Evaluation {evaluation['id'][:12]} on {evaluation['data']} ({evaluation['split']}, "
            f"{evaluation['rows']} rows): {values}",
        ]
    else:
        lines += ["", "Not evaluated yet: `loopml evaluate`."]
    lines += ["", "## Fairness", ""]
    if found["fairness"]:
        for column, f in found["fairness"].items():
            lines.append(
                f"- {column} ({', '.join(f['groups'])}): demographic parity difference "
                f"{f['demographic_parity_difference']}, equalized odds difference "
                f"{f['equalized_odds_difference']}"
            )
    else:
        lines.append("Not measured: `loopml evaluate --sensitive COL`.")
    if found["decisions"]:
        lines += ["", "## Decisions", ""]
        lines += [
            f"- {d['time']}: {d['status']} by {d['actor']}: {d['reason']}"
            for d in found["decisions"]
        ]
    return "\n".join(lines) + "\n"
