"""Inputs a careful reviewer found mishandled: each now trains right or fails clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.errors import InputError
from loopml.pipeline.spec import Train
from loopml.workspace import Workspace

from ._data import ingest, tabular


def test_split_labels_other_than_train_valid_test_stay_out_of_the_holdout(
    lws: Workspace, tmp_path: Path
) -> None:
    frame = tabular(rows=400, seed=5)
    frame["split"] = ["train"] * 240 + ["test"] * 60 + ["oot"] * 100
    ingest(lws, "d", frame.drop(columns=["uid", "ts"]), tmp_path / "data")
    result = lws.train("m", "d", "y", model="sklearn:sklearn.linear_model.LogisticRegression")
    split = result.version.inputs[0]["split"]
    assert split["rows"] == {"train": 240, "valid": 0, "test": 60}
    assert split["rows_left_out"] == 100
    # The holdout metric is over exactly the 60 test rows.
    predictor = lws.models.load(result.version)
    test = frame.iloc[240:300]
    from sklearn.metrics import accuracy_score

    accuracy = accuracy_score(test["y"], predictor.predict(test).astype(int))
    assert result.metrics["accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_few_rows_and_many_classes_split_without_stratifying(
    lws: Workspace, tmp_path: Path
) -> None:
    # 3 holdout rows cannot hold 4 classes: the split is random instead of stratified
    # (scikit-learn would refuse), and metrics a 3-row holdout cannot define are left
    # out rather than stored as NaN.
    frame = pd.DataFrame({"x": np.arange(12, dtype=float), "y": ["a", "b", "c", "d"] * 3})
    ingest(lws, "tiny", frame, tmp_path / "data")
    result = lws.train("m", "tiny", "y", model="sklearn:sklearn.linear_model.LogisticRegression")
    split = result.version.inputs[0]["split"]
    assert split["by"] == "random" and split["rows"]["test"] == 3
    assert all(np.isfinite(v) for v in result.metrics.values())
    assert "accuracy" in result.metrics


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        ("sklearn:sklearn.pipeline.Pipeline", {}, "cannot be built from parameters alone"),
        ("sklearn:sklearn.linear_model.LogisticRegression", {"estimator__C": 1}, "no parameter"),
        ("torch-mlp", {"hidden": "wide"}, "hidden"),
        ("torch-mlp", {"batch_size": 0}, "batch_size"),
        ("torch-mlp", {"dropout": 1.5}, "dropout"),
    ],
)
def test_estimators_and_params_that_cannot_work_fail_clearly(
    lws: Workspace, tmp_path: Path, model: str, params: dict, message: str
) -> None:
    ingest(lws, "d", tabular(rows=200), tmp_path / "data")
    with pytest.raises(InputError, match=message):
        lws.train("m", "d", "y", model=model, params=params)
    (failed,) = lws.runs.ls("m")
    assert failed.status == "failed"


def test_zero_trials_is_refused_not_replaced_by_the_default(lws: Workspace, tmp_path: Path) -> None:
    ingest(lws, "d", tabular(rows=200), tmp_path / "data")
    with pytest.raises(InputError, match="--trials 0"):
        lws.train("m", "d", "y", space={"max_depth": [2, 4]}, trials=0)


def test_the_spec_takes_every_documented_search_space_form() -> None:
    train = Train.model_validate(
        {
            "target": "y",
            "search": {
                "space": {
                    "max_depth": {"low": 2, "high": 12, "step": 2},
                    "hidden": {"choices": [[64], [64, 32]]},
                    "min_child_samples": [5, 10, 20],
                }
            },
        }
    )
    assert train.search is not None and len(train.search.space) == 3
    with pytest.raises(ValueError, match="max_depth"):
        Train.model_validate({"target": "y", "search": {"space": {"max_depth": [6, 2]}}})


def test_a_search_cannot_be_sent_to_a_remote_ray_cluster(lws: Workspace, tmp_path: Path) -> None:
    ingest(lws, "d", tabular(rows=200), tmp_path / "data")
    with pytest.raises(InputError, match="remote Ray cluster"):
        lws.train(
            "m",
            "d",
            "y",
            space={"max_depth": [2, 4]},
            trials=2,
            executor="ray",
            address="ray://10.0.0.1:10001",
        )
