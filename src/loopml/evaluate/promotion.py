"""Promotion: move an alias to a version only when it passes the model's gates.

``promote`` checks the version's newest evaluation on its own training holdout (made
now, with the gates' sensitive and slice columns, when there is none; a model with
no gates needs none, so an unlabelled anomaly detector can be promoted). A
"beat the champion" gate compares it with the current champion measured on the same
holdout rows (evaluated now when that was never done). A version that fails any gate
is refused with every failing gate listed, and nothing changes; ``force`` with a
reason promotes it anyway, and the audit event records the failing gates and the
reason. Rollback moves the alias back where it was, audited the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loopml.context import Context
from loopml.errors import GateFailed, InputError, NotFound
from loopml.evaluate import evaluation as evaluations
from loopml.evaluate.gates import ROBUSTNESS, GateResult, Gates, require_gates
from loopml.records import Evaluation, ModelVersion
from loopml.registry import aliases, versions
from loopml.train import tracking

CHAMPION = "champion"


@dataclass(frozen=True)
class Promotion:
    """What a promotion did: the version, the alias and where it pointed before,
    each gate's outcome, and whether failing gates were overridden."""

    version: ModelVersion
    alias: str
    previous: int | None
    gates: list[GateResult] = field(default_factory=list)
    evaluation: str | None = None
    champion_evaluation: str | None = None
    forced: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.version.model,
            "version": self.version.number,
            "alias": self.alias,
            "previous": self.previous,
            "forced": self.forced,
            "reason": self.reason,
            "evaluation": self.evaluation,
            "champion_evaluation": self.champion_evaluation,
            "gates": [g.to_dict() for g in self.gates],
        }


def check(
    ctx: Context,
    ref: str,
    gates: Gates | None = None,
    *,
    trust: Sequence[str] = (),
    against: str = CHAMPION,
) -> tuple[ModelVersion, list[GateResult], Evaluation | None, Evaluation | None]:
    """Check a version against its model's gates (or ``gates``), changing no alias.

    Thresholds read the version's evaluation on its own training holdout. The
    "beat the champion" margins compare both versions on the rows of that holdout the
    champion did not train on either (``evaluate``'s ``unseen_by``), so neither is
    scored on rows it has seen. ``against`` names the alias whose version is the
    champion (a retrain that deploys to ``prod`` must beat what ``prod`` serves).

    Returns:
        The version, each gate's result, its evaluation (None when there are no gates
        to check), and the champion's evaluation on the compared rows (or None).

    Raises:
        NotFound: no such model or version.
        InputError: a gate names a figure the task does not have, or the version
            cannot be evaluated.
    """
    with ctx.read() as conn:
        version = versions.resolve(conn, ref)
        gates = gates if gates is not None else require_gates(conn, version.model)
        champion_number = aliases.aliases(conn, version.model).get(against)
    gates.parsed(version.task)  # bad gates fail before any evaluation runs
    if not gates.thresholds and not gates.beat_champion_by:
        return version, [], None, None
    own = _evaluation_of(ctx, version, gates, trust)
    champion_evaluation = None
    champion_values = compared = None
    champion_ref = problem = None
    if gates.beat_champion_by and champion_number is not None:
        with ctx.read() as conn:
            champion = versions.resolve(conn, f"{version.model}@{champion_number}")
        champion_ref = champion.ref
        if champion.number != version.number:
            try:
                mine = _comparison(ctx, version, version, champion, trust, own.data_ref)
                champion_evaluation = _comparison(
                    ctx, champion, version, champion, trust, own.data_ref
                )
                compared = mine.summary["values"]
                champion_values = champion_evaluation.summary["values"]
            except InputError as exc:
                problem = f"cannot compare with {champion.ref}: {exc}"
    results = gates.check(
        version.task,
        own.summary["values"],
        champion_values,
        champion_ref,
        compared=compared,
        problem=problem,
        same=champion_number == version.number,
    )
    return version, results, own, champion_evaluation


