"""Executors run steps: ``local`` (threads in this process) and ``ray`` (a Ray cluster).

Both take the same ``Task`` and return a future of the version it made, so the
runner, the cache and the run records are the same whichever runs the steps.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from loopml.cluster import connect_ray
from loopml.config import Settings
from loopml.context import Context
from loopml.data import versions
from loopml.errors import SpecError
from loopml.pipeline import steps
from loopml.pipeline.dag import Step
from loopml.pipeline.spec import Resources


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run a step, and nothing it cannot pickle."""

    settings: Settings
    step: Step
    root: str
    inputs: dict[str, str]
    owner: str | None = None


@dataclass(frozen=True)
class Outcome:
    """The version a task made."""

    ref: str
    id: str


def run_task(task: Task, ctx: Context | None = None) -> Outcome:
    """Run a task with ``ctx``, or with a context of its own (in another process)."""
    own = ctx is None
    opened = ctx or Context.open(task.settings)
    context = opened.owned_by(task.owner)
    try:
        with context.read() as conn:
            inputs = {name: versions.resolve(conn, ref) for name, ref in task.inputs.items()}
        version = steps.execute(context, task.step, Path(task.root), inputs)
        return Outcome(version.ref, version.id)
    finally:
        if own:
            opened.close()


class Executor(ABC):
    """Runs tasks within a capacity of cpus, memory and gpus."""

    name: ClassVar[str]

    @abstractmethod
    def capacity(self) -> Resources:
        """What the executor can run at once."""

    @abstractmethod
    def submit(self, task: Task) -> concurrent.futures.Future[Outcome]:
        """Start a task; the future holds its Outcome or its exception."""

    @abstractmethod
    def close(self) -> None:
        """Release workers."""


class LocalExecutor(Executor):
    """Threads in this process, sharing its workspace connection.

    The work inside steps (DuckDB, Arrow, Parquet) runs outside the GIL, so threads
    use the cores; the runner keeps their total resources within the machine's.
    """

    name = "local"

    def __init__(self, ctx: Context, cpus: float | None = None, memory: int | None = None) -> None:
        self.ctx = ctx
        self._capacity = Resources(
            cpus=cpus or float(os.cpu_count() or 1),
            memory=memory or _total_memory(),
            gpus=_visible_gpus(),
        )
        # The runner admits steps by their resources; the pool only must not queue them
        # (steps may ask for fractions of a cpu).
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=64, thread_name_prefix="loopml-step"
        )

    def capacity(self) -> Resources:
        return self._capacity

    def submit(self, task: Task) -> concurrent.futures.Future[Outcome]:
        return self._pool.submit(run_task, task, self.ctx)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class RayExecutor(Executor):
    """Ray tasks, each opening the workspace by its settings, with the step's resources.

    ``address`` is a ``ray://`` URL or ``auto``; without one a local cluster starts.
    """

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        ray, self._started = connect_ray(address)
        self._ray = ray
        self._refs: list[Any] = []
        resources = ray.cluster_resources()
        self._capacity = Resources(
            cpus=float(resources.get("CPU", 1)),
            memory=int(resources.get("memory", 0)),
            gpus=float(resources.get("GPU", 0)),
        )
        self._remote = ray.remote(_ray_task)

    def capacity(self) -> Resources:
        return self._capacity

    def submit(self, task: Task) -> concurrent.futures.Future[Outcome]:
        resources = task.step.options.resources
        options: dict[str, Any] = {
            "num_cpus": resources.cpus,
            "num_gpus": resources.gpus,
            "max_retries": 0,
        }
        if resources.memory:
            options["memory"] = resources.memory
        ref = self._remote.options(**options).remote(task)
        self._refs.append(ref)
        future: concurrent.futures.Future[Outcome] = ref.future()
        return future

    def close(self) -> None:
        # A failed run leaves no task running on a shared cluster.
        for ref in self._refs:
            with contextlib.suppress(Exception):  # a finished task cannot be cancelled
                self._ray.cancel(ref)
        if self._started:
            self._ray.shutdown()


def _ray_task(task: Task) -> Outcome:
    return run_task(task)


EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor, "ray": RayExecutor}


def open_executor(kind: str, ctx: Context, address: str | None = None) -> Executor:
    """The executor named ``kind`` (``local`` or ``ray``)."""
    if kind not in EXECUTORS:
        raise SpecError(f"unknown executor {kind!r}", hint=f"use one of: {', '.join(EXECUTORS)}")
    if kind == "ray":
        return RayExecutor(address)
    return LocalExecutor(ctx)


def _total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _visible_gpus() -> float:
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    if devices is not None:
        return float(len([d for d in devices.split(",") if d.strip() and d.strip() != "-1"]))
    return float(len(list(Path("/dev").glob("nvidia[0-9]*"))))
