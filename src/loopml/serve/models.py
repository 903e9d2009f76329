"""The versions a server holds: loaded, warmed, and swapped without dropping a request.

A ``LoadedModel`` is one version ready to score: its predictor (compiled to flat
arrays when that gives the same scores), its input schema, and its micro-batcher.
``Models`` holds the primary version (the alias target), an optional canary and an
optional shadow. ``watch`` polls the registry; when the alias moves, the new version
is loaded and warmed off the event loop, then one reference is swapped. Requests that
already picked the old version finish on it; it is closed once the last of them is
done. A version that fails to load or warm is never switched to: the failure is
logged and counted, and the old version keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from loopml.context import Context
from loopml.records import ModelVersion
from loopml.registry import versions
from loopml.registry.compiled import compile_scorer, sample_table
from loopml.serve.batching import MicroBatcher
from loopml.serve.config import ServeConfig
from loopml.serve.inputs import InputSchema
from loopml.serve.metrics import ServeMetrics

log = logging.getLogger("loopml.serve")

WARM_ROUNDS = 3


class LoadedModel:
    """One version, loaded, warmed and ready to score.

    Args:
        version: the version.
        predictor: its Predictor (``scores`` of a table).
        scorer: what scores it: a compiled scorer or the predictor itself.
        batcher: its micro-batcher.
        role: ``primary``, ``canary`` or ``shadow``.
    """

    def __init__(
        self, version: ModelVersion, predictor: Any, scorer: Any, batcher: MicroBatcher, role: str
    ) -> None:
        self.version = version
        self.predictor = predictor
        self.scorer = scorer
        self.batcher = batcher
        self.role = role
        self.schema = InputSchema(version.signature)
        self.answered: Any = None
        self.latency: Any = None
        self.in_flight = 0
        self.retired = False
        self._closing: asyncio.Task[None] | None = None

    @property
    def ref(self) -> str:
        """``name@number``."""
        return self.version.ref

    def acquire(self) -> LoadedModel:
        """Count a request that will score on this version."""
        self.in_flight += 1
        return self

    def release(self) -> None:
        """The request is done; close the version if it is retired and idle."""
        self.in_flight -= 1
        if self.retired and self.in_flight == 0:
            self._close_soon()

    def retire(self) -> None:
        """Stop handing this version out; close it once its requests are done."""
        self.retired = True
        if self.in_flight == 0:
            self._close_soon()

    def _close_soon(self) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.batcher.close())

    async def close(self) -> None:
        """Close the batcher (after what is queued)."""
        await self.batcher.close()


def load_model(
    ctx: Context,
    version: ModelVersion,
    config: ServeConfig,
    metrics: ServeMetrics,
    *,
    role: str,
    arriving: Callable[[], int] = lambda: 0,
) -> LoadedModel:
    """Load ``version``, compile it when possible, and warm it; blocking.

    Raises:
        LoopMLError: the version does not load (a damaged artifact, say).
        Exception: warming it failed; whatever the model raised.
    """
    started = time.perf_counter()
    predictor = versions.load(ctx, version)
    sample = sample_table(version, 64)
    compiled = compile_scorer(predictor, sample_table(version, 256, seed=1))
    scorer = compiled if compiled is not None else predictor
    labels = {"model": version.model, "version": str(version.number)}

    batch_rows = metrics.batch_rows.labels(**labels)
    batch_requests = metrics.batch_requests.labels(**labels)
    scored_rows = metrics.rows.labels(**labels, role=role)

    def on_batch(rows: int, requests: int, seconds: float) -> None:
        batch_rows.observe(rows)
        batch_requests.observe(requests)
        scored_rows.inc(rows)

    batcher = MicroBatcher(
        scorer.scores,
        name=f"{version.model}-{version.number}",
        max_batch=config.max_batch,
        max_wait_ms=config.max_wait_ms,
        arriving=arriving,
        on_batch=on_batch,
    )
    # Warm up: first calls pay for lazy imports and allocations; a broken model fails here.
    for size in (1, len(sample)):
        for _ in range(WARM_ROUNDS):
            scores = np.asarray(batcher.score_now(sample.slice(0, size)))
            if len(scores) != size:
                raise RuntimeError(f"{version.ref} gave {len(scores)} scores for {size} rows")
    log.info(
        "loaded %s (%s) as %s in %.2fs",
        version.ref,
        "compiled " + compiled.kind if compiled is not None else version.flavor,
        role,
        time.perf_counter() - started,
    )
    loaded = LoadedModel(version, predictor, scorer, batcher, role)
    # The metrics' children for this version, looked up once rather than per request.
    loaded.answered = metrics.requests.labels(**labels, status="200")
    loaded.latency = metrics.latency.labels(**labels)
    return loaded


class Models:
    """The primary version, the canary and the shadow of one server.

    Args:
        ctx: the workspace's context.
        config: the server's config.
        metrics: the server's metrics.
        arriving: how many requests are admitted but not yet queued.
    """

    def __init__(
        self,
        ctx: Context,
        config: ServeConfig,
        metrics: ServeMetrics,
        arriving: Callable[[], int] = lambda: 0,
    ) -> None:
        self.ctx = ctx
        self.config = config
        self.metrics = metrics
        self.arriving = arriving
        self.primary: LoadedModel | None = None
        self.canary: LoadedModel | None = None
        self.shadow: LoadedModel | None = None
        self.canary_share = config.canary[1] / 100.0 if config.canary else 0.0
        self.last_error: str | None = None
        self._failed: set[str] = set()
        self._random = random.Random()

    @property
    def ready(self) -> bool:
        """Whether the primary version (and any canary and shadow) is loaded and warm."""
        return (
            self.primary is not None
            and (self.config.canary is None or self.canary is not None)
            and (self.config.shadow is None or self.shadow is not None)
        )

    def pick(self) -> LoadedModel:
        """The version that scores the next request: the canary for its share, else primary.

        Raises:
            RuntimeError: no version is loaded yet.
        """
        if self.primary is None:
            raise RuntimeError("no model version is loaded yet")
        if self.canary is not None and self._random.random() * 100 < self.config.canary[1]:  # type: ignore[index]
            return self.canary.acquire()
        return self.primary.acquire()

    def resolve_target(self) -> ModelVersion:
        """The version the served reference names now (blocking: reads the registry)."""
        with self.ctx.read() as conn:
            return versions.resolve(conn, self.config.model)

    def fixed_version(self, number: int) -> ModelVersion:
        """Version ``number`` of the served model (blocking)."""
        with self.ctx.read() as conn:
            return versions.resolve(conn, f"{self.config.name}@{number}")

    async def refresh(self) -> bool:
        """Load whatever is due: the primary when its reference moved, a missing canary or
        shadow. True when something new was loaded."""
        changed = False
        try:
            target = await asyncio.to_thread(self.resolve_target)
        except Exception as exc:
            self._note_failure(f"cannot resolve {self.config.model}: {exc}")
            return False
        if self.primary is None or self.primary.version.id != target.id:
            loaded = await self._load(target, "primary")
            if loaded is not None:
                old, self.primary = self.primary, loaded
                if old is not None:
                    old.retire()
                    self.metrics.serving.labels(
                        model=old.version.model, version=str(old.version.number), role="primary"
                    ).set(0)
                changed = True
                log.info("serving %s", loaded.ref)
        if self.config.canary is not None and self.canary is None:
            self.canary = await self._load_fixed(self.config.canary[0], "canary")
            changed = changed or self.canary is not None
        if self.config.shadow is not None and self.shadow is None:
            self.shadow = await self._load_fixed(self.config.shadow, "shadow")
            changed = changed or self.shadow is not None
        return changed

    async def _load_fixed(self, number: int, role: str) -> LoadedModel | None:
        try:
            version = await asyncio.to_thread(self.fixed_version, number)
        except Exception as exc:
            self._note_failure(f"cannot resolve {self.config.name}@{number} ({role}): {exc}")
            return None
        return await self._load(version, role)

    async def _load(self, version: ModelVersion, role: str) -> LoadedModel | None:
        key = f"{role}:{version.id}"
        if key in self._failed:
            return None  # it failed once; it will again. Wait for the alias to move on.
        labels = {"model": version.model, "version": str(version.number)}
        try:
            loaded = await asyncio.to_thread(
                load_model,
                self.ctx,
                version,
                self.config,
                self.metrics,
                role=role,
                arriving=self.arriving,
            )
        except Exception as exc:
            self._failed.add(key)
            self.metrics.swaps.labels(**labels, outcome="failed").inc()
            self._note_failure(f"{version.ref} failed to load or warm; not serving it: {exc}")
            return None
        self.metrics.swaps.labels(**labels, outcome="loaded").inc()
        self.metrics.serving.labels(**labels, role=role).set(1)
        self.last_error = None
        return loaded

    def _note_failure(self, message: str) -> None:
        if message != self.last_error:
            log.error(message)
        self.last_error = message

    async def watch(self) -> None:
        """Refresh every ``poll_interval`` seconds, until cancelled."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watcher must outlive any one bad poll
                self._note_failure(f"watching {self.config.model} failed: {exc}")
            await asyncio.sleep(self.config.poll_interval)

    async def close(self) -> None:
        """Close every loaded version."""
        for model in (self.primary, self.canary, self.shadow):
            if model is not None:
                await model.close()
