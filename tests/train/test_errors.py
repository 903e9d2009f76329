"""Bad input fails the training clearly: the error names what is wrong, the run is recorded
as failed with the error, and no model version is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopml.errors import InputError, NotFound, UserCodeError
from loopml.workspace import Workspace

from ._data import ingest, tabular


@pytest.fixture
def data(lws: Workspace, tmp_path: Path) -> str:
    ingest(lws, "tx", tabular(rows=300), tmp_path / "data")
    return "tx"


def _assert_failed_without_version(ws: Workspace, name: str, words: list[str]) -> None:
    (run,) = ws.runs.ls(name)
    assert run.status == "failed"
    assert run.ended_at is not None
    for word in words:
        assert word in (run.error or ""), (word, run.error)
    with pytest.raises(NotFound):
        ws.models.get(name)
    assert all(model.name != name for model, _, _ in ws.models.ls())


@pytest.mark.parametrize(
    ("model", "params", "error", "words"),
    [
        (
            "sklearn:sklearn.linear_model.LogisticRegresion",
            {},
            InputError,
            ["LogisticRegresion", "did you mean sklearn:sklearn.linear_model.LogisticRegression"],
        ),
        (
            "sklearn:sklearn.ensemble.RandomForest",
            {},
            InputError,
            ["RandomForest", "did you mean sklearn:sklearn.ensemble.RandomForest"],
        ),
        (
            "sklearn:sklearn.nowhere.Model",
            {},
            InputError,
            ["sklearn.nowhere"],
        ),
        (
            "sklearn:sklearn.linear_model.LogisticRegression",
            {"Cc": 1.0},
            InputError,
            ["Cc", "did you mean C?"],
        ),
        (
            "sklearn:sklearn.linear_model.LinearRegression",
            {},
            InputError,
            ["has no predict_proba"],
        ),
        ("lightgbm", {"num_leaves": -3}, InputError, ["lightgbm cannot train"]),
        ("torch-mlp", {"layers": [4]}, InputError, ["torch-mlp has no parameter layers"]),
    ],
)
def test_a_bad_model_or_parameter_fails_the_run(
    lws: Workspace,
    data: str,
    model: str,
    params: dict[str, Any],
    error: type[Exception],
    words: list[str],
) -> None:
    with pytest.raises(error) as caught:
        lws.train("bad", data, "y", model=model, params=params)
    for word in words:
        assert word in str(caught.value)
    _assert_failed_without_version(lws, "bad", words)


def test_a_missing_target_suggests_the_close_column(lws: Workspace, data: str) -> None:
    with pytest.raises(InputError, match=r"target column 'yy' is not in tx@1") as caught:
        lws.train("bad", data, "yy")
    assert "did you mean 'y'?" in str(caught.value)
    _assert_failed_without_version(lws, "bad", ["yy", "not in tx@1"])


def test_no_target_without_anomaly_task_is_an_error(lws: Workspace, data: str) -> None:
    with pytest.raises(InputError, match="--target is missing"):
        lws.train("bad", data)
    _assert_failed_without_version(lws, "bad", ["--target is missing"])


def test_a_training_function_that_raises_is_named(
    lws: Workspace, data: str, trainers_module: tuple[Path, str]
) -> None:
    folder, module = trainers_module
    with pytest.raises(UserCodeError) as caught:
        lws.train("bad", data, "y", model=f"python:{module}:explode", code_folder=folder)
    message = str(caught.value)
    assert f"training function {module}:explode" in message
    assert "ValueError: the data has no signal at all" in message
    assert isinstance(caught.value.__cause__, ValueError)
    _assert_failed_without_version(lws, "bad", [f"{module}:explode", "no signal"])


def test_a_training_function_that_does_not_exist(
    lws: Workspace, data: str, trainers_module: tuple[Path, str]
) -> None:
    folder, module = trainers_module
    with pytest.raises(InputError, match="no function 'missing'"):
        lws.train("bad", data, "y", model=f"python:{module}:missing", code_folder=folder)
    _assert_failed_without_version(lws, "bad", ["missing"])


def test_an_unknown_model_string_names_the_choices(lws: Workspace, data: str) -> None:
    with pytest.raises(InputError, match="unknown model 'catboost'") as caught:
        lws.train("bad", data, "y", model="catboost")
    assert "lightgbm" in str(caught.value) and "python:MODULE:FUNCTION" in str(caught.value)
    with pytest.raises(NotFound):
        lws.models.get("bad")


def test_a_metric_that_does_not_fit_the_task(lws: Workspace, data: str) -> None:
    with pytest.raises(InputError, match="metric 'rmse' does not score a binary task"):
        lws.train("bad", data, "y", space={"max_iter": [10, 50]}, trials=2, metric_name="rmse")
    _assert_failed_without_version(lws, "bad", ["rmse"])


def test_a_task_mismatch_with_an_existing_model_is_refused(lws: Workspace, data: str) -> None:
    lws.train("fixed", data, "y", model="sklearn:sklearn.linear_model.LogisticRegression")
    with pytest.raises(InputError, match="is a binary model; this training is regression"):
        lws.train("fixed", data, "y", task="regression")
    runs = lws.runs.ls("fixed")
    assert sorted(run.status for run in runs) == ["failed", "finished"]
    assert [v.number for v in lws.models.versions("fixed")] == [1]
