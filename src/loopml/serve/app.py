"""The model server's ASGI app (Starlette): ``/predict``, ``/health``, ``/ready``, ``/metrics``.

``create_app(config)`` builds it; ``app_from_env()`` is the factory uvicorn's worker
processes call, reading the config from the environment. The model loads in the
background after start-up, so ``/health`` answers at once and ``/ready`` turns 200
once the version is loaded and warm.

Observers see every prediction off the request path: callables
``(request_id, model, version, inputs, outputs, latency_ms, shadow) -> None``, where
``inputs`` is the request's rows as a pyarrow Table and ``outputs`` their scores as a
list (the ``scores`` of the response; shadow scores with ``shadow=True``). Add them
with ``create_app(config, observers=[...])`` or ``app.state.serving.observers``. The
prediction log (``PredictionLog``, sampled by ``config.log_sample``) is one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from loopml.config import load_settings
from loopml.context import Context
from loopml.errors import LoopMLError
from loopml.serve.config import ServeConfig
from loopml.serve.inputs import CONTENT_TYPES, RequestError
from loopml.serve.metrics import CONTENT_TYPE, ServeMetrics
from loopml.serve.models import LoadedModel, Models
from loopml.serve.prediction_log import PredictionLog

log = logging.getLogger("loopml.serve")

Observer = Callable[[str, str, int, pa.Table, list[Any], float, bool], None]
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


class Serving:
    """The state of one app: its config, models, metrics and observers."""

    def __init__(self, config: ServeConfig, observers: Sequence[Observer] = ()) -> None:
        self.config = config
        self.metrics = ServeMetrics()
        self.observers: list[Observer] = list(observers)
        self.arriving = 0
        self.models: Models | None = None
        self.ctx: Context | None = None
        self.prediction_log: PredictionLog | None = None
        # One thread calls the observers, fed by a queue: cheaper per request than a pool.
        self._observed: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._observer_thread: threading.Thread | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Open the workspace and start loading (and watching) the model."""
        config = self.config
        settings = load_settings(
            config.workspace or "loopml-workspace",
            metadata_url=config.metadata_url,
            artifacts_url=config.artifacts_url,
            s3_endpoint_url=config.s3_endpoint_url,
            user=config.user,
        )
        self.ctx = await asyncio.to_thread(Context.open, settings)
        if config.log_sample > 0:
            self.prediction_log = PredictionLog(
                self.ctx, config.name, sample_rate=config.log_sample
            )
            self.observers.append(self.prediction_log.log)
        self.models = Models(self.ctx, config, self.metrics, arriving=lambda: self.arriving)
        if config.load_before_start:
            await self.models.refresh()
        self._watcher = asyncio.get_running_loop().create_task(self.models.watch())

    async def stop(self) -> None:
        """Stop watching, finish queued work, and close the workspace."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        if self.models is not None:
            await self.models.close()
        if self._observer_thread is not None:
            self._observed.put(None)
            await asyncio.to_thread(self._observer_thread.join, 30)
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)
        if self.ctx is not None:
            self.ctx.close()

    def notify(
        self,
        request_id: str,
        model: LoadedModel,
        inputs: pa.Table,
        scores: Any,
        latency_ms: float,
        shadow: bool,
    ) -> None:
        """Hand a prediction to the observers, on their own thread."""
        if not self.observers:
            return
        if self._observer_thread is None:
            self._observer_thread = threading.Thread(
                target=self._observe, name="observers", daemon=True
            )
            self._observer_thread.start()
        version = model.version
        self._observed.put(
            (request_id, version.model, version.number, inputs, scores, latency_ms, shadow)
        )

    def _observe(self) -> None:
        while (entry := self._observed.get()) is not None:
            request_id, model, version, inputs, scores, latency_ms, shadow = entry
            outputs = np.asarray(scores).tolist()
            for observer in list(self.observers):
                try:
                    observer(request_id, model, version, inputs, outputs, latency_ms, shadow)
                except Exception:  # one broken observer must not stop the others
                    log.exception("prediction observer %r failed", observer)

    def in_background(self, coroutine: Any) -> None:
        """Run ``coroutine`` without awaiting it; keep a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _outputs(model: LoadedModel, scores: Any) -> tuple[Any, Any]:
    """Predictions (labels, values or anomaly flags) and scores, as JSON-ready values."""
    task = model.predictor.task
    scores = np.asarray(scores)
    if task == "binary":
        labels = np.asarray(model.predictor.classes, dtype=object)
        return labels[(scores >= 0.5).astype(int)].tolist(), scores
    if task == "multiclass":
        labels = np.asarray(model.predictor.classes, dtype=object)
        return labels[np.argmax(scores, axis=1)].tolist(), scores
    if task == "anomaly":
        return (scores > 0).astype(np.int64), scores
    return scores, scores


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(400, f"bad Content-Length {declared[:40]!r}") from None
        if size > limit:
            raise RequestError(413, _too_large(limit))
    chunks = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestError(413, _too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> str:
    return (
        f"the body is larger than the limit of {limit / 1024 / 1024:g} MiB; "
        "send fewer rows per request (or raise --max-body-mb)"
    )


def _version_header(model: LoadedModel | None, request_id: str) -> dict[str, str]:
    headers = {"X-Request-Id": request_id}
    if model is not None:
        headers["X-Model-Version"] = model.ref
    return headers


def create_app(config: ServeConfig, *, observers: Sequence[Observer] = ()) -> Starlette:
    """The model server for ``config``.

    Args:
        config: what to serve and how.
        observers: callables that see every prediction (see the module docstring).

    Example:
        >>> app = create_app(ServeConfig("fraud@champion", workspace="./ws"))
        >>> uvicorn.run(app)
    """
    serving = Serving(config, observers)
    name = config.name

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        header_id = request.headers.get("x-request-id", "")
        request_id = header_id if _REQUEST_ID.fullmatch(header_id) else uuid.uuid4().hex
        models = serving.models
        model: LoadedModel | None = None
        serving.arriving += 1
        arriving = True
        try:
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media not in CONTENT_TYPES:
                raise RequestError(
                    415,
                    f"unsupported content type {media or '(none)'!r}; send application/json "
                    "(records or columns) or application/vnd.apache.arrow.stream",
                )
            body = await _read_body(request, config.max_body_bytes)
            if models is None or not models.ready:
                raise RequestError(503, "the model is not loaded yet; retry shortly (see /ready)")
            model = models.pick()
            try:
                rows = model.schema.parse(body, media)
                serving.arriving -= 1
                arriving = False
                table, scores = await model.batcher.submit(rows)
            finally:
                model.release()
        except RequestError as exc:
            return _error(exc.status, exc.body(), model, request_id, started)
        except LoopMLError as exc:
            status = exc.http_status if exc.http_status < 500 else 500
            return _error(
                status if status != 400 else 422, {"error": str(exc)}, model, request_id, started
            )
        except Exception:
            log.exception("predicting %s failed", model.ref if model else name)
            return _error(
                500, {"error": "the model failed on this request"}, model, request_id, started
            )
        finally:
            if arriving:
                serving.arriving -= 1
        predictions, values = _outputs(model, scores)
        latency = time.perf_counter() - started
        version = model.version
        response = _json(
            {
                "model": version.model,
                "version": version.number,
                "request_id": request_id,
                "predictions": predictions,
                "scores": values,
            },
            headers=_version_header(model, request_id),
        )
        model.answered.inc()
        model.latency.observe(latency)
        serving.notify(request_id, model, table, scores, latency * 1000, False)
        shadow = models.shadow if models is not None else None
        if shadow is not None:
            serving.in_background(_score_shadow(serving, shadow, table, body, media, request_id))
        return response

    def _error(
        status: int,
        body: dict[str, Any],
        model: LoadedModel | None,
        request_id: str,
        started: float,
    ) -> Response:
        current = model
        if current is None and serving.models is not None:
            current = serving.models.primary
        version = str(current.version.number) if current is not None else "none"
        if current is not None:
            body = {"model": current.version.model, "version": current.version.number, **body}
        body["request_id"] = request_id
        serving.metrics.requests.labels(model=name, version=version, status=str(status)).inc()
        serving.metrics.errors.labels(model=name, status=str(status)).inc()
        serving.metrics.latency.labels(model=name, version=version).observe(
            time.perf_counter() - started
        )
        headers = _version_header(current, request_id)
        if status == 503:
            headers["Retry-After"] = "1"
        return _json(body, status, headers)

    async def health(request: Request) -> Response:
        return _json({"status": "ok", "model": config.model})

    async def ready(request: Request) -> Response:
        models = serving.models
        body: dict[str, Any] = {"ready": bool(models and models.ready), "model": config.model}
        if models is not None:
            for role in ("primary", "canary", "shadow"):
                loaded = getattr(models, role)
                if loaded is not None:
                    body[role] = loaded.ref
            if models.last_error:
                body["error"] = models.last_error
        headers = _version_header(models.primary if models else None, uuid.uuid4().hex)
        return _json(body, 200 if body["ready"] else 503, headers)

    async def metrics(request: Request) -> Response:
        return Response(serving.metrics.render(), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await serving.start()
        try:
            yield
        finally:
            await serving.stop()

    app = Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.serving = serving
    return app


async def _score_shadow(
    serving: Serving,
    shadow: LoadedModel,
    table: pa.Table,
    body: bytes,
    media: str,
    request_id: str,
) -> None:
    """Score a copy of a request on the shadow version; log it, never answer with it."""
    started = time.perf_counter()
    shadow.acquire()
    try:
        same = shadow.schema.schema.equals(table.schema)
        rows, scores = await shadow.batcher.submit(
            table if same else shadow.schema.parse(body, media)
        )
    except Exception as exc:
        log.warning("shadow %s failed on request %s: %s", shadow.ref, request_id, exc)
        serving.metrics.errors.labels(model=shadow.version.model, status="shadow").inc()
        return
    finally:
        shadow.release()
    latency_ms = (time.perf_counter() - started) * 1000
    log.debug("shadow %s scored request %s", shadow.ref, request_id)
    serving.notify(request_id, shadow, rows, scores, latency_ms, True)


def app_from_env() -> Starlette:
    """The app for the config in ``LOOPML_SERVE_CONFIG``: uvicorn's factory for workers."""
    return create_app(ServeConfig.from_env())
