"""The prediction log: what a server predicted, written as Parquet into the store.

``PredictionLog.log`` is called on the serving path after every prediction; it only
samples the request and puts it on a bounded queue (dropping and counting when the
queue is full), so logging never slows or blocks serving. A background thread
gathers entries and writes one Parquet file per flush (every ``flush_rows`` rows or
``flush_seconds`` seconds) under the artifact store's root::

    predictions/MODEL/date=YYYY-MM-DD/<UTC stamp>-<random hex>.parquet

The stamp (``20260129T081500123456Z``) is when the file was flushed, so names sort by
time and a file holds no row logged after its stamp. A file is staged and then moved
(a rename on a local store, one PUT on S3), so a reader never sees half a file. A
failed write is retried at the next flush (at most ``queue_size`` requests wait); a
request that can never be written (outputs that do not match its rows) is dropped
and counted in ``dropped``, alone.

Columns: ``request_id``, ``row`` (the row's place in its request), ``time`` (UTC),
``model``, ``version``, ``shadow``, ``latency_ms``, then each input column, then the
outputs (``prediction``, ``score``, ``probabilities.CLASS``; see ``output_columns``).
An input column whose name is one of those log columns is stored as ``input.NAME``
(and an output column clashing with any of them as ``output.NAME``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.context import Context
from loopml.data.versions import check_name
from loopml.errors import InputError, LoopMLError, StoreError
from loopml.registry import versions as model_versions
from loopml.store.artifacts import ArtifactStore, LocalArtifactStore, S3ArtifactStore

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
LOG_COLUMNS = ("request_id", "row", "time", "model", "version", "shadow", "latency_ms")
OUTPUT_COLUMNS = ("prediction", "score")
_STOP = object()


class StoreFiles:
    """Named files under the artifact store's root, beside its content-addressed objects.

    The prediction log and the feedback labels are append-only streams of small files
    that readers list by name and time, which content addresses cannot do. Keys are
    relative POSIX paths under one of a few known top folders; nothing else is
    reachable through this class.
    """

    TOPS = frozenset({PREDICTIONS, "feedback"})

    def __init__(self, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts
        if isinstance(artifacts, LocalArtifactStore):
            self._root: Path | None = artifacts.root
            self._fs: Any = None
            self._prefix = ""
        elif isinstance(artifacts, S3ArtifactStore):
            self._root = None
            self._fs = artifacts.fs
            self._prefix = artifacts.prefix
        else:
            raise StoreError(f"the prediction log cannot use a {type(artifacts).__name__}")

    def check_key(self, key: str) -> str:
        """``key`` if it is a plain relative path under a known top folder.

        Raises:
            StoreError: it would leave the store's root, or names another area.
        """
        parts = PurePosixPath(key).parts
        if (
            not parts
            or parts[0] not in self.TOPS
            or key.startswith("/")
            or "\\" in key
            or any(p in {"", ".", ".."} for p in parts)
        ):
            raise StoreError(f"not a log file key: {key!r}")
        return key

    def _local(self, key: str) -> Path:
        if self._root is None:
            raise StoreError("not a local store")
        path = (self._root / self.check_key(key)).resolve()
        if not path.is_relative_to(self._root.resolve()):
            raise StoreError(f"log file key {key!r} leaves the store's root")
        return path

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh local folder on the store's file system (so moves are renames)."""
        with self.artifacts.staging() as folder:
            yield folder

    def put(self, local: Path, key: str) -> None:
        """Move a staged file to ``key`` atomically: readers see all of it or nothing."""
        try:
            if self._root is not None:
                target = self._local(key)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(local, "rb") as handle:
                    os.fsync(handle.fileno())
                os.replace(local, target)
            else:
                # One PUT is atomic on S3: a reader sees the old state or the whole object.
                self._fs.put_file(str(local), f"{self._prefix}/{self.check_key(key)}")
                local.unlink(missing_ok=True)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot write {key} to {self.artifacts.url}: {exc}") from exc

    def list_files(self, prefix: str) -> list[str]:
        """Every file key under ``prefix``, sorted by name."""
        self.check_key(prefix)
        try:
            if self._root is not None:
                folder = self._local(prefix)
                if not folder.is_dir():
                    return []
                root = self._root.resolve()
                return sorted(
                    p.relative_to(root).as_posix() for p in folder.rglob("*") if p.is_file()
                )
            base = f"{self._prefix}/{prefix}"
            if not self._fs.exists(base):
                return []
            start = len(self._prefix) + 1
            return sorted(key[start:] for key in self._fs.find(base))
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot list {prefix} in {self.artifacts.url}: {exc}") from exc

    def list_folders(self, prefix: str) -> list[str]:
        """The names of the folders right under ``prefix``, sorted."""
        self.check_key(prefix)
        try:
            if self._root is not None:
                folder = self._local(prefix)
                if not folder.is_dir():
                    return []
                return sorted(p.name for p in folder.iterdir() if p.is_dir())
            base = f"{self._prefix}/{prefix}"
            if not self._fs.exists(base):
                return []
            entries = self._fs.ls(base, detail=True, refresh=True)
            return sorted(
                e["name"].rstrip("/").rsplit("/", 1)[-1]
                for e in entries
                if e.get("type") == "directory"
            )
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot list {prefix} in {self.artifacts.url}: {exc}") from exc

    def open(self, key: str) -> IO[bytes] | str:
        """What ``pyarrow.parquet`` reads a file from: a local path or an open S3 file."""
        if self._root is not None:
            return str(self._local(key))
        try:
            handle: IO[bytes] = self._fs.open(f"{self._prefix}/{self.check_key(key)}", "rb")
        except Exception as exc:
            raise StoreError(f"cannot read {key} from {self.artifacts.url}: {exc}") from exc
        return handle


