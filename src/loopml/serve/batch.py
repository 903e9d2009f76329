"""Batch scoring: stream a dataset version through a model into a new dataset version.

The input is read in record batches of ``batch_rows`` rows, each batch is scored and
handed to the data layer's writer (``loopml.data.writer.write_version``), so memory
is bounded by a few batches whatever the dataset's size, and the output follows the
commit protocol: it exists only once its version row commits, and a failure part way
leaves no version behind (and an audited failure). The output's lineage links it to
the input version and to the model version; its metadata records both.

The output holds the kept input columns (all of them by default) followed by:

- ``prediction``: the class label, the value, or the anomaly flag (1 = anomaly);
- ``score``: P(positive class) for binary models, the predicted class's probability
  for multiclass ones, the anomaly score for anomaly detection (none for regression);
- ``proba_<class>``: each class's probability, for multiclass models.

With the ``ray`` executor, batches are scored by a pool of Ray actors, each of which
opens the workspace by its settings and loads (and verifies) the model once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.cluster import connect_ray
from loopml.config import Settings
from loopml.context import Context
from loopml.data import versions as data_versions
from loopml.data.api import DataAPI, stream_batches
from loopml.data.writer import audited_failure, write_version
from loopml.errors import InputError, LoopMLError, StoreError
from loopml.records import DatasetVersion, ModelVersion
from loopml.registry import signature
from loopml.registry import versions as model_versions
from loopml.registry.predictor import Predictor

EXECUTORS = ("local", "ray")
BATCH_ROWS = 65_536


@dataclass(frozen=True)
class BatchResult:
    """What a batch scoring made.

    Attributes:
        version: the new dataset version holding the predictions.
        model: the model version that scored.
        input: the dataset version scored.
        rows: the rows scored (the output's row count).
        batches: the record batches the input was streamed in.
        executor: ``local`` or ``ray``.
        seconds: ``load`` (the model, in this process; 0 on Ray, whose actors load
            it), ``score`` (time inside predict, summed over batches, and on Ray over
            actors), and ``total`` (wall clock, commit included).
    """

    version: DatasetVersion
    model: ModelVersion
    input: DatasetVersion
    rows: int
    batches: int
    executor: str
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain summary for ``--json``."""
        total = self.seconds.get("total", 0.0)
        return {
            "output": self.version.ref,
            "id": self.version.id,
            "model": self.model.ref,
            "input": self.input.ref,
            "rows": self.rows,
            "batches": self.batches,
            "executor": self.executor,
            "columns": [c.name for c in self.version.schema],
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "rows_per_second": round(self.rows / total) if total > 0 else None,
        }


def predict_dataset(
    ctx: Context,
    model: str | ModelVersion,
    data: str | DatasetVersion,
    out: str,
    *,
    executor: str = "local",
    batch_rows: int = BATCH_ROWS,
    keep: Sequence[str] | None = None,
    address: str | None = None,
    workers: int | None = None,
) -> BatchResult:
    """Score dataset version ``data`` with ``model`` into a new version of dataset ``out``.

    Args:
        ctx: the workspace's context.
        model: ``NAME``, ``NAME@ALIAS``, ``NAME@VERSION``, or a ModelVersion.
        data: ``DATASET`` or ``DATASET@VERSION``, or a DatasetVersion.
        out: the dataset that receives the new version.
        executor: ``local`` (this process) or ``ray`` (actors on a Ray cluster).
        batch_rows: rows per streamed batch; memory is bounded by a few of them.
        keep: the input columns to copy into the output (default: all of them).
        address: the Ray cluster (``auto`` or ``ray://...``); default: start a local one.
        workers: Ray actors (default: the cluster's CPUs, at most 8).

    Returns:
        The new version and how it was made.

    Raises:
        NotFound: the model, its version, or the dataset version does not exist.
        InputError: the input lacks a signature column or has one of the wrong type,
            a kept column is missing or clashes with an output column, or an option
            is invalid. Nothing is written.

    Example:
        >>> result = predict_dataset(ctx, "fraud@champion", "transactions@7", "tx_scored")
        >>> result.version.ref, result.rows
        ('tx_scored@1', 1000000)
    """
    started = time.perf_counter()
    data_versions.check_name(out)
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}", hint="use local or ray")
    if batch_rows < 1:
        raise InputError(f"batch_rows {batch_rows} is below 1", hint="for example 65536")
    if workers is not None and workers < 1:
        raise InputError(f"workers {workers} is below 1")
    with ctx.read() as conn:
        model_version = (
            model if isinstance(model, ModelVersion) else model_versions.resolve(conn, model)
        )
        input_version = (
            data if isinstance(data, DatasetVersion) else data_versions.resolve(conn, data)
        )
    with audited_failure(ctx, "dataset.predict", f"dataset:{out}"):
        files = DataAPI(ctx).files(input_version)
        input_schema = pq.read_schema(files[0])
        features = [c["name"] for c in model_version.signature.get("inputs", [])]
        check_input(model_version, input_schema)
        kept = _kept_columns(input_schema, keep)
        read = list(dict.fromkeys([*kept, *features]))
        schema = output_schema(model_version, pa.schema([input_schema.field(n) for n in kept]))
        batches = _read_batches(files, read, batch_rows)
        stats = _Stats()
        loaded = time.perf_counter()
        if executor == "local":
            predictor = model_versions.load(ctx, model_version)
            load_seconds = time.perf_counter() - loaded
            scored = _score_local(predictor, batches, kept, schema, stats)
        else:
            # Each actor loads the model itself; the driver only streams batches.
            load_seconds = 0.0
            scored = _score_ray(
                ctx.settings, model_version, batches, kept, schema, stats, address, workers
            )
        version = write_version(
            ctx,
            out,
            scored,
            schema,
            source=f"predictions of {model_version.ref} on {input_version.ref}",
            meta={
                "predict": {
                    "model": {"ref": model_version.ref, "id": model_version.id},
                    "input": {"ref": input_version.ref, "id": input_version.id},
                    "kept": kept,
                    "executor": executor,
                    "batch_rows": batch_rows,
                }
            },
            action="dataset.predict",
            inputs=[f"dataset:{input_version.ref}", f"model:{model_version.ref}"],
            activity=f"predict:{model_version.ref}",
        )
    return BatchResult(
        version=version,
        model=model_version,
        input=input_version,
        rows=stats.rows,
        batches=stats.batches,
        executor=executor,
        seconds={
            "load": load_seconds,
            "score": stats.score_seconds,
            "total": time.perf_counter() - started,
        },
    )


