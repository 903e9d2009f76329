"""The retrain policy: decide that a model is due for retraining, and record it.

A policy (the spec's ``monitor: retrain: {on: [drift, decay], auto_promote: true}``)
says which triggers call for a retrain: ``drift``, ``decay``, ``schedule`` (or
``manual``, always allowed). ``decide`` records a decision in ``retrain_decisions``
when the trigger is one the policy acts on and no other retrain of the model is in
flight; at most one is, whatever the number of watchers. ``loopml.pipeline.retrain``
(which sits above every stage) acts on the decision: it runs the pipeline, checks the
gates, and promotes or not; each step moves the decision's status:

    due -> running -> promoted | awaiting_approval | rejected | failed

Every decision and move is audited, and linked in lineage when it makes a version.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.context import Context
from loopml.errors import InputError, NotFound
from loopml.registry import versions
from loopml.store.tables import models, retrain_decisions

TRIGGERS = ("drift", "decay", "schedule", "manual")
IN_FLIGHT = ("due", "running")
# A retrain still in flight after this long was abandoned (its process died): it no
# longer blocks the next one, and is marked failed.
STALE_AFTER = timedelta(hours=24)
# After a retrain is rejected or waits for approval, drift or decay that is still there
# does not retrain again until this much later (a manual retrain always may).
COOLDOWN = timedelta(hours=1)
FINAL = ("promoted", "awaiting_approval", "rejected", "failed")


@dataclass(frozen=True)
class RetrainPolicy:
    """When to retrain a model, and whether a version that passes is promoted.

    Args:
        on: the triggers acted on (``drift``, ``decay``, ``schedule``).
        auto_promote: promote a passing version at once; otherwise it waits for
            approval (``loopml promote``).
        alias: the alias a passing version is promoted to.
    """

    on: Sequence[str] = ("drift",)
    auto_promote: bool = False
    alias: str = "champion"
    cooldown_seconds: float = 0.0

    def __post_init__(self) -> None:
        unknown = [t for t in self.on if t not in TRIGGERS]
        if unknown:
            raise InputError(
                f"retrain policy: unknown trigger {', '.join(map(repr, unknown))}",
                hint=f"use {', '.join(TRIGGERS[:3])}",
            )

    def get_params(self) -> dict[str, Any]:
        return {
            "on": list(self.on),
            "auto_promote": self.auto_promote,
            "alias": self.alias,
            "cooldown_seconds": self.cooldown_seconds,
        }

    def acts_on(self, trigger: str) -> bool:
        """Whether ``trigger`` calls for a retrain (a manual one always does)."""
        return trigger == "manual" or trigger in self.on


@dataclass(frozen=True)
class RetrainDecision:
    """One decision to retrain a model, and what came of it."""

    id: str
    model: str
    trigger: str
    reason: str
    status: str
    created_at: datetime
    finished_at: datetime | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "trigger": self.trigger,
            "reason": self.reason,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "details": dict(self.details),
        }


def decide(
    ctx: Context,
    model: str,
    policy: RetrainPolicy,
    trigger: str,
    reason: str,
    details: Mapping[str, Any] | None = None,
) -> RetrainDecision | None:
    """Record that ``model`` is due for a retrain, unless the policy does not act on
    ``trigger``, a retrain of it is already in flight, or (for a trigger other than
    ``manual``) one was rejected or left waiting for approval within the policy's
    cooldown: then None.

    Raises:
        NotFound: no such model.
        InputError: an unknown trigger.
    """
    if trigger not in TRIGGERS:
        raise InputError(f"unknown retrain trigger {trigger!r}", hint=f"use {', '.join(TRIGGERS)}")
    if not policy.acts_on(trigger):
        return None
    now = datetime.now(UTC)
    with ctx.write() as conn:
        versions.resolve(conn, model)
        # Lock the model's row: two watchers deciding at once queue here (PostgreSQL);
        # SQLite already runs one writer at a time.
        conn.execute(sa.select(models.c.name).where(models.c.name == model).with_for_update())
        busy = conn.execute(
            sa.select(
                retrain_decisions.c.id,
                retrain_decisions.c.created_at,
                retrain_decisions.c.details,
            ).where(retrain_decisions.c.model == model, retrain_decisions.c.status.in_(IN_FLIGHT))
        ).first()
        if busy is not None and now - busy.created_at < STALE_AFTER:
            return None
        if trigger != "manual" and _cooling(conn, model, now, policy):
            return None
        if busy is not None:
            conn.execute(
                retrain_decisions.update()
                .where(retrain_decisions.c.id == busy.id)
                # Keep what the decision was about (its trigger's evidence, the policy).
                .values(
                    status="failed",
                    finished_at=now,
                    details={**(busy.details or {}), "error": "abandoned"},
                )
            )
            ctx.audit(
                conn,
                "model.retrain.failed",
                f"model:{model}",
                outcome="failed",
                details={"decision": busy.id, "error": "abandoned: still in flight after 24 h"},
            )
        decision_id = uuid.uuid4().hex
        conn.execute(
            retrain_decisions.insert().values(
                id=decision_id,
                model=model,
                trigger=trigger,
                reason=reason,
                status="due",
                details={"policy": policy.get_params(), **(details or {})},
                created_at=now,
            )
        )
        ctx.audit(
            conn,
            "model.retrain.due",
            f"model:{model}",
            details={"decision": decision_id, "trigger": trigger, "reason": reason},
        )
        return get(conn, decision_id)


def move(
    ctx: Context, decision_id: str, status: str, details: Mapping[str, Any] | None = None
) -> RetrainDecision:
    """Move a decision to ``status`` (running, or a final one), merging ``details``.

    Raises:
        NotFound: no such decision.
        InputError: an unknown status, or a decision already final.
    """
    if status not in ("running", *FINAL):
        raise InputError(f"unknown retrain status {status!r}")
    with ctx.write() as conn:
        current = get(conn, decision_id)
        values: dict[str, Any] = {
            "status": status,
            "details": {**current.details, **(details or {})},
        }
        if status in FINAL:
            values["finished_at"] = datetime.now(UTC)
        # Compare and set: a decision another process finished (or abandoned) stays so.
        changed = conn.execute(
            retrain_decisions.update()
            .where(
                retrain_decisions.c.id == decision_id,
                retrain_decisions.c.status == current.status,
                retrain_decisions.c.status.not_in(FINAL),
            )
            .values(**values)
        ).rowcount
        if not changed or current.status in FINAL:
            now_status = get(conn, decision_id).status
            raise InputError(f"retrain {decision_id} is already {now_status}")
        ctx.audit(
            conn,
            f"model.retrain.{status}",
            f"model:{current.model}",
            outcome="failed" if status == "failed" else "ok",
            details={"decision": decision_id, **(details or {})},
        )
        return get(conn, decision_id)


def _cooling(conn: Connection, model: str, now: datetime, policy: RetrainPolicy) -> bool:
    newest = conn.execute(
        sa.select(retrain_decisions.c.status, retrain_decisions.c.created_at)
        .where(retrain_decisions.c.model == model)
        .order_by(retrain_decisions.c.created_at.desc())
        .limit(1)
    ).first()
    return (
        newest is not None
        and newest.status in ("rejected", "awaiting_approval")
        and now - newest.created_at < timedelta(seconds=policy.cooldown_seconds)
    )


def get(conn: Connection, decision_id: str) -> RetrainDecision:
    """One decision by id.

    Raises:
        NotFound: no such decision.
    """
    row = conn.execute(
        sa.select(retrain_decisions).where(retrain_decisions.c.id == decision_id)
    ).first()
    if row is None:
        raise NotFound(f"retrain decision {decision_id!r} does not exist")
    return _from_row(row)


def list_decisions(
    conn: Connection, model: str | None = None, limit: int = 50
) -> list[RetrainDecision]:
    """Decisions, newest first (of one model, when given)."""
    query = sa.select(retrain_decisions)
    if model is not None:
        query = query.where(retrain_decisions.c.model == model)
    rows = conn.execute(query.order_by(retrain_decisions.c.created_at.desc()).limit(limit)).all()
    return [_from_row(row) for row in rows]


def _from_row(row: Any) -> RetrainDecision:
    return RetrainDecision(
        id=row.id,
        model=row.model,
        trigger=row.trigger,
        reason=row.reason,
        status=row.status,
        created_at=row.created_at,
        finished_at=row.finished_at,
        details=row.details,
    )
