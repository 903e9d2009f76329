"""Dataset versions in the metadata store: commit, look up by reference, list and compare.

A reference is ``NAME`` (the latest version), ``NAME@3`` (a number), ``NAME@latest`` or
``NAME@<hash prefix>`` (at least 4 hex characters of the content id).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.context import Context
from loopml.errors import InputError, NotFound
from loopml.governance import lineage
from loopml.records import Column, Dataset, DatasetVersion, StoredObject
from loopml.store import objects as store_objects
from loopml.store.refs import find_version
from loopml.store.tables import dataset_versions, datasets

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def check_name(name: str, what: str = "dataset") -> str:
    """Validate a name: letters, digits, ``_ - .``, starting with a letter or digit."""
    if not name or len(name) > 200 or not set(name) <= _NAME_CHARS or not name[0].isalnum():
        raise InputError(
            f"invalid {what} name {name!r}",
            hint="use letters, digits, '_', '-' and '.', starting with a letter or digit",
        )
    return name


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split ``NAME[@VERSION]`` into the name and the version part (None for latest)."""
    name, sep, version = ref.partition("@")
    check_name(name)
    if sep and not version:
        raise InputError(f"{ref!r}: nothing after '@'", hint="use NAME, NAME@3 or NAME@<hash>")
    return name, (version or None) if version != "latest" else None


def content_id(schema: Sequence[Column], files: Sequence[StoredObject]) -> str:
    """The version id: a hash of the schema and the data files' hashes, in order."""
    body = orjson.dumps(
        {
            "schema": [[c.name, c.type, c.nullable] for c in schema],
            "files": [f.sha256 for f in files],
        }
    )
    return hashlib.sha256(body).hexdigest()


def _object(data: dict[str, Any] | None) -> StoredObject | None:
    return StoredObject(**data) if data else None


def _from_row(row: Any) -> DatasetVersion:
    return DatasetVersion(
        dataset=row.dataset,
        number=row.number,
        id=row.id,
        schema=tuple(Column(**c) for c in row.schema),
        row_count=row.row_count,
        files=tuple(StoredObject(**f) for f in row.files),
        source=row.source,
        owner=row.owner,
        created_at=row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC),
        rows_read=row.rows_read,
        rows_quarantined=row.rows_quarantined,
        quarantine=_object(row.quarantine),
        quarantine_reasons=row.quarantine_reasons,
        profile=row.profile,
        schema_changes=row.schema_changes,
        pii=row.pii,
        pii_warnings=tuple(row.pii_warnings),
        tier=row.tier,
        meta=row.meta,
    )


def _as_dict(obj: StoredObject) -> dict[str, Any]:
    return {"sha256": obj.sha256, "size": obj.size, "rows": obj.rows}


def latest(conn: Connection, name: str) -> DatasetVersion | None:
    """The newest version of ``name``, or None."""
    row = conn.execute(
        sa.select(dataset_versions)
        .where(dataset_versions.c.dataset == name)
        .order_by(dataset_versions.c.number.desc())
        .limit(1)
    ).first()
    return _from_row(row) if row else None


def resolve(conn: Connection, ref: str) -> DatasetVersion:
    """Look up the version a reference names.

    Raises:
        NotFound: no such dataset or version.
        InputError: the reference is malformed or a hash prefix is ambiguous.
    """
    name, version = parse_ref(ref)
    row = find_version(conn, dataset_versions, datasets, "dataset", name, version, what="dataset")
    return _from_row(row)


def list_datasets(conn: Connection) -> list[tuple[Dataset, DatasetVersion | None, int]]:
    """Every dataset with its latest version and its number of versions."""
    result = []
    for row in conn.execute(sa.select(datasets).order_by(datasets.c.name)):
        count = conn.execute(
            sa.select(sa.func.count()).where(dataset_versions.c.dataset == row.name)
        ).scalar_one()
        result.append(
            (
                Dataset(row.name, row.owner, row.created_at, row.description),
                latest(conn, row.name),
                count,
            )
        )
    return result


def list_versions(conn: Connection, name: str) -> list[DatasetVersion]:
    """Every version of ``name``, newest first."""
    rows = conn.execute(
        sa.select(dataset_versions)
        .where(dataset_versions.c.dataset == check_name(name))
        .order_by(dataset_versions.c.number.desc())
    ).all()
    if (
        not rows
        and not conn.execute(sa.select(datasets.c.name).where(datasets.c.name == name)).first()
    ):
        raise NotFound(f"dataset {name!r} does not exist", hint="`loopml data ls` lists datasets")
    return [_from_row(row) for row in rows]


