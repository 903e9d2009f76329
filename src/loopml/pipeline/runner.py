"""Running a pipeline: steps in dependency order, in parallel within the executor's
capacity, with retries, the step cache, and a record of every step so a crashed run
can resume where it stopped.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.context import Context
from loopml.data import versions
from loopml.errors import InputError, LoopMLError, NotFound, SpecError
from loopml.pipeline import steps as step_kinds
from loopml.pipeline.dag import Step, compile_spec
from loopml.pipeline.executors import Executor, Outcome, Task, open_executor
from loopml.pipeline.spec import Resources, Spec
from loopml.records import DatasetVersion
from loopml.registry import versions as model_versions
from loopml.store.tables import pipeline_runs, step_cache, step_runs

DONE = {"succeeded", "cached"}
EventFn = Callable[[str, "StepState"], None]


@dataclass
class StepState:
    """Where one step of a run stands."""

    step: Step
    status: str = "pending"
    attempts: int = 0
    cache_key: str | None = None
    cache_checked: bool = False
    output: str | None = None
    output_id: str | None = None
    error: str | None = None
    not_before: float = 0.0
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def name(self) -> str:
        return self.step.name


@dataclass
class RunResult:
    """A pipeline run and its steps."""

    id: str
    pipeline: str
    status: str
    executor: str
    steps: list[StepState] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``loopml run --json`` prints)."""
        return {
            "run_id": self.id,
            "pipeline": self.pipeline,
            "status": self.status,
            "executor": self.executor,
            "seconds": round(self.seconds, 3),
            "steps": [
                {
                    "step": s.name,
                    "kind": s.step.kind,
                    "status": s.status,
                    "cache_hit": s.status == "cached",
                    "attempts": s.attempts,
                    "output": s.output,
                    "id": s.output_id,
                    "error": s.error,
                }
                for s in self.steps
            ],
        }


