"""Drift checks of a model version, over the prediction log or a dataset version, as a time series.

``check_drift`` resolves the model version, streams the window (the latest logged
predictions by count or by time, or a dataset version) through a
``DriftAccumulator`` against the version's reference profile, and stores the
report as one ``monitor_results`` row (kind ``drift``), audited. ``history`` reads a
model's rows back, oldest first.

Input drift counts every row of the window, whichever version served it (the inputs
are the world's, not the model's); prediction drift counts only the rows the checked
version scored, taking the logged ``score`` (or ``prediction``, or class
probabilities) when the log has it, else scoring the rows with the version. A
dataset version is scored with the version batch by batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from loopml.context import Context
from loopml.data import versions as data_versions
from loopml.data.api import DataAPI, stream_batches
from loopml.errors import InputError
from loopml.features.timeseries import parse_window as parse_duration
from loopml.monitor.drift import DRIFT_SHARE, DriftAccumulator, DriftReport, check_test
from loopml.monitor.log_reader import read_window
from loopml.records import DatasetVersion, ModelVersion
from loopml.registry import versions as model_versions
from loopml.registry.predictor import Predictor
from loopml.store.tables import monitor_results

DEFAULT_WINDOW = 10_000
BATCH_ROWS = 65_536
TIME_CHUNK = timedelta(hours=1)
MAX_CHUNKS = 168
# Columns of the prediction log itself; an input column of the same name is logged as
# ``input.NAME`` (see ``loopml.serve.prediction_log``).
LOG_COLUMNS = frozenset({"request_id", "row", "time", "model", "version", "shadow", "latency_ms"})


@dataclass(frozen=True)
class MonitorResult:
    """One check of a model version over a window, as stored in the time series.

    Attributes:
        id: a random id (32 hex characters).
        model: the model's name; ``number`` the version checked.
        kind: ``drift`` (or ``decay``, written by the decay check).
        source: what was checked: ``log:last 10000 rows``, ``log:since ...`` or
            ``dataset:NAME@V``.
        window_start: the first logged row's time (None for a dataset).
        window_end: the last logged row's time (None for a dataset).
        rows: rows checked.
        flagged: the verdict (drifted).
        statistics: the whole report (``DriftReport.to_dict()``).
        created_at: when the check ran (UTC).
        report: the report as an object, on a fresh check (None when read back).
    """

    id: str
    model: str
    number: int
    kind: str
    source: str
    window_start: datetime | None
    window_end: datetime | None
    rows: int
    flagged: bool
    statistics: Mapping[str, Any]
    created_at: datetime
    report: DriftReport | None = field(default=None, compare=False, repr=False)

    @property
    def ref(self) -> str:
        """The checked version, ``model@number``."""
        return f"{self.model}@{self.number}"

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-able values."""
        return {
            "id": self.id,
            "model": self.model,
            "version": self.number,
            "kind": self.kind,
            "source": self.source,
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "rows": self.rows,
            "flagged": self.flagged,
            "created_at": self.created_at.isoformat(),
            **dict(self.statistics),
        }


def parse_window(window: int | str | timedelta | None) -> int | timedelta:
    """A window as a row count (``10000``) or a duration (``30m``, ``24h``, ``7d``).

    Raises:
        InputError: neither a positive count nor a duration.
    """
    if window is None:
        return DEFAULT_WINDOW
    if isinstance(window, timedelta):
        if window <= timedelta(0):
            raise InputError(f"window {window} is not positive", hint="use e.g. 1h or 10000")
        return window
    if isinstance(window, int) and not isinstance(window, bool):
        count = window
    else:
        text = str(window).strip().replace("_", "")
        if text.isdigit():
            count = int(text)
        else:
            try:
                return timedelta(microseconds=parse_duration(text))
            except InputError as exc:
                raise InputError(
                    f"window {window!r} is neither a row count nor a duration",
                    hint="use a number of rows (10000) or a duration (30m, 24h, 7d)",
                ) from exc
    if count < 1:
        raise InputError(f"window of {count} rows", hint="use at least one row")
    return count


