"""Writing a new dataset version: Parquet parts staged on a background thread.

Every producer of versions (ingest, transforms, features, splits) stages its rows
through ``PartWriter`` and then hands the parts to ``versions.commit``, so all of
them follow the same commit protocol.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from loopml.context import Context
from loopml.data import versions
from loopml.data.profile import profile_files
from loopml.errors import LoopMLError, StoreError
from loopml.records import Column, DatasetVersion, StoredObject

PART_ROWS = 8_000_000
ROW_GROUP_ROWS = 262_144


class PartWriter:
    """Writes accepted batches into Parquet part files, on a background thread.

    Batches are gathered into row groups of about ROW_GROUP_ROWS rows and handed to
    a writer thread (Parquet encoding releases the GIL), so encoding overlaps with
    reading and checking the next rows. The queue holds one group, which bounds memory.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.parts: list[tuple[Path, int]] = []
        self.schema: pa.Schema | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="loopml-parquet", daemon=True)
        self._thread.start()

    def write(self, batch: pa.RecordBatch) -> None:
        if self.schema is None:
            self.schema = batch.schema
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._put(pa.Table.from_batches(self._pending, self.schema))
            self._pending, self._pending_rows = [], 0

    def _put(self, item: pa.Table | None) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise StoreError(f"writing Parquet to staging failed: {self._error}") from self._error

    def _drain(self) -> None:
        writer: pq.ParquetWriter | None = None
        rows = 0
        try:
            while (table := self._queue.get()) is not None:
                if writer is None:
                    path = self.folder / f"part-{len(self.parts):05d}.parquet"
                    writer = pq.ParquetWriter(path, table.schema, compression="snappy")
                    self.parts.append((path, 0))
                writer.write_table(table, row_group_size=len(table))
                rows += len(table)
                self.parts[-1] = (self.parts[-1][0], rows)
                if rows >= PART_ROWS:
                    writer.close()
                    writer, rows = None, 0
            if writer is not None:
                writer.close()
        except BaseException as exc:  # handed to the ingest thread, which raises it
            self._error = exc

    def finish(self, schema: pa.Schema) -> list[tuple[Path, int]]:
        """Write what is pending and close; an empty ingest still gets one empty part."""
        self._flush()
        self._put(None)
        self._thread.join()
        self._raise()
        if not self.parts:
            path = self.folder / "part-00000.parquet"
            pq.write_table(schema.empty_table(), path)
            self.parts.append((path, 0))
        return self.parts

    def abort(self) -> None:
        """Stop the writer thread after a failure elsewhere."""
        if self._thread.is_alive():
            self._pending = []
            self._put(None)
            self._thread.join()


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


def publish(
    ctx: Context,
    name: str,
    part_files: Sequence[tuple[Path, int]],
    schema: pa.Schema,
    *,
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
    """Profile staged parts, move them into the artifact store, and commit the version.

    The last steps of the commit protocol, shared by every producer of versions.
    """
    profile = profile_files([str(path) for path, _ in part_files], schema)
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
            source=source,
            rows_read=rows,
            meta=meta,
            action=action,
            inputs=inputs,
            activity=activity,
        )
