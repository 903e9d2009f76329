"""The closed loop: watch a served model, alert, and retrain when the policy says.

One ``tick`` of the loop, for the model a spec trains:

1. drift of the alias's version over the newest logged predictions (the spec's
   ``monitor: drift:`` test, threshold and window), stored as a time series;
2. decay, when labels have been joined to the log (``loopml feedback``);
3. the spec's alert rules judge both (deduplicated; due escalations are sent);
4. drift or decay that the retrain policy acts on records a retrain decision (at most
   one in flight) and runs it: the pipeline on the latest data, the gates, the
   champion comparison, and promotion when allowed. Servers watching the alias swap.

``watch`` repeats ticks on an interval. Nothing in a tick stops the loop: an empty
window, a failed retrain, a webhook that is down are each reported in the tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loopml.context import Context
from loopml.errors import InputError, LoopMLError
from loopml.monitor import alerts as alerting
from loopml.monitor import retrain as retrain_policy
from loopml.monitor.decay import check_decay
from loopml.monitor.drift import DRIFT_SHARE
from loopml.monitor.monitoring import MonitorResult, check_drift, parse_window
from loopml.monitor.retrain import RetrainDecision
from loopml.pipeline import retrain as retraining
from loopml.pipeline.spec import Spec, load_spec

KEEP_TICKS = 100


@dataclass
class Tick:
    """What one pass of the loop saw and did."""

    model: str
    drift: MonitorResult | None = None
    decay: MonitorResult | None = None
    alerts: list[Any] = field(default_factory=list)
    escalated: list[Any] = field(default_factory=list)
    retrain: RetrainDecision | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "drift": _headline(self.drift),
            "decay": _headline(self.decay),
            "alerts": [a.to_dict() for a in self.alerts],
            "escalated": [a.id for a in self.escalated],
            "retrain": self.retrain.to_dict() if self.retrain else None,
            "notes": list(self.notes),
        }


def _headline(result: MonitorResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "id": result.id,
        "version": result.number,
        "rows": result.rows,
        "flagged": result.flagged,
        "source": result.source,
    }


def tick(
    ctx: Context,
    spec: Spec,
    root: Path,
    *,
    window: int | str | None = None,
    executor: str = "local",
    now: datetime | None = None,
) -> Tick:
    """One pass of the loop for the spec's model (see the module docstring)."""
    if spec.train is None:
        raise InputError("the spec has no train step: there is no model to watch")
    model = spec.model_name
    alias = spec.deploy.alias if spec.deploy is not None else "champion"
    ref = f"{model}@{alias}"
    found = Tick(model)
    monitor = spec.monitor
    drift = monitor.drift if monitor is not None else None
    checked = window or (drift.window if drift else None)
    try:
        found.drift = check_drift(
            ctx,
            ref,
            window=checked,
            test=drift.test if drift else "psi",
            threshold=drift.threshold if drift else None,
            drift_share=drift.share if drift else DRIFT_SHARE,
        )
    except LoopMLError as exc:
        found.notes.append(f"drift not checked: {exc}")
    try:
        # Decay over the same window: the newest labelled predictions, not all history.
        span = parse_window(checked) if checked is not None else None
        found.decay = check_decay(
            ctx,
            ref,
            last_rows=span if isinstance(span, int) else None,
            since=(now or datetime.now(UTC)) - span if isinstance(span, timedelta) else None,
        )
    except LoopMLError as exc:
        found.notes.append(f"decay not checked: {exc}")
    measured = [r for r in (found.drift, found.decay) if r is not None]
    rules = monitor.alerts if monitor is not None else []
    try:
        if measured and rules:
            found.alerts = alerting.evaluate_rules(
                ctx, model, alerting.observation_of(*measured), rules, now=now
            )
        found.escalated = alerting.escalate(ctx, now)
    except LoopMLError as exc:
        found.notes.append(f"alerts not evaluated: {exc}")
    policy = retraining.policy_of(spec)
    called = _trigger(found, policy)
    if called is not None:
        trigger, reason, evidence = called
        decision = retrain_policy.decide(
            ctx, model, policy, trigger, reason, {"monitor_result": evidence.id}
        )
        if decision is None:
            found.notes.append(
                f"{trigger}: no retrain (not the policy's trigger, one in flight, or one "
                "rejected or awaiting approval within the cooldown)"
            )
        else:
            found.retrain = retraining.execute(ctx, decision, spec, root, executor=executor)
    return found


def _trigger(
    found: Tick, policy: retrain_policy.RetrainPolicy
) -> tuple[str, str, MonitorResult] | None:
    """The flagged result that calls for a retrain: the first one the policy acts on
    (drift being flagged must not hide decay from a policy that retrains on decay),
    else the first flagged one, which ``decide`` declines with a note."""
    flagged: list[tuple[str, str, MonitorResult]] = []
    if found.drift is not None and found.drift.flagged:
        drifted = found.drift.statistics.get("drifted_features") or []
        names = ", ".join(map(str, drifted[:5])) if isinstance(drifted, list) else str(drifted)
        reason = f"drift over {found.drift.rows} rows ({names or 'predictions'})"
        flagged.append(("drift", reason, found.drift))
    if found.decay is not None and found.decay.flagged:
        stats = found.decay.statistics
        reason = f"{stats.get('metric')} fell by {stats.get('drop')} since training"
        flagged.append(("decay", reason, found.decay))
    acted_on = [f for f in flagged if policy.acts_on(f[0])]
    return next(iter(acted_on or flagged), None)


def watch(
    ctx: Context,
    spec_path: str | Path,
    *,
    interval: float = 60.0,
    iterations: int | None = None,
    window: int | str | None = None,
    executor: str = "local",
    on_tick: Callable[[Tick], None] | None = None,
) -> list[Tick]:
    """Run ticks every ``interval`` seconds (``iterations`` of them, or until stopped).

    Raises:
        InputError: a bad interval or window (before any tick runs).

    Returns:
        The newest ticks (at most ``KEEP_TICKS``), oldest first.
    """
    if not interval >= 0:
        raise InputError(f"interval {interval} is not a number of seconds (0 or more)")
    if window is not None:
        parse_window(window)  # a bad window fails here, not as a note on every tick
    spec, root = load_spec(spec_path)
    done: list[Tick] = []
    count = 0
    while iterations is None or count < iterations:
        started = time.monotonic()
        try:
            found = tick(ctx, spec, root, window=window, executor=executor)
        except Exception as exc:  # a store hiccup or a bug: reported, the loop goes on
            found = Tick(spec.model_name, notes=[f"tick failed: {type(exc).__name__}: {exc}"])
        count += 1
        done = [*done[-(KEEP_TICKS - 1) :], found]
        if on_tick is not None:
            on_tick(found)
        if iterations is not None and count >= iterations:
            break
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return done
