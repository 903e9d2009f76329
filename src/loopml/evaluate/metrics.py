"""Classification and regression metrics, a threshold table, calibration and slices.

Labels are encoded 0..k-1 (the order of the model's ``classes``); scores are what
``loopml.registry.predictor.Predictor.scores`` returns: P(positive) for binary tasks, an
(n, k) probability matrix for multiclass ones, values for regression.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loopml.errors import InputError

THRESHOLDS = 21  # 0.00, 0.05, ..., 1.00
CALIBRATION_BINS = 10
MIN_SLICE_ROWS = 30


def _finite(value: float) -> float | None:
    import math

    return round(float(value), 6) if math.isfinite(value) else None


def classification(y: Any, scores: Any, classes: Sequence[Any]) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, ROC AUC, PR AUC, log loss, the confusion matrix,
    and for binary tasks the threshold table and calibration (Brier score, reliability).

    Metrics a holdout cannot define (ROC AUC with one class present) are None.

    Raises:
        InputError: labels and scores disagree in length, or there are no rows.
    """
    import numpy as np
    from sklearn import metrics as sk

    y = np.asarray(y)
    scores = np.asarray(scores, dtype=np.float64)
    if len(y) == 0 or len(y) != len(scores):
        raise InputError(f"{len(y)} labels for {len(scores)} scores: nothing to evaluate")
    binary = scores.ndim == 1
    labels = list(range(len(classes)))
    predicted = (scores >= 0.5).astype(np.int64) if binary else np.argmax(scores, axis=1)
    average = "binary" if binary else "macro"
    two_classes = len(np.unique(y)) > 1
    probabilities = np.column_stack([1 - scores, scores]) if binary else scores
    result: dict[str, Any] = {
        "rows": len(y),
        "accuracy": _finite(sk.accuracy_score(y, predicted)),
        "precision": _finite(sk.precision_score(y, predicted, average=average, zero_division=0)),
        "recall": _finite(sk.recall_score(y, predicted, average=average, zero_division=0)),
        "f1": _finite(sk.f1_score(y, predicted, average=average, zero_division=0)),
        "log_loss": _finite(sk.log_loss(y, probabilities, labels=labels)),
        "roc_auc": None,
        "pr_auc": None,
        "confusion_matrix": {
            "labels": [str(c) for c in classes],
            "matrix": sk.confusion_matrix(y, predicted, labels=labels).tolist(),
        },
    }
    if two_classes:
        if binary:
            result["roc_auc"] = _finite(sk.roc_auc_score(y, scores))
            result["pr_auc"] = _finite(sk.average_precision_score(y, scores))
        else:
            present = np.unique(y)
            if len(present) == len(classes):
                result["roc_auc"] = _finite(
                    sk.roc_auc_score(y, scores, multi_class="ovr", labels=labels)
                )
            onehot = np.eye(len(classes))[y]
            result["pr_auc"] = _finite(sk.average_precision_score(onehot, scores))
    if binary:
        result["thresholds"] = threshold_table(y, scores)
        result["calibration"] = calibration(y, scores)
    return result


def threshold_table(y: Any, scores: Any, steps: int = THRESHOLDS) -> list[dict[str, Any]]:
    """For each threshold 0, 1/(steps-1), ..., 1: the counts and metrics of flagging
    every row whose score is at or above it."""
    import numpy as np

    y = np.asarray(y).astype(bool)
    rows = []
    for threshold in np.linspace(0.0, 1.0, steps):
        flagged = np.asarray(scores) >= threshold
        tp = int(np.sum(flagged & y))
        fp = int(np.sum(flagged & ~y))
        fn = int(np.sum(~flagged & y))
        tn = int(np.sum(~flagged & ~y))
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / (tp + fn) if tp + fn else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall
            else None
        )
        rows.append(
            {
                "threshold": round(float(threshold), 4),
                "tp": tp,
                "fp": fp,
                "tn": tn,
                "fn": fn,
                "precision": None if precision is None else round(precision, 6),
                "recall": None if recall is None else round(recall, 6),
                "f1": None if f1 is None else round(f1, 6),
            }
        )
    return rows


def calibration(y: Any, scores: Any, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """The Brier score and a reliability curve over equal-width score bins."""
    import numpy as np
    from sklearn.metrics import brier_score_loss

    y = np.asarray(y)
    scores = np.asarray(scores, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    curve = []
    for index in range(bins):
        members = which == index
        count = int(members.sum())
        if count:
            curve.append(
                {
                    "bin": [round(float(edges[index]), 4), round(float(edges[index + 1]), 4)],
                    "rows": count,
                    "mean_score": round(float(scores[members].mean()), 6),
                    "observed_rate": round(float(y[members].mean()), 6),
                }
            )
    return {"brier": _finite(brier_score_loss(y, scores)), "reliability": curve}


def regression(y: Any, predictions: Any) -> dict[str, Any]:
    """RMSE, MAE, MAPE and R²."""
    import numpy as np
    from sklearn import metrics as sk

    y = np.asarray(y, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    if len(y) == 0 or len(y) != len(predictions):
        raise InputError(f"{len(y)} targets for {len(predictions)} predictions")
    return {
        "rows": len(y),
        "rmse": _finite(sk.root_mean_squared_error(y, predictions)),
        "mae": _finite(sk.mean_absolute_error(y, predictions)),
        "mape": _finite(sk.mean_absolute_percentage_error(y, predictions)),
        "r2": _finite(sk.r2_score(y, predictions)) if len(y) > 1 else None,
    }


def headline(task: str, y: Any, scores: Any, classes: Sequence[Any]) -> dict[str, Any]:
    """The task's report: ``classification`` or ``regression``."""
    if task in {"binary", "multiclass"}:
        return classification(y, scores, classes)
    if task == "regression":
        return regression(y, scores)
    raise InputError(f"cannot evaluate a {task} model's predictions against labels here")


def slices(
    task: str,
    y: Any,
    scores: Any,
    classes: Sequence[Any],
    groups: dict[str, Any],
    min_rows: int = MIN_SLICE_ROWS,
) -> dict[str, list[dict[str, Any]]]:
    """The task's headline metrics within each value of each column in ``groups``.

    Args:
        groups: column name -> that column's values, one per row.
        min_rows: smaller slices are listed with their size but not scored.
    """
    import numpy as np

    keep = {
        "binary": ("accuracy", "precision", "recall", "f1", "roc_auc"),
        "multiclass": ("accuracy", "f1", "roc_auc"),
        "regression": ("rmse", "mae", "r2"),
    }[task]
    result: dict[str, list[dict[str, Any]]] = {}
    for column, values in groups.items():
        values = np.asarray(values, dtype=object)
        names = np.array(["(missing)" if v is None else str(v) for v in values], dtype=object)
        rows = []
        for name in sorted(set(names.tolist())):
            members = names == name
            entry: dict[str, Any] = {"value": name, "rows": int(members.sum())}
            if members.sum() >= min_rows:
                report = headline(
                    task, np.asarray(y)[members], np.asarray(scores)[members], classes
                )
                entry.update({k: report.get(k) for k in keep})
            rows.append(entry)
        result[column] = rows
    return result
