"""``ws.data``: datasets and their versions, as the SDK, CLI and server see them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from loopml.context import Context
from loopml.data import versions
from loopml.data.diff import diff_versions
from loopml.data.export import export_batches
from loopml.data.ingest import IngestResult, ProgressFn, ingest
from loopml.records import Dataset, DatasetVersion


class DataAPI:
    """Ingest, look up, read, compare and export dataset versions.

    Example:
        >>> ws.data.ingest("transactions", "tx.csv", contract="tx.yaml")
        >>> table = ws.data.read("transactions@1")
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def ingest(self, name: str, source: str | None = None, **options: Any) -> IngestResult:
        """Ingest ``source`` as a new version of ``name``; see ``loopml.data.ingest.ingest``."""
        return ingest(self._ctx, name, source, **options)

    def get(self, ref: str) -> DatasetVersion:
        """The version ``ref`` names (``NAME``, ``NAME@3``, ``NAME@<hash prefix>``)."""
        with self._ctx.read() as conn:
            return versions.resolve(conn, ref)

    def ls(self) -> list[tuple[Dataset, DatasetVersion | None, int]]:
        """Every dataset with its latest version and number of versions."""
        with self._ctx.read() as conn:
            return versions.list_datasets(conn)

    def versions(self, name: str) -> list[DatasetVersion]:
        """Every version of dataset ``name``, newest first."""
        with self._ctx.read() as conn:
            return versions.list_versions(conn, name)

    def files(self, ref: str | DatasetVersion) -> list[str]:
        """Local paths of a version's Parquet files, verified against their hashes."""
        paths, check = self._reading(ref)
        check()
        return [str(path) for path in paths]

    def _reading(self, ref: str | DatasetVersion) -> tuple[list[Path], Callable[[], None]]:
        """A version's file paths, and the check that they are sound (see ``reading``)."""
        version = ref if isinstance(ref, DatasetVersion) else self.get(ref)
        return self._ctx.artifacts.reading([f.sha256 for f in version.files])

    def batches(
        self,
        ref: str | DatasetVersion,
        batch_size: int = 65_536,
        columns: Sequence[str] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream a version's rows as record batches, in bounded memory."""
        return stream_batches(self.files(ref), batch_size, columns)

    def schema(self, ref: str | DatasetVersion) -> pa.Schema:
        """The Arrow schema of a version's files."""
        import pyarrow.parquet as pq

        return pq.read_schema(self.files(ref)[0])

    def read(self, ref: str | DatasetVersion, columns: list[str] | None = None) -> pa.Table:
        """Read a whole version into memory as an Arrow table.

        Raises:
            NotFound: the version, or one of its files, does not exist.
            IntegrityError: a file's bytes do not match its hash (verified as it is read).
        """
        import pyarrow.parquet as pq

        paths, check = self._reading(ref)
        try:
            table = pq.ParquetDataset([str(p) for p in paths]).read(columns=columns)
        except Exception:
            check()  # a damaged file is reported as damaged, not as a parse error
            raise
        check()
        return table

    def quarantine(self, ref: str | DatasetVersion) -> pa.Table:
        """A version's quarantined rows (file, row, reason, detail, record)."""
        import pyarrow.parquet as pq

        from loopml.data.quarantine import SCHEMA

        version = ref if isinstance(ref, DatasetVersion) else self.get(ref)
        if version.quarantine is None:
            return SCHEMA.empty_table()
        return pq.read_table(self._ctx.artifacts.local_path(version.quarantine.sha256))

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """Schema, row count and profile differences from version ``a`` to ``b``."""
        return diff_versions(self.get(a), self.get(b))

    def export(self, ref: str, path: str | Path) -> int:
        """Write a version to a CSV or Parquet file (by extension); return the row count."""
        version = self.get(ref)
        return export_batches(self.batches(version), self.schema(version), Path(path))


__all__ = ["DataAPI", "IngestResult", "ProgressFn"]


def stream_batches(
    paths: Sequence[str], batch_rows: int = 65_536, columns: Sequence[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Record batches of Parquet files, holding about one row group in memory at a time.

    Arrow's default pre-buffering reads ahead every row group a scan asks for and keeps
    it: over a wide file, that is the whole file (1.9 GB of a 1M x 200 window). Here a
    row group is read whole (decoded column by column in parallel, twice as fast as a
    batch iterator) unless it is large, when it is read batch by batch.
    """
    import pyarrow.parquet as pq

    wanted = None if columns is None else list(columns)
    for path in paths:
        parquet = pq.ParquetFile(path, pre_buffer=False)
        for group in range(parquet.metadata.num_row_groups):
            if parquet.metadata.row_group(group).num_rows <= 4 * batch_rows:
                table = parquet.read_row_group(group, columns=wanted)
                yield from table.to_batches(max_chunksize=batch_rows)
            else:
                yield from parquet.iter_batches(
                    batch_size=batch_rows, row_groups=[group], columns=wanted
                )
