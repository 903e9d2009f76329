"""Holdout metrics: the binary ones computed together from one sort agree with
scikit-learn's functions, ties, extreme probabilities and float32 scores included; and
inputs outside the plain case still go through scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    log_loss,
    roc_auc_score,
)

from loopml.train.metrics import METRICS, score_all


def _sklearn(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    labels = (scores >= 0.5).astype(int)
    return {
        "roc_auc": roc_auc_score(y, scores),
        "average_precision": average_precision_score(y, scores),
        "f1": f1_score(y, labels, zero_division=0),
        "accuracy": accuracy_score(y, labels),
        "log_loss": log_loss(y, scores, labels=[0, 1]),
    }


def _check(y: np.ndarray, scores: np.ndarray) -> None:
    got = score_all("binary", y, scores, 2)
    expected = _sklearn(y, scores)
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(round(value, 6), abs=2e-6), name


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 1),
            # Few distinct values make ties; 0 and 1 exercise log_loss's clipping.
            st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), st.floats(0, 1)),
        ),
        min_size=2,
        max_size=300,
    ).filter(lambda rows: len({label for label, _ in rows}) == 2)
)
def test_binary_metrics_agree_with_scikit_learn(rows: list[tuple[int, float]]) -> None:
    y = np.array([label for label, _ in rows], dtype=np.int64)
    scores = np.array([score for _, score in rows], dtype=np.float64)
    _check(y, scores)


def test_a_large_holdout_with_float32_scores_agrees() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 40_000)
    scores = np.clip(rng.normal(0.3 + 0.4 * y, 0.25), 0, 1).astype(np.float32)
    scores[:500] = np.round(scores[:500], 1)  # ties
    _check(y, scores)


def test_the_exact_values_of_a_small_case() -> None:
    # Worked by hand: positives score 0.9, 0.6, 0.4; negatives 0.7, 0.2.
    y = np.array([1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.6, 0.4, 0.7, 0.2])
    got = score_all("binary", y, scores, 2)
    assert got["roc_auc"] == round(4 / 6, 6)  # 4 of 6 positive-negative pairs ordered
    assert got["accuracy"] == 0.6  # 0.9, 0.6, 0.2 right; 0.4, 0.7 wrong
    assert got["f1"] == round(2 * 2 / (2 * 2 + 1 + 1), 6)
    # Precision at each positive: 1/1, 2/3, 3/4.
    assert got["average_precision"] == round((1 + 2 / 3 + 3 / 4) / 3, 6)
    expected_loss = -np.mean(np.log([0.9, 0.6, 0.4, 0.3, 0.8]))
    assert got["log_loss"] == round(float(expected_loss), 6)


def test_inputs_outside_the_plain_case_still_go_through_scikit_learn() -> None:
    y = np.array([0, 1, 0, 1])
    # Not probabilities: the combined path declines and scikit-learn says what is wrong.
    with pytest.raises(ValueError):
        score_all("binary", y, np.array([0.1, 1.7, 0.2, 0.9]), 2)
    # One class only: the ranking metrics are left out, the others computed.
    got = score_all("binary", np.zeros(4, dtype=np.int64), np.array([0.1, 0.7, 0.2, 0.4]), 2)
    assert set(got) == {"f1", "accuracy", "log_loss"}
    assert got["accuracy"] == 0.75
    assert got["accuracy"] == METRICS["accuracy"].compute(
        np.zeros(4, dtype=np.int64), np.array([0.1, 0.7, 0.2, 0.4]), 2
    )
