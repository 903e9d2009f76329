"""Compiled scoring gives the scores of the original pipeline, or declines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression
from tests.train._data import ingest, tabular

from loopml.registry.compiled import CompiledScorer, compile_scorer, sample_table
from loopml.workspace import Workspace

MODELS = {
    "binary": [
        ("sklearn:sklearn.linear_model.LogisticRegression", {}, "linear"),
        ("sklearn:sklearn.ensemble.RandomForestClassifier", {"n_estimators": 30}, "forest"),
        ("sklearn:sklearn.tree.DecisionTreeClassifier", {"max_depth": 6}, "forest"),
        ("lightgbm", {"num_iterations": 10}, "lightgbm booster"),
        ("xgboost", {"n_estimators": 10}, "xgboost booster"),
    ],
    "multiclass": [
        ("sklearn:sklearn.linear_model.LogisticRegression", {}, "linear"),
        ("sklearn:sklearn.ensemble.ExtraTreesClassifier", {"n_estimators": 20}, "forest"),
    ],
    "regression": [
        ("sklearn:sklearn.linear_model.Ridge", {}, "linear"),
        ("sklearn:sklearn.ensemble.RandomForestRegressor", {"n_estimators": 20}, "forest"),
    ],
}


@pytest.mark.parametrize("task", sorted(MODELS))
def test_compiled_scores_equal_the_pipeline(lws: Workspace, tmp_path: Path, task: str) -> None:
    ingest(lws, "d", tabular(rows=600, task=task), tmp_path / "data")
    for number, (model, params, kind) in enumerate(MODELS[task]):
        version = lws.train(f"m{number}", "d", "y", model=model, params=params).version
        predictor = lws.models.load(version)
        scorer = compile_scorer(predictor)
        assert isinstance(scorer, CompiledScorer) and scorer.kind == kind, model
        # Rows it was not checked on: other seeds, missing and unseen values, one row.
        for rows, seed in ((500, 7), (1, 8), (3, 9)):
            table = sample_table(version, rows, seed=seed)
            np.testing.assert_allclose(
                scorer.scores(table), predictor.scores(table), rtol=1e-7, atol=1e-9
            )
        frame = tabular(rows=50, seed=4, task=task)
        table = pa.Table.from_pandas(frame[predictor.features], preserve_index=False)
        np.testing.assert_allclose(scorer.scores(table), predictor.scores(table), rtol=1e-7)


def test_what_it_cannot_compile_exactly_is_left_alone(lws: Workspace, tmp_path: Path) -> None:
    ingest(lws, "d", tabular(rows=400), tmp_path / "data")
    gbm = "sklearn:sklearn.ensemble.HistGradientBoostingClassifier"
    version = lws.train("hgb", "d", "y", model=gbm, params={"max_iter": 5}).version
    assert compile_scorer(lws.models.load(version)) is None
    logistic = "sklearn:sklearn.linear_model.LogisticRegression"
    version = lws.train("lr", "d", "y", model=logistic).version
    predictor = lws.models.load(version)
    assert compile_scorer(predictor) is not None
    # A subclass that scores its own way looks compilable, but the check catches it.
    fitted = predictor.model.steps[-1][1]
    tempered = TemperedLogistic()
    tempered.__dict__.update(fitted.__dict__)
    predictor.model.steps[-1] = ("model", tempered)
    assert compile_scorer(predictor) is None


class TemperedLogistic(LogisticRegression):
    """Probabilities pulled towards one half: not what the compiled formula computes."""

    def predict_proba(self, X):  # type: ignore[no-untyped-def]
        return 0.5 + 0.5 * (super().predict_proba(X) - 0.5)
