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
