"""The live-object index: which content-addressed objects committed records refer to.

Every record kind that commits objects (dataset versions, model versions, run
artifacts) goes through here, so ``fsck`` and ``gc`` know what is live without
walking every record kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.errors import StoreError
from loopml.records import StoredObject
from loopml.store.artifacts import ArtifactStore
from loopml.store.tables import objects


def check_present(artifacts: ArtifactStore, stored: Iterable[StoredObject]) -> None:
    """Fail unless every object is in the artifact store (the commit protocol's verify).

    Raises:
        StoreError: an object is missing.
    """
    for obj in stored:
        if not artifacts.exists(obj.sha256):
            raise StoreError(
                f"object {obj.sha256[:12]} vanished before commit",
                hint="was `loopml gc` run with --older-than 0 during a commit?",
            )


def record(conn: Connection, stored: Iterable[StoredObject]) -> None:
    """Add the objects not yet indexed (inside the committing transaction)."""
    unique = {obj.sha256: obj for obj in stored}
    if not unique:
        return
    known = set(
        conn.execute(
            sa.select(objects.c.sha256).where(objects.c.sha256.in_(list(unique)))
        ).scalars()
    )
    now = datetime.now(UTC)
    rows = [
        {"sha256": obj.sha256, "size": obj.size, "created_at": now}
        for sha, obj in unique.items()
        if sha not in known
    ]
    if rows:
        conn.execute(objects.insert(), rows)
