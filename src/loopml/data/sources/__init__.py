"""Sources: files and queries read as a stream of typed Arrow record batches.

A source yields the rows it could parse, in order, as ``SourceBatch``es, and keeps
the rows it could not (ragged rows, undecodable bytes, values of the wrong type) as
``Reject``s with their row numbers. Memory stays bounded whatever the input size.

Row numbers count data records from 1 in each file (the header is not a record).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from loopml.data.contract import Contract
from loopml.data.sources._base import RESERVED_PREFIX, Reject, Source, SourceBatch
from loopml.data.sources._csv import CSVSource
from loopml.data.sources._jsonl import JSONLinesSource
from loopml.data.sources._parquet import ParquetSource
from loopml.data.sources._sql import SQLSource
from loopml.errors import InputError, NotFound

_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
_JSON_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def expand_paths(source: str | os.PathLike[str]) -> list[str]:
    """Expand a file, a folder or a glob into a sorted list of files.

    Raises:
        NotFound: nothing matches.
    """
    source = os.fspath(source)
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(
            str(p) for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
    elif any(ch in source for ch in "*?["):
        files = sorted(
            p for p in glob.glob(os.path.expanduser(source), recursive=True) if os.path.isfile(p)
        )
    elif path.is_file():
        files = [str(path)]
    else:
        raise NotFound(f"source {source} does not exist", hint="check the path")
    if not files:
        raise NotFound(f"source {source} matches no files")
    return files


def detect_format(files: list[str], declared: str | None = None) -> str:
    """Return ``csv``, ``jsonl`` or ``parquet`` from ``declared`` or the file names."""
    if declared:
        if declared not in {"csv", "jsonl", "parquet"}:
            raise InputError(f"unknown format {declared!r}", hint="use csv, jsonl or parquet")
        return declared
    kinds = set()
    for name in files:
        lower = name.lower()
        if lower.endswith(_CSV_SUFFIXES):
            kinds.add("csv")
        elif lower.endswith(_JSON_SUFFIXES):
            kinds.add("jsonl")
        elif lower.endswith(_PARQUET_SUFFIXES):
            kinds.add("parquet")
        else:
            raise InputError(
                f"{name}: unknown format",
                hint="name files .csv, .tsv, .jsonl or .parquet (gzip: .csv.gz, .jsonl.gz), "
                "or pass --format; a .json file must be JSON Lines (one object per line)",
            )
    if len(kinds) > 1:
        raise InputError(
            f"the source mixes formats ({', '.join(sorted(kinds))})",
            hint="ingest each format separately",
        )
    return kinds.pop()


def open_source(
    source: str | os.PathLike[str] | None,
    *,
    contract: Contract | None = None,
    format: str | None = None,
    query: str | None = None,
    delimiter: str | None = None,
) -> Source:
    """Open a file, folder or glob (CSV, JSON Lines, Parquet) or a SQL query as a Source.

    Args:
        source: a path, folder or glob; or, with ``query``, a SQLAlchemy URL.
        contract: the declared schema; inferred from the data when None.
        format: force ``csv``, ``jsonl`` or ``parquet`` instead of guessing by suffix.
        query: a SQL query to run against the database at ``source``.
        delimiter: the CSV field delimiter; a tab for ``.tsv`` files, else a comma.
    """
    if query is not None:
        if not source:
            raise InputError("--query needs --from URL", hint="for example --from sqlite:///app.db")
        return SQLSource(os.fspath(source), query, contract)
    if not source:
        raise InputError("no source given", hint="pass a file, folder or glob, or --query/--from")
    files = expand_paths(source)
    kind = detect_format(files, format)
    if kind == "csv":
        if delimiter is None:
            tabbed = all(name.lower().endswith((".tsv", ".tsv.gz")) for name in files)
            delimiter = "\t" if tabbed else ","
        return CSVSource(files, contract, delimiter)
    if kind == "jsonl":
        return JSONLinesSource(files, contract)
    return ParquetSource(files, contract)


__all__ = [
    "RESERVED_PREFIX",
    "CSVSource",
    "JSONLinesSource",
    "ParquetSource",
    "Reject",
    "SQLSource",
    "Source",
    "SourceBatch",
    "detect_format",
    "expand_paths",
    "open_source",
]
