"""Drift statistics against SciPy and by hand, and the accumulator's one-pass counting."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from loopml.errors import InputError
from loopml.monitor.drift import (
    DriftAccumulator,
    chi_square,
    drift,
    jensen_shannon,
    ks_binned,
    psi,
)
from loopml.registry.reference import features_profile, numeric_profile, prediction_profile

ROWS = 20_000


def _profile(columns: dict[str, object], numeric: list[str], text: list[str]) -> dict:
    return {"features": features_profile(columns, numeric, text)}


def _columns(seed: int, rows: int = ROWS, shift: float = 0.0, colours=None) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(loc=shift, size=rows),
        "b": rng.exponential(size=rows),
        "c": rng.uniform(size=rows),
        "colour": rng.choice(["red", "green", "blue"], p=colours or [0.5, 0.3, 0.2], size=rows),
    }


def _table(columns: dict[str, object]) -> pa.Table:
    return pa.table({k: pa.array(v) for k, v in columns.items()})


def test_psi_is_the_textbook_sum_and_empty_bins_stay_finite() -> None:
    # (0.6 - 0.5) ln(0.6 / 0.5) + (0.4 - 0.5) ln(0.4 / 0.5)
    assert psi([0.5, 0.5], [0.6, 0.4]) == pytest.approx(0.1 * math.log(1.2) + 0.1 * math.log(1.25))
    # Counts are normalised like shares.
    assert psi([50, 50], [600, 400]) == pytest.approx(psi([0.5, 0.5], [0.6, 0.4]))
    assert psi([0.3, 0.7], [0.3, 0.7]) == 0.0
    # A bin the reference never saw weighs in through the 1e-4 floor, not as infinity.
    expected = (0.5 - 1e-4) * math.log(0.5 / 1e-4) + (0.5 - 1.0) * math.log(0.5 / 1.0)
    assert psi([1.0, 0.0], [0.5, 0.5]) == pytest.approx(expected)


def test_ks_is_exact_when_the_values_are_the_reference_bin_edges() -> None:
    # Seven values, each common enough to be a decile edge: the binned CDFs are the
    # empirical CDFs at every value, so the statistic and p-value are SciPy's.
    rng = np.random.default_rng(7)
    reference = rng.choice(7, p=[0.14, 0.15, 0.13, 0.16, 0.14, 0.14, 0.14], size=30_000)
    current = rng.choice(7, p=[0.12, 0.13, 0.13, 0.16, 0.15, 0.15, 0.16], size=12_000)
    profile = numeric_profile(reference.astype(float))
    report = drift({"features": {"v": {"kind": "numeric", **profile}}}, [pa.table({"v": current})])
    feature = report.features[0]
    exact = stats.ks_2samp(reference, current, method="asymp")
    assert feature.statistics["ks"] == pytest.approx(exact.statistic, abs=2e-6)
    assert feature.statistics["ks_p"] == pytest.approx(exact.pvalue, rel=1e-3, abs=1e-6)
    assert 0 < exact.pvalue < 0.05 and feature.drifted is False  # psi decides by default
    assert (
        drift(
            {"features": {"v": {"kind": "numeric", **profile}}},
            [pa.table({"v": current})],
            test="ks",
        )
        .features[0]
        .drifted
    )


def test_binned_ks_bounds_scipys_statistic_closely_on_continuous_data() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(size=50_000)
    for shift in (0.02, 0.1, 0.5):
        current = rng.normal(loc=shift, size=20_000)
        profile = numeric_profile(reference)
        counts = np.bincount(
            np.searchsorted(profile["edges"], current, side="right"),
            minlength=len(profile["edges"]) + 1,
        )
        statistic, p_value = ks_binned(profile["shares"], len(reference), counts)
        exact = stats.ks_2samp(reference, current)
        # The gap at the edges is a lower bound of the supremum, and close to it for a
        # shift (the CDF gap is flat around its maximum).
        assert statistic <= exact.statistic + 1e-5
        assert exact.statistic - statistic < 0.01
        assert p_value >= exact.pvalue - 1e-9


def test_chi_square_is_scipys_test_of_homogeneity() -> None:
    reference = np.array([0.5, 0.3, 0.15, 0.05])
    current = np.array([520, 260, 170, 50])
    statistic, p_value = chi_square(reference, 4000, current)
    table = np.vstack([reference * 4000, current])
    expected = stats.chi2_contingency(table, correction=False)
    assert statistic == pytest.approx(expected.statistic)
    assert p_value == pytest.approx(expected.pvalue)
    # Against a reference far larger than the window, it becomes the goodness of fit.
    statistic, p_value = chi_square(reference, 10**10, current)
    fit = stats.chisquare(current, reference * current.sum())
    assert statistic == pytest.approx(fit.statistic, rel=1e-5)
    assert p_value == pytest.approx(fit.pvalue, rel=1e-4)
    # A category the reference never had makes the test certain, not infinite.
    statistic, p_value = chi_square([0.5, 0.5, 0.0], 1000, [400, 400, 200])
    assert math.isfinite(statistic) and p_value < 1e-10


def test_jensen_shannon_is_scipys_distance() -> None:
    p, q = [0.5, 0.3, 0.2], [100, 500, 400]
    assert jensen_shannon(p, q) == pytest.approx(jensenshannon(p, np.array(q) / 1000))
    assert jensen_shannon(p, p) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("test", ["psi", "ks", "chi2", "js"])
def test_a_window_like_the_reference_is_not_flagged(test: str) -> None:
    reference = _columns(seed=1)
    profile = _profile(reference, ["a", "b", "c"], ["colour"])
    report = drift(profile, [_table(_columns(seed=2, rows=8000))], test=test)
    assert report.drifted_features == [] and not report.drifted
    assert report.rows == 8000
    psi_values = [f.statistics["psi"] for f in report.features]
    assert max(psi_values) < 0.01


@pytest.mark.parametrize("test", ["psi", "ks", "chi2", "js"])
def test_shifted_columns_are_flagged_and_the_verdict_follows_the_share(test: str) -> None:
    reference = _columns(seed=1)
    profile = _profile(reference, ["a", "b", "c"], ["colour"])
    current = _columns(seed=2, rows=8000, shift=1.0, colours=[0.2, 0.3, 0.5])
    report = drift(profile, [_table(current)], test=test)
    assert report.drifted_features == ["a", "colour"]
    assert report.drifted_share == 0.5 and report.drifted  # 2 of 4 reaches the default 0.5
    assert not drift(profile, [_table(current)], test=test, drift_share=0.75).drifted
    colour = report.features[3]
    # KS needs ordered values: a text column is judged by chi-square under ks.
    assert colour.test == ("chi2" if test == "ks" else test)
    assert set(colour.statistics) == {"psi", "chi2", "chi2_p", "js"}
    assert set(report.features[0].statistics) == {"psi", "ks", "ks_p", "chi2", "chi2_p", "js"}


def test_thresholds_move_the_flags() -> None:
    reference = _columns(seed=1)
    profile = _profile(reference, ["a"], [])
    current = _table(_columns(seed=2, rows=8000, shift=0.3))
    value = drift(profile, [current]).features[0].value
    assert 0.02 < value < 0.2  # a small shift: under the default PSI threshold of 0.2
    assert not drift(profile, [current]).drifted
    assert drift(profile, [current], threshold=value * 0.9).drifted
    with pytest.raises(InputError, match="p-value"):
        drift(profile, [current], test="ks", threshold=1.5)
    with pytest.raises(InputError, match="unknown drift test"):
        drift(profile, [current], test="wasserstein")


def test_many_batches_count_exactly_as_one() -> None:
    reference = _columns(seed=1)
    profile = _profile(reference, ["a", "b", "c"], ["colour"])
    whole = _table(_columns(seed=5, rows=10_000, shift=0.2, colours=[0.4, 0.4, 0.2]))
    one = drift(profile, [whole], test="ks")
    many = drift(profile, whole.to_batches(max_chunksize=777), test="ks")
    assert len(whole.to_batches(max_chunksize=777)) > 10
    assert many.to_dict() == one.to_dict()


def test_values_land_in_the_bins_the_profile_defines() -> None:
    # Bin i holds [edge i-1, edge i): a value equal to an edge goes up, as in training.
    edges = [1.0, 2.0, 3.0]
    profile = {"features": {"v": {"kind": "numeric", "edges": edges, "shares": [0.25] * 4}}}
    values = [-np.inf, 0.5, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 9.0, np.nan, np.inf]
    accumulator = DriftAccumulator(profile)
    accumulator.update(pa.table({"v": values}))
    counter = accumulator.features["v"]
    assert counter.counts.tolist() == [1, 2, 3, 2] and counter.missing == 3
    # Past 32 edges the search path bins alike.
    many = np.linspace(-5, 5, 41)
    wide = {"features": {"v": {"kind": "numeric", "edges": many.tolist(), "shares": [1 / 42] * 42}}}
    data = np.random.default_rng(0).normal(size=5000)
    wide_accumulator = DriftAccumulator(wide)
    wide_accumulator.update(pa.table({"v": data}))
    expected = np.bincount(np.searchsorted(many, data, side="right"), minlength=42)
    assert wide_accumulator.features["v"].counts.tolist() == expected.tolist()
    few = DriftAccumulator({"features": {"v": {"kind": "numeric", "edges": many[::4].tolist()}}})
    few.update(pa.table({"v": data}))
    expected = np.bincount(np.searchsorted(many[::4], data, side="right"), minlength=12)
    assert few.features["v"].counts.tolist() == expected.tolist()


def test_missing_values_and_unseen_categories_count_as_drift() -> None:
    reference = _columns(seed=1)
    profile = _profile(reference, ["a"], ["colour"])
    current = _columns(seed=2, rows=5000)
    a = np.asarray(current["a"])
    a[:2500] = np.nan
    colour = np.asarray(current["colour"], dtype=object)
    colour[:2500] = "purple"
    report = drift(profile, [pa.table({"a": a, "colour": colour.tolist()})])
    assert report.drifted_features == ["a", "colour"]
    assert report.features[0].missing == pytest.approx(0.5)
    # The present half of ``a`` is like the reference: KS, on present values only, agrees.
    assert report.features[0].statistics["ks_p"] > 0.01


def test_prediction_drift_is_judged_like_a_column() -> None:
    rng = np.random.default_rng(0)
    profile = _profile(_columns(seed=1), ["a"], [])
    profile["prediction"] = prediction_profile(rng.beta(2, 5, size=5000), "binary")
    accumulator = DriftAccumulator(profile)
    window = _table(_columns(seed=2, rows=4000))
    accumulator.update(window, scores=rng.beta(5, 2, size=4000))
    report = accumulator.report("psi")
    assert report.drifted_features == [] and report.prediction is not None
    assert report.prediction.drifted and report.drifted  # the scores alone decide
    # A multiclass model's scores count by top class, as the profile holds them.
    probabilities = rng.dirichlet([5, 1, 1], size=3000)
    multi = {
        "features": profile["features"],
        "prediction": prediction_profile(probabilities, "multiclass"),
    }
    same = DriftAccumulator(multi)
    same.update(window, scores=rng.dirichlet([5, 1, 1], size=4000))
    assert same.report("chi2").prediction.drifted is False


def test_an_empty_window_or_a_missing_column_is_refused() -> None:
    profile = _profile(_columns(seed=1), ["a", "b"], ["colour"])
    with pytest.raises(InputError, match="no rows"):
        drift(profile, [])
    with pytest.raises(InputError, match="no column 'colour'"):
        drift(profile, [pa.table({"a": [1.0], "b": [2.0]})])
    with pytest.raises(InputError, match="'a' cannot be read as numeric"):
        drift(profile, [pa.table({"a": ["x"], "b": [2.0], "colour": ["red"]})])
    with pytest.raises(InputError, match="reference profile has no column"):
        DriftAccumulator(profile, ["a", "zzz"])
