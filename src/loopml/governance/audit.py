"""The audit chain: every mutating action appends an event whose hash covers the previous one.

An event is appended inside the same transaction as the change it records, so the
change and its audit event commit together or not at all. ``verify()`` recomputes
every hash and names the first event that was edited, deleted or inserted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.records import AuditEvent
from loopml.store.tables import audit_events, audit_head

GENESIS = "0" * 64


def _event_hash(
    seq: int,
    time: datetime,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    body = orjson.dumps(
        [seq, _stamp(time), actor, action, target, outcome, details, prev_hash],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(body).hexdigest()


def event_digest(event: AuditEvent) -> str:
    """The hash an event should carry, recomputed from its fields and its link."""
    return _event_hash(
        event.seq,
        event.time,
        event.actor,
        event.action,
        event.target,
        event.outcome,
        event.details,
        event.prev_hash,
    )


def _stamp(time: datetime) -> str:
    # Databases differ in how they hand timezones back; hash one canonical form.
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str,
    outcome: str = "ok",
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event inside the caller's write transaction and return it."""
    head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash)).first()
    seq, prev_hash = (head.seq + 1, head.hash) if head else (1, GENESIS)
    time = datetime.now(UTC)
    details = dict(details or {})
    digest = _event_hash(seq, time, actor, action, target, outcome, details, prev_hash)
    conn.execute(
        audit_events.insert().values(
            seq=seq,
            time=time,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            details=details,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    if head:
        conn.execute(audit_head.update().values(seq=seq, hash=digest))
    else:
        conn.execute(audit_head.insert().values(id=1, seq=seq, hash=digest))
    return AuditEvent(seq, time, actor, action, target, outcome, details, prev_hash, digest)


def _row_event(row: Any) -> AuditEvent:
    return AuditEvent(
        seq=row.seq,
        time=row.time,
        actor=row.actor,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        details=row.details,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def events(
    conn: Connection,
    *,
    limit: int | None = None,
    action: str | None = None,
    target: str | None = None,
) -> list[AuditEvent]:
    """The newest events first, optionally filtered by action or target prefix."""
    query = sa.select(audit_events).order_by(audit_events.c.seq.desc())
    if action:
        query = query.where(audit_events.c.action == action)
    if target:
        query = query.where(audit_events.c.target.startswith(target, autoescape=True))
    if limit:
        query = query.limit(limit)
    return [_row_event(row) for row in conn.execute(query)]


def _all_events(conn: Connection) -> Iterator[AuditEvent]:
    result = conn.execution_options(yield_per=5000).execute(
        sa.select(audit_events).order_by(audit_events.c.seq)
    )
    for row in result:
        yield _row_event(row)


@dataclass(frozen=True)
class ChainReport:
    """The outcome of ``verify()``: ``ok``, how many events were checked, and the problems."""

    ok: bool
    checked: int
    problems: tuple[str, ...]


def verify(conn: Connection) -> ChainReport:
    """Recompute the chain and report every event that was edited, removed or inserted."""
    problems: list[str] = []
    expected_seq, prev_hash, checked = 1, GENESIS, 0
    for event in _all_events(conn):
        checked += 1
        if event.seq != expected_seq:
            problems.append(
                f"events {expected_seq}..{event.seq - 1} are missing (deleted before event "
                f"{event.seq})"
                if event.seq > expected_seq
                else f"event {event.seq} is out of sequence"
            )
        if event.prev_hash != prev_hash:
            problems.append(
                f"event {event.seq} ({event.action} {event.target}) does not "
                "link to the event before it"
            )
        if event_digest(event) != event.hash:
            problems.append(
                f"event {event.seq} ({event.action} {event.target}) was edited: "
                "its hash does not match its contents"
            )
        expected_seq, prev_hash = event.seq + 1, event.hash
    head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash)).first()
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash):
        problems.append(
            f"the chain ends at event {expected_seq - 1} but the recorded head is event "
            f"{head.seq}: the newest events were deleted or replaced"
        )
    elif head is None and checked:
        problems.append("the chain's recorded head is missing")
    return ChainReport(ok=not problems, checked=checked, problems=tuple(problems))