def check_input(version: ModelVersion, schema: pa.Schema) -> None:
    """Check that ``schema`` has every signature column, each of a usable type.

    Raises:
        InputError: naming every missing column and every column of the wrong type.
    """
    signature.check(version, schema, "the input")


def output_schema(version: ModelVersion, kept: pa.Schema) -> pa.Schema:
    """The output's schema: the kept input columns, then the prediction columns.

    Raises:
        InputError: a kept column has the name of a prediction column.
    """
    task = version.task
    classes = list(version.meta.get("classes", []))
    outputs: list[pa.Field] = []
    if task in {"binary", "multiclass"}:
        labels = pa.array(classes) if classes else pa.array([], pa.string())
        label_type = pa.string() if pa.types.is_null(labels.type) else labels.type
        outputs = [pa.field("prediction", label_type), pa.field("score", pa.float64())]
        if task == "multiclass":
            outputs += [pa.field(f"proba_{c}", pa.float64()) for c in classes]
    elif task == "anomaly":
        outputs = [pa.field("prediction", pa.int64()), pa.field("score", pa.float64())]
    else:
        outputs = [pa.field("prediction", pa.float64())]
    clashes = [f.name for f in outputs if f.name in kept.names]
    if clashes:
        raise InputError(
            f"the input already has column(s) {', '.join(clashes)}, which scoring adds",
            hint="pass --keep with the input columns to copy, leaving those out",
        )
    return pa.schema([*kept, *outputs])


