"""Aliases and status decisions: the governed, reversible part of the registry.

An alias (``champion``, ``challenger``, any name) points at one version of a model;
``MODEL@ALIAS`` resolves through it. Every move is recorded with who made it and why,
so ``rollback`` can put an alias back where it was before its current version. A
version's status (candidate, approved, rejected, archived) changes by decisions that
record who decided and why. Every change is audited and linked in lineage.

Promotion gates (issue #5) sit on top of ``set_alias``; this module moves aliases as
asked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.context import Context
from loopml.errors import Conflict, InputError
from loopml.governance import lineage
from loopml.records import ModelVersion
from loopml.registry.versions import resolve
from loopml.store.tables import (
    alias_moves,
    model_aliases,
    model_decisions,
    model_versions,
    models,
)

STATUSES = ("candidate", "approved", "rejected", "archived")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")


def check_alias(alias: str) -> str:
    """Validate an alias name: a letter, then letters, digits, ``_`` or ``-``.

    A name made only of hex digits (``cafe``) would read as a hash prefix, and
    ``latest`` already means the newest version; both are refused.

    Raises:
        InputError: the name is not a valid alias.
    """
    if not _ALIAS.fullmatch(alias) or alias == "latest":
        raise InputError(
            f"invalid alias {alias!r}",
            hint="start with a letter; use letters, digits, '_' and '-' (not 'latest')",
        )
    if all(c in "0123456789abcdefABCDEF" for c in alias):
        raise InputError(f"alias {alias!r} reads as a hash prefix", hint="add a letter beyond a-f")
    return alias


def aliases(conn: Connection, model: str) -> dict[str, int]:
    """Each alias of ``model`` and the version number it points at."""
    rows = conn.execute(
        sa.select(model_aliases.c.alias, model_aliases.c.number).where(
            model_aliases.c.model == model
        )
    ).all()
    return {row.alias: row.number for row in rows}


def set_alias(
    ctx: Context,
    model: str,
    alias: str,
    number: int,
    *,
    reason: str = "",
    action: str = "model.alias",
    details: Mapping[str, Any] | None = None,
    expect: Mapping[str, int | None] | None = None,
) -> ModelVersion:
    """Point ``alias`` at version ``number`` of ``model``.

    Args:
        action, details: the audit event's action and extra details (a promotion
            records its gates, and whether it was forced).
        expect: alias -> the version it must still point at (None: unset) when the
            move commits; a promotion checked against a champion passes this, so a
            champion that moved meanwhile is never overwritten unchecked.

    Raises:
        NotFound: no such model or version.
        InputError: a bad alias name.
        Conflict: an alias in ``expect`` moved.
    """
    check_alias(alias)
    return _move(
        ctx,
        model,
        alias,
        number,
        reason,
        kind="set",
        action=action,
        details=details,
        expect=expect,
    )


def rollback(
    ctx: Context, model: str, alias: str = "champion", *, reason: str = ""
) -> ModelVersion:
    """Move ``alias`` back to the version it pointed at before its current one.

    Repeated rollbacks keep walking back through the versions the alias was set to.

    Raises:
        Conflict: the alias is not set, or was never anywhere else.
    """
    check_alias(alias)
    with ctx.read() as conn:
        current = aliases(conn, model).get(alias)
        if current is None:
            raise Conflict(f"{model} has no alias {alias!r}", hint="`loopml model show` lists them")
        moves = conn.execute(
            sa.select(alias_moves)
            .where(alias_moves.c.model == model, alias_moves.c.alias == alias)
            .order_by(alias_moves.c.id.desc())
        ).all()
    # The move that set the current version, skipping the rollbacks that led here.
    depth = 0
    target = None
    for move in moves:
        if move.kind == "rollback":
            depth += 1
            continue
        if depth:
            depth -= 1
            continue
        target = move.previous
        break
    if target is None:
        raise Conflict(
            f"{model}@{alias} has no earlier version to roll back to",
            hint="set it to a version with `loopml promote`",
        )
    return _move(ctx, model, alias, target, reason or "rollback", kind="rollback")


def _move(
    ctx: Context,
    model: str,
    alias: str,
    number: int,
    reason: str,
    *,
    kind: str,
    action: str | None = None,
    details: Mapping[str, Any] | None = None,
    expect: Mapping[str, int | None] | None = None,
) -> ModelVersion:
    now = datetime.now(UTC)
    with ctx.write() as conn:
        version = resolve(conn, f"{model}@{number}")
        # Moves of one model's aliases queue on its row (PostgreSQL; SQLite already
        # runs one writer at a time), so ``expect`` reads what the move replaces.
        conn.execute(sa.select(models.c.name).where(models.c.name == model).with_for_update())
        current = aliases(conn, model)
        moved = {a: n for a, n in (expect or {}).items() if current.get(a) != n}
        if moved:
            names = ", ".join(f"{model}@{a}" for a in moved)
            raise Conflict(
                f"{names} moved while {model}@{number} was being checked",
                hint="check and promote again against where it points now",
            )
        previous = current.get(alias)
        conn.execute(
            model_aliases.delete().where(
                model_aliases.c.model == model, model_aliases.c.alias == alias
            )
        )
        conn.execute(
            model_aliases.insert().values(
                model=model, alias=alias, number=number, updated_at=now, updated_by=ctx.actor
            )
        )
        conn.execute(
            alias_moves.insert().values(
                model=model,
                alias=alias,
                number=number,
                previous=previous,
                kind=kind,
                actor=ctx.actor,
                reason=reason,
                time=now,
            )
        )
        lineage.record(conn, [f"model:{version.ref}"], f"alias:{model}@{alias}", kind)
        ctx.audit(
            conn,
            action or ("model.alias" if kind == "set" else "model.rollback"),
            f"alias:{model}@{alias}",
            details={"number": number, "previous": previous, "reason": reason, **(details or {})},
        )
        return version


def set_status(ctx: Context, model: str, number: int, status: str, *, reason: str) -> ModelVersion:
    """Record a decision on a version: approved, rejected, archived (or back to candidate).

    Raises:
        InputError: an unknown status, or no reason for an approval or rejection.
        NotFound: no such model or version.
    """
    if status not in STATUSES:
        raise InputError(f"unknown status {status!r}", hint=f"use one of {', '.join(STATUSES)}")
    if status in {"approved", "rejected"} and not reason.strip():
        raise InputError(f"a version is {status} for a reason", hint="pass --reason TEXT")
    with ctx.write() as conn:
        version = resolve(conn, f"{model}@{number}")
        conn.execute(
            model_versions.update()
            .where(model_versions.c.model == model, model_versions.c.number == number)
            .values(status=status)
        )
        conn.execute(
            model_decisions.insert().values(
                model=model,
                number=number,
                status=status,
                actor=ctx.actor,
                reason=reason,
                time=datetime.now(UTC),
            )
        )
        ctx.audit(
            conn,
            "model.status",
            f"model:{version.ref}",
            details={"from": version.status, "to": status, "reason": reason},
        )
        return resolve(conn, version.ref)


def decisions(conn: Connection, model: str, number: int) -> list[dict[str, object]]:
    """Every decision on a version, oldest first: status, who, why, when."""
    rows = conn.execute(
        sa.select(model_decisions)
        .where(model_decisions.c.model == model, model_decisions.c.number == number)
        .order_by(model_decisions.c.id)
    ).all()
    return [
        {"status": r.status, "actor": r.actor, "reason": r.reason, "time": r.time} for r in rows
    ]
