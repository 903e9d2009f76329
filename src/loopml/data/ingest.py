"""Ingest: a source streamed through its contract and PII policies into a new version.

The flow, batch by batch in bounded memory::

    source ──► contract checks ──► PII policies ──► Parquet parts (staging)
                    │
                    └──► quarantine (staging)

then, once the source is exhausted: profile the parts, move every file into the
artifact store under its content address, and commit the version's metadata row
with its audit event in one transaction. A crash before that commit leaves only
staging data behind, which ``gc`` removes; nothing half-written is ever visible.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from loopml.context import Context
from loopml.data import _duckdb, versions
from loopml.data import pii as pii_policies
from loopml.data.contract import Contract
from loopml.data.profile import profile_files
from loopml.data.quarantine import Quarantine
from loopml.data.sources import Source, arrow_schema, open_source
from loopml.data.validate import SeenKeys, check_batch
from loopml.errors import ContractViolation, InputError, LoopMLError, StoreError
from loopml.records import Column, DatasetVersion, StoredObject

PART_ROWS = 8_000_000
ROW_GROUP_ROWS = 262_144
ProgressFn = Callable[[int, int | None, int | None], None]


@dataclass(frozen=True)
class IngestResult:
    """What one ingest did; ``rows_read == rows_accepted + rows_quarantined`` always."""

    version: DatasetVersion
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    quarantine_reasons: dict[str, int]
    pii_warnings: list[str]
    pii_warning_kinds: dict[str, str]
    schema_changes: dict[str, Any]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready data (what ``loopml ingest --json`` prints)."""
        return {
            "dataset": self.version.dataset,
            "version": self.version.number,
            "id": self.version.id,
            "ref": self.version.ref,
            "rows_read": self.rows_read,
            "rows_accepted": self.rows_accepted,
            "rows_quarantined": self.rows_quarantined,
            "quarantine_reasons": self.quarantine_reasons,
            "pii_warnings": self.pii_warnings,
            "pii_warning_kinds": self.pii_warning_kinds,
            "pii_applied": dict(self.version.pii),
            "schema_changes": self.schema_changes,
            "seconds": round(self.seconds, 3),
        }


class _PartWriter:
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


def _columns(schema: pa.Schema, contract: Contract | None) -> list[Column]:
    nullable = {n: r.nullable for n, r in contract.columns.items()} if contract else {}
    return [Column(f.name, str(f.type), nullable.get(f.name, True)) for f in schema]


def ingest(
    ctx: Context,
    name: str,
    source: str | os.PathLike[str] | None = None,
    *,
    contract: Contract | str | Path | None = None,
    pii: dict[str, str] | list[str] | None = None,
    query: str | None = None,
    format: str | None = None,
    delimiter: str = ",",
    on_progress: ProgressFn | None = None,
) -> IngestResult:
    """Read ``source`` into a new version of dataset ``name``.

    Args:
        ctx: the workspace context.
        name: the dataset; created on first ingest.
        source: a file, folder or glob (CSV, JSON Lines, Parquet), or with ``query`` a
            SQLAlchemy database URL.
        contract: a Contract or the path of a contract YAML; without one the schema is
            inferred from the data.
        pii: column -> policy (``drop``, ``hash``, ``mask``, ``redact``), or
            ``COL=POLICY`` strings; added to (and overriding) the contract's policies.
        query: SQL to run against the database at ``source``.
        format: ``csv``, ``jsonl`` or ``parquet`` when the suffix does not tell.
        delimiter: the CSV delimiter.
        on_progress: called as ``(rows_read, total_rows or None, bytes or None)``.

    Returns:
        The new version and what happened to every row read.

    Raises:
        InputError: the source, contract or arguments are wrong; nothing is committed.
        ContractViolation: the quarantined share passed the contract's threshold.

    Example:
        >>> result = ingest(ctx, "transactions", "data/tx.csv", contract="tx.yaml")
        >>> result.rows_read == result.rows_accepted + result.rows_quarantined
        True
    """
    started = time.perf_counter()
    versions.check_name(name)
    if contract is not None and not isinstance(contract, Contract):
        contract = Contract.load(contract)
    policies = {**(contract.pii if contract else {}), **pii_policies.parse_policies(pii)}
    try:
        reader = open_source(
            source, contract=contract, format=format, query=query, delimiter=delimiter
        )
        with ctx.artifacts.staging() as folder:
            result = _run(ctx, name, reader, contract, policies, folder, on_progress)
    except LoopMLError as exc:
        with ctx.write() as conn:
            ctx.audit(
                conn,
                "dataset.ingest",
                f"dataset:{name}",
                outcome="failed",
                details={"error": exc.message},
            )
        raise
    return IngestResult(**{**result, "seconds": time.perf_counter() - started})