def stamp(moment: datetime) -> str:
    """A sortable UTC file stamp: ``20260129T081500123456Z``."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def parse_stamp(name: str) -> datetime | None:
    """The flush time a log file's name carries, or None for a foreign name."""
    try:
        return datetime.strptime(name.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def log_prefix(model: str) -> str:
    """The folder of ``model``'s prediction log, relative to the store's root."""
    return f"{PREDICTIONS}/{check_name(model, 'model')}"


@dataclass(frozen=True)
class LogFile:
    """One file of the log: its key, the day it is filed under, and its flush time."""

    key: str
    day: date
    flushed: datetime


def iter_log_files(
    files: StoreFiles, model: str, since: datetime | None = None
) -> Iterator[LogFile]:
    """``model``'s log files, newest first, listing one day's folder at a time.

    With ``since``, days before its date are not even listed: a file is filed under the
    day of its flush, and no row is logged after its file's flush.
    """
    prefix = log_prefix(model)
    for folder in reversed(files.list_folders(prefix)):
        try:
            day = date.fromisoformat(folder.removeprefix("date="))
        except ValueError:
            continue  # not written by PredictionLog
        if not folder.startswith("date="):
            continue
        if since is not None and day < since.astimezone(UTC).date():
            return
        found = []
        for key in files.list_files(f"{prefix}/{folder}"):
            parts = PurePosixPath(key).parts
            flushed = parse_stamp(parts[-1])
            if len(parts) != 4 or flushed is None:
                continue
            found.append(LogFile(key, day, flushed))
        found.sort(key=lambda f: (f.flushed, f.key), reverse=True)
        yield from found


def log_files(files: StoreFiles, model: str) -> list[LogFile]:
    """``model``'s log files, newest first."""
    return list(iter_log_files(files, model))


@dataclass
class _Entry:
    request_id: str
    model: str
    version: int
    inputs: pa.Table
    outputs: list[Any]
    latency_ms: float
    shadow: bool
    time: datetime


class PredictionLog:
    """A non-blocking, sampled log of predictions, written as Parquet into the store.

    Args:
        ctx: the workspace's context (its artifact store receives the files).
        model: the model whose predictions this log holds.
        sample_rate: the share of requests logged (0 to 1), decided per request.
        queue_size: entries waiting to be written before ``log`` starts dropping.
        flush_rows: write a file once this many rows wait.
        flush_seconds: write what waits at least this often.
        seed: seeds the sampling, for reproducible tests.

    Example:
        >>> log = PredictionLog(ctx, "fraud", sample_rate=0.1)
        >>> log.log("req-1", "fraud", 3, inputs, [{"prediction": 1, "score": 0.93}], 1.2)
        >>> log.close()
    """

    def __init__(
        self,
        ctx: Context,
        model: str,
        *,
        sample_rate: float = 1.0,
        queue_size: int = 10_000,
        flush_rows: int = 5_000,
        flush_seconds: float = 2.0,
        seed: int | None = None,
    ) -> None:
        check_name(model, "model")
        if not 0.0 <= sample_rate <= 1.0:
            raise InputError(f"sample_rate {sample_rate} is not between 0 and 1")
        if queue_size < 1 or flush_rows < 1 or flush_seconds <= 0:
            raise InputError(
                "queue_size and flush_rows must be at least 1, flush_seconds above 0",
                hint="for example queue_size=10000, flush_rows=5000, flush_seconds=2",
            )
        self.model = model
        self.sample_rate = sample_rate
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.files = StoreFiles(ctx.artifacts)
        self._ctx = ctx
        self._described: dict[tuple[str, int], tuple[str | None, list[Any]]] = {}
        self.dropped = 0
        self.sampled_out = 0
        self.rows_written = 0
        self.files_written = 0
        self.write_failures = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._queue_size = queue_size
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"loopml-prediction-log-{model}", daemon=True
        )
        self._thread.start()

    def log(
        self,
        request_id: str,
        model: str,
        version: int,
        inputs: pa.Table,
        outputs: list[Any],
        latency_ms: float,
        shadow: bool = False,
    ) -> None:
        """Queue one prediction for the log; never blocks and never raises.

        ``outputs`` holds one item per input row: a dict of output columns
        (``{"prediction": 1, "score": 0.93}``) or the model's bare score (a number, or
        the class probabilities); see ``output_columns``.
        """
        now = datetime.now(UTC)
        with self._lock:
            if self._closed:
                self.dropped += 1
                return
            if self.sample_rate < 1.0 and self._random.random() >= self.sample_rate:
                self.sampled_out += 1
                return
        if isinstance(inputs, pa.RecordBatch):
            inputs = pa.Table.from_batches([inputs])
        elif not isinstance(inputs, pa.Table):
            with self._lock:
                self.dropped += 1  # not a table: it could never be written
            return
        entry = _Entry(request_id, model, version, inputs, outputs, latency_ms, shadow, now)
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def flush(self, timeout: float = 30.0) -> None:
        """Write everything queued so far, and wait until it is in the store."""
        if self._closed:
            return
        done = threading.Event()
        self._queue.put(done, timeout=timeout)
        done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued and stop the background thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        pending: list[_Entry] = []
        rows = 0
        deadline = 0.0
        while True:
            wait = max(0.0, deadline - time.monotonic()) if pending else None
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None  # the oldest pending entry has waited flush_seconds
            if isinstance(item, _Entry):
                if not pending:
                    deadline = time.monotonic() + self.flush_seconds
                pending.append(item)
                rows += item.inputs.num_rows
                if rows < self.flush_rows and time.monotonic() < deadline:
                    continue
            if pending:
                pending = self._write(pending)
                rows = sum(e.inputs.num_rows for e in pending)
                deadline = time.monotonic() + self.flush_seconds
            if isinstance(item, threading.Event):
                item.set()
            elif item is _STOP:
                if pending:
                    with self._lock:
                        self.dropped += len(pending)
                    logger.error(
                        "prediction log for %s: %d requests not written at close",
                        self.model,
                        len(pending),
                    )
                return

    def _write(self, entries: list[_Entry]) -> list[_Entry]:
        """Write ``entries``; return those to try again (a store failure), bounded."""
        built: list[tuple[pa.Table, list[_Entry]]] = []
        for group in _batches(entries):
            described = self._describe(group[0].model, group[0].version)
            try:
                built.append((entries_table(group, *described), group))
                continue
            except Exception:  # a malformed entry: find it, and keep the others
                pass
            for entry in group:
                try:
                    built.append((entries_table([entry], *described), [entry]))
                except Exception as exc:  # retrying could not fix it: drop it, counted
                    with self._lock:
                        self.dropped += 1
                    logger.error(
                        "prediction log for %s: dropped request %s: %s",
                        self.model,
                        entry.request_id,
                        exc,
                    )
        retry: list[_Entry] = []
        for table, group in _group_tables(built):
            try:
                self._write_table(table)
            except Exception as exc:  # never let the log thread die
                self.write_failures += 1
                logger.warning(
                    "prediction log for %s: write failed, will retry: %s", self.model, exc
                )
                retry.extend(group)
        if len(retry) > self._queue_size:
            with self._lock:
                self.dropped += len(retry) - self._queue_size
            retry = retry[-self._queue_size :]
        return retry

    def _describe(self, model: str, version: int) -> tuple[str | None, list[Any]]:
        """The task and classes of a version, to name its bare scores (cached)."""
        if (model, version) not in self._described:
            try:
                with self._ctx.read() as conn:
                    found = model_versions.resolve(conn, f"{model}@{version}")
                described: tuple[str | None, list[Any]] = (
                    found.task,
                    list(found.meta.get("classes", [])),
                )
            except LoopMLError:
                described = (None, [])  # logged with generic names; nothing is lost
            self._described[(model, version)] = described
        return self._described[(model, version)]

    def _write_table(self, table: pa.Table) -> None:
        now = datetime.now(UTC)
        name = f"{stamp(now)}-{secrets.token_hex(6)}.parquet"
        key = f"{log_prefix(self.model)}/date={now.date().isoformat()}/{name}"
        with self.files.staging() as folder:
            path = folder / name
            pq.write_table(table, path, compression="zstd")
            self.files.put(path, key)
        self.rows_written += table.num_rows
        self.files_written += 1


