"""Ingest: a source streamed through its contract and PII policies into a new version.

The flow, batch by batch in bounded memory::

    source ──► contract checks ──► PII policies ──► Parquet parts (staging)
                    │
                    └──► quarantine (staging)

profiling each part as it is written. Once the source is exhausted: move every file
into the artifact store under its content address, and commit the version's metadata
row with its audit event in one transaction. A crash before that commit leaves only
staging data behind, which ``gc`` removes; nothing half-written is ever visible.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from loopml.context import Context
from loopml.data import _duckdb, versions
from loopml.data import pii as pii_policies
from loopml.data.contract import Contract
from loopml.data.quarantine import Quarantine
from loopml.data.sources import RESERVED_PREFIX, Source, open_source
from loopml.data.validate import SeenKeys, check_batch
from loopml.data.writer import PartWriter, audited_failure, publish
from loopml.errors import ContractViolation, InputError
from loopml.records import DatasetVersion

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


def ingest(
    ctx: Context,
    name: str,
    source: str | os.PathLike[str] | None = None,
    *,
    contract: Contract | str | Path | None = None,
    pii: dict[str, str] | list[str] | None = None,
    query: str | None = None,
    format: str | None = None,
    delimiter: str | None = None,
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
        delimiter: the CSV delimiter (a tab for ``.tsv``, else a comma).
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
    _warm_pandas(contract, policies, query)
    # Every failure is audited, a bug's as much as a user's mistake.
    with audited_failure(ctx, "dataset.ingest", f"dataset:{name}"):
        reader = open_source(
            source, contract=contract, format=format, query=query, delimiter=delimiter
        )
        with ctx.artifacts.staging() as folder:
            run = _Ingestion(ctx, name, reader, contract, policies, folder, on_progress)
            result = run.run()
    return IngestResult(**{**result, "seconds": time.perf_counter() - started})


def _warm_pandas(contract: Contract | None, policies: dict[str, str], query: str | None) -> None:
    """Import pandas on a background thread while the scan starts, if it will be needed.

    pyarrow imports pandas on its first conversion of Python values (0.13 CPU-s, more
    from a cold cache), which would otherwise stall the stream. The common path needs
    none of it (see ``_arrow``); PII policies, keys other than one integer column and
    database sources still convert Python values.
    """
    if "pandas" in sys.modules:
        return
    unique = contract.unique if contract else []
    int_key = (
        len(unique) == 1 and contract is not None and contract.columns[unique[0]].type == "int"
    )
    if policies or query is not None or (unique and not int_key):
        threading.Thread(target=importlib.import_module, args=("pandas",), daemon=True).start()


class _Ingestion:
    """One ingest's state: the source, its checks, and the files it stages."""

    def __init__(
        self,
        ctx: Context,
        name: str,
        reader: Source,
        contract: Contract | None,
        policies: dict[str, str],
        folder: Path,
        on_progress: ProgressFn | None,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.reader = reader
        self.contract = contract
        self.policies = policies
        self.folder = folder
        self.on_progress = on_progress
        needs_key = any(p == "hash" for p in policies.values())
        self.key = ctx.secret_key("pii") if needs_key else b""
        self.quarantine = Quarantine(folder, policies, self.key)
        self.quarantine.watch(reader)
        self.seen = SeenKeys() if contract and contract.unique else None
        self.accepted = 0
        self.source_schema: pa.Schema | None = None
        self.warnings: dict[str, str] = {}

    def run(self) -> dict[str, Any]:
        """Stream, check, stage, profile, store and commit; return what happened."""
        parts = PartWriter(self.folder, self._apply_policies if self.policies else None)
        try:
            self._stream(parts)
            quarantine_path = self.quarantine.finish(self.reader)
            rows_read = self.accepted + self.quarantine.count
            if self.on_progress:
                self.on_progress(rows_read, rows_read, self.reader.total_bytes())
            self._check_threshold(rows_read)
            source_schema = self.source_schema or _empty_schema(self.contract, self.reader)
            schema = pii_policies.output_schema(source_schema, self.policies)
            part_files = parts.finish(schema)
        except BaseException:
            parts.abort()
            self.quarantine.close()
            raise
        schema = parts.schema or schema
        nullable = (
            {n: r.nullable for n, r in self.contract.columns.items()} if self.contract else {}
        )
        version = publish(
            self.ctx,
            self.name,
            part_files,
            schema,
            profile=parts.profile(),
            source=self.reader.description,
            rows_read=rows_read,
            nullable=nullable,
            quarantine=(quarantine_path, self.quarantine.count) if quarantine_path else None,
            quarantine_reasons=dict(self.quarantine.reasons),
            pii=self.policies,
            pii_warnings=sorted(self.warnings),
            inputs=[f"source:{self.reader.description}"],
            activity="ingest",
        )
        return {
            "version": version,
            "rows_read": rows_read,
            "rows_accepted": self.accepted,
            "rows_quarantined": self.quarantine.count,
            "quarantine_reasons": dict(self.quarantine.reasons),
            "pii_warnings": sorted(self.warnings),
            "pii_warning_kinds": dict(self.warnings),
            "schema_changes": dict(version.schema_changes),
        }

    def _stream(self, parts: PartWriter) -> None:
        """Check, mask and write every batch the source yields."""
        import pyarrow.compute as pc

        # Rules run in the scan for CSV; other sources need a connection to run them.
        con: Any = None
        total_rows, total_bytes = self.reader.total_rows(), self.reader.total_bytes()
        try:
            for item in self.reader.batches():
                batch = item.batch
                if self.source_schema is None:
                    self._first_batch(batch)
                reasons = None
                if self.contract is not None:
                    if item.reasons is None and con is None:
                        con = _duckdb.connect()
                    reasons = check_batch(
                        batch, self.contract, self.seen, item.reasons, connection=con
                    )
                keep = None
                kept = batch.num_rows
                if reasons is not None:
                    self.quarantine.add(batch, reasons, item.file, item.offset)
                    keep, kept = pc.is_null(reasons), reasons.null_count
                if kept:
                    # The writer thread drops the rejected rows and applies the PII policies.
                    parts.write(batch, keep)
                    self.accepted += kept
                if self.on_progress:
                    self.on_progress(self.accepted + self.quarantine.count, total_rows, total_bytes)
        finally:
            if con is not None:
                con.close()

    def _apply_policies(self, table: pa.Table) -> pa.Table:
        return pii_policies.apply_policies(table, self.policies, self.key)

    def _first_batch(self, batch: pa.RecordBatch) -> None:
        self.source_schema = batch.schema
        if reserved := [n for n in batch.schema.names if n.startswith(RESERVED_PREFIX)]:
            raise InputError(
                f"{self.reader.description}: column name(s) {', '.join(reserved)} are reserved",
                hint=f"rename columns starting with {RESERVED_PREFIX!r}",
            )
        if unknown := [c for c in self.policies if c not in batch.schema.names]:
            raise InputError(
                f"PII policy for column(s) {', '.join(unknown)}, which the source does not have",
                hint=f"columns: {', '.join(batch.schema.names)}",
            )
        self.warnings = pii_policies.detect(batch, self.policies)

    def _check_threshold(self, rows_read: int) -> None:
        contract, count = self.contract, self.quarantine.count
        if (
            contract is None
            or not rows_read
            or count / rows_read <= contract.max_quarantine_fraction
        ):
            return
        top = ", ".join(f"{r} ({n})" for r, n in self.quarantine.reasons.most_common(3))
        raise ContractViolation(
            f"{self.reader.description}: {count} of {rows_read} rows ({count / rows_read:.1%}) "
            f"broke the contract, above its limit of {contract.max_quarantine_fraction:.1%}; "
            f"most common: {top}",
            hint="fix the data, or raise max_quarantine_fraction in the contract",
        )


def _empty_schema(contract: Contract | None, reader: Source) -> pa.Schema:
    """The schema of a source that yielded no rows: declared, or as the source knows it."""
    if contract is not None:
        return contract.arrow_schema()
    return reader.known_schema() or pa.schema([])
