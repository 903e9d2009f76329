"""The quarantine: every rejected row, with its file, row number, reason and contents.

Rows the source could not parse and rows rejected by the contract are spooled to
staging Parquet files as they come, so memory stays bounded. When the source is
exhausted the contract rejects get their row numbers (a CSV reader knows them only
at the end) and both spools merge into the version's quarantine file. Rejected rows
get the same PII policies as accepted ones.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.data import _arrow
from loopml.data.pii import REDACTED, apply_policies, scrub_record
from loopml.data.sources import Reject, Source
from loopml.data.validate import bool_mask

SCHEMA = pa.schema(
    [
        pa.field("file", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("record", pa.string()),
    ]
)
_SPOOL = pa.schema(
    [
        pa.field("file", pa.string()),
        pa.field("index", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("record", pa.string()),
    ]
)
_QUOTED = re.compile(r'"[^"]*"')
_FLUSH_ROWS = 10_000


class Quarantine:
    """Collects rejected rows during one ingest; ``finish()`` writes the final file."""

    def __init__(self, folder: Path, policies: dict[str, str], key: bytes) -> None:
        self.folder = folder
        self.policies = policies
        self.key = key
        self.reasons: Counter[str] = Counter()
        self.count = 0
        self._spool: pq.ParquetWriter | None = None
        self._rejects: pq.ParquetWriter | None = None
        self._pending: list[dict[str, object]] = []
        self._source: Source | None = None

    def watch(self, source: Source) -> None:
        """Take the rows ``source`` cannot read as it finds them."""
        self._source = source
        source.send_rejects_to(self._add_reject)

    def _add_reject(self, reject: Reject) -> None:
        self.reasons[reject.reason] += 1
        self.count += 1
        self._pending.append(
            {
                "file": reject.file,
                "row": reject.row,
                "reason": reject.reason,
                "detail": self._scrub_detail(reject.detail),
                "record": self._scrub(reject.record),
            }
        )
        if len(self._pending) >= _FLUSH_ROWS:
            self._flush_rejects()

    def _flush_rejects(self) -> None:
        if not self._pending:
            return
        if self._rejects is None:
            self._rejects = pq.ParquetWriter(self.folder / "rejects-spool.parquet", SCHEMA)
        self._rejects.write_table(pa.Table.from_pylist(self._pending, schema=SCHEMA))
        self._pending = []

    def add(self, batch: pa.RecordBatch, reasons: pa.Array, file: str, offset: int) -> None:
        """Spool the rows of ``batch`` whose reason is set; ``offset`` as in SourceBatch."""
        import pyarrow.compute as pc

        mask = pc.is_valid(reasons)
        rows = batch.filter(mask)
        if not rows.num_rows:
            return
        index = np.flatnonzero(bool_mask(mask)) + offset
        texts = reasons.filter(mask)
        self.reasons.update(texts.to_pylist())
        self.count += rows.num_rows
        rows = apply_policies(rows, self.policies, self.key)
        records = [orjson.dumps(r, default=str).decode() for r in rows.to_pylist()]
        spool = pa.RecordBatch.from_arrays(
            [
                _arrow.strings([file] * rows.num_rows),
                _arrow.int64s(index),
                texts,
                _arrow.strings(records),
            ],
            schema=_SPOOL,
        )
        if self._spool is None:
            self._spool = pq.ParquetWriter(self.folder / "quarantine-spool.parquet", _SPOOL)
        self._spool.write_batch(spool)

    def finish(self, source: Source) -> Path | None:
        """Merge both spools into the quarantine file; None when nothing was rejected."""
        self._flush_rejects()
        self.close()
        if self.count == 0:
            return None
        path = self.folder / "quarantine.parquet"
        with pq.ParquetWriter(path, SCHEMA) as out:
            if self._rejects is not None:
                for batch in pq.ParquetFile(self.folder / "rejects-spool.parquet").iter_batches():
                    out.write_batch(batch)
            if self._spool is not None:
                for batch in pq.ParquetFile(
                    self.folder / "quarantine-spool.parquet"
                ).iter_batches():
                    out.write_batch(_numbered(batch, source))
        return path

    def close(self) -> None:
        """Close the spool files (also after a failure, so no handle is left open)."""
        for writer in (self._rejects, self._spool):
            if writer is not None:
                writer.close()  # closing twice is harmless

    def _scrub(self, record: str | None) -> str | None:
        """Apply the PII policies to a raw record the source could not parse.

        The source splits it into named fields where they line up with its columns;
        fields it cannot name (a ragged row's) are all redacted, since any of them may
        hold a policy column's value. A record that cannot be split is withheld.
        """
        if record is None or not self.policies or self._source is None:
            return record
        fields = self._source.split_record(record)
        if fields is None:
            return None
        if any(name.startswith("field_") for name in fields):
            fields = {
                name: REDACTED if value not in (None, "") else value
                for name, value in fields.items()
            }
        return orjson.dumps(scrub_record(fields, self.policies, self.key), default=str).decode()

    def _scrub_detail(self, detail: str) -> str:
        # Parser messages quote the offending value ('Could not convert string "..."').
        if not self.policies:
            return detail
        return _QUOTED.sub(f'"{REDACTED}"', detail)


def _numbered(batch: pa.RecordBatch, source: Source) -> pa.RecordBatch:
    """A spooled batch of contract rejects with source row numbers in place of indexes."""
    files = batch.column("file").to_pylist()
    index = _arrow.numbers(batch.column("index"))
    rows = np.empty(len(index), dtype=np.int64)
    for file in set(files):
        picked = np.array([f == file for f in files])
        rows[picked] = source.row_numbers(file, index[picked])
    return pa.RecordBatch.from_arrays(
        [
            batch.column("file"),
            _arrow.int64s(rows),
            batch.column("reason"),
            pa.nulls(len(rows), pa.string()),
            batch.column("record"),
        ],
        schema=SCHEMA,
    )
