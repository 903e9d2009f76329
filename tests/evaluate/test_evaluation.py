"""Evaluation building blocks against scikit-learn's and fairlearn's own computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from loopml.errors import InputError
from loopml.evaluate.fairness import fairness
from loopml.evaluate.metrics import calibration, classification, regression, slices
from loopml.evaluate.robustness import robustness

RNG = np.random.default_rng(11)
N = 2000
Y = (RNG.random(N) < 0.3).astype(int)
SCORES = np.clip(0.3 * Y + RNG.random(N) * 0.7, 0, 1)


def test_binary_metrics_are_sklearns() -> None:
    report = classification(Y, SCORES, ["no", "yes"])
    predicted = (SCORES >= 0.5).astype(int)
    assert report["accuracy"] == pytest.approx(sk.accuracy_score(Y, predicted), abs=1e-6)
    assert report["precision"] == pytest.approx(sk.precision_score(Y, predicted), abs=1e-6)
    assert report["recall"] == pytest.approx(sk.recall_score(Y, predicted), abs=1e-6)
    assert report["f1"] == pytest.approx(sk.f1_score(Y, predicted), abs=1e-6)
    assert report["roc_auc"] == pytest.approx(sk.roc_auc_score(Y, SCORES), abs=1e-6)
    assert report["pr_auc"] == pytest.approx(sk.average_precision_score(Y, SCORES), abs=1e-6)
    assert report["log_loss"] == pytest.approx(sk.log_loss(Y, SCORES), abs=1e-6)
    matrix = report["confusion_matrix"]
    assert matrix["labels"] == ["no", "yes"]
    assert matrix["matrix"] == sk.confusion_matrix(Y, predicted).tolist()
    # The threshold table at 0.5 agrees with the headline decisions.
    half = next(row for row in report["thresholds"] if row["threshold"] == 0.5)
    assert (half["tp"], half["fp"]) == (
        int(((predicted == 1) & (Y == 1)).sum()),
        int(((predicted == 1) & (Y == 0)).sum()),
    )
    assert half["tp"] + half["fp"] + half["tn"] + half["fn"] == N
    everything = report["thresholds"][0]
    assert everything["threshold"] == 0.0 and everything["recall"] == 1.0


def test_calibration_bins_account_for_every_row_and_brier_is_sklearns() -> None:
    report = calibration(Y, SCORES, bins=10)
    assert report["brier"] == pytest.approx(sk.brier_score_loss(Y, SCORES), abs=1e-6)
    curve = report["reliability"]
    assert sum(b["rows"] for b in curve) == N
    for entry in curve:
        low, high = entry["bin"]
        inside = (low <= SCORES) & ((high > SCORES) if high < 1 else (high >= SCORES))
        assert entry["rows"] == int(inside.sum())
        assert entry["observed_rate"] == pytest.approx(Y[inside].mean(), abs=1e-6)


def test_multiclass_metrics_and_an_undefined_auc() -> None:
    y = RNG.integers(0, 3, size=300)
    raw = RNG.random((300, 3)) + np.eye(3)[y] * 0.8
    scores = raw / raw.sum(axis=1, keepdims=True)
    report = classification(y, scores, ["a", "b", "c"])
    assert report["roc_auc"] == pytest.approx(
        sk.roc_auc_score(y, scores, multi_class="ovr"), abs=1e-6
    )
    assert report["f1"] == pytest.approx(
        sk.f1_score(y, scores.argmax(axis=1), average="macro"), abs=1e-6
    )
    assert "thresholds" not in report
    one_class = classification(np.zeros(10, dtype=int), np.full(10, 0.2), ["no", "yes"])
    assert one_class["roc_auc"] is None and one_class["accuracy"] == 1.0
    with pytest.raises(InputError):
        classification(np.zeros(3, dtype=int), np.zeros(4), ["no", "yes"])


def test_regression_metrics_are_sklearns() -> None:
    y = RNG.normal(10, 2, size=500)
    predictions = y + RNG.normal(0, 0.5, size=500)
    report = regression(y, predictions)
    assert report["rmse"] == pytest.approx(sk.root_mean_squared_error(y, predictions), abs=1e-6)
    assert report["mae"] == pytest.approx(sk.mean_absolute_error(y, predictions), abs=1e-6)
    assert report["mape"] == pytest.approx(
        sk.mean_absolute_percentage_error(y, predictions), abs=1e-6
    )
    assert report["r2"] == pytest.approx(sk.r2_score(y, predictions), abs=1e-6)


def test_slices_score_each_value_and_skip_small_ones() -> None:
    region = np.where(RNG.random(N) < 0.98, np.where(RNG.random(N) < 0.5, "north", "south"), None)
    report = slices("binary", Y, SCORES, ["no", "yes"], {"region": region}, min_rows=50)
    by_value = {entry["value"]: entry for entry in report["region"]}
    assert sum(entry["rows"] for entry in by_value.values()) == N
    north = region == "north"
    assert by_value["north"]["roc_auc"] == pytest.approx(
        sk.roc_auc_score(Y[north], SCORES[north]), abs=1e-6
    )
    assert by_value["(missing)"]["rows"] < 50 and "roc_auc" not in by_value["(missing)"]


def test_fairness_gaps_are_fairlearns_and_groups_are_counted() -> None:
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    group = np.where(RNG.random(N) < 0.4, "young", "old").astype(object)
    # Make the model favour one group, so the gaps are not zero.
    biased = np.clip(SCORES + (group == "young") * 0.15, 0, 1)
    report = fairness(Y, biased, group)
    decisions = (biased >= 0.5).astype(int)
    assert report["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(Y, decisions, sensitive_features=group), abs=1e-6
    )
    assert report["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(Y, decisions, sensitive_features=group), abs=1e-6
    )
    young = group == "young"
    assert report["groups"]["young"]["count"] == int(young.sum())
    assert report["groups"]["young"]["selection_rate"] == pytest.approx(
        decisions[young].mean(), abs=1e-6
    )
    assert report["demographic_parity_difference"] > 0.05
    with pytest.raises(InputError):
        fairness(Y, np.column_stack([SCORES, 1 - SCORES]), group)


def test_robustness_reports_a_drop_per_perturbation_and_none_without_one() -> None:
    frame = pd.DataFrame(
        {"x": RNG.normal(size=N), "colour": RNG.choice(["red", "blue"], size=N).astype(object)}
    )
    y = ((frame["x"] > 0) ^ (frame["colour"] == "red")).astype(int).to_numpy()

    def score_rows(rows: pd.DataFrame) -> np.ndarray:
        x = rows["x"].astype(float).fillna(0.0).to_numpy()
        red = (rows["colour"] == "red").to_numpy()
        return np.where(red, 1 / (1 + np.exp(5 * x)), 1 / (1 + np.exp(-5 * x)))

    def auc(scores: np.ndarray) -> float:
        return sk.roc_auc_score(y, scores)

    report = robustness(score_rows, frame, auc, numeric=["x"], text=["colour"], seed=3)
    assert report["baseline"] == pytest.approx(auc(score_rows(frame)), abs=1e-6)
    for name in ("gaussian_noise", "missing_values", "category_perturbation"):
        assert report[name]["drop"] > 0
        assert report[name]["drop"] == pytest.approx(
            report["baseline"] - report[name]["value"], abs=1e-6
        )
    calm = robustness(
        score_rows, frame, auc, numeric=["x"], text=["colour"], noise=0.0, missing=0.0, swap=0.0
    )
    assert all(calm[name]["drop"] == 0 for name in ("gaussian_noise", "missing_values"))
    assert calm["category_perturbation"]["drop"] == 0
    # The caller's rows are never changed.
    assert frame["colour"].isin(["red", "blue"]).all() and frame["x"].notna().all()
