"""Feedback: labels that arrive after the predictions, joined to the prediction log.

Labels are joined by request id (the default key) or by a key column the log holds
among its inputs (a transaction id, say). Each call stores its labels as one Parquet
file beside the log, written atomically like the log's own files::

    feedback/MODEL/<UTC stamp>-<random hex>.parquet   (key, label, received_at)

The key's column name and the label's are in the file's metadata. Every label is
kept, matched or not: a prediction sampled out of the log or not flushed yet simply
does not join today, and nothing a user sent is lost. When two labels share a key,
the later one wins.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml.context import Context
from loopml.data.versions import check_name
from loopml.errors import InputError, NotFound, StoreError
from loopml.monitor.log_reader import concat, read_window
from loopml.registry import versions as model_versions
from loopml.serve.prediction_log import StoreFiles, iter_log_files, parse_stamp, stamp

FEEDBACK = "feedback"
SAMPLE = 10  # unmatched keys shown in a report


@dataclass(frozen=True)
class FeedbackResult:
    """What one batch of labels did.

    Attributes:
        model: the model the labels are for.
        key: the column the labels were joined on.
        label: the label column.
        rows: the labels received (after dropping rows without a key).
        matched: labels whose key is in the prediction log.
        unmatched: labels whose key is not (yet) in the log.
        unmatched_keys: a few of the unmatched keys, to show.
        missing_keys: rows dropped because their key was empty.
        duplicates: rows whose key appeared again later in the same file.
        stored: where the labels were stored, relative to the store's root.
    """

    model: str
    key: str
    label: str
    rows: int
    matched: int
    unmatched: int
    unmatched_keys: tuple[str, ...]
    missing_keys: int
    duplicates: int
    stored: str

    def to_dict(self) -> dict[str, Any]:
        """A plain summary for ``--json``."""
        return {
            "model": self.model,
            "key": self.key,
            "label": self.label,
            "rows": self.rows,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "unmatched_keys": list(self.unmatched_keys),
            "missing_keys": self.missing_keys,
            "duplicates": self.duplicates,
            "stored": self.stored,
        }


def read_labels(path: str | Path) -> pa.Table:
    """Read a labels file: CSV, or Parquet by its ``.parquet`` extension.

    Raises:
        NotFound: the file does not exist.
        InputError: it cannot be parsed.
    """
    import pyarrow.csv as pacsv

    path = Path(path)
    if not path.is_file():
        raise NotFound(f"labels file {path} does not exist")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pq.read_table(path)
        return pacsv.read_csv(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(
            f"labels file {path} cannot be read: {exc}", hint="pass a CSV with a header row"
        ) from exc


def record_feedback(
    ctx: Context,
    model: str,
    labels: pa.Table | str | Path,
    *,
    key: str = "request_id",
    label: str = "label",
) -> FeedbackResult:
    """Store labels for ``model``'s predictions and count those that match the log.

    Args:
        ctx: the workspace's context.
        model: the model's name.
        labels: a table, or the path of a CSV or Parquet file, with ``key`` and ``label``.
        key: ``request_id`` or an input column the prediction log holds.
        label: the column holding the true outcome.

    Returns:
        The counts; labels matching no logged prediction are counted, not an error.

    Raises:
        NotFound: no such model, or no such labels file.
        InputError: a column is missing, or the log never held the key column.

    Example:
        >>> result = record_feedback(ctx, "fraud", "labels.csv", key="tx_id", label="is_fraud")
        >>> result.matched, result.unmatched
        (980, 20)
    """
    check_name(model, "model")
    with ctx.read() as conn:
        model_versions.resolve(conn, model)  # NotFound for an unknown model
    table = read_labels(labels) if isinstance(labels, str | Path) else labels
    for column, option in ((key, "--key"), (label, "--label")):
        if column not in table.column_names:
            raise InputError(
                f"the labels have no column {column!r}",
                hint=f"their columns are {', '.join(table.column_names)}; name one with {option}",
            )
    if key == label:
        raise InputError(f"the key and the label are one column, {key!r}")
    keys = _as_text(table[key])
    present = pc.invert(pc.is_null(keys))
    missing_keys = table.num_rows - pc.sum(present.cast(pa.int64())).as_py()
    received = datetime.now(UTC)
    stored = pa.table(
        {
            "key": keys.filter(present),
            "label": table[label].filter(present),
            "received_at": pa.array([received] * (table.num_rows - missing_keys), _TIME),
        }
    )
    stored, duplicates = _latest_per_key(stored)
    files = StoreFiles(ctx.artifacts)
    found = _logged_keys(files, model, key, set(stored["key"].to_pylist()))
    unmatched = [k for k in stored["key"].to_pylist() if k not in found]
    target = _store(files, model, stored, key, label, received)
    result = FeedbackResult(
        model=model,
        key=key,
        label=label,
        rows=stored.num_rows,
        matched=stored.num_rows - len(unmatched),
        unmatched=len(unmatched),
        unmatched_keys=tuple(unmatched[:SAMPLE]),
        missing_keys=missing_keys,
        duplicates=duplicates,
        stored=target,
    )
    with ctx.write() as conn:
        ctx.audit(
            conn,
            "model.feedback",
            f"model:{model}",
            details={k: v for k, v in result.to_dict().items() if k != "unmatched_keys"},
        )
    return result


def joined(ctx: Context, model: str, since: datetime | None = None) -> pa.Table:
    """``model``'s logged predictions that have labels, each with its latest label.

    Args:
        ctx: the workspace's context.
        model: the model's name.
        since: only predictions logged at or after this time.

    Returns:
        The log's columns (served predictions, not shadow ones) plus ``label`` and
        ``label_received_at``, oldest prediction first; no rows when nothing joins.

    Example:
        >>> table = joined(ctx, "fraud", since=datetime(2026, 1, 1, tzinfo=UTC))
        >>> sklearn.metrics.roc_auc_score(table["label"], table["score"])
    """
    check_name(model, "model")
    files = StoreFiles(ctx.artifacts)
    labels = read_labels_stored(files, model)
    predictions = read_window(ctx, model, since=since)
    if not labels or predictions.num_rows == 0:
        return _with_labels(predictions.slice(0, 0), pa.array([], pa.null()), pa.array([], _TIME))
    positions = pa.array(np.arange(predictions.num_rows, dtype=np.int64))
    matches = []
    for key, table in labels.items():
        column = key if key in predictions.column_names else f"input.{key}"
        if key == "request_id":
            column = "request_id"
        if column not in predictions.column_names:
            continue
        left = pa.table({"__position": positions, "key": _as_text(predictions[column])})
        matches.append(left.join(table, "key", join_type="inner").drop_columns(["key"]))
    matches = [m for m in matches if m.num_rows]
    if not matches:
        return _with_labels(predictions.slice(0, 0), pa.array([], pa.null()), pa.array([], _TIME))
    found = concat(matches)
    # The latest label of each prediction wins: sort by position, newest label first.
    found = found.take(
        pc.sort_indices(found, [("__position", "ascending"), ("received_at", "descending")])
    )
    position = found["__position"].to_numpy()
    first = np.ones(len(position), dtype=bool)
    first[1:] = position[1:] != position[:-1]
    found = found.filter(pa.array(first))
    rows = predictions.take(found["__position"])
    return _with_labels(rows, found["label"], found["received_at"])


def read_labels_stored(files: StoreFiles, model: str) -> dict[str, pa.Table]:
    """Every stored label of ``model``, by key column: (key, label, received_at)."""
    by_key: dict[str, list[pa.Table]] = {}
    for name in files.list_files(f"{FEEDBACK}/{check_name(model, 'model')}"):
        if parse_stamp(PurePosixPath(name).name) is None:
            continue
        source = files.open(name)
        try:
            table = pq.read_table(source)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"labels file {name} cannot be read: {exc}") from exc
        finally:
            if not isinstance(source, str):
                source.close()
        metadata = table.schema.metadata or {}
        key = metadata.get(b"loopml.key", b"request_id").decode()
        by_key.setdefault(key, []).append(table.replace_schema_metadata(None))
    result = {}
    for key, tables in by_key.items():
        combined, _ = _latest_per_key(concat(tables))
        result[key] = combined
    return result


_TIME = pa.timestamp("us", tz="UTC")


def _with_labels(rows: pa.Table, labels: Any, received: Any) -> pa.Table:
    return rows.append_column("label", labels).append_column("label_received_at", received)


def _as_text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Keys compared as text, so an id read as a number from CSV meets the logged one."""
    if pa.types.is_string(column.type):
        return column
    if pa.types.is_floating(column.type):
        # 1234.0 from a column with empties is the id 1234.
        values = column.to_numpy(zero_copy_only=False)
        whole = np.isfinite(values) & (values == np.round(values))
        if whole[~np.isnan(values)].all():
            return pc.cast(pc.cast(column, pa.int64()), pa.string())
    return pc.cast(column, pa.string())


