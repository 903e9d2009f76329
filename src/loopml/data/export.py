"""Export a dataset version to a CSV or Parquet file, streaming batch by batch."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from loopml.errors import InputError


def export_batches(batches: Iterator[pa.RecordBatch], schema: pa.Schema, path: Path) -> int:
    """Write batches to ``path`` (``.csv``, ``.csv.gz`` or ``.parquet``); return the row count.

    The file appears only when complete: it is written beside the target and renamed.
    """
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith(".parquet") or suffix.endswith(".pq"):
        kind = "parquet"
    elif suffix.endswith(".csv") or suffix.endswith(".csv.gz"):
        kind = "csv"
    else:
        raise InputError(
            f"{path}: cannot tell the format from the extension",
            hint="use .csv, .csv.gz or .parquet",
        )
    if not path.parent.exists():
        raise InputError(f"{path.parent} does not exist", hint="create the folder first")
    partial = path.with_name(f".{path.name}.partial")
    rows = 0
    try:
        if kind == "parquet":
            with pq.ParquetWriter(partial, schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        else:
            import pyarrow.csv as csv

            sink = (
                pa.CompressedOutputStream(str(partial), "gzip")
                if suffix.endswith(".gz")
                else pa.OSFile(str(partial), "wb")
            )
            with sink, csv.CSVWriter(sink, schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return rows
