"""Lineage: which inputs and activities made each asset, and what each asset fed.

Assets are named by kind and reference: ``dataset:transactions@3``. Edges are written
in the same transaction as the asset they produce, so lineage is never ahead of or
behind the assets it describes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.store.tables import lineage_edges


@dataclass(frozen=True)
class LineageEdge:
    """``source`` was used by ``activity`` to make ``target``."""

    source: str
    target: str
    activity: str
    created_at: datetime


def record(conn: Connection, sources: Iterable[str], target: str, activity: str) -> None:
    """Record that ``activity`` made ``target`` from ``sources`` (inside a write transaction)."""
    now = datetime.now(UTC)
    rows = [
        {"source": source, "target": target, "activity": activity, "created_at": now}
        for source in dict.fromkeys(sources)
    ]
    if rows:
        conn.execute(lineage_edges.insert(), rows)


def walk(
    conn: Connection, asset: str, direction: Literal["upstream", "downstream"], depth: int = 50
) -> list[LineageEdge]:
    """Every edge reachable from ``asset``, breadth first, towards its inputs or its uses."""
    near, far = (
        (lineage_edges.c.target, "source")
        if direction == "upstream"
        else (lineage_edges.c.source, "target")
    )
    seen: set[str] = {asset}
    frontier = [asset]
    edges: list[LineageEdge] = []
    for _ in range(depth):
        if not frontier:
            break
        rows = conn.execute(
            sa.select(lineage_edges).where(near.in_(frontier)).order_by(lineage_edges.c.id)
        ).all()
        frontier = []
        for row in rows:
            edges.append(LineageEdge(row.source, row.target, row.activity, row.created_at))
            nxt = getattr(row, far)
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return edges