def _latest_per_key(table: pa.Table) -> tuple[pa.Table, int]:
    """One row per key, the latest received (in file order among equals); and the dropped."""
    if table.num_rows == 0:
        return table, 0
    order = np.arange(table.num_rows)
    table = table.append_column("__order", pa.array(order))
    table = table.take(
        pc.sort_indices(
            table,
            [("key", "ascending"), ("received_at", "descending"), ("__order", "descending")],
        )
    )
    keys = table["key"].to_numpy(zero_copy_only=False)
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    kept = table.filter(pa.array(first)).drop_columns(["__order"])
    return kept, int(table.num_rows - kept.num_rows)


def _logged_keys(files: StoreFiles, model: str, key: str, wanted: set[str]) -> set[str]:
    """The keys of ``wanted`` that the prediction log holds, reading only the key column."""
    found: set[str] = set()
    any_file = seen_column = False
    for entry in iter_log_files(files, model):
        any_file = True
        source = files.open(entry.key)
        try:
            parquet = pq.ParquetFile(source)
            names = parquet.schema_arrow.names
            column = key if key in names else f"input.{key}"
            if key == "request_id":
                column = "request_id"
            if column not in names:
                continue
            seen_column = True
            for batch in parquet.iter_batches(columns=[column]):
                values = _as_text(batch.column(0))
                found.update(v for v in values.to_pylist() if v in wanted)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"prediction log file {entry.key} cannot be read: {exc}") from exc
        finally:
            if not isinstance(source, str):
                source.close()
        if len(found) == len(wanted):
            break
    if any_file and not seen_column:
        raise InputError(
            f"the prediction log of {model} has no column {key!r} to join on",
            hint="join on request_id, or on an input column the model receives",
        )
    return found


def _store(
    files: StoreFiles, model: str, table: pa.Table, key: str, label: str, received: datetime
) -> str:
    name = f"{stamp(received)}-{secrets.token_hex(6)}.parquet"
    target = f"{FEEDBACK}/{check_name(model, 'model')}/{name}"
    table = table.replace_schema_metadata({"loopml.key": key, "loopml.label": label})
    with files.staging() as folder:
        path = folder / name
        pq.write_table(table, path, compression="zstd")
        files.put(path, target)
    return target
