"""Tasks and the metrics that score them, under scikit-learn's names.

A task is ``binary``, ``multiclass``, ``regression`` or ``anomaly``. Each metric knows
the tasks it applies to and whether greater is better; ``score`` computes it from the
true labels (encoded as 0..k-1 for classification) and the model's scores (see
``loopml.registry.predictor``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loopml.errors import InputError

TASKS = ("binary", "multiclass", "regression", "anomaly")
CLASSIFICATION = ("binary", "multiclass")


@dataclass(frozen=True)
class Metric:
    """A metric: its name, the tasks it scores and whether greater is better."""

    name: str
    tasks: tuple[str, ...]
    greater_is_better: bool
    compute: Callable[[Any, Any, int], float]

    @property
    def direction(self) -> str:
        """Optuna's direction for this metric."""
        return "maximize" if self.greater_is_better else "minimize"


def _labels(scores: Any, n_classes: int) -> Any:
    import numpy as np

    if scores.ndim == 1:
        return (scores >= 0.5).astype(np.int64)
    return np.argmax(scores, axis=1)


def _roc_auc(y: Any, scores: Any, n_classes: int) -> float:
    from sklearn.metrics import roc_auc_score

    if scores.ndim == 1:
        return float(roc_auc_score(y, scores))
    return float(roc_auc_score(y, scores, multi_class="ovr", labels=list(range(n_classes))))


def _average_precision(y: Any, scores: Any, n_classes: int) -> float:
    from sklearn.metrics import average_precision_score

    if scores.ndim == 1:
        return float(average_precision_score(y, scores))
    import numpy as np

    onehot = np.eye(n_classes)[y]
    return float(average_precision_score(onehot, scores, average="macro"))


def _f1(y: Any, scores: Any, n_classes: int) -> float:
    from sklearn.metrics import f1_score

    average = "binary" if scores.ndim == 1 else "macro"
    return float(f1_score(y, _labels(scores, n_classes), average=average, zero_division=0))


def _accuracy(y: Any, scores: Any, n_classes: int) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y, _labels(scores, n_classes)))


def _log_loss(y: Any, scores: Any, n_classes: int) -> float:
    from sklearn.metrics import log_loss

    return float(log_loss(y, scores, labels=list(range(max(n_classes, 2)))))


def _rmse(y: Any, scores: Any, n_classes: int) -> float:
    from sklearn.metrics import root_mean_squared_error

    return float(root_mean_squared_error(y, scores))


def _mae(y: Any, scores: Any, n_classes: int) -> float:
    from sklearn.metrics import mean_absolute_error

    return float(mean_absolute_error(y, scores))


def _r2(y: Any, scores: Any, n_classes: int) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(y, scores))


def _anomaly_rate(y: Any, scores: Any, n_classes: int) -> float:
    import numpy as np

    return float(np.mean(scores > 0))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("roc_auc", ("binary", "multiclass", "anomaly"), True, _roc_auc),
        Metric("average_precision", ("binary", "multiclass", "anomaly"), True, _average_precision),
        Metric("f1", CLASSIFICATION, True, _f1),
        Metric("accuracy", CLASSIFICATION, True, _accuracy),
        Metric("log_loss", CLASSIFICATION, False, _log_loss),
        Metric("rmse", ("regression",), False, _rmse),
        Metric("mae", ("regression",), False, _mae),
        Metric("r2", ("regression",), True, _r2),
        Metric("anomaly_rate", ("anomaly",), False, _anomaly_rate),
    )
}

# What a search optimises when nobody says.
DEFAULT_METRIC = {
    "binary": "roc_auc",
    "multiclass": "log_loss",
    "regression": "rmse",
    "anomaly": "average_precision",
}


def metric(name: str, task: str) -> Metric:
    """The metric ``name``, checked against ``task``.

    Raises:
        InputError: an unknown metric, or one that does not score this task.
    """
    found = METRICS.get(name)
    if found is None:
        raise InputError(f"unknown metric {name!r}", hint=f"use one of {', '.join(METRICS)}")
    if task not in found.tasks:
        usable = [m.name for m in METRICS.values() if task in m.tasks]
        raise InputError(
            f"metric {name!r} does not score a {task} task", hint=f"use {', '.join(usable)}"
        )
    return found


def score_all(
    task: str, y: Any, scores: Any, n_classes: int, labelled: bool = True
) -> dict[str, float]:
    """Every metric that applies to ``task`` (anomaly metrics need labels, when given)."""
    import numpy as np

    if task == "binary":
        together = _binary_together(y, scores)
        if together is not None:
            return {k: round(v, 6) for k, v in together.items() if math.isfinite(v)}
    result: dict[str, float] = {}
    for found in METRICS.values():
        if task not in found.tasks:
            continue
        if task == "anomaly" and found.name != "anomaly_rate":
            if not labelled or len(np.unique(y)) < 2:
                continue
        elif found.name in {"roc_auc", "average_precision"} and len(np.unique(y)) < 2:
            continue
        value = found.compute(y, scores, n_classes)
        if math.isfinite(value):  # an undefined metric (a class missing) is left out
            result[found.name] = round(value, 6)
    return result


def _binary_together(y: Any, scores: Any) -> dict[str, float] | None:
    """The binary metrics from one sort of the scores, or None when the inputs are not
    the plain case (0/1 labels of both classes; finite probabilities, one per row).

    Each of scikit-learn's metric functions validates and re-derives its inputs (the
    labels' classes, a sort of the scores for each curve): 75 ms for five metrics on
    40,000 rows, against 11 ms here. The formulas are scikit-learn's (``roc_curve``,
    ``precision_recall_curve``, ``log_loss``'s clipping); tests check that the values
    agree with scikit-learn's, ties and extreme probabilities included.
    """
    import numpy as np

    y = np.asarray(y)
    scores = np.asarray(scores)
    if y.ndim != 1 or scores.shape != y.shape or len(y) == 0 or y.dtype.kind not in "iub":
        return None
    if scores.dtype.kind != "f" or not np.isfinite(scores).all():
        return None
    if scores.min() < 0 or scores.max() > 1 or y.min() != 0 or y.max() != 1:
        return None
    truth = y.astype(np.int64)
    # The curves: the rows by decreasing score; one point per distinct score.
    order = np.argsort(scores, kind="mergesort")[::-1]
    ranked = scores[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(truth[order])[last].astype(np.float64)
    fps = 1.0 + last - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    precision = tps / (tps + fps)
    predicted = scores >= 0.5
    hits = int(np.count_nonzero(predicted & (truth == 1)))
    wrong = int(np.count_nonzero(predicted)) - hits + int(np.count_nonzero(truth)) - hits
    eps = np.finfo(scores.dtype).eps
    likelihood = np.where(truth == 1, scores, 1.0 - scores)
    return {
        "roc_auc": float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2),  # trapezoids
        "average_precision": float(np.sum(np.diff(tpr) * precision)),
        "f1": 2 * hits / (2 * hits + wrong) if hits + wrong else 0.0,
        "accuracy": float(np.mean(predicted == (truth == 1))),
        "log_loss": float(-np.mean(np.log(np.clip(likelihood, eps, 1 - eps)))),
    }