def check_drift(
    ctx: Context,
    ref: str,
    *,
    window: int | str | timedelta | None = None,
    data: str | None = None,
    test: str = "psi",
    threshold: float | None = None,
    drift_share: float = DRIFT_SHARE,
    batch_rows: int = BATCH_ROWS,
    store: bool = True,
    now: datetime | None = None,
) -> MonitorResult:
    """Measure the drift of model version ``ref`` over a window, and store the result.

    Args:
        ctx: the workspace's context.
        ref: the model version (``fraud``, ``fraud@champion``, ``fraud@3``).
        window: the latest logged rows, by count (``10000``) or age (``24h``); a
            duration is read an hour of the log at a time. Ignored with ``data``.
        data: a dataset version (``NAME[@V]``) to check instead of the prediction log.
        test: ``psi``, ``ks``, ``chi2`` or ``js`` (see ``loopml.monitor.drift``).
        threshold: the test's threshold (default: the test's own).
        drift_share: the share of drifted columns that makes the verdict drifted.
        batch_rows: rows per batch when streaming a dataset version.
        store: record the result in the time series (and the audit chain).
        now: the end of a duration window (default: now).

    Returns:
        The stored result, with its ``report``.

    Raises:
        NotFound: the model, version or dataset does not exist.
        InputError: the window holds no rows (nothing is stored), the data lacks a
            column of the model's signature, the version has no reference profile, or
            a bad test, threshold or window.

    Example:
        >>> result = check_drift(ctx, "fraud@champion", window="24h", test="psi")
        >>> result.flagged, result.statistics["drifted_features"]
        (True, ['amount'])
    """
    threshold = check_test(test, threshold)
    if batch_rows < 1:
        raise InputError(f"batch_rows {batch_rows}", hint="use at least one row per batch")
    if not 0 < drift_share <= 1:
        raise InputError(f"drift share {drift_share}", hint="use a share in (0, 1]")
    with ctx.read() as conn:
        version = model_versions.resolve(conn, ref)
        dataset = data_versions.resolve(conn, data) if data is not None else None
    profile = version.meta.get("reference_profile")
    if not profile or not profile.get("features"):
        raise InputError(
            f"{version.ref} has no reference profile to compare with",
            hint="retrain it with this loopml: training records the profile",
        )
    signature = [c["name"] for c in version.signature.get("inputs", [])]
    columns = [c for c in signature if c in profile["features"]] or list(profile["features"])
    accumulator = DriftAccumulator(profile, columns)
    started = now or datetime.now(UTC)
    if dataset is not None:
        source = f"dataset:{dataset.ref}"
        window_start = window_end = None
        _count_dataset(ctx, version, dataset, accumulator, columns, batch_rows)
    else:
        span = parse_window(window)
        source, window_start, window_end = _count_log(
            ctx, version, accumulator, columns, span, started
        )
    report = accumulator.report(test, threshold, drift_share)
    result = MonitorResult(
        id=uuid.uuid4().hex,
        model=version.model,
        number=version.number,
        kind="drift",
        source=source,
        window_start=window_start,
        window_end=window_end,
        rows=report.rows,
        flagged=report.drifted,
        statistics=report.to_dict(),
        created_at=datetime.now(UTC),
        report=report,
    )
    if store:
        store_result(ctx, result)
    return result


def history(
    ctx: Context, model: str, *, kind: str | None = "drift", limit: int | None = None
) -> list[MonitorResult]:
    """A model's stored checks, oldest first: the time series.

    Args:
        ctx: the workspace's context.
        model: the model's name (a reference's version part is ignored: every version).
        kind: ``drift``, ``decay``, or None for both.
        limit: only the latest ``limit`` results.

    Raises:
        NotFound: no such model.
    """
    name = model.partition("@")[0]
    with ctx.read() as conn:
        model_versions.resolve(conn, name)  # NotFound for an unknown model
        query = sa.select(monitor_results).where(monitor_results.c.model == name)
        if kind is not None:
            query = query.where(monitor_results.c.kind == kind)
        query = query.order_by(monitor_results.c.created_at.desc(), monitor_results.c.id)
        if limit is not None:
            query = query.limit(max(limit, 0))
        rows = conn.execute(query).all()
    return [_from_row(row) for row in reversed(rows)]


def _count_dataset(
    ctx: Context,
    version: ModelVersion,
    dataset: DatasetVersion,
    accumulator: DriftAccumulator,
    columns: Sequence[str],
    batch_rows: int,
) -> None:
    data = DataAPI(ctx)
    present = set(data.schema(dataset).names)
    signature = [c["name"] for c in version.signature.get("inputs", [])]
    missing = [c for c in dict.fromkeys([*signature, *columns]) if c not in present]
    if missing:
        raise InputError(
            f"dataset {dataset.ref} lacks column(s) {', '.join(missing)} "
            f"of {version.ref}'s signature",
            hint="check a dataset version with every input column the model was trained on",
        )
    predictor = model_versions.load(ctx, version)
    for batch in stream_batches(
        data.files(dataset), batch_rows, list(dict.fromkeys([*signature, *columns]))
    ):
        if batch.num_rows:
            accumulator.update(batch, scores=predictor.scores(batch))


def _count_log(
    ctx: Context,
    version: ModelVersion,
    accumulator: DriftAccumulator,
    columns: Sequence[str],
    span: int | timedelta,
    now: datetime,
) -> tuple[str, datetime | None, datetime | None]:
    if isinstance(span, int):
        described = f"last {span} rows"
        # The reader holds the window: a count window is bounded by its count.
        chunks: Iterator[pa.Table] = iter([read_window(ctx, version.model, last_rows=span)])
    else:
        since = now - span
        described = f"since {since.isoformat()}"
        chunks = _time_chunks(ctx, version.model, since, now)
    window_start = window_end = None
    predictor: Predictor | None = None
    for table in chunks:
        if table.num_rows == 0:
            continue
        inputs = _log_inputs(table, version, columns)
        times = table["time"]
        window_start = window_start or pc.min(times).as_py()
        window_end = pc.max(times).as_py()
        served = pc.fill_null(pc.equal(table["version"], version.number), False)
        for start in range(0, table.num_rows, BATCH_ROWS):
            rows = inputs.slice(start, BATCH_ROWS)
            accumulator.update(rows)
            mine = served.slice(start, BATCH_ROWS)
            if not pc.any(mine).as_py():
                continue
            scores = _logged_scores(table.slice(start, BATCH_ROWS).filter(mine), version)
            if scores is None:
                predictor = predictor or model_versions.load(ctx, version)
                scores = predictor.scores(rows.filter(mine))
            accumulator.update_scores(scores)
    if accumulator.rows == 0:
        raise InputError(
            f"no prediction of {version.model} is logged in the window ({described})",
            hint="widen the window, check a dataset with --data, or send traffic first",
        )
    return f"log:{described}", window_start, window_end


