"""fsck and gc: check every committed object, and remove what no commit refers to."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from loopml.errors import IntegrityError, NotFound
from loopml.store.artifacts import ArtifactStore
from loopml.store.metadata import MetadataStore
from loopml.store.tables import objects


@dataclass(frozen=True)
class FsckReport:
    """``ok`` when every committed object is present and matches its hash."""

    ok: bool
    checked: int
    problems: tuple[str, ...]
    orphans: int
    staging: int


@dataclass(frozen=True)
class GcReport:
    """What ``gc`` removed."""

    staging_removed: int
    objects_removed: int
    bytes_freed: int


def fsck(metadata: MetadataStore, artifacts: ArtifactStore) -> FsckReport:
    """Verify every committed object's presence and sha256; count orphans and staging."""
    with metadata.read() as conn:
        committed = {row.sha256: row.size for row in conn.execute(sa.select(objects))}
    problems = []
    for sha256 in sorted(committed):
        try:
            artifacts.verify(sha256)
        except (NotFound, IntegrityError) as exc:
            problems.append(exc.message)
    orphans = sum(1 for sha256, _ in artifacts.iter_objects() if sha256 not in committed)
    return FsckReport(
        ok=not problems,
        checked=len(committed),
        problems=tuple(problems),
        orphans=orphans,
        staging=len(artifacts.staging_entries()),
    )


def gc(metadata: MetadataStore, artifacts: ArtifactStore, older_than: float = 3600.0) -> GcReport:
    """Remove staging entries and uncommitted objects older than ``older_than`` seconds.

    The age guard keeps what a running ingest has staged or stored but not yet committed.
    """
    staging_removed = 0
    for name, age in artifacts.staging_entries():
        if age >= older_than:
            artifacts.remove_staging(name)
            staging_removed += 1
    with metadata.read() as conn:
        committed = set(conn.execute(sa.select(objects.c.sha256)).scalars())
    removed = freed = 0
    for sha256, age in list(artifacts.iter_objects()):
        if sha256 not in committed and age >= older_than:
            freed += artifacts.size(sha256)
            artifacts.delete(sha256)
            removed += 1
    return GcReport(staging_removed, removed, freed)
