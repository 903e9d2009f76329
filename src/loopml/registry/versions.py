"""Model versions in the metadata store: register, look up by reference, list, load.

A reference is ``NAME`` (the latest version), ``NAME@3``, ``NAME@latest``, ``NAME@ALIAS``
(``champion``; see ``loopml.registry.aliases``) or ``NAME@<hash prefix>`` (at least 4 hex
characters of the content id).

Registering follows the commit protocol: the artifacts are content-addressed objects
already in the store; one metadata transaction checks they are there, numbers the
version, indexes the objects and writes its lineage and audit event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.context import Context
from loopml.data.versions import check_name
from loopml.errors import InputError, IntegrityError, NotFound
from loopml.governance import lineage
from loopml.records import Model, ModelVersion, StoredObject
from loopml.registry import formats, torch_mlp
from loopml.registry.predictor import TASKS, Predictor
from loopml.store import objects as store_objects
from loopml.store.refs import find_version
from loopml.store.tables import model_aliases, model_versions, models


@dataclass(frozen=True)
class Artifact:
    """One file of a model version: a stored object and its format."""

    role: str
    object: StoredObject
    format: str

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.object.sha256, "size": self.object.size, "format": self.format}


def store_artifact(ctx: Context, role: str, obj: Any, fmt: str) -> Artifact:
    """Serialise ``obj`` in ``fmt`` into the artifact store (not yet committed)."""
    return Artifact(role, ctx.artifacts.put_bytes(formats.dump(obj, fmt)), fmt)


def content_id(artifacts: Sequence[Artifact]) -> str:
    """The version id: a hash of the artifacts' roles, formats and hashes."""
    body = orjson.dumps(sorted([a.role, a.format, a.object.sha256] for a in artifacts))
    return hashlib.sha256(body).hexdigest()


def register(
    ctx: Context,
    model: str,
    *,
    flavor: str,
    task: str,
    run_id: str,
    artifacts: Sequence[Artifact],
    signature: Mapping[str, Any],
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    inputs: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
) -> ModelVersion:
    """Commit the next version of ``model`` (created on first use).

    Raises:
        InputError: a bad name or task, or the model exists for another task.
        StoreError: an artifact vanished before the commit.
    """
    check_name(model, "model")
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}", hint=f"use one of {', '.join(TASKS)}")
    store_objects.check_present(ctx.artifacts, [a.object for a in artifacts])
    now = datetime.now(UTC)
    version_id = content_id(artifacts)
    with ctx.write() as conn:
        existing = conn.execute(sa.select(models).where(models.c.name == model)).first()
        if existing is None:
            conn.execute(
                models.insert().values(
                    name=model, owner=ctx.asset_owner, created_at=now, task=task, description=""
                )
            )
        elif existing.task != task:
            raise InputError(
                f"model {model!r} is a {existing.task} model; this training is {task}",
                hint="train it under another name, or pass the task it was trained for",
            )
        number = (
            conn.execute(
                sa.select(sa.func.max(model_versions.c.number)).where(
                    model_versions.c.model == model
                )
            ).scalar()
            or 0
        ) + 1
        store_objects.record(conn, [a.object for a in artifacts])
        conn.execute(
            model_versions.insert().values(
                model=model,
                number=number,
                id=version_id,
                flavor=flavor,
                task=task,
                run_id=run_id,
                owner=ctx.asset_owner,
                created_at=now,
                artifacts={a.role: a.to_dict() for a in artifacts},
                signature=dict(signature),
                metrics=dict(metrics),
                params=dict(params),
                inputs=[dict(i) for i in inputs],
                status="candidate",
                meta=dict(meta),
            )
        )
        target = f"model:{model}@{number}"
        sources = [f"dataset:{i['dataset']}" for i in inputs if "dataset" in i]
        lineage.record(conn, [*sources, f"run:{run_id}"], target, f"train:{run_id}")
        ctx.audit(
            conn,
            "model.register",
            target,
            details={"id": version_id, "flavor": flavor, "task": task, "run_id": run_id},
        )
        return resolve(conn, f"{model}@{number}")