def spec_hash(spec: Spec) -> str:
    """A hash of the spec's content."""
    body = orjson.dumps(spec.model_dump(by_alias=True, mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


class Runner:
    """Runs one pipeline run to its end; see ``run_pipeline``."""

    def __init__(
        self,
        ctx: Context,
        spec: Spec,
        root: Path,
        executor: Executor,
        run_id: str,
        hold_heavy: bool,
        on_event: EventFn | None,
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.root = root
        self.executor = executor
        self.run_id = run_id
        self.hold_heavy = hold_heavy
        self.on_event = on_event
        self.states = {step.name: StepState(step) for step in compile_spec(spec)}
        self._check_resources()
        self._check_external_inputs()

    def _check_external_inputs(self) -> None:
        """Datasets a step reads that no step makes must exist before anything runs."""
        with self.ctx.read() as conn:
            for state in self.states.values():
                for name in state.step.reads:
                    if name in self.states:
                        continue
                    try:
                        versions.resolve(conn, name)
                    except NotFound as exc:
                        raise SpecError(
                            f"step {state.name} reads {name}, which no step makes and the "
                            "workspace does not have",
                            hint=f"add {name} to sources or features, or ingest it first",
                        ) from exc

    def _check_resources(self) -> None:
        capacity = self.executor.capacity()
        for state in self.states.values():
            need = state.step.options.resources
            for kind in ("cpus", "memory", "gpus"):
                wanted, have = getattr(need, kind), getattr(capacity, kind)
                if wanted > have and (kind != "memory" or have):
                    raise SpecError(
                        f"step {state.name} needs {wanted:g} {kind}, but the {self.executor.name} "
                        f"executor has {have:g}",
                        hint="lower the step's resources, or use a bigger executor",
                    )

    def run(self) -> str:
        """Run every step that is not done; return the run's final status."""
        capacity = self.executor.capacity()
        free = {"cpus": capacity.cpus, "memory": capacity.memory, "gpus": capacity.gpus}
        running: dict[concurrent.futures.Future[Outcome], StepState] = {}
        try:
            self._loop(capacity, free, running)
        except BaseException:
            # Steps already running finish (threads cannot be stopped); record what they
            # made, so a resumed run does not make it again.
            for future in concurrent.futures.as_completed(running):
                self._finish(running[future], future)
            raise
        return self._conclude()

    def _loop(
        self,
        capacity: Resources,
        free: dict[str, float],
        running: dict[concurrent.futures.Future[Outcome], StepState],
    ) -> None:
        while True:
            now = time.monotonic()
            for state in self._ready(now):
                if self.hold_heavy and state.step.options.heavy:
                    self._set(state, "held", error="held until the off-peak window")
                    continue
                if not state.cache_checked:
                    state.cache_checked = True
                    if self._try_cache(state):
                        continue
                need = state.step.options.resources
                if not _fits(need, free, capacity):
                    continue
                task = Task(
                    self.ctx.settings,
                    state.step,
                    str(self.root),
                    self._input_refs(state),
                    self.spec.owner,
                )
                _take(need, free, capacity, -1)
                state.attempts += 1
                state.started_at = datetime.now(UTC)
                self._set(state, "running")
                running[self.executor.submit(task)] = state
            if not running:
                waiting = [
                    s for s in self.states.values() if s.status == "pending" and self._unblocked(s)
                ]
                if not waiting:
                    break
                retry = self._next_retry(time.monotonic())
                time.sleep(retry if retry is not None else 0.05)
                continue
            timeout = self._next_retry(time.monotonic())
            done, _ = concurrent.futures.wait(
                running, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                state = running.pop(future)
                _take(state.step.options.resources, free, capacity, +1)
                self._finish(state, future)

    def _conclude(self) -> str:
        """Settle the steps that never ran, and the run's status."""
        held = any(s.status == "held" for s in self.states.values())
        for state in self.states.values():
            if state.status == "pending" and held and not self._failed_upstream(state):
                self._set(state, "held", error="waits for a held step")
            elif state.status == "pending":
                self._set(state, "skipped", error="an upstream step did not succeed")
        statuses = {s.status for s in self.states.values()}
        if statuses <= DONE:
            return "succeeded"
        if statuses & {"failed", "skipped"}:
            return "failed"
        return "held"

    def _failed_upstream(self, state: StepState) -> bool:
        return any(
            self.states[n].status == "failed" or self._failed_upstream(self.states[n])
            for n in state.step.needs
        )

    def _ready(self, now: float) -> list[StepState]:
        return [
            s
            for s in self.states.values()
            if s.status == "pending"
            and s.not_before <= now
            and self._unblocked(s)
            and all(self.states[n].status in DONE for n in s.step.needs)
        ]

    def _unblocked(self, state: StepState) -> bool:
        """Whether the step may still run: none of its upstream steps failed or is held."""
        return all(
            self.states[n].status in DONE | {"pending", "running"}
            and self._unblocked(self.states[n])
            for n in state.step.needs
        )

    def _next_retry(self, now: float) -> float | None:
        waits = [
            s.not_before - now
            for s in self.states.values()
            if s.status == "pending" and s.not_before > now
        ]
        return max(0.0, min(waits)) if waits else None

    def _input_versions(self, state: StepState) -> dict[str, DatasetVersion]:
        found: dict[str, DatasetVersion] = {}
        with self.ctx.read() as conn:
            for name in state.step.reads:
                upstream = self.states.get(name)
                ref = upstream.output if upstream is not None and upstream.output else name
                try:
                    found[name] = versions.resolve(conn, ref)
                except NotFound as exc:
                    raise SpecError(
                        f"step {state.name} reads {name}, which no step makes and the workspace "
                        "does not have",
                        hint=f"add {name} to sources or features, or ingest it first",
                    ) from exc
        return found

    def _input_refs(self, state: StepState) -> dict[str, str]:
        return {name: version.ref for name, version in self._input_versions(state).items()}

    def _try_cache(self, state: StepState) -> bool:
        try:
            state.cache_key = step_kinds.cache_key(
                state.step,
                self.root,
                self._input_versions(state),
                self.ctx.secret_fingerprint("pii") if state.step.kind == "ingest" else None,
            )
        except Exception as exc:
            self._fail(state, _message(exc))
            return True
        if state.cache_key is None:
            return False
        with self.ctx.read() as conn:
            row = conn.execute(
                sa.select(step_cache).where(step_cache.c.key == state.cache_key)
            ).first()
            if row is None:
                return False
            try:
                if state.step.kind == "train":
                    model = model_versions.resolve(conn, row.output)
                    hit = model.id == row.output_id
                else:
                    version = versions.resolve(conn, row.output)
                    hit = version.id == row.output_id
            except NotFound:
                return False
        if not hit:
            return False
        if state.step.kind == "train":
            # The same data, settings and code made this model version: reuse it.
            state.output, state.output_id = model.ref, model.id
            state.started_at = state.ended_at = datetime.now(UTC)
            self._set(state, "cached")
            return True
        with self.ctx.read() as conn:
            newest = versions.latest(conn, version.dataset)
        if newest is not None and newest.number != version.number:
            # The cached output is older than the dataset's newest version: make it the
            # newest again, so readers by name see what this run produced.
            version = versions.recommit(self.ctx, version, activity="cache")
        state.output, state.output_id = version.ref, version.id
        state.started_at = state.ended_at = datetime.now(UTC)
        self._set(state, "cached")
        return True

    def _finish(self, state: StepState, future: concurrent.futures.Future[Outcome]) -> None:
        try:
            outcome = future.result()
        except Exception as exc:
            message = _message(exc)
            if state.attempts <= state.step.options.retries:
                state.not_before = time.monotonic() + state.step.options.backoff * 2 ** (
                    state.attempts - 1
                )
                self._set(state, "pending", error=f"attempt {state.attempts} failed: {message}")
            else:
                self._fail(state, message)
            return
        state.output, state.output_id = outcome.ref, outcome.id
        state.ended_at = datetime.now(UTC)
        key = state.cache_key

        def remember(conn: Connection) -> None:
            # In the step's own transaction: a crash cannot keep one without the other.
            if key is not None:
                conn.execute(step_cache.delete().where(step_cache.c.key == key))
                conn.execute(
                    step_cache.insert().values(
                        key=key,
                        output=outcome.ref,
                        output_id=outcome.id,
                        created_at=datetime.now(UTC),
                    )
                )

        self._set(state, "succeeded", error=None, also=remember)

    def _fail(self, state: StepState, message: str) -> None:
        state.ended_at = datetime.now(UTC)
        self._set(state, "failed", error=message)

    def _set(
        self,
        state: StepState,
        status: str,
        error: str | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> None:
        state.status = status
        state.error = error
        with self.ctx.write() as conn:
            conn.execute(
                step_runs.update()
                .where(step_runs.c.run_id == self.run_id, step_runs.c.step == state.name)
                .values(
                    status=status,
                    attempts=state.attempts,
                    cache_key=state.cache_key,
                    cache_hit=int(status == "cached"),
                    output=state.output,
                    output_id=state.output_id,
                    error=error,
                    started_at=state.started_at,
                    ended_at=state.ended_at,
                )
            )
            if also is not None:
                also(conn)
        if self.on_event:
            self.on_event(status, state)


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, LoopMLError) else f"{type(exc).__name__}: {exc}"


def _fits(need: Resources, free: dict[str, float], capacity: Resources) -> bool:
    return (
        need.cpus <= free["cpus"] + 1e-9
        and need.gpus <= free["gpus"] + 1e-9
        and (not capacity.memory or need.memory <= free["memory"])
    )


def _take(need: Resources, free: dict[str, float], capacity: Resources, sign: int) -> None:
    free["cpus"] += sign * need.cpus
    free["gpus"] += sign * need.gpus
    if capacity.memory:
        free["memory"] += sign * need.memory


def run_pipeline(
    ctx: Context,
    spec: Spec | None = None,
    root: Path | None = None,
    *,
    executor: str = "local",
    address: str | None = None,
    resume: str | None = None,
    hold_heavy: bool = False,
    on_event: EventFn | None = None,
) -> RunResult:
    """Run a spec's pipeline, or resume run ``resume`` with the spec it was started with.

    Returns:
        The run and its steps; its status is succeeded, failed or held.

    Raises:
        SpecError: the spec compiles to an invalid DAG or a step cannot fit the executor.
        NotFound: ``resume`` names no run.
    """
    started = time.perf_counter()
    if resume is not None:
        spec, root, done = _load_run(ctx, resume)
        run_id = resume
    else:
        if spec is None or root is None:
            raise InputError("run_pipeline needs a spec and its folder, or resume=RUN")
        run_id = uuid.uuid4().hex[:12]
        done = {}
    pool = open_executor(executor, ctx, address)
    try:
        runner = Runner(ctx, spec, root, pool, run_id, hold_heavy, on_event)
        if resume is None:
            _create_run(ctx, runner, spec, root, pool.name)
        else:
            _restart_run(ctx, runner, done, pool.name)
        try:
            status = runner.run()
        except BaseException as exc:
            _end_run(ctx, run_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
    finally:
        pool.close()
    failed = [s.name for s in runner.states.values() if s.status == "failed"]
    _end_run(ctx, run_id, status, f"failed steps: {', '.join(failed)}" if failed else None)
    return RunResult(
        run_id,
        spec.name,
        status,
        pool.name,
        list(runner.states.values()),
        time.perf_counter() - started,
    )


def _create_run(ctx: Context, runner: Runner, spec: Spec, root: Path, executor: str) -> None:
    now = datetime.now(UTC)
    with ctx.write() as conn:
        conn.execute(
            pipeline_runs.insert().values(
                id=runner.run_id,
                pipeline=spec.name,
                spec=spec.model_dump(by_alias=True, mode="json"),
                spec_root=str(root),
                spec_hash=spec_hash(spec),
                executor=executor,
                status="running",
                owner=spec.owner or ctx.actor,
                started_at=now,
                ended_at=None,
                error=None,
            )
        )
        conn.execute(
            step_runs.insert(),
            [
                {
                    "run_id": runner.run_id,
                    "step": name,
                    "status": "pending",
                    "attempts": 0,
                    "cache_key": None,
                    "cache_hit": 0,
                    "output": None,
                    "output_id": None,
                    "error": None,
                    "started_at": None,
                    "ended_at": None,
                }
                for name in runner.states
            ],
        )
        ctx.audit(conn, "pipeline.run", f"pipeline:{spec.name}", details={"run": runner.run_id})


def _load_run(ctx: Context, run_id: str) -> tuple[Spec, Path, dict[str, Any]]:
    with ctx.read() as conn:
        row = conn.execute(sa.select(pipeline_runs).where(pipeline_runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(
                f"pipeline run {run_id!r} does not exist", hint="`loopml pipeline ls` lists them"
            )
        steps = {
            r.step: r
            for r in conn.execute(sa.select(step_runs).where(step_runs.c.run_id == run_id))
        }
    return Spec.model_validate(row.spec), Path(row.spec_root), steps


def _restart_run(ctx: Context, runner: Runner, done: dict[str, Any], executor: str) -> None:
    for name, state in runner.states.items():
        row = done.get(name)
        if row is not None and row.status in DONE:
            state.status, state.output, state.output_id = row.status, row.output, row.output_id
            state.attempts, state.cache_key = row.attempts, row.cache_key
            state.started_at, state.ended_at = row.started_at, row.ended_at
    with ctx.write() as conn:
        conn.execute(
            pipeline_runs.update()
            .where(pipeline_runs.c.id == runner.run_id)
            .values(status="running", executor=executor, ended_at=None, error=None)
        )
        for name, state in runner.states.items():
            if name not in done:
                conn.execute(
                    step_runs.insert().values(
                        run_id=runner.run_id, step=name, status="pending", attempts=0, cache_hit=0
                    )
                )
            elif state.status not in DONE:
                conn.execute(
                    step_runs.update()
                    .where(step_runs.c.run_id == runner.run_id, step_runs.c.step == name)
                    .values(status="pending", error=None)
                )
        ctx.audit(
            conn, "pipeline.resume", f"pipeline:{runner.spec.name}", details={"run": runner.run_id}
        )


def _end_run(ctx: Context, run_id: str, status: str, error: str | None) -> None:
    with ctx.write() as conn:
        row = conn.execute(
            sa.select(pipeline_runs.c.pipeline).where(pipeline_runs.c.id == run_id)
        ).first()
        conn.execute(
            pipeline_runs.update()
            .where(pipeline_runs.c.id == run_id)
            .values(status=status, ended_at=datetime.now(UTC), error=error)
        )
        if row is not None:
            ctx.audit(
                conn,
                "pipeline.end",
                f"pipeline:{row.pipeline}",
                outcome="ok" if status != "failed" else "failed",
                details={"run": run_id, "status": status},
            )
