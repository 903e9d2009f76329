"""Performance decay: the evaluation metrics of served predictions, from joined labels.

Labels arrive later than predictions (``loopml feedback``). Once joined, the served
version's predictions are scored like an evaluation: the task's main metric (or any
metric it has) over the window, and over time (the window cut into equal slices by
prediction time). The baseline is what the version measured on its holdout at
training; the window has decayed when the metric lost more than ``threshold``. Each
check is one row of the ``decay`` time series.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.context import Context
from loopml.errors import InputError
from loopml.evaluate import evaluation as evaluation_store
from loopml.evaluate import metrics as evaluation_metrics
from loopml.evaluate.evaluation import LOWER_IS_BETTER
from loopml.monitor.feedback import joined
from loopml.monitor.monitoring import MonitorResult, store_result
from loopml.records import ModelVersion
from loopml.registry import versions

MAIN_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}
THRESHOLD = 0.05
SLICES = 5


def check_decay(
    ctx: Context,
    ref: str,
    *,
    since: datetime | None = None,
    last_rows: int | None = None,
    metric: str | None = None,
    threshold: float = THRESHOLD,
    store: bool = True,
) -> MonitorResult:
    """Score the served predictions of ``ref``'s version that have labels.

    Args:
        ref: the model version (``fraud@champion``).
        since: only predictions made at or after this time.
        last_rows: only the newest N labelled predictions.
        metric: the metric watched (default: roc_auc, accuracy or rmse by task).
        threshold: how much worse than at training counts as decayed.

    Raises:
        NotFound: no such model or version.
        InputError: no labelled predictions in the window, an anomaly model, or a
            metric the task does not have.
    """
    with ctx.read() as conn:
        version = versions.resolve(conn, ref)
    if version.task not in MAIN_METRIC:
        raise InputError(f"decay is measured on classifiers and regressors; {ref} is anomaly")
    metric = metric or MAIN_METRIC[version.task]
    rows = joined(ctx, version.model, since)
    rows = rows.filter(pa.compute.equal(rows["version"], version.number)) if rows.num_rows else rows
    if last_rows is not None and rows.num_rows > last_rows:
        rows = rows.slice(rows.num_rows - last_rows)
    if rows.num_rows == 0:
        raise InputError(
            f"no labelled predictions of {version.ref} in the window",
            hint="send labels with `loopml feedback`, or widen the window",
        )
    y, scores = _labels_and_scores(rows, version)
    current = _scalars(version.task, y, scores, version)
    if metric not in current:
        raise InputError(
            f"{version.task} models have no metric {metric!r}",
            hint=f"use one of {', '.join(current)}",
        )
    baseline = _baseline(ctx, version, metric)
    value = current[metric]
    drop = None
    if value is not None:
        drop = value - baseline if metric in LOWER_IS_BETTER else baseline - value
    times = rows["time"].to_pylist()
    statistics = {
        "metric": metric,
        "value": value,
        "baseline": baseline,
        "drop": None if drop is None else round(float(drop), 6),
        "threshold": threshold,
        "metrics": current,
        "over_time": _over_time(version, metric, y, scores, times),
        "verdict": "decayed" if drop is not None and drop > threshold else "ok",
    }
    result = MonitorResult(
        id=uuid.uuid4().hex,
        model=version.model,
        number=version.number,
        kind="decay",
        source=f"feedback:{rows.num_rows} labelled predictions",
        window_start=min(times),
        window_end=max(times),
        rows=rows.num_rows,
        flagged=statistics["verdict"] == "decayed",
        statistics=statistics,
        created_at=datetime.now(UTC),
    )
    if store:
        store_result(ctx, result)
    return result


def _baseline(ctx: Context, version: ModelVersion, metric: str) -> float:
    """What ``metric`` was on the version's own holdout: its newest evaluation there
    (any metric the task has), else the metrics measured at training.

    Raises:
        InputError: neither has the metric, so decay against it cannot be judged.
    """
    with ctx.read() as conn:
        found = evaluation_store.latest(
            conn, version.model, version.number, split=f"holdout:{version.ref}"
        )
    values: dict[str, Any] = dict(found.summary.get("values", {})) if found else {}
    for name, value in version.metrics.items():
        values.setdefault(name, value)
    if "average_precision" in values:
        values.setdefault("pr_auc", values["average_precision"])
    if values.get(metric) is None:
        raise InputError(
            f"{version.ref} has no {metric} from its holdout to compare with",
            hint=f"evaluate it first (`loopml evaluate {version.ref}`), or watch another metric",
        )
    return float(values[metric])


def _labels_and_scores(rows: pa.Table, version: ModelVersion) -> tuple[Any, Any]:
    """The labels as class codes (or values) and the served scores, as evaluation reads."""
    labels = rows["label"].to_pylist()
    if version.task == "regression":
        return np.asarray(labels, dtype=np.float64), np.asarray(
            rows["prediction"].to_pylist(), dtype=np.float64
        )
    classes = list(version.meta.get("classes", []))
    codes = {str(c): i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in labels if str(v) not in codes})
    if unknown:
        raise InputError(
            f"feedback labels {', '.join(map(repr, unknown[:5]))} are not classes of {version.ref}",
            hint=f"its classes are {', '.join(map(str, classes))}",
        )
    y = np.asarray([codes[str(v)] for v in labels], dtype=np.int64)
    if version.task == "binary":
        return y, np.asarray(rows["score"].to_pylist(), dtype=np.float64)
    columns = [f"probabilities.{c}" for c in classes]
    missing = [c for c in columns if c not in rows.column_names]
    if missing:
        raise InputError(f"the prediction log of {version.ref} lacks {', '.join(missing)}")
    return y, np.column_stack([rows[c].to_numpy(zero_copy_only=False) for c in columns])


def _scalars(task: str, y: Any, scores: Any, version: ModelVersion) -> dict[str, Any]:
    classes = list(version.meta.get("classes", []))
    report = evaluation_metrics.headline(task, y, scores, classes)
    return {k: v for k, v in report.items() if isinstance(v, int | float) and k != "rows"}


def _over_time(
    version: ModelVersion, metric: str, y: Any, scores: Any, times: list[datetime]
) -> list[dict[str, Any]]:
    """The metric over equal slices of the window, oldest first (time-ordered rows)."""
    order = np.argsort(np.asarray([t.timestamp() for t in times]))
    points = []
    for chunk in np.array_split(order, min(SLICES, len(order))):
        if len(chunk) == 0:
            continue
        values = _scalars(version.task, y[chunk], scores[chunk], version)
        points.append(
            {
                "until": times[chunk[-1]].isoformat(),
                "rows": len(chunk),
                metric: values.get(metric),
            }
        )
    return points
