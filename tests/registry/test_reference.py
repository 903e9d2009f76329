"""Reference profiles: training inputs and holdout scores, as monitoring will read them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tests.train._data import ingest, tabular

from loopml.registry.reference import OTHER, numeric_profile, text_profile
from loopml.workspace import Workspace


def test_numeric_bins_are_deciles_and_every_value_lands_in_one() -> None:
    values = np.random.default_rng(1).normal(size=10_000)
    values[:100] = np.nan
    profile = numeric_profile(values)
    present = values[np.isfinite(values)]
    assert profile["edges"] == pytest.approx(
        np.quantile(present, np.linspace(0, 1, 11)[1:-1], method="higher").tolist()
    )
    assert sum(profile["shares"]) == pytest.approx(1.0, abs=1e-5)
    assert all(s == pytest.approx(0.1, abs=0.002) for s in profile["shares"])
    assert profile["missing"] == pytest.approx(0.01)
    # Repeated values collapse bins instead of making empty ones.
    few = numeric_profile(np.array([1.0] * 90 + [2.0] * 10))
    assert few["edges"] == [1.0, 2.0] and few["shares"] == [0.0, 0.9, 0.1]


def test_text_shares_keep_the_top_values_and_pool_the_rest() -> None:
    values = ["a"] * 50 + ["b"] * 30 + ["c"] * 15 + [None] * 5
    listed = text_profile(values, top=2)
    assert listed["shares"] == {"a": 0.5, "b": 0.3, OTHER: 0.2}
    arrow = text_profile(pa.array(values))
    assert arrow["shares"] == {"a": 0.5, "b": 0.3, "c": 0.15, "(missing)": 0.05}


def test_a_trained_version_carries_its_reference_profile(lws: Workspace, tmp_path: Path) -> None:
    frame = tabular(rows=1200, seed=4)
    ingest(lws, "d", frame, tmp_path / "data")
    result = lws.train("m", "d", "y", model="sklearn:sklearn.linear_model.LogisticRegression")
    profile = result.version.meta["reference_profile"]
    features = profile["features"]
    assert set(features) == {"x1", "x2", "cat"}
    assert features["x1"]["kind"] == "numeric" and features["cat"]["kind"] == "text"
    split = result.version.inputs[0]["split"]["rows"]
    assert profile["rows"] == split["train"] + split["valid"]
    # The training split's own x1 values fall into the recorded bins in those shares.
    assert sum(features["x1"]["shares"]) == pytest.approx(1.0, abs=1e-5)
    assert set(features["cat"]["shares"]) == {"a", "b", "c", "(missing)"}
    prediction = profile["prediction"]
    assert prediction["kind"] == "numeric" and prediction["rows"] == split["test"]
    assert 0.0 <= prediction["edges"][0] <= prediction["edges"][-1] <= 1.0