def entries_table(
    entries: Sequence[_Entry], task: str | None = None, classes: Sequence[Any] = ()
) -> pa.Table:
    """Logged requests of one version, whose inputs share a schema, as rows of the log.

    Columns are built once for all the requests (not request by request): a flush of
    thousands of one-row requests costs milliseconds of the log thread, not seconds.
    """
    counts = np.array([e.inputs.num_rows for e in entries], dtype=np.int64)
    rows = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    micros = np.array([round(e.time.timestamp() * 1_000_000) for e in entries], dtype=np.int64)

    def repeat(values: list[Any], kind: pa.DataType) -> pa.Array:
        return pa.array(np.repeat(np.array(values, dtype=object), counts), kind)

    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "request_id": repeat([e.request_id for e in entries], pa.string()),
        "row": pa.array(np.arange(rows, dtype=np.int64) - starts, pa.int32()),
        "time": pa.array(np.repeat(micros, counts)).cast(pa.timestamp("us", tz="UTC")),
        "model": repeat([e.model for e in entries], pa.string()),
        "version": repeat([e.version for e in entries], pa.int64()),
        "shadow": repeat([bool(e.shadow) for e in entries], pa.bool_()),
        "latency_ms": repeat([float(e.latency_ms) for e in entries], pa.float64()),
    }
    inputs = pa.concat_tables([e.inputs for e in entries]).combine_chunks()
    for name, column in zip(inputs.column_names, inputs.columns, strict=True):
        columns[f"input.{name}" if name in columns else name] = column
    reserved = set(columns)
    outputs = [item for e in entries for item in e.outputs]
    for name, values in output_columns(outputs, rows, task, classes).items():
        columns[f"output.{name}" if name in reserved else name] = values
    return pa.table(columns)


