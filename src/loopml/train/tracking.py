"""Run tracking: params, step metrics, tags, inputs, artifacts, environment, resources, cost.

Metric logging is buffered: ``log_metric`` appends to memory and a batch is written in
one transaction when it holds ``flush_every`` values or ``flush_seconds`` have passed,
and when the run ends. Whatever was flushed survives a crash of the process; a run
that never ended stays ``running``.

Example:
    >>> with ws.runs.start("churn", params={"alpha": 0.1}) as run:
    ...     for epoch in range(10):
    ...         run.log_metric("loss", 1 / (epoch + 1))
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.context import Context
from loopml.errors import InputError, NotFound
from loopml.records import Run
from loopml.store import objects as store_objects
from loopml.store.tables import run_metrics, runs
from loopml.train.environment import code_version, environment
from loopml.train.resources import ResourceMeter, cost, price_table

KINDS = ("train", "trial", "custom")
STATUSES = ("running", "finished", "failed", "pruned")
_MAX_KEY = 250


class ActiveRun:
    """A run in progress. End it with ``end()`` or use it as a context manager.

    Attributes:
        id: the run's id.
        experiment: what it works on (a model's name for trainings).
    """

    def __init__(
        self,
        ctx: Context,
        run_id: str,
        experiment: str,
        *,
        flush_every: int = 1000,
        flush_seconds: float = 1.0,
    ) -> None:
        self.ctx = ctx
        self.id = run_id
        self.experiment = experiment
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.meter = ResourceMeter()
        self.params: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.inputs: list[dict[str, Any]] = []
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.latest: dict[str, float | None] = {}
        self._steps: dict[str, int] = {}
        self._buffer: list[tuple[str, int, float | None, float]] = []
        self._dirty = False
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.status = "running"
        # Flushes what waits longer than flush_seconds even when nothing else is logged
        # (a long epoch after a value), so a crash then loses at most that much.
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._flush_on_time, daemon=True)
        self._timer.start()

    def _flush_on_time(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            if self._buffer:
                try:
                    self.flush()
                except Exception:  # the next log_metric or end() reports a store problem
                    continue

    # ------------------------------------------------------------------ logging

    def log_param(self, key: str, value: Any) -> None:
        """Record one parameter (written with the next flush)."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record parameters; they must be JSON-ready (numbers, strings, lists, dicts)."""
        for key in params:
            _check_key(key)
        self.params.update(_json_ready(params))
        self._dirty = True

    def set_tag(self, key: str, value: Any) -> None:
        """Label the run (``key`` -> ``str(value)``)."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Label the run with several tags."""
        for key in tags:
            _check_key(key)
        self.tags.update({key: str(value) for key, value in tags.items()})
        self._dirty = True

    def add_input(self, dataset: str, **details: Any) -> None:
        """Record a dataset version the run read (``tx@3``) and how (its split, rows)."""
        self.inputs.append({"dataset": dataset, **_json_ready(details)})
        self._dirty = True

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Buffer one metric value; ``step`` defaults to the key's next step (0, 1, 2...).

        Raises:
            InputError: the key is empty or too long, or the value is not a number.
        """
        if key not in self._steps:
            _check_key(key)
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"metric {key!r}: {value!r} is not a number") from exc
        if step is None:
            step = self._steps.get(key, 0)
        self._steps[key] = step + 1
        stored = None if math.isnan(number) else number
        with self._lock:
            self._buffer.append((key, step, stored, time.time()))
            self.latest[key] = stored
        if (
            len(self._buffer) >= self.flush_every
            or time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Buffer several metric values at one step."""
        for key, value in metrics.items():
            self.log_metric(key, value, step)

    def log_artifact(self, role: str, data: bytes | str | Path, fmt: str = "file") -> None:
        """Store a file or bytes as one of the run's artifacts (content-addressed)."""
        _check_key(role)
        stored = (
            self.ctx.artifacts.put_bytes(data)
            if isinstance(data, bytes)
            else self.ctx.artifacts.put_bytes(Path(data).read_bytes())
        )
        with self.ctx.write() as conn:
            store_objects.record(conn, [stored])
        self.artifacts[role] = {"sha256": stored.sha256, "size": stored.size, "format": fmt}
        self._dirty = True
        self.flush()

    # ------------------------------------------------------------------ writing

    def flush(self) -> None:
        """Write the buffered metric values and any changed params, tags and inputs."""
        # One writer at a time, so a newer snapshot of the latest values is never
        # overwritten by an older one; logging waits only for the buffer swap.
        with self._write_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
                self._last_flush = time.monotonic()
                dirty, self._dirty = self._dirty, False
                latest = dict(self.latest)
            if not batch and not dirty:
                return
            values: dict[str, Any] = {"metrics": latest}
            if dirty:
                values.update(
                    params=self.params,
                    tags=self.tags,
                    inputs=self.inputs,
                    artifacts=self.artifacts,
                )
            with self.ctx.write() as conn:
                if batch:
                    conn.execute(
                        run_metrics.insert(),
                        [
                            {"run_id": self.id, "key": k, "step": s, "value": v, "time": t}
                            for k, s, v, t in batch
                        ],
                    )
                conn.execute(runs.update().where(runs.c.id == self.id).values(**values))

    def end(self, status: str = "finished", error: str | None = None) -> Run:
        """Flush, record the resources used and their cost, and close the run."""
        if status not in STATUSES[1:]:
            raise InputError(f"unknown run status {status!r}", hint="finished, failed or pruned")
        self._stop.set()
        self._dirty = True
        self.flush()
        usage = self.meter.usage()
        prices = price_table(self.ctx.settings.extra)
        with self.ctx.write() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.id == self.id)
                .values(
                    status=status,
                    ended_at=datetime.now(UTC),
                    resources=usage,
                    cost=cost(usage, prices),
                    error=error,
                )
            )
            self.ctx.audit(
                conn,
                "run.end",
                f"run:{self.id}",
                outcome="ok" if status != "failed" else "failed",
                details={"status": status, "experiment": self.experiment},
            )
            self.status = status
            return get(conn, self.id)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.status != "running":
            return
        if exc is None:
            self.end("finished")
        else:
            self.end("failed", error=f"{type(exc).__name__}: {exc}")


