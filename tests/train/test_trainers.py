"""Trainers: every flavor registers the next version; metrics are sklearn's, on the holdout.

Expectations are computed here with scikit-learn from the loaded model's scores on the
rows of the dataset's ``test`` split (or, without a split, on the seeded 20% holdout that
``train_test_split`` draws), never copied from what training reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sklearn.metrics import (
    accuracy_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.model_selection import train_test_split

from loopml.workspace import Workspace

from ._data import holdout_rows, ingest, tabular


def _split(ws: Workspace, tmp_path: Path, task: str, name: str = "tx", seed: int = 0) -> str:
    ingest(ws, name, tabular(task=task, seed=seed), tmp_path / "data")
    target = "is_outlier" if task == "anomaly" else "y"
    by = "stratified" if task in {"binary", "multiclass"} else "random"
    column = target if by == "stratified" else None
    ws.features.split(f"{name}_split", name, by=by, column=column, test=0.25, seed=3)
    return f"{name}_split"


@pytest.mark.slow
def test_each_flavor_registers_the_next_version_with_holdout_roc_auc(
    lws: Workspace, tmp_path: Path, trainers_module: tuple[Path, str]
) -> None:
    folder, module = trainers_module
    data = _split(lws, tmp_path, "binary")
    test = holdout_rows(lws, data)
    truth = np.asarray(test["y"].to_pylist()) == 1
    flavors = [
        ("auto", {}, "sklearn", {"model": "skops"}),
        (
            "sklearn:sklearn.linear_model.LogisticRegression",
            {"C": 0.5},
            "sklearn",
            {"model": "skops"},
        ),
        (
            "lightgbm",
            {"n_estimators": 30},
            "lightgbm",
            {"model": "lightgbm", "preprocess": "skops"},
        ),
        ("xgboost", {"n_estimators": 30}, "xgboost", {"model": "xgboost", "preprocess": "skops"}),
        (
            "torch-mlp",
            {"epochs": 3, "hidden": [8]},
            "torch-mlp",
            {"model": "npz", "preprocess": "skops"},
        ),
        (f"python:{module}:fit_logistic", {"C": 2.0}, "custom", {"model": "skops"}),
    ]
    for number, (model, params, flavor, formats) in enumerate(flavors, start=1):
        result = lws.train("churn", data, "y", model=model, params=params, code_folder=folder)
        version = result.version
        assert (version.number, version.flavor, version.task) == (number, flavor, "binary"), model
        assert {role: a["format"] for role, a in version.artifacts.items()} == formats
        assert result.run.status == "finished"
        assert result.run.tags["model_version"] == f"churn@{number}"

        scores = lws.models.load(f"churn@{number}").scores(test)
        assert scores.shape == (len(test),)
        expected = roc_auc_score(truth, scores)
        assert version.metrics["roc_auc"] == pytest.approx(expected, abs=2e-6), model
        assert version.metrics["roc_auc"] > 0.75, model  # it learned the signal
        assert version.inputs[0]["split"]["rows"]["test"] == len(test)

    assert [v.number for v in lws.models.versions("churn")] == [1, 2, 3, 4, 5, 6]
    logistic = lws.models.get("churn@2")
    assert logistic.params["C"] == 0.5
    assert logistic.meta["estimator"] == "sklearn.linear_model.LogisticRegression"
    assert lws.models.get("churn@1").meta["estimator"] == (
        "sklearn.ensemble.HistGradientBoostingClassifier"
    )
    assert lws.models.get("churn@3").params == {"n_estimators": 30}
    assert lws.models.get("churn@5").meta["arch"]["hidden"] == [8]
    custom = lws.models.load("churn@6")
    assert type(custom.model.steps[-1][1]).__name__ == "LogisticRegression"
    assert custom.model.steps[-1][1].C == 2.0


@pytest.mark.parametrize("model", ["auto", "lightgbm"])
def test_multiclass_string_labels_come_back_as_labels(
    lws: Workspace, tmp_path: Path, model: str
) -> None:
    data = _split(lws, tmp_path, "multiclass")
    params = {"n_estimators": 20} if model == "lightgbm" else {}
    result = lws.train("colour", data, "y", model=model, params=params)
    version = result.version
    assert version.task == "multiclass"
    assert version.meta["classes"] == ["blue", "green", "red"]

    test = holdout_rows(lws, data)
    predictor = lws.models.load(version.ref)
    labels = predictor.predict(test)
    assert set(labels.tolist()) <= {"red", "green", "blue"}
    assert len(set(labels.tolist())) == 3
    proba = predictor.predict_proba(test)
    assert proba.shape == (len(test), 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    truth = test["y"].to_pylist()
    assert version.metrics["accuracy"] == pytest.approx(accuracy_score(truth, labels), abs=1e-6)
    assert version.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(truth, proba, multi_class="ovr", labels=["blue", "green", "red"]), abs=2e-6
    )
    assert version.metrics["accuracy"] > 0.6


@pytest.mark.parametrize("model", ["auto", "xgboost"])
def test_regression_metrics_are_sklearns_on_the_holdout(
    lws: Workspace, tmp_path: Path, model: str
) -> None:
    data = _split(lws, tmp_path, "regression")
    params = {"n_estimators": 40} if model == "xgboost" else {}
    result = lws.train("price", data, "y", model=model, params=params)
    version = result.version
    assert version.task == "regression"
    assert {"rmse", "mae", "r2"} <= set(version.metrics)
    assert not {"roc_auc", "accuracy"} & set(version.metrics)

    test = holdout_rows(lws, data)
    predicted = lws.models.load(version.ref).predict(test)
    truth = np.asarray(test["y"].to_pylist())
    assert version.metrics["rmse"] == pytest.approx(
        root_mean_squared_error(truth, predicted), abs=1e-5
    )
    assert version.metrics["mae"] == pytest.approx(mean_absolute_error(truth, predicted), abs=1e-5)
    assert version.metrics["r2"] == pytest.approx(r2_score(truth, predicted), abs=1e-5)
    assert version.metrics["r2"] > 0.8


def test_a_version_without_a_split_is_held_out_by_a_seeded_20_percent(
    lws: Workspace, tmp_path: Path
) -> None:
    frame = tabular(task="regression", seed=5)
    ingest(lws, "plain", frame, tmp_path / "data", fmt="parquet")
    result = lws.train("plain_model", "plain", "y", seed=7)
    split = result.version.inputs[0]["split"]
    assert split["by"] == "random" and split["seed"] == 7
    assert split["rows"] == {"train": 1200, "valid": 0, "test": 300}

    # The holdout is what scikit-learn draws for that seed; scored independently here.
    _, test_index = train_test_split(np.arange(len(frame)), test_size=0.2, random_state=7)
    test = pa.Table.from_pandas(frame.iloc[np.sort(test_index)], preserve_index=False)
    predicted = lws.models.load("plain_model").predict(test)
    expected = root_mean_squared_error(frame["y"].to_numpy()[np.sort(test_index)], predicted)
    assert result.metrics["rmse"] == pytest.approx(expected, abs=1e-5)


def test_anomaly_detection_without_labels_reports_the_anomaly_rate(
    lws: Workspace, tmp_path: Path
) -> None:
    frame = tabular(task="anomaly", seed=2).drop(columns=["is_outlier"])
    ingest(lws, "events", frame, tmp_path / "data")
    lws.features.split("events_split", "events", by="random", test=0.25, seed=1)
    result = lws.train("odd", "events_split", task="anomaly")
    version = result.version
    assert version.task == "anomaly"
    assert version.meta["estimator"] == "sklearn.ensemble.IsolationForest"
    assert set(version.metrics) == {"anomaly_rate"}

    test = holdout_rows(lws, "events_split")
    flags = lws.models.load(version.ref).predict(test)
    assert set(flags.tolist()) <= {0, 1}
    assert version.metrics["anomaly_rate"] == pytest.approx(float(np.mean(flags)), abs=1e-6)
    assert 0 < version.metrics["anomaly_rate"] < 0.5


def test_anomaly_task_with_labels_reports_roc_auc(lws: Workspace, tmp_path: Path) -> None:
    data = _split(lws, tmp_path, "anomaly", name="events")
    result = lws.train("odd", data, "is_outlier", task="anomaly")
    version = result.version
    assert version.task == "anomaly"
    assert {"anomaly_rate", "roc_auc", "average_precision"} <= set(version.metrics)
    # The label is not a feature.
    assert "is_outlier" not in [c["name"] for c in version.signature["inputs"]]

    test = holdout_rows(lws, data)
    scores = lws.models.load(version.ref).scores(test)
    truth = np.asarray(test["is_outlier"].to_pylist())
    assert version.metrics["roc_auc"] == pytest.approx(roc_auc_score(truth, scores), abs=2e-6)
    assert version.metrics["roc_auc"] > 0.9  # the outliers are far away


def test_preprocessing_is_saved_with_the_model(lws: Workspace, tmp_path: Path) -> None:
    data = _split(lws, tmp_path, "binary")
    result = lws.train("pre", data, "y", model="sklearn:sklearn.linear_model.LogisticRegression")
    features = result.version.meta["features"]
    assert features["numeric"] == ["x1", "x2"]
    assert features["one_hot"] == ["cat"]  # a linear model gets one-hot columns
    dropped = features["dropped"]
    assert set(dropped) == {"uid", "ts"}
    assert "identifier" in dropped["uid"]
    assert "timestamp" in dropped["ts"]
    assert [c["name"] for c in result.version.signature["inputs"]] == ["x1", "x2", "cat"]

    records: list[dict[str, Any]] = [
        {"x1": 0.5, "x2": None, "cat": "a"},
        {"x1": None, "x2": -1.0, "cat": "b"},
        {"x1": 1.5, "x2": 0.2, "cat": None},
        {"x1": -0.3, "x2": 0.7, "cat": "never-seen"},
        {"x1": None, "x2": None, "cat": None},
    ]
    arrow = pa.table(
        {
            "x1": pa.array([r["x1"] for r in records], pa.float64()),
            "x2": pa.array([r["x2"] for r in records], pa.float64()),
            "cat": pa.array([r["cat"] for r in records], pa.string()),
        }
    )
    predictor = lws.models.load("pre")
    from_records = predictor.scores(records)
    from_arrow = predictor.scores(arrow)
    assert from_records.shape == (5,)
    assert np.all(np.isfinite(from_records))
    assert np.allclose(from_records, from_arrow, atol=1e-12)
    # Record by record, too (a one-row frame of None has object columns).
    one_by_one = np.array([predictor.scores([record])[0] for record in records])
    assert np.allclose(one_by_one, from_arrow, atol=1e-12)
    # The unseen category is all zeros in the one-hot block, not an error; its
    # score differs from every seen category's.
    seen = [predictor.scores([{**records[3], "cat": c}])[0] for c in ("a", "b", "c")]
    assert all(abs(from_arrow[3] - s) > 1e-9 for s in seen)
    labels = predictor.predict(records)
    assert set(labels.tolist()) <= {0, 1}


def test_features_and_exclude_choose_the_columns(lws: Workspace, tmp_path: Path) -> None:
    data = _split(lws, tmp_path, "binary")
    only = lws.train("only", data, "y", features=["x1", "cat"])
    assert [c["name"] for c in only.version.signature["inputs"]] == ["x1", "cat"]
    without = lws.train("without", data, "y", exclude=["x2", "cat"])
    assert [c["name"] for c in without.version.signature["inputs"]] == ["x1"]
    # The uid column, asked for explicitly, is a feature and not dropped as an identifier.
    forced = lws.train("forced", data, "y", features=["x1", "uid"])
    assert "uid" in forced.version.meta["features"]["ordinal"]
    assert not forced.version.meta["features"]["dropped"]
    # The data does have missing numbers, so the imputer was exercised above.
    assert pc.sum(pc.is_null(lws.data.read(data)["x2"])).as_py() > 0