def _time_chunks(ctx: Context, model: str, since: datetime, until: datetime) -> Iterator[pa.Table]:
    """A time window of the log, an hour at a time (a longer slice past a week, so a
    month is not 720 scans of the log's listing), oldest first: memory holds a slice."""
    step = max(TIME_CHUNK, (until - since) / MAX_CHUNKS)
    start = since
    while start < until:
        end = min(start + step, until)
        yield read_window(ctx, model, since=start, until=end)
        start = end


def _log_inputs(table: pa.Table, version: ModelVersion, columns: Sequence[str]) -> pa.Table:
    """The checked input columns of a log window, under their own names."""
    signature = [c["name"] for c in version.signature.get("inputs", [])]
    wanted = list(dict.fromkeys([*columns, *signature]))
    stored = {name: f"input.{name}" if name in LOG_COLUMNS else name for name in wanted}
    missing = [name for name, column in stored.items() if column not in table.column_names]
    if missing:
        raise InputError(
            f"the prediction log of {version.model} lacks column(s) {', '.join(missing)} "
            f"of {version.ref}'s signature",
            hint="the logged traffic was served by a model with other inputs; "
            "use a shorter window or --data",
        )
    return pa.table({name: table[column] for name, column in stored.items()})


def _logged_scores(rows: pa.Table, version: ModelVersion) -> Any:
    """The scores the log holds for ``rows`` as the reference profile measured them, or
    None when the log lacks them (the rows are then scored again)."""
    names = set(rows.column_names)

    def numeric(name: str) -> Any:
        kind = rows[name].type if name in names else None
        if kind is not None and (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            return rows[name].cast(pa.float64()).to_numpy(zero_copy_only=False)
        return None

    if version.task in {"binary", "anomaly"}:
        return numeric("score")
    if version.task == "regression":
        score = numeric("score")
        return score if score is not None else numeric("prediction")
    classes = [str(c) for c in version.meta.get("classes", [])]
    probabilities = [f"probabilities.{c}" for c in classes]
    if classes and all(numeric(name) is not None for name in probabilities):
        return np.column_stack([numeric(name) for name in probabilities])
    if classes and "prediction" in names:
        index = {c: str(i) for i, c in enumerate(classes)}
        labels = rows["prediction"].cast(pa.string()).to_pylist()
        if all(label in index for label in labels):
            return pa.array([index[label] for label in labels], pa.string())
    return None


def store_result(ctx: Context, result: MonitorResult) -> None:
    """Append ``result`` to the model's time series, with an audit event, in one transaction."""
    with ctx.write() as conn:
        conn.execute(
            monitor_results.insert().values(
                id=result.id,
                model=result.model,
                number=result.number,
                kind=result.kind,
                source=result.source,
                window_start=result.window_start,
                window_end=result.window_end,
                rows=result.rows,
                flagged=result.flagged,
                statistics=dict(result.statistics),
                created_at=result.created_at,
            )
        )
        ctx.audit(
            conn,
            f"monitor.{result.kind}",
            f"model:{result.ref}",
            details={
                "result": result.id,
                "source": result.source,
                "rows": result.rows,
                "flagged": result.flagged,
            },
        )


def _from_row(row: Any) -> MonitorResult:
    return MonitorResult(
        id=row.id,
        model=row.model,
        number=row.number,
        kind=row.kind,
        source=row.source,
        window_start=row.window_start,
        window_end=row.window_end,
        rows=row.rows,
        flagged=bool(row.flagged),
        statistics=row.statistics or {},
        created_at=row.created_at,
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def results_of(results: Sequence[MonitorResult]) -> Iterator[dict[str, Any]]:
    """Each result's headline (no per-column statistics), for listings."""
    for result in results:
        stats = result.statistics
        yield {
            "id": result.id,
            "model": result.model,
            "version": result.number,
            "kind": result.kind,
            "source": result.source,
            "rows": result.rows,
            "flagged": result.flagged,
            "test": stats.get("test"),
            "drifted_share": stats.get("drifted_share"),
            "drift_share": stats.get("drift_share"),
            "drifted_features": stats.get("drifted_features", []),
            "prediction_drifted": (stats.get("prediction") or {}).get("drifted"),
            "window_start": _iso(result.window_start),
            "window_end": _iso(result.window_end),
            "created_at": result.created_at.isoformat(),
        }