def _run(
    ctx: Context,
    name: str,
    reader: Source,
    contract: Contract | None,
    policies: dict[str, str],
    folder: Path,
    on_progress: ProgressFn | None,
) -> dict[str, Any]:
    key = ctx.secret_key("pii") if any(p == "hash" for p in policies.values()) else b""
    parts = _PartWriter(folder)
    quarantine = Quarantine(folder, policies, key)
    seen = SeenKeys() if contract and contract.unique else None
    total_bytes = reader.total_bytes()
    try:
        accepted, source_schema, warnings = _stream(
            reader, contract, policies, key, parts, quarantine, seen, on_progress
        )
        quarantine_path = quarantine.finish(reader)
        rows_read = accepted + quarantine.count
        if on_progress:
            on_progress(rows_read, rows_read, total_bytes)
        if (
            contract
            and rows_read
            and quarantine.count / rows_read > contract.max_quarantine_fraction
        ):
            top = ", ".join(f"{r} ({n})" for r, n in quarantine.reasons.most_common(3))
            raise ContractViolation(
                f"{reader.description}: {quarantine.count} of {rows_read} rows "
                f"({quarantine.count / rows_read:.1%}) broke the contract, above its limit of "
                f"{contract.max_quarantine_fraction:.1%}; most common: {top}",
                hint="fix the data, or raise max_quarantine_fraction in the contract",
            )
        if source_schema is None:
            source_schema = _empty_schema(contract, reader)
            warnings = {}
        schema = pii_policies.output_schema(source_schema, policies)
        part_files = parts.finish(parts.schema or schema)
    except BaseException:
        parts.abort()
        raise
    schema = parts.schema or schema
    profile = profile_files([str(p) for p, _ in part_files], schema)
    stored = [ctx.artifacts.put(path, rows=rows) for path, rows in part_files]
    quarantine_object: StoredObject | None = None
    if quarantine_path is not None:
        quarantine_object = ctx.artifacts.put(quarantine_path, rows=quarantine.count)
    version = versions.commit(
        ctx,
        dataset=name,
        schema=_columns(schema, contract),
        files=stored,
        source=reader.description,
        rows_read=rows_read,
        quarantine=quarantine_object,
        quarantine_reasons=dict(quarantine.reasons),
        profile=profile,
        pii=policies,
        pii_warnings=sorted(warnings or {}),
    )
    return {
        "version": version,
        "rows_read": rows_read,
        "rows_accepted": accepted,
        "rows_quarantined": quarantine.count,
        "quarantine_reasons": dict(quarantine.reasons),
        "pii_warnings": sorted(warnings or {}),
        "pii_warning_kinds": dict(warnings or {}),
        "schema_changes": dict(version.schema_changes),
    }


def _stream(
    reader: Source,
    contract: Contract | None,
    policies: dict[str, str],
    key: bytes,
    parts: _PartWriter,
    quarantine: Quarantine,
    seen: SeenKeys | None,
    on_progress: ProgressFn | None,
) -> tuple[int, pa.Schema | None, dict[str, str] | None]:
    """Check, mask and write every batch; return (rows accepted, source schema, PII warnings)."""

    warnings: dict[str, str] | None = None
    source_schema: pa.Schema | None = None
    accepted = 0
    total_rows, total_bytes = reader.total_rows(), reader.total_bytes()
    con = _duckdb.connect()
    for item in reader.batches():
        batch = item.batch
        if source_schema is None:
            source_schema = batch.schema
            unknown = [c for c in policies if c not in batch.schema.names]
            if unknown:
                raise InputError(
                    f"PII policy for column(s) {', '.join(unknown)}, which the "
                    f"source does not have",
                    hint=f"columns: {', '.join(batch.schema.names)}",
                )
            warnings = pii_policies.detect(batch, policies)
        reasons = (
            check_batch(batch, contract, seen, item.reasons, connection=con) if contract else None
        )
        if reasons is not None:
            import pyarrow.compute as pc

            quarantine.add(batch, reasons, item.file, item.offset)
            batch = batch.filter(pc.is_null(reasons))
        if batch.num_rows:
            parts.write(pii_policies.apply_policies(batch, policies, key))
            accepted += batch.num_rows
        if on_progress:
            on_progress(accepted + quarantine.count + len(reader.rejects), total_rows, total_bytes)
    return accepted, source_schema, warnings


def _empty_schema(contract: Contract | None, reader: Source) -> pa.Schema:
    if contract is not None:
        return arrow_schema(contract)
    header = getattr(reader, "header", None)
    if header:
        return pa.schema([pa.field(n, pa.string()) for n in header])
    return pa.schema([])