def all_versions(conn: Connection) -> list[DatasetVersion]:
    """Every committed version of every dataset."""
    return [
        _from_row(row)
        for row in conn.execute(
            sa.select(dataset_versions).order_by(
                dataset_versions.c.dataset, dataset_versions.c.number
            )
        )
    ]


def schema_changes(previous: Sequence[Column] | None, current: Sequence[Column]) -> dict[str, Any]:
    """Columns added, removed or retyped against the previous version's schema."""
    if previous is None:
        return {}
    before = {c.name: c.type for c in previous}
    after = {c.name: c.type for c in current}
    changes: dict[str, Any] = {}
    if added := [n for n in after if n not in before]:
        changes["added"] = added
    if removed := [n for n in before if n not in after]:
        changes["removed"] = removed
    if retyped := {
        n: [before[n], after[n]] for n in after if n in before and before[n] != after[n]
    }:
        changes["retyped"] = retyped
    return changes


def commit(
    ctx: Context,
    *,
    dataset: str,
    schema: Sequence[Column],
    files: Sequence[StoredObject],
    source: str,
    rows_read: int,
    quarantine: StoredObject | None = None,
    quarantine_reasons: dict[str, int] | None = None,
    profile: dict[str, Any] | None = None,
    pii: dict[str, str] | None = None,
    pii_warnings: Sequence[str] = (),
    meta: dict[str, Any] | None = None,
    action: str = "dataset.ingest",
    inputs: Sequence[str] = (),
    activity: str | None = None,
) -> DatasetVersion:
    """Insert a new version whose objects are already in the artifact store.

    This is the commit protocol's last step: in one metadata transaction it checks the
    objects are present, numbers the version, records the objects, its lineage (from
    ``inputs``, asset names such as ``dataset:tx@3``, through ``activity``) and the
    audit event. Until that transaction commits, the version does not exist.

    Raises:
        StoreError: an object is missing from the artifact store.
    """
    stored = [*files, *([quarantine] if quarantine else [])]
    store_objects.check_present(ctx.artifacts, stored)
    now = datetime.now(UTC)
    version_id = content_id(schema, files)
    with ctx.write() as conn:
        if not conn.execute(sa.select(datasets.c.name).where(datasets.c.name == dataset)).first():
            conn.execute(
                datasets.insert().values(
                    name=dataset, owner=ctx.asset_owner, created_at=now, description=""
                )
            )
        previous = latest(conn, dataset)
        number = previous.number + 1 if previous else 1
        changes = schema_changes(previous.schema if previous else None, schema)
        store_objects.record(conn, stored)
        row_count = sum(f.rows or 0 for f in files)
        conn.execute(
            dataset_versions.insert().values(
                dataset=dataset,
                number=number,
                id=version_id,
                schema=[{"name": c.name, "type": c.type, "nullable": c.nullable} for c in schema],
                row_count=row_count,
                files=[_as_dict(f) for f in files],
                source=source,
                owner=ctx.asset_owner,
                created_at=now,
                rows_read=rows_read,
                rows_quarantined=rows_read - row_count,
                quarantine=_as_dict(quarantine) if quarantine else None,
                quarantine_reasons=dict(quarantine_reasons or {}),
                profile=profile or {},
                schema_changes=changes,
                pii=dict(pii or {}),
                pii_warnings=list(pii_warnings),
                tier="hot",
                meta=meta or {},
            )
        )
        target = f"dataset:{dataset}@{number}"
        lineage.record(conn, inputs, target, activity or action)
        ctx.audit(
            conn,
            action,
            target,
            details={
                "id": version_id,
                "rows": row_count,
                "rows_read": rows_read,
                "rows_quarantined": rows_read - row_count,
                "source": source,
            },
        )
        return resolve(conn, f"{dataset}@{number}")


def recommit(ctx: Context, version: DatasetVersion, activity: str = "reuse") -> DatasetVersion:
    """Make ``version``'s content the newest version of its dataset again.

    The files are shared (content-addressed), so this costs one metadata row; the new
    version has the same id, and lineage to the one it repeats.
    """
    return commit(
        ctx,
        dataset=version.dataset,
        schema=version.schema,
        files=version.files,
        source=version.source,
        rows_read=version.rows_read,
        quarantine=version.quarantine,
        quarantine_reasons=dict(version.quarantine_reasons),
        profile=dict(version.profile),
        pii=dict(version.pii),
        pii_warnings=version.pii_warnings,
        meta=dict(version.meta),
        action="dataset.reuse",
        inputs=[f"dataset:{version.ref}"],
        activity=activity,
    )