def start(
    ctx: Context,
    experiment: str,
    *,
    kind: str = "custom",
    parent_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    code_folder: str | Path | None = None,
    packages: Sequence[str] = (),
    flush_every: int = 1000,
    flush_seconds: float = 1.0,
) -> ActiveRun:
    """Start a run and record its environment and code version.

    Args:
        ctx: the workspace context.
        experiment: what the run works on (a model's name for trainings).
        kind: ``train``, ``trial`` or ``custom``.
        parent_id: the run this one belongs to (a search's trials).
        params: parameters known at the start.
        tags: labels.
        code_folder: the project folder whose git sha is recorded (default: the cwd).
        packages: extra packages whose versions matter (a flavor's library).
        flush_every: metric values buffered before a write.
        flush_seconds: the longest a logged value waits for a write.

    Raises:
        InputError: an unknown kind or a bad key.
    """
    if kind not in KINDS:
        raise InputError(f"unknown run kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    if not experiment or len(experiment) > 200:
        raise InputError("a run needs an experiment name of 1 to 200 characters")
    # A bad price table fails here, before anything runs, not when the run ends.
    price_table(ctx.settings.extra)
    run_id = uuid.uuid4().hex
    run = ActiveRun(ctx, run_id, experiment, flush_every=flush_every, flush_seconds=flush_seconds)
    run.log_params(params or {})
    run.set_tags(tags or {})
    run._dirty = False
    with ctx.write() as conn:
        _insert_run(
            conn,
            ctx,
            id=run_id,
            experiment=experiment,
            kind=kind,
            status="running",
            parent_id=parent_id,
            started_at=datetime.now(UTC),
            params=run.params,
            tags=run.tags,
            environment=environment(tuple(packages)),
            code=code_version(code_folder),
        )
        ctx.audit(
            conn,
            "run.start",
            f"run:{run_id}",
            details={"experiment": experiment, "kind": kind, "parent_id": parent_id},
        )
    return run


def record_finished(
    ctx: Context,
    experiment: str,
    *,
    kind: str,
    parent_id: str | None,
    status: str,
    started_at: datetime,
    ended_at: datetime,
    params: Mapping[str, Any],
    metrics: Iterable[tuple[str, int, float | None, float]],
    resources: Mapping[str, float],
    tags: Mapping[str, str] | None = None,
    error: str | None = None,
    environment_record: Mapping[str, Any] | None = None,
    code: Mapping[str, Any] | None = None,
) -> str:
    """Record a run that already happened elsewhere (a trial in a worker) in one transaction."""
    run_id = uuid.uuid4().hex
    points = list(metrics)
    rows = [{"run_id": run_id, "key": k, "step": s, "value": v, "time": t} for k, s, v, t in points]
    latest: dict[str, float | None] = {}
    for key, _step, value, _time in sorted(points, key=lambda p: (p[1], p[3])):
        latest[key] = value
    usage = dict(resources)
    with ctx.write() as conn:
        _insert_run(
            conn,
            ctx,
            id=run_id,
            experiment=experiment,
            kind=kind,
            status=status,
            parent_id=parent_id,
            started_at=started_at,
            ended_at=ended_at,
            params=_json_ready(params),
            metrics=latest,
            tags=dict(tags or {}),
            environment=dict(environment_record or {}),
            code=dict(code or {}),
            resources=usage,
            cost=cost(usage, price_table(ctx.settings.extra)),
            error=error,
        )
        if rows:
            conn.execute(run_metrics.insert(), rows)
        ctx.audit(
            conn,
            "run.end",
            f"run:{run_id}",
            outcome="ok" if status != "failed" else "failed",
            details={"status": status, "experiment": experiment, "parent_id": parent_id},
        )
    return run_id


def _insert_run(conn: Connection, ctx: Context, **values: Any) -> None:
    """Insert a run row; what ``values`` leave out starts empty."""
    row: dict[str, Any] = {
        "owner": ctx.asset_owner,
        "ended_at": None,
        "params": {},
        "metrics": {},
        "tags": {},
        "inputs": [],
        "artifacts": {},
        "environment": {},
        "code": {},
        "resources": {},
        "cost": None,
        "error": None,
    }
    row.update(values)
    conn.execute(runs.insert().values(**row))


# ---------------------------------------------------------------------- reading


def _from_row(row: Any) -> Run:
    return Run(
        id=row.id,
        experiment=row.experiment,
        kind=row.kind,
        status=row.status,
        owner=row.owner,
        started_at=row.started_at,
        ended_at=row.ended_at,
        parent_id=row.parent_id,
        params=row.params,
        metrics={k: (math.nan if v is None else v) for k, v in row.metrics.items()},
        tags=row.tags,
        inputs=tuple(row.inputs),
        artifacts=row.artifacts,
        environment=row.environment,
        code=row.code,
        resources=row.resources,
        cost=row.cost,
        error=row.error,
    )


def get(conn: Connection, run_id: str) -> Run:
    """The run with id ``run_id`` (or a unique prefix of at least 6 characters).

    Raises:
        NotFound: no such run.
        InputError: the prefix matches several runs.
    """
    row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
    if row is None and 6 <= len(run_id) < 32 and run_id.isalnum():
        rows = conn.execute(sa.select(runs).where(runs.c.id.startswith(run_id)).limit(2)).all()
        if len(rows) > 1:
            raise InputError(f"run {run_id!r} matches several runs", hint="give more of the id")
        row = rows[0] if rows else None
    if row is None:
        raise NotFound(f"run {run_id!r} does not exist", hint="`loopml runs ls` lists runs")
    return _from_row(row)


def list_runs(
    conn: Connection,
    experiment: str | None = None,
    *,
    parent_id: str | None = None,
    include_trials: bool = False,
    limit: int = 100,
) -> list[Run]:
    """Runs, newest first: of one experiment, or one parent's trials."""
    query = sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)
    if experiment is not None:
        query = query.where(runs.c.experiment == experiment)
    if parent_id is not None:
        query = query.where(runs.c.parent_id == parent_id)
    elif not include_trials:
        query = query.where(runs.c.parent_id.is_(None))
    return [_from_row(row) for row in conn.execute(query).all()]