def promote(
    ctx: Context,
    model: str,
    number: int,
    *,
    alias: str = CHAMPION,
    force: bool = False,
    reason: str = "",
    gates: Gates | None = None,
    trust: Sequence[str] = (),
    against: str = CHAMPION,
) -> Promotion:
    """Point ``alias`` at version ``number`` once it passes the model's gates.

    A rejected or archived version fails as a gate of its own. The alias moves only if
    neither it nor the champion moved while the gates were checked (else Conflict).

    Args:
        force: promote even when gates fail (or cannot be checked); needs ``reason``,
            and is audited.
        reason: why; recorded with the move.
        gates: check these instead of the model's declared gates.
        against: the alias the "beat the champion" margins compare with.

    Raises:
        NotFound: no such model or version.
        GateFailed: a gate fails and ``force`` is not given; nothing changed.
        Conflict: the alias or the champion moved while the gates were checked.
        InputError: ``force`` without a reason, or a bad alias.

    Example:
        >>> ws.promote("fraud", 3, alias="champion")
    """
    aliases.check_alias(alias)
    if force and not reason.strip():
        raise InputError("a forced promotion needs a reason", hint="pass --reason TEXT")
    with ctx.read() as conn:
        before = aliases.aliases(conn, model)
        status = versions.resolve(conn, f"{model}@{number}").status
    try:
        version, results, own, champion = check(
            ctx, f"{model}@{number}", gates, trust=trust, against=against
        )
    except InputError as exc:
        if not force or isinstance(exc, NotFound):
            raise
        # Forcing past gates that cannot even be checked: the reason is recorded.
        with ctx.read() as conn:
            version = versions.resolve(conn, f"{model}@{number}")
        results = [GateResult("evaluation", False, None, "an evaluation", str(exc))]
        own = champion = None
    if status in {"rejected", "archived"}:
        results = [
            GateResult(
                "status", False, None, "not rejected or archived", f"{version.ref} is {status}"
            ),
            *results,
        ]
    failing = [r for r in results if not r.passed]
    details: dict[str, Any] = {
        "gates": [r.to_dict() for r in results],
        "evaluation": own.id if own else None,
        "forced": bool(failing) and force,
    }
    if failing and not force:
        with ctx.write() as conn:
            ctx.audit(
                conn, "model.promote", f"alias:{model}@{alias}", outcome="refused", details=details
            )
        raise GateFailed(
            f"{version.ref} fails {len(failing)} of {len(results)} gates; {alias} is unchanged",
            [r.message for r in failing],
            hint="improve the model, or pass --force --reason TEXT (audited)",
        )
    promoted = aliases.set_alias(
        ctx,
        model,
        alias,
        number,
        reason=reason or ("gates passed" if results else "no gates declared"),
        action="model.promote",
        details=details,
        expect={alias: before.get(alias), against: before.get(against)},
    )
    return Promotion(
        promoted,
        alias,
        before.get(alias),
        results,
        own.id if own else None,
        champion.id if champion else None,
        bool(failing) and force,
        reason,
    )


def rollback(ctx: Context, model: str, alias: str = CHAMPION, *, reason: str = "") -> Promotion:
    """Move ``alias`` back to the version it pointed at before (no gates: it served).

    Raises:
        Conflict: the alias is not set, or has nowhere earlier to go.
    """
    with ctx.read() as conn:
        previous = aliases.aliases(conn, model).get(alias)
    moved = aliases.rollback(ctx, model, alias, reason=reason)
    return Promotion(moved, alias, previous, reason=reason or "rollback")


def _evaluation_of(
    ctx: Context, version: ModelVersion, gates: Gates, trust: Sequence[str]
) -> Evaluation:
    """The newest evaluation of ``version`` on its own training holdout that measured
    what the gates need, or a new one."""
    trained_on = version.inputs[0] if version.inputs else {}
    with ctx.read() as conn:
        found = evaluations.latest(
            conn,
            version.model,
            version.number,
            dataset_id=trained_on.get("id"),
            split=f"holdout:{version.ref}",
        )
    if found is not None and _measures(found, gates, _target_of(ctx, version)):
        return found
    return evaluations.evaluate(
        ctx,
        version,
        trained_on.get("dataset"),
        sensitive=gates.sensitive,
        slices=gates.slices,
        trust=trust,
    )


def _comparison(
    ctx: Context,
    version: ModelVersion,
    rows_of: ModelVersion,
    unseen_by: ModelVersion,
    trust: Sequence[str],
    data: str,
) -> Evaluation:
    """``version`` on ``rows_of``'s holdout without the rows ``unseen_by`` trained on."""
    trained_on = rows_of.inputs[0] if rows_of.inputs else {}
    split = f"holdout:{rows_of.ref}|unseen:{unseen_by.ref}"
    with ctx.read() as conn:
        found = evaluations.latest(
            conn, version.model, version.number, dataset_id=trained_on.get("id"), split=split
        )
    if found is not None and _measures(found, Gates(), _target_of(ctx, version)):
        return found
    return evaluations.evaluate(
        ctx,
        version,
        data,
        holdout_of=rows_of if rows_of is not version else None,
        unseen_by=unseen_by,
        check_robustness=False,
        trust=trust,
    )


def _target_of(ctx: Context, version: ModelVersion) -> str | None:
    with ctx.read() as conn:
        target: str | None = tracking.get(conn, version.run_id).params.get("target")
    return target


def _measures(found: Evaluation, gates: Gates, target: str | None = None) -> bool:
    """Whether ``found`` measured what ``gates`` read: against the training target at
    the default threshold, fairness across their sensitive columns, and the
    robustness drops when a gate reads one (an evaluation made with
    ``--no-robustness`` has none, and must not fail such a gate for that)."""
    summary = found.summary
    if summary.get("target", target) != target or summary.get("threshold", 0.5) != 0.5:
        return False
    if not set(gates.sensitive) <= set(summary.get("sensitive", [])):
        return False
    values = found.summary.get("values", {})
    figures = {*gates.thresholds, *gates.beat_champion_by}
    return all(f in values for f in figures if f in ROBUSTNESS)