def _batches(entries: Sequence[_Entry]) -> list[list[_Entry]]:
    """Entries grouped by version and input schema, each group in logging order."""
    groups: dict[tuple[str, int, pa.Schema], list[_Entry]] = {}
    for entry in entries:
        groups.setdefault((entry.model, entry.version, entry.inputs.schema), []).append(entry)
    return list(groups.values())


def output_columns(
    outputs: Sequence[Any], rows: int, task: str | None = None, classes: Sequence[Any] = ()
) -> dict[str, pa.Array]:
    """Outputs, one item per row, as columns.

    An item is either a dict of output columns (nested dicts flatten with dots:
    ``{"probabilities": {"a": 0.2}}`` becomes ``probabilities.a``; lists become JSON),
    or the model's bare score, as the server hands them over. Bare scores are read by
    the version's ``task``: binary and anomaly give ``prediction`` and ``score``;
    multiclass gives ``prediction``, ``score`` (the predicted class's probability) and
    ``probabilities.CLASS``; regression gives ``prediction``. With the task unknown,
    a bare number is a ``score`` and a list gives ``probabilities.0``, ``.1``...
    """
    if len(outputs) != rows:
        raise InputError(f"{len(outputs)} outputs for {rows} input rows")
    if any(isinstance(o, dict) for o in outputs):
        flat = [_flatten(o) if isinstance(o, dict) else {"score": _plain(o)} for o in outputs]
        names = list(dict.fromkeys(name for row in flat for name in row))
        return {name: _array([row.get(name) for row in flat]) for name in names}
    if (rows and isinstance(outputs[0], list | tuple)) or task == "multiclass":
        width = len(classes) if not rows else -1
        matrix = np.asarray(outputs, dtype=np.float64).reshape(rows, width)
        labels = [str(c) for c in classes] if len(classes) == matrix.shape[1] else None
        result: dict[str, pa.Array] = {}
        if labels is not None:
            best = np.argmax(matrix, axis=1) if rows else np.zeros(0, dtype=np.int64)
            result["prediction"] = _array([classes[i] for i in best])
            result["score"] = pa.array(matrix[np.arange(rows), best], pa.float64())
        for index in range(matrix.shape[1]):
            name = labels[index] if labels is not None else str(index)
            result[f"probabilities.{name}"] = pa.array(matrix[:, index], pa.float64())
        return result
    values = np.asarray(outputs, dtype=np.float64) if rows else np.zeros(0)
    if task == "binary" and len(classes) == 2:
        return {
            "prediction": _array([classes[int(v >= 0.5)] for v in values]),
            "score": pa.array(values, pa.float64()),
        }
    if task == "anomaly":
        return {
            "prediction": pa.array((values > 0).astype(np.int64)),
            "score": pa.array(values, pa.float64()),
        }
    if task == "regression":
        return {"prediction": pa.array(values, pa.float64())}
    return {"score": pa.array(values, pa.float64())}


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = _plain(value)
    return flat


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    if hasattr(value, "item") and callable(value.item):  # a NumPy scalar
        return value.item()
    return value


def _array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed types (an int here, a string there): keep every value, as text.
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _group_tables(
    built: list[tuple[pa.Table, list[_Entry]]],
) -> list[tuple[pa.Table, list[_Entry]]]:
    """Tables concatenated where their schemas unify (int and float do), else apart;
    each with the entries it holds."""
    groups: list[list[tuple[pa.Table, list[_Entry]]]] = []
    for pair in built:
        for group in groups:
            try:
                pa.unify_schemas([group[0][0].schema, pair[0].schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                continue
            group.append(pair)
            break
        else:
            groups.append([pair])
    return [
        (
            pa.concat_tables([table for table, _ in group], promote_options="permissive"),
            [entry for _, entries in group for entry in entries],
        )
        for group in groups
    ]