def metric_history(
    conn: Connection, run_id: str, key: str | None = None
) -> list[tuple[str, int, float, float]]:
    """Every logged value of a run (or of one key): (key, step, value, time), in order."""
    query = (
        sa.select(run_metrics.c.key, run_metrics.c.step, run_metrics.c.value, run_metrics.c.time)
        .where(run_metrics.c.run_id == run_id)
        .order_by(run_metrics.c.key, run_metrics.c.step, run_metrics.c.time)
    )
    if key is not None:
        query = query.where(run_metrics.c.key == key)
    return [
        (r.key, r.step, math.nan if r.value is None else r.value, r.time)
        for r in conn.execute(query).all()
    ]


def compare(found: Sequence[Run]) -> dict[str, Any]:
    """Side by side: each run's params and latest metrics, and which params differ."""
    keys = sorted({k for run in found for k in run.params})
    differing = [k for k in keys if len({repr(run.params.get(k)) for run in found}) > 1]
    metric_keys = sorted({k for run in found for k in run.metrics})
    return {
        "runs": [run.id for run in found],
        "params": {k: [run.params.get(k) for run in found] for k in keys},
        "differing_params": differing,
        "metrics": {k: [run.metrics.get(k) for run in found] for k in metric_keys},
    }


# ---------------------------------------------------------------------- checks


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY:
        raise InputError(f"bad key {key!r}", hint=f"use a non-empty string of <= {_MAX_KEY} chars")


def _json_ready(values: Mapping[str, Any]) -> dict[str, Any]:
    import orjson

    try:
        return dict(
            orjson.loads(
                orjson.dumps(
                    dict(values), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
                )
            )
        )
    except TypeError as exc:
        raise InputError(
            f"cannot record {values!r}: {exc}", hint="use numbers, strings, lists and dicts"
        ) from exc