def _from_row(row: Any) -> ModelVersion:
    return ModelVersion(
        model=row.model,
        number=row.number,
        id=row.id,
        flavor=row.flavor,
        task=row.task,
        run_id=row.run_id,
        owner=row.owner,
        created_at=row.created_at,
        artifacts=row.artifacts,
        signature=row.signature,
        metrics=row.metrics,
        params=row.params,
        inputs=tuple(row.inputs),
        status=row.status,
        meta=row.meta,
    )


def resolve(conn: Connection, ref: str) -> ModelVersion:
    """Look up the version a reference names (see ``loopml.store.refs``).

    Raises:
        NotFound: no such model or version.
        InputError: the reference is malformed or a hash prefix is ambiguous.
    """
    name, _, version = ref.partition("@")
    check_name(name, "model")
    if version and version != "latest" and not version.isdigit():
        # An alias wins over a hash prefix (alias names are never all hex digits).
        alias = conn.execute(
            sa.select(model_aliases.c.number).where(
                model_aliases.c.model == name, model_aliases.c.alias == version
            )
        ).scalar()
        if alias is not None:
            version = str(alias)
    row = find_version(
        conn,
        model_versions,
        models,
        "model",
        name,
        None if version in {"", "latest"} else version,
        what="model",
    )
    return _from_row(row)


def list_models(conn: Connection) -> list[tuple[Model, ModelVersion | None, int]]:
    """Every model with its latest version and its number of versions."""
    result = []
    for row in conn.execute(sa.select(models).order_by(models.c.name)).all():
        versions = list_versions(conn, row.name)
        model = Model(row.name, row.owner, row.created_at, row.task, row.description)
        result.append((model, versions[-1] if versions else None, len(versions)))
    return result


def list_versions(conn: Connection, name: str) -> list[ModelVersion]:
    """Every version of ``name``, oldest first."""
    rows = conn.execute(
        sa.select(model_versions)
        .where(model_versions.c.model == name)
        .order_by(model_versions.c.number)
    ).all()
    return [_from_row(row) for row in rows]


def read_artifact(ctx: Context, version: ModelVersion, role: str, trust: Sequence[str] = ()) -> Any:
    """Load one artifact of ``version``, verifying its bytes against their hash first.

    Raises:
        NotFound: the version has no such artifact, or its object is missing.
        IntegrityError: the object is tampered with or truncated.
    """
    entry = version.artifacts.get(role)
    if entry is None:
        raise NotFound(f"{version.ref} has no {role} artifact")
    name = f"{version.ref} {role} artifact ({entry['sha256'][:12]})"
    if not ctx.artifacts.exists(entry["sha256"]):
        raise NotFound(
            f"{name} is missing from {ctx.artifacts.url}", hint="restore it from a backup"
        )
    try:
        data = ctx.artifacts.read_bytes(entry["sha256"])
    except IntegrityError as exc:
        raise IntegrityError(
            f"{name} is corrupt: its bytes no longer match its hash; refusing to load it",
            hint="restore it from a backup, or retrain; `loopml fsck` lists every damaged object",
        ) from exc
    return formats.load(data, entry["format"], name, trust)


def load(ctx: Context, version: ModelVersion, trust: Sequence[str] = ()) -> Predictor:
    """Load ``version`` as a Predictor; every artifact is verified before it is parsed."""
    model = read_artifact(ctx, version, "model", trust)
    preprocess = (
        read_artifact(ctx, version, "preprocess", trust)
        if "preprocess" in version.artifacts
        else None
    )
    if version.flavor == "torch-mlp":
        model = torch_mlp.load_state(torch_mlp.build(version.meta["arch"]), model)
    return Predictor(version, model, preprocess)
