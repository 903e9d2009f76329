"""Writing a new dataset version: Parquet parts staged on a background thread.

Every producer of versions (ingest, transforms, features, splits) stages its rows
through ``PartWriter`` and then hands the parts to ``versions.commit``, so all of
them follow the same commit protocol.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from loopml.context import Context
from loopml.data import versions
from loopml.data.profile import GroupProfile, Profiler, profile_group
from loopml.errors import LoopMLError, StoreError
from loopml.records import Column, DatasetVersion, StoredObject

GROUP_ROWS = 262_144
WRITERS = 2
# Parquet's default (1 MiB) lets a column with many distinct values grow a dictionary
# hash table of several MiB in every part before falling back to plain encoding: a
# third of the encoding time, mostly spent faulting in fresh memory. Columns with up
# to a few thousand distinct values, where dictionaries pay, still get one.
DICTIONARY_PAGE_BYTES = 128 << 10


class PartWriter:
    """Writes accepted rows as Parquet part files, on background threads.

    Rows are gathered into groups of about GROUP_ROWS; each group becomes one part
    file, written by one of WRITERS threads that drops the rows not kept, applies
    ``transform``, encodes Parquet and profiles the group (Arrow and Parquet work
    releases the GIL, so it overlaps with reading the next rows). Parts are numbered
    in input order, so the version's rows keep the source's order, and their partial
    profiles merge in that order; at most WRITERS groups are in flight, which bounds
    memory.

    Args:
        folder: where the part files go.
        transform: applied to each group before it is written (PII policies).
    """

    def __init__(
        self, folder: Path, transform: Callable[[pa.Table], pa.Table] | None = None
    ) -> None:
        self.folder = folder
        self.transform = transform
        self.schema: pa.Schema | None = None
        self._input_schema: pa.Schema | None = None
        self._pending: list[tuple[pa.RecordBatch, pa.Array | None]] = []
        self._pending_rows = 0
        self._pool = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="loopml-parquet")
        self._in_flight: deque[Future[tuple[Path, int, Future[GroupProfile]]]] = deque()
        self._done: list[tuple[Path, int]] = []
        self._groups = 0
        self._profiler = Profiler()

    def write(self, batch: pa.RecordBatch, keep: pa.Array | None = None) -> None:
        """Queue ``batch`` for writing; with ``keep``, only the rows where it is true."""
        if self._input_schema is None:
            self._input_schema = batch.schema
        self._pending.append((batch, keep))
        self._pending_rows += batch.num_rows
        if self._pending_rows >= GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        while len(self._in_flight) >= WRITERS:
            self._collect(self._in_flight.popleft())
        path = self.folder / f"part-{self._groups:05d}.parquet"
        self._groups += 1
        task = self._pool.submit(self._write_group, path, self._pending, self._profiler.sketched)
        self._in_flight.append(task)
        self._pending, self._pending_rows = [], 0

    def _collect(self, future: Future[tuple[Path, int, Future[GroupProfile]]]) -> None:
        try:
            path, rows, profiled = future.result()
        except Exception as exc:
            raise StoreError(f"writing Parquet to staging failed: {exc}") from exc
        self._done.append((path, rows))
        self._profiler.add(profiled.result())

    def _write_group(
        self,
        path: Path,
        group: list[tuple[pa.RecordBatch, pa.Array | None]],
        sketched: frozenset[str],
    ) -> tuple[Path, int, Future[GroupProfile]]:
        table = pa.Table.from_batches(
            [batch if keep is None else batch.filter(keep) for batch, keep in group],
            self._input_schema,
        )
        if self.transform is not None:
            table = self.transform(table)
        # Profiling is a task of its own, so that the last group's encoding and its
        # profile run side by side once the source is exhausted.
        profiled = self._pool.submit(profile_group, table, self._profiler.hasher, sketched)
        pq.write_table(
            table,
            path,
            compression="snappy",
            row_group_size=max(len(table), 1),
            dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
        )
        return path, len(table), profiled

    def finish(self, schema: pa.Schema) -> list[tuple[Path, int]]:
        """Write what is pending and wait; an empty result still gets one empty part.

        Returns:
            (path, rows) of each part holding rows, in input order.
        """
        self._flush()
        while self._in_flight:
            self._collect(self._in_flight.popleft())
        self._pool.shutdown(wait=True)
        self._profiler.close()
        parts = [(path, rows) for path, rows in self._done if rows]
        for path, rows in self._done:
            if not rows:
                path.unlink(missing_ok=True)
        if parts:
            self.schema = pq.read_schema(parts[0][0])
        else:
            path = self.folder / "part-00000.parquet"
            empty = schema.empty_table()  # the caller's schema is already the output's
            pq.write_table(empty, path)
            self.schema = empty.schema
            parts = [(path, 0)]
        return parts

    def profile(self) -> dict[str, dict[str, Any]]:
        """The profile of the rows written, after ``finish`` (see ``loopml.data.profile``)."""
        if self.schema is None:
            raise RuntimeError("PartWriter.profile() before finish()")
        return self._profiler.result(self.schema)

    def abort(self) -> None:
        """Stop writing after a failure elsewhere (what is in flight finishes first)."""
        self._pending = []
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._profiler.close()


@contextmanager
def audited_failure(ctx: Context, action: str, target: str) -> Iterator[None]:
    """Audit a failure of ``action`` on ``target`` (outcome "failed"), then re-raise it.

    Success is audited by the commit itself, in the version's own transaction.
    """
    try:
        yield
    except Exception as exc:
        message = exc.message if isinstance(exc, LoopMLError) else f"{type(exc).__name__}: {exc}"
        with ctx.write() as conn:
            ctx.audit(conn, action, target, outcome="failed", details={"error": message})
        raise


F = TypeVar("F", bound=Callable[..., Any])


def audits_failures(action: str) -> Callable[[F], F]:
    """Decorate ``fn(ctx, name, ...)`` so its failures are audited on ``dataset:name``."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(ctx: Context, name: str, *args: Any, **kwargs: Any) -> Any:
            with audited_failure(ctx, action, f"dataset:{name}"):
                return fn(ctx, name, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def publish(
    ctx: Context,
    name: str,
    part_files: Sequence[tuple[Path, int]],
    schema: pa.Schema,
    *,
    profile: dict[str, dict[str, Any]],
    source: str,
    rows_read: int,
    nullable: dict[str, bool] | None = None,
    quarantine: tuple[Path, int] | None = None,
    quarantine_reasons: dict[str, int] | None = None,
    pii: dict[str, str] | None = None,
    pii_warnings: Sequence[str] = (),
    meta: dict[str, Any] | None = None,
    action: str = "dataset.ingest",
    inputs: Sequence[str] = (),
    activity: str | None = None,
) -> DatasetVersion:
    """Move staged parts into the artifact store and commit the version with ``profile``.

    The last steps of the commit protocol, shared by every producer of versions.
    """
    stored = [ctx.artifacts.put(path, rows=rows) for path, rows in part_files]
    quarantine_object: StoredObject | None = None
    if quarantine is not None:
        quarantine_object = ctx.artifacts.put(quarantine[0], rows=quarantine[1])
    nullable = nullable or {}
    return versions.commit(
        ctx,
        dataset=name,
        schema=[Column(f.name, str(f.type), nullable.get(f.name, True)) for f in schema],
        files=stored,
        source=source,
        rows_read=rows_read,
        quarantine=quarantine_object,
        quarantine_reasons=quarantine_reasons,
        profile=profile,
        pii=pii,
        pii_warnings=pii_warnings,
        meta=meta,
        action=action,
        inputs=inputs,
        activity=activity,
    )


def write_version(
    ctx: Context,
    name: str,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    *,
    source: str,
    meta: dict[str, Any] | None = None,
    action: str,
    inputs: Sequence[str] = (),
    activity: str | None = None,
) -> DatasetVersion:
    """Stage ``batches`` as Parquet and commit them as a new version of ``name``.

    Nothing is visible until the commit; an exception from ``batches`` (user code in a
    transform, say) leaves only staging data behind.
    """
    versions.check_name(name)
    with ctx.artifacts.staging() as folder:
        parts = PartWriter(folder)
        rows = 0
        try:
            for batch in batches:
                if batch.num_rows:
                    parts.write(batch)
                    rows += batch.num_rows
            part_files = parts.finish(schema)
        except BaseException:
            parts.abort()
            raise
        return publish(
            ctx,
            name,
            part_files,
            parts.schema or schema,
            profile=parts.profile(),
            source=source,
            rows_read=rows,
            meta=meta,
            action=action,
            inputs=inputs,
            activity=activity,
        )
