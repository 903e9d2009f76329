"""Parquet files, read batch by batch and cast to the contract's types."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from loopml.data.contract import Contract
from loopml.data.sources._base import (
    BATCH_ROWS,
    FileSource,
    SourceBatch,
    _first_line,
    check_columns,
    coerce,
)
from loopml.errors import InputError


class ParquetSource(FileSource):
    """Parquet files, read batch by batch and cast to the contract's types."""

    def __init__(self, files: list[str], contract: Contract | None) -> None:
        import pyarrow.parquet as pq

        super().__init__(files)
        self.contract = contract
        try:
            self.metas = [pq.ParquetFile(name) for name in files]
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(
                f"{files[0]}: not a readable Parquet file: {_first_line(exc)}"
            ) from exc
        first = self.metas[0].schema_arrow
        for name, meta in zip(files[1:], self.metas[1:], strict=True):
            if meta.schema_arrow.names != first.names:
                raise InputError(f"{name}: its columns differ from {files[0]}'s")
        if contract is not None:
            check_columns(files[0], first.names, contract)

    def known_schema(self) -> pa.Schema | None:
        return self.metas[0].schema_arrow

    def total_rows(self) -> int | None:
        return sum(meta.metadata.num_rows for meta in self.metas)

    def batches(self) -> Iterator[SourceBatch]:
        for file, meta in zip(self.files, self.metas, strict=True):
            accepted = 0
            row = 0
            try:
                for batch in meta.iter_batches(batch_size=BATCH_ROWS):
                    good = coerce(self, file, batch, row, accepted, self.contract)
                    row += batch.num_rows
                    if good.num_rows:
                        yield SourceBatch(good, file, accepted)
                        accepted += good.num_rows
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputError(f"{file}: Parquet data is unreadable: {_first_line(exc)}") from exc
