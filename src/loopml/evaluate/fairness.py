"""Fairness per sensitive attribute, with fairlearn: per-group metrics and the gaps.

For a binary classifier's decisions (score >= threshold), each group of the sensitive
column gets its size, selection rate, accuracy, true positive rate and false positive
rate; the demographic parity difference (the largest gap in selection rate) and the
equalized odds difference (the larger of the largest TPR and FPR gaps) summarise them.
"""

from __future__ import annotations

from typing import Any

from loopml.errors import InputError


def fairness(y: Any, scores: Any, sensitive: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Per-group metrics and the demographic parity and equalized odds differences.

    Args:
        y: the true labels, 0/1.
        scores: P(positive) per row.
        sensitive: the sensitive attribute's value per row (missing values form a group).
        threshold: the decision threshold.

    Raises:
        InputError: not a binary task, or lengths disagree.
    """
    import numpy as np
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    y = np.asarray(y)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise InputError("fairness is measured on binary classifiers' decisions")
    if not (len(y) == len(scores) == len(sensitive)):
        raise InputError(
            f"{len(y)} labels, {len(scores)} scores and {len(sensitive)} sensitive values"
        )
    groups = np.array(["(missing)" if v is None else str(v) for v in sensitive], dtype=object)
    decisions = (scores >= threshold).astype(np.int64)
    frame = MetricFrame(
        metrics={
            "count": lambda t, p: len(t),
            "selection_rate": selection_rate,
            "accuracy": accuracy_score,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
        },
        y_true=y,
        y_pred=decisions,
        sensitive_features=groups,
    )
    by_group = {
        str(group): {k: int(v) if k == "count" else _plain(v) for k, v in row.items()}
        for group, row in frame.by_group.to_dict(orient="index").items()
    }
    return {
        "threshold": threshold,
        "groups": by_group,
        "demographic_parity_difference": _plain(
            demographic_parity_difference(y, decisions, sensitive_features=groups)
        ),
        "equalized_odds_difference": _plain(
            equalized_odds_difference(y, decisions, sensitive_features=groups)
        ),
    }


def _plain(value: Any) -> Any:
    import math

    number = float(value)
    return round(number, 6) if math.isfinite(number) else None
