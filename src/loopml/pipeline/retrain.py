"""Act on a retrain decision: run the pipeline on the latest data, gate, promote.

The new version must pass the model's gates and beat the champion on the same
holdout rows (a ``beat_champion_by`` gate on the task's main metric, margin 0, is
added when the gates declare none), so a regression is never promoted. A passing
version is promoted at once when the policy says ``auto_promote``; otherwise it waits
for approval. A retrain that fails leaves the champion where it is, and says why.
Servers watching the alias swap to a promoted version with no downtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopml.context import Context
from loopml.errors import InputError, LoopMLError, NotFound
from loopml.evaluate import promotion
from loopml.evaluate.gates import Gates, require_gates
from loopml.governance import lineage
from loopml.monitor import retrain as policy_store
from loopml.monitor.decay import MAIN_METRIC
from loopml.monitor.retrain import COOLDOWN, RetrainDecision, RetrainPolicy
from loopml.pipeline.runner import EventFn, RunResult, run_pipeline
from loopml.pipeline.spec import Spec
from loopml.registry import aliases, versions

CHALLENGER = "challenger"


def policy_of(spec: Spec) -> RetrainPolicy:
    """The spec's retrain policy (``monitor: retrain:``); drift only, no auto-promotion,
    when it declares none."""
    declared = spec.monitor.retrain if spec.monitor is not None else None
    alias = spec.deploy.alias if spec.deploy is not None else "champion"
    if declared is None:
        return RetrainPolicy(alias=alias, cooldown_seconds=COOLDOWN.total_seconds())
    return RetrainPolicy(
        on=tuple(declared.on),
        auto_promote=declared.auto_promote,
        alias=alias,
        cooldown_seconds=declared.cooldown_seconds,
    )


def execute(
    ctx: Context,
    decision: RetrainDecision,
    spec: Spec,
    root: Path,
    *,
    executor: str = "local",
    on_event: EventFn | None = None,
) -> RetrainDecision:
    """Run the retrain ``decision`` calls for, and record what came of it.

    Returns:
        The decision, final: promoted, awaiting_approval, rejected or failed. Errors
        are recorded on it rather than raised, so a watcher keeps watching.
    """
    policy_store.move(ctx, decision.id, "running")
    try:
        result = run_pipeline(ctx, spec, root, executor=executor, on_event=on_event)
    except LoopMLError as exc:
        return _finish(ctx, decision.id, "failed", {"error": str(exc)})
    except Exception as exc:  # a bug or a crash in user code: recorded, never raised
        return _finish(ctx, decision.id, "failed", {"error": f"{type(exc).__name__}: {exc}"})
    return settle(ctx, decision, spec, result)


def scheduled_run(
    ctx: Context, spec: Spec, root: Path, *, executor: str = "local", hold_heavy: bool = False
) -> tuple[RunResult | None, RetrainDecision | None]:
    """A schedule's pipeline run. When the spec's retrain policy acts on ``schedule``,
    it is a retrain: decided first (none while another is in flight: then nothing
    runs), and what it trained is gated and promoted as the policy says.

    Returns:
        The run (None when skipped) and the decision (None without one).
    """
    policy = policy_of(spec)
    if spec.train is None or not policy.acts_on("schedule"):
        return run_pipeline(ctx, spec, root, executor=executor, hold_heavy=hold_heavy), None
    try:
        decision = policy_store.decide(
            ctx, spec.model_name, policy, "schedule", "scheduled pipeline run"
        )
    except NotFound:  # the first training: decided once it made the model
        result = run_pipeline(ctx, spec, root, executor=executor, hold_heavy=hold_heavy)
        return result, after_scheduled_run(ctx, spec, result)
    if decision is None:
        return None, None
    policy_store.move(ctx, decision.id, "running")
    try:
        result = run_pipeline(ctx, spec, root, executor=executor, hold_heavy=hold_heavy)
    except LoopMLError as exc:
        return None, _finish(ctx, decision.id, "failed", {"error": str(exc)})
    if result.status == "held":
        why = "held for the off-peak window; gated when it resumes"
        return result, _finish(
            ctx, decision.id, "failed", {"pipeline_run": result.id, "error": why}
        )
    return result, settle(ctx, decision, spec, result)


def after_scheduled_run(ctx: Context, spec: Spec, result: RunResult) -> RetrainDecision | None:
    """Gate and promote what a scheduled pipeline run trained, when the spec's retrain
    policy acts on ``schedule`` (None otherwise, or when a retrain is in flight)."""
    policy = policy_of(spec)
    if spec.train is None or not policy.acts_on("schedule") or result.status != "succeeded":
        return None
    decision = policy_store.decide(
        ctx, spec.model_name, policy, "schedule", "scheduled pipeline run"
    )
    if decision is None:
        return None
    policy_store.move(ctx, decision.id, "running")
    return settle(ctx, decision, spec, result)


def settle(
    ctx: Context, decision: RetrainDecision, spec: Spec, result: RunResult
) -> RetrainDecision:
    """Finish a running decision on the pipeline run it made: gate the trained
    version against the champion, and promote it when the policy allows."""
    policy = RetrainPolicy(**decision.details.get("policy", policy_of(spec).get_params()))
    try:
        details: dict[str, Any] = {"pipeline_run": result.id}
        if result.status != "succeeded":
            failed = [f"{s.name}: {s.error}" for s in result.steps if s.status == "failed"]
            # Each step's error under its own key: a step named like a detail
            # ("error", "candidate") must not overwrite it.
            errors = {s.name: s.error for s in result.steps if s.error}
            return _finish(
                ctx,
                decision.id,
                "failed",
                {
                    **details,
                    "error": f"pipeline {result.status}: {'; '.join(failed)}",
                    "step_errors": errors,
                },
            )
        trained = next((s for s in result.steps if s.step.kind == "train"), None)
        if trained is None or trained.output is None:
            return _finish(
                ctx, decision.id, "failed", {**details, "error": "the spec has no train step"}
            )
        if trained.status == "cached" and _serves(ctx, trained.output, policy.alias):
            return _finish(
                ctx,
                decision.id,
                "rejected",
                {
                    **details,
                    "candidate": trained.output,
                    "why": "no new version: the data, settings and code are unchanged",
                },
            )
        candidate = trained.output
        with ctx.write() as conn:
            lineage.record(conn, [f"retrain:{decision.id}"], f"model:{candidate}", "retrain")
        gates = _gates(ctx, candidate)
        # Compared with what the policy's alias serves: that is what it would replace.
        version, results, _own, _champion = promotion.check(
            ctx, candidate, gates, against=policy.alias
        )
        details.update(candidate=candidate, gates=[r.to_dict() for r in results])
        failing = [r.message for r in results if not r.passed]
        if failing:
            return _finish(ctx, decision.id, "rejected", {**details, "why": "; ".join(failing)})
        if not policy.auto_promote:
            # The candidate waits as the challenger, for `loopml promote` to approve.
            if policy.alias != CHALLENGER:
                aliases.set_alias(
                    ctx,
                    version.model,
                    CHALLENGER,
                    version.number,
                    reason=f"retrain {decision.id[:12]} passed its gates; awaiting approval",
                )
            return _finish(ctx, decision.id, "awaiting_approval", {**details, "alias": CHALLENGER})
        with ctx.read() as conn:
            if policy_store.get(conn, decision.id).status != "running":
                # Taken over (abandoned) while it ran: the newer decision settles.
                return policy_store.get(conn, decision.id)
        promotion.promote(
            ctx,
            version.model,
            version.number,
            alias=policy.alias,
            reason=f"retrain {decision.id[:12]} ({decision.trigger}): {decision.reason}",
            gates=gates,
            against=policy.alias,
        )
        return _finish(ctx, decision.id, "promoted", {**details, "alias": policy.alias})
    except LoopMLError as exc:
        return _finish(ctx, decision.id, "failed", {"error": str(exc)})
    except Exception as exc:  # a bug or a crash in user code: recorded, never raised
        return _finish(ctx, decision.id, "failed", {"error": f"{type(exc).__name__}: {exc}"})


def _finish(
    ctx: Context, decision_id: str, status: str, details: Mapping[str, Any]
) -> RetrainDecision:
    """Move a decision to a final status; one already final (abandoned and taken over
    by another process) is returned as it is, never raised."""
    try:
        return policy_store.move(ctx, decision_id, status, details)
    except InputError:
        with ctx.read() as conn:
            return policy_store.get(conn, decision_id)


def _serves(ctx: Context, ref: str, alias: str) -> bool:
    """Whether ``alias`` already points at the version ``ref`` (a cached training that
    made some other version, never gated, is still a candidate)."""
    with ctx.read() as conn:
        version = versions.resolve(conn, ref)
        return aliases.aliases(conn, version.model).get(alias) == version.number


def _gates(ctx: Context, candidate: str) -> Gates:
    """The model's gates, with "beat the champion on the main metric" when they have
    no such gate of their own."""
    with ctx.read() as conn:
        version = versions.resolve(conn, candidate)
        declared = require_gates(conn, version.model)
    params = declared.get_params()
    beat = params["beat_champion_by"]
    if not beat and version.task in MAIN_METRIC:  # an unlabelled detector has no metric
        beat = {MAIN_METRIC[version.task]: 0.0}
    return Gates(
        params["thresholds"],
        beat_champion_by=beat,
        sensitive=params["sensitive"],
        slices=params["slices"],
    )