def score_batch(
    predictor: Predictor, batch: pa.RecordBatch, kept: Sequence[str], schema: pa.Schema
) -> pa.RecordBatch:
    """One input batch scored: its kept columns followed by the prediction columns."""
    scores = np.asarray(predictor.scores(batch))
    task = predictor.task
    # The labels follow Predictor.predict, from the scores already computed, so the
    # model runs once per batch.
    columns: list[Any] = [batch.column(name) for name in kept]
    if task == "binary":
        labels = np.asarray(predictor.classes, dtype=object)[(scores >= 0.5).astype(int)]
        columns += [list(labels), scores.astype(np.float64)]
    elif task == "multiclass":
        best = np.argmax(scores, axis=1)
        labels = np.asarray(predictor.classes, dtype=object)[best]
        columns += [list(labels), scores[np.arange(len(best)), best].astype(np.float64)]
        columns += [scores[:, i].astype(np.float64) for i in range(scores.shape[1])]
    elif task == "anomaly":
        columns += [(scores > 0).astype(np.int64), scores.astype(np.float64)]
    else:
        columns += [scores.astype(np.float64)]
    arrays = [
        column if isinstance(column, pa.Array) else pa.array(column, type=f.type)
        for column, f in zip(columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


@dataclass
class _Stats:
    rows: int = 0
    batches: int = 0
    score_seconds: float = 0.0


def _read_batches(files: Sequence[str], columns: list[str], rows: int) -> Iterator[pa.RecordBatch]:
    return stream_batches(files, rows, columns)


def _score_local(
    predictor: Predictor,
    batches: Iterator[pa.RecordBatch],
    kept: list[str],
    schema: pa.Schema,
    stats: _Stats,
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        began = time.perf_counter()
        scored = score_batch(predictor, batch, kept, schema)
        stats.score_seconds += time.perf_counter() - began
        stats.rows += scored.num_rows
        stats.batches += 1
        yield scored


class RayScorer:
    """A Ray actor's state: the workspace opened by its settings and the model, loaded once."""

    def __init__(self, settings: Settings, model: str, kept: list[str], schema: pa.Schema) -> None:
        ctx = Context.open(settings)
        try:
            with ctx.read() as conn:
                version = model_versions.resolve(conn, model)
            self.predictor = model_versions.load(ctx, version)
        finally:
            ctx.close()
        self.kept = kept
        self.schema = schema

    def score(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, float]:
        """The scored batch, and the seconds its predict took."""
        began = time.perf_counter()
        scored = score_batch(self.predictor, batch, self.kept, self.schema)
        return scored, time.perf_counter() - began


def _score_ray(
    settings: Settings,
    version: ModelVersion,
    batches: Iterator[pa.RecordBatch],
    kept: list[str],
    schema: pa.Schema,
    stats: _Stats,
    address: str | None,
    workers: int | None,
) -> Iterator[pa.RecordBatch]:
    ray, started = connect_ray(address)
    actors: list[Any] = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = workers or max(1, min(cpus, 8))
        # More actors than CPUs share them rather than wait forever for a free one.
        remote = ray.remote(num_cpus=min(1.0, max(cpus, 1) / count), max_restarts=0)(RayScorer)
        # Pinned to the version's number: an alias moving mid-way changes nothing.
        actors = [remote.remote(settings, version.ref, kept, schema) for _ in range(count)]
        in_flight: deque[Any] = deque()
        # Two batches per actor in flight: each has its next batch ready, and at most
        # 2 x actors batches are held (with the writer's), whatever the input's size.
        for index, batch in enumerate(batches):
            if len(in_flight) >= 2 * count:
                yield _collect(ray, in_flight.popleft(), stats)
            in_flight.append(actors[index % count].score.remote(batch))
        while in_flight:
            yield _collect(ray, in_flight.popleft(), stats)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


def _collect(ray: Any, ref: Any, stats: _Stats) -> pa.RecordBatch:
    try:
        scored, seconds = ray.get(ref)
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, LoopMLError):
            raise cause from exc
        raise StoreError(
            f"scoring on Ray failed: {cause or exc}",
            hint="the Ray workers must reach the workspace's stores (a shared database and "
            "object store for a remote cluster)",
        ) from exc
    stats.rows += scored.num_rows
    stats.batches += 1
    stats.score_seconds += seconds
    return scored


def _kept_columns(schema: pa.Schema, keep: Sequence[str] | None) -> list[str]:
    if keep is None:
        return list(schema.names)
    missing = [name for name in keep if name not in schema.names]
    if missing:
        raise InputError(
            f"--keep names column(s) the input lacks: {', '.join(missing)}",
            hint=f"the input's columns are {', '.join(schema.names)}",
        )
    return list(dict.fromkeys(keep))
