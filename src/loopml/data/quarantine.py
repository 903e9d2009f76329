"""The quarantine: every rejected row, with its file, row number, reason and contents.

Rows rejected by the contract are spooled to a staging Parquet file as they come, so
memory stays bounded; when the source is exhausted their row numbers are resolved
(a CSV reader knows them only at the end) and they are merged with the rows the
source could not parse. Rejected rows get the same PII policies as accepted ones.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.data.pii import REDACTED, apply_policies, scrub_record
from loopml.data.sources import Source
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


class Quarantine:
    """Collects rejected rows during one ingest; ``finish()`` writes the final file."""

    def __init__(self, folder: Path, policies: dict[str, str], key: bytes) -> None:
        self.folder = folder
        self.policies = policies
        self.key = key
        self.reasons: Counter[str] = Counter()
        self.count = 0
        self._spool: pq.ParquetWriter | None = None

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
                pa.array([file] * rows.num_rows),
                pa.array(index, pa.int64()),
                texts,
                pa.array(records),
            ],
            schema=_SPOOL,
        )
        if self._spool is None:
            self._spool = pq.ParquetWriter(self.folder / "quarantine-spool.parquet", _SPOOL)
        self._spool.write_batch(spool)

    def finish(self, source: Source) -> Path | None:
        """Merge the spooled rows with the source's rejects; return the file, or None if empty."""
        for reject in source.rejects:
            self.reasons[reject.reason] += 1
        self.count += len(source.rejects)
        if self._spool is not None:
            self._spool.close()
        if self.count == 0:
            return None
        path = self.folder / "quarantine.parquet"
        with pq.ParquetWriter(path, SCHEMA) as writer:
            if source.rejects:
                writer.write_table(
                    pa.Table.from_pylist(
                        [
                            {
                                "file": r.file,
                                "row": r.row,
                                "reason": r.reason,
                                "detail": self._scrub_detail(r.detail),
                                "record": self._scrub(r.record, source),
                            }
                            for r in source.rejects
                        ],
                        schema=SCHEMA,
                    )
                )
            if self._spool is not None:
                spool = pq.ParquetFile(self.folder / "quarantine-spool.parquet")
                for batch in spool.iter_batches():
                    files = batch.column("file").to_pylist()
                    index = batch.column("index").to_numpy()
                    rows = np.empty(len(index), dtype=np.int64)
                    for file in set(files):
                        picked = np.array([f == file for f in files])
                        rows[picked] = source.row_numbers(file, index[picked])
                    writer.write_batch(
                        pa.RecordBatch.from_arrays(
                            [
                                batch.column("file"),
                                pa.array(rows),
                                batch.column("reason"),
                                pa.nulls(len(rows), pa.string()),
                                batch.column("record"),
                            ],
                            schema=SCHEMA,
                        )
                    )
        return path

    def _scrub(self, record: str | None, source: Source) -> str | None:
        """Apply the PII policies to a raw record the source could not parse.

        The source splits it into fields where it can (a CSV line by its header);
        fields past the header are redacted, since nothing says what they hold. A
        record that cannot be split is withheld rather than stored raw.
        """
        if record is None or not self.policies:
            return record
        fields = source.split_record(record)
        if fields is None:
            return None
        return orjson.dumps(scrub_record(fields, self.policies, self.key), default=str).decode()

    def _scrub_detail(self, detail: str) -> str:
        # Parser messages quote the offending value ('Could not convert string "..."').
        if not self.policies:
            return detail
        return _QUOTED.sub(f'"{REDACTED}"', detail)
