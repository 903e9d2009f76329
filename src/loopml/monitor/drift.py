"""Drift: how far a window of inputs (and of a model's scores) moved from the reference profile.

A model version's reference profile (``loopml.registry.reference``) holds, for each
input column, the share of the training values in each quantile bin (numbers) or of
each frequent category (text), and the same of its holdout scores. A window is counted
into those very bins, batch by batch (``DriftAccumulator.update``), so a check is one
pass over the window in memory bounded by one batch, however long the window is; the
statistics are then computed on the counts:

- ``psi``: population stability index, ``sum((cur - ref) * ln(cur / ref))`` over the
  bins, shares of 0 replaced by 1e-4 (as Evidently does). Missing values are a bin of
  their own, so a column that starts arriving empty drifts. Drifted when >= threshold.
- ``ks``: two-sample Kolmogorov-Smirnov, on the binned CDFs. The profile keeps the
  training deciles, not the training values, so the statistic is the largest gap
  between the two CDFs *at the reference bin edges*: a lower bound of the exact
  statistic, exact when the values are among the edges (a discrete column). The
  p-value is SciPy's asymptotic one (``ks_2samp(method="asymp")``) with the reference
  sample's size. Numbers only; drifted when the p-value < threshold.
- ``chi2``: Pearson's chi-square test that the window's counts and the reference's
  (its shares times its sample size) come from one distribution, over categories or
  bins: a two-sample test, because the reference is a sample too. A value the
  reference never saw counts in ``__other__`` when the profile has it, else in a bin
  of its own. Drifted when the p-value < threshold.
- ``js``: Jensen-Shannon distance (SciPy's, natural log, between 0 and sqrt(ln 2))
  between the two distributions. Drifted when >= threshold.

Every test applies to every column (a numeric column's bins are its categories),
except ``ks``, which needs ordered values: under ``ks`` a text column is judged by
``chi2`` at the same p-value threshold.

The verdict: the window has drifted when the share of drifted input columns is at
least ``drift_share`` (0.5 by default, as Evidently's DataDriftPreset), or when the
model's scores drifted (by the same test).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import InputError
from loopml.registry.reference import OTHER

DEFAULT_THRESHOLDS: dict[str, float] = {"psi": 0.2, "ks": 0.05, "chi2": 0.05, "js": 0.1}
TESTS = tuple(DEFAULT_THRESHOLDS)
DRIFT_SHARE = 0.5
# The share given to an empty bin, so logarithms and divisions stay finite.
EPSILON = 1e-4
MISSING = "(missing)"
UNSEEN = "(unseen)"
# Up to this many bin edges, values are binned by comparisons rather than a search.
_FEW_EDGES = 32
# Tests where a small p-value means drift; the others are distances.
P_VALUE_TESTS = frozenset({"ks", "chi2"})


def psi(reference: Any, current: Any) -> float:
    """Population stability index between two distributions (shares or counts).

    Both are normalised to shares; a share of 0 becomes ``EPSILON``.

    Example:
        >>> round(psi([0.5, 0.5], [0.6, 0.4]), 4)
        0.0405
    """
    ref, cur = _shares(reference), _shares(current)
    ref = np.where(ref == 0, EPSILON, ref)
    cur = np.where(cur == 0, EPSILON, cur)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_binned(
    reference_shares: Any, reference_rows: int, current_counts: Any
) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic and p-value from binned distributions.

    Args:
        reference_shares: the reference's share of values in each ordered bin.
        reference_rows: how many values the reference shares were counted from.
        current_counts: the window's count of values in the same bins.

    Returns:
        The largest gap between the cumulative shares at the bin edges, and its
        two-sided asymptotic p-value (SciPy's ``kstwo`` with ``n*m/(n+m)`` samples).
    """
    from scipy.stats import kstwo

    counts = np.asarray(current_counts, dtype=np.float64)
    rows = float(counts.sum())
    if rows == 0 or reference_rows <= 0 or len(counts) < 2:
        return 0.0, 1.0
    gap = np.abs(np.cumsum(_shares(reference_shares))[:-1] - np.cumsum(counts / rows)[:-1])
    statistic = float(gap.max())
    m, n = sorted([float(reference_rows), rows], reverse=True)
    return statistic, float(np.clip(kstwo.sf(statistic, np.round(m * n / (m + n))), 0.0, 1.0))


def chi_square(
    reference_shares: Any, reference_rows: int, current_counts: Any
) -> tuple[float, float]:
    """Pearson's chi-square test that the window and the reference share one distribution.

    A two-sample (homogeneity) test on the 2 x k table of counts, the reference's being
    its shares times ``reference_rows``: the reference is a sample too, and a
    goodness-of-fit test that took its shares as exact would flag unchanged columns
    far more often than the p-value says. Bins empty on both sides are dropped.

    Returns:
        The statistic and its p-value (as ``scipy.stats.chi2_contingency`` without
        continuity correction).
    """
    from scipy.stats import chi2

    ref = np.asarray(reference_shares, dtype=np.float64) * max(reference_rows, 0)
    observed = np.asarray(current_counts, dtype=np.float64)
    keep = (ref > 0) | (observed > 0)
    table = np.vstack([ref[keep], observed[keep]])
    if table.shape[1] < 2 or ref.sum() == 0 or observed.sum() == 0:
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(chi2.sf(statistic, table.shape[1] - 1))


def jensen_shannon(reference: Any, current: Any) -> float:
    """Jensen-Shannon distance (natural log) between two distributions (shares or counts)."""
    from scipy.spatial.distance import jensenshannon

    ref, cur = _shares(reference), _shares(current)
    if ref.sum() == 0 or cur.sum() == 0:
        return 0.0
    return float(jensenshannon(ref, cur))


def _shares(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    total = array.sum()
    return array / total if total > 0 else array


@dataclass(frozen=True)
class FeatureDrift:
    """One column's drift: its statistics, and whether the chosen test flags it.

    Attributes:
        name: the column (``prediction`` for the model's scores).
        kind: ``numeric`` or ``text``.
        rows: the window's rows counted.
        missing: the window's share of missing values.
        statistics: ``psi``, ``js``, ``chi2``/``chi2_p``, and ``ks``/``ks_p`` for numbers.
        test: the test that decided (``chi2`` for a text column under ``ks``).
        value: that test's figure (a p-value for ``ks`` and ``chi2``).
        threshold: what ``value`` was compared with.
        drifted: whether the test flags the column.
    """

    name: str
    kind: str
    rows: int
    missing: float
    statistics: Mapping[str, float]
    test: str
    value: float
    threshold: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        """The column's drift as plain JSON-able values."""
        return {
            "name": self.name,
            "kind": self.kind,
            "rows": self.rows,
            "missing": self.missing,
            "statistics": dict(self.statistics),
            "test": self.test,
            "value": self.value,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftReport:
    """A window's drift against a reference profile, and the verdict.

    Attributes:
        test: the chosen test; ``threshold`` its threshold.
        rows: rows in the window.
        features: each input column's drift, in signature order.
        prediction: the drift of the model's scores, None when they were not checked.
        drift_share: the share of drifted columns that makes the verdict drifted.
        drifted: the verdict (see the module docstring).
    """

    test: str
    threshold: float
    rows: int
    features: Sequence[FeatureDrift]
    prediction: FeatureDrift | None
    drift_share: float
    drifted: bool = field(default=False)

    @property
    def drifted_features(self) -> list[str]:
        """The names of the drifted input columns."""
        return [f.name for f in self.features if f.drifted]

    @property
    def drifted_share(self) -> float:
        """The share of input columns that drifted."""
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able values (what is stored and printed)."""
        return {
            "test": self.test,
            "threshold": self.threshold,
            "rows": self.rows,
            "drifted": self.drifted,
            "drift_share": self.drift_share,
            "drifted_share": round(self.drifted_share, 6),
            "drifted_features": self.drifted_features,
            "features": [f.to_dict() for f in self.features],
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
        }


class _NumericCounts:
    """Counts of a numeric column's values in the reference bins, and of missing ones."""

    kind = "numeric"

    def __init__(self, profile: Mapping[str, Any]) -> None:
        self.edges = np.asarray(profile.get("edges", []), dtype=np.float64)
        self.reference = np.asarray(profile.get("shares", []) or [1.0], dtype=np.float64)
        self.reference_missing = float(profile.get("missing", 0.0))
        self.reference_rows = int(profile.get("rows", 0))
        self.counts = np.zeros(len(self.edges) + 1, dtype=np.int64)
        self.missing = 0

    def update(self, values: Any) -> None:
        if isinstance(values, pa.Array | pa.ChunkedArray):
            values = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        array = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(array)
        present = array if finite.all() else array[finite]
        self.missing += len(array) - len(present)
        if len(self.edges) <= _FEW_EDGES:
            # One vectorised comparison per edge (bin i holds [edge i-1, edge i)): ten
            # times faster than a binary search per value with a profile's nine edges.
            below = [0, *(int(np.count_nonzero(present < edge)) for edge in self.edges)]
            cumulative = np.asarray([*below, len(present)], dtype=np.int64)
            self.counts += cumulative[1:] - cumulative[:-1]
        else:
            which = np.searchsorted(self.edges, present, side="right")
            self.counts += np.bincount(which, minlength=len(self.counts))

    def statistics(self) -> dict[str, float]:
        with_missing_ref = np.append(self.reference * (1 - self.reference_missing), 0.0)
        with_missing_ref[-1] = self.reference_missing
        with_missing_cur = np.append(self.counts, self.missing)
        present_rows = round(self.reference_rows * (1 - self.reference_missing))
        ks, ks_p = ks_binned(self.reference, present_rows, self.counts)
        chi2, chi2_p = chi_square(with_missing_ref, self.reference_rows, with_missing_cur)
        return {
            "psi": psi(with_missing_ref, with_missing_cur),
            "ks": ks,
            "ks_p": ks_p,
            "chi2": chi2,
            "chi2_p": chi2_p,
            "js": jensen_shannon(with_missing_ref, with_missing_cur),
        }

    @property
    def rows(self) -> int:
        return int(self.counts.sum()) + self.missing


class _TextCounts:
    """Counts of a text column's values over the reference categories."""

    kind = "text"

    def __init__(self, profile: Mapping[str, Any]) -> None:
        shares = dict(profile.get("shares", {}))
        # A value the reference did not keep goes where the reference put its rare ones.
        self.overflow = OTHER if OTHER in shares else UNSEEN
        shares.setdefault(self.overflow, 0.0)
        self.categories = list(shares)
        self.index = {name: i for i, name in enumerate(self.categories)}
        self.reference = np.asarray([shares[c] for c in self.categories], dtype=np.float64)
        self.reference_rows = int(profile.get("rows", 0))
        self.counts = np.zeros(len(self.categories), dtype=np.int64)
        self.missing = 0

    def update(self, values: Any) -> None:
        if not isinstance(values, pa.Array | pa.ChunkedArray):
            values = pa.array([None if v is None else str(v) for v in values], pa.string())
        overflow = self.index[self.overflow]
        for entry in pc.value_counts(values.cast(pa.string())).to_pylist():
            value, count = entry["values"], entry["counts"]
            if value is None:
                self.missing += count
                value = MISSING
            self.counts[self.index.get(value, overflow)] += count

    def statistics(self) -> dict[str, float]:
        chi2, chi2_p = chi_square(self.reference, self.reference_rows, self.counts)
        return {
            "psi": psi(self.reference, self.counts),
            "chi2": chi2,
            "chi2_p": chi2_p,
            "js": jensen_shannon(self.reference, self.counts),
        }

    @property
    def rows(self) -> int:
        return int(self.counts.sum())


def _counter(name: str, profile: Mapping[str, Any]) -> _NumericCounts | _TextCounts:
    kind = profile.get("kind")
    if kind == "numeric":
        return _NumericCounts(profile)
    if kind == "text":
        return _TextCounts(profile)
    raise InputError(f"the reference profile of {name!r} has an unknown kind {kind!r}")


class DriftAccumulator:
    """Counts a window into a reference profile's bins, one batch at a time.

    Args:
        profile: a version's ``meta["reference_profile"]`` (``features`` and
            ``prediction``).
        features: the input columns to check (default: every profiled one).

    Example:
        >>> acc = DriftAccumulator(version.meta["reference_profile"])
        >>> for batch in batches:
        ...     acc.update(batch, scores=predictor.scores(batch))
        >>> acc.report("psi").drifted
    """

    def __init__(self, profile: Mapping[str, Any], features: Sequence[str] | None = None) -> None:
        profiled = profile.get("features") or {}
        names = list(profiled) if features is None else list(features)
        unknown = [n for n in names if n not in profiled]
        if unknown:
            raise InputError(
                f"the reference profile has no column {', '.join(map(repr, unknown))}",
                hint="check only the columns of the model's signature",
            )
        self.features = {name: _counter(name, profiled[name]) for name in names}
        scored = profile.get("prediction")
        self.prediction = None if not scored else _counter("prediction", scored)
        self.rows = 0
        self.scored_rows = 0

    @property
    def columns(self) -> list[str]:
        """The input columns counted."""
        return list(self.features)

    def update(self, batch: pa.RecordBatch | pa.Table, scores: Any = None) -> None:
        """Count ``batch``'s rows (it must hold every checked column) and their scores.

        Args:
            batch: rows of the window.
            scores: the model's scores of these rows, or None (see ``update_scores``).

        Raises:
            InputError: a checked column is missing from the batch.
        """
        missing = [name for name in self.features if name not in batch.schema.names]
        if missing:
            raise InputError(
                f"the window has no column {', '.join(map(repr, missing))}",
                hint="the data must hold every input column of the model's signature",
            )
        for name, counter in self.features.items():
            try:
                counter.update(batch.column(name))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InputError(
                    f"column {name!r} cannot be read as {counter.kind}: {exc}",
                    hint="the data's column must have the type the model was trained on",
                ) from exc
        self.rows += batch.num_rows
        if scores is not None:
            self.update_scores(scores)

    def update_scores(self, scores: Any) -> None:
        """Count the model's scores of some rows (a multiclass model's by top class)."""
        if self.prediction is None:
            return
        array = scores if isinstance(scores, pa.Array | pa.ChunkedArray) else np.asarray(scores)
        if isinstance(self.prediction, _TextCounts) and isinstance(array, np.ndarray):
            if array.ndim == 2:
                array = array.argmax(axis=1)
            array = pa.array([str(v) for v in array.tolist()], pa.string())
        self.prediction.update(array)
        self.scored_rows += len(array)

    def report(
        self, test: str = "psi", threshold: float | None = None, drift_share: float = DRIFT_SHARE
    ) -> DriftReport:
        """The statistics of what was counted so far, each column's flag and the verdict.

        Args:
            test: ``psi``, ``ks``, ``chi2`` or ``js``.
            threshold: the test's threshold (default ``DEFAULT_THRESHOLDS[test]``).
            drift_share: the share of drifted columns that makes the window drifted.

        Raises:
            InputError: an unknown test, a bad threshold, or nothing was counted.
        """
        threshold = check_test(test, threshold)
        if not 0 < drift_share <= 1:
            raise InputError(f"drift share {drift_share}", hint="use a share in (0, 1]")
        if self.rows == 0:
            raise InputError(
                "the window has no rows: there is nothing to compare with the reference",
                hint="widen the window, or wait for predictions to be logged",
            )
        features = [_judge(name, c, test, threshold) for name, c in self.features.items()]
        prediction = None
        if self.prediction is not None and self.scored_rows:
            prediction = _judge("prediction", self.prediction, test, threshold)
        drifted_share = sum(f.drifted for f in features) / len(features) if features else 0.0
        verdict = drifted_share >= drift_share or bool(prediction and prediction.drifted)
        return DriftReport(
            test=test,
            threshold=threshold,
            rows=self.rows,
            features=features,
            prediction=prediction,
            drift_share=drift_share,
            drifted=verdict,
        )


def check_test(test: str, threshold: float | None) -> float:
    """Validate a test's name and threshold; return the threshold (or the test's default)."""
    if test not in DEFAULT_THRESHOLDS:
        raise InputError(f"unknown drift test {test!r}", hint=f"use one of {', '.join(TESTS)}")
    if threshold is None:
        return DEFAULT_THRESHOLDS[test]
    threshold = float(threshold)
    if not np.isfinite(threshold) or threshold <= 0 or (test in P_VALUE_TESTS and threshold >= 1):
        bound = "a p-value in (0, 1)" if test in P_VALUE_TESTS else "a positive number"
        raise InputError(f"drift threshold {threshold} for {test}", hint=f"use {bound}")
    return threshold


def _judge(
    name: str, counter: _NumericCounts | _TextCounts, test: str, threshold: float
) -> FeatureDrift:
    statistics = counter.statistics()
    # KS needs ordered values: a text column is judged by chi-square instead.
    used = "chi2" if test == "ks" and counter.kind == "text" else test
    if used in P_VALUE_TESTS:
        value = statistics[f"{used}_p"]
        drifted = value < threshold
    else:
        value = statistics[used]
        drifted = value >= threshold
    rows = counter.rows
    return FeatureDrift(
        name=name,
        kind=counter.kind,
        rows=rows,
        missing=round(counter.missing / rows, 6) if rows else 0.0,
        statistics={k: round(v, 8) for k, v in statistics.items()},
        test=used,
        value=round(value, 8),
        threshold=threshold,
        drifted=bool(drifted),
    )


def drift(
    profile: Mapping[str, Any],
    batches: Iterable[pa.RecordBatch | pa.Table],
    *,
    test: str = "psi",
    threshold: float | None = None,
    drift_share: float = DRIFT_SHARE,
    features: Sequence[str] | None = None,
) -> DriftReport:
    """The drift of the input columns of ``batches`` against ``profile``, in one pass.

    Prediction drift needs the model's scores: use ``DriftAccumulator`` for that.

    Example:
        >>> report = drift(profile, ws.data.batches("tx@7"), test="ks")
        >>> report.drifted_features
        ['amount']
    """
    accumulator = DriftAccumulator(profile, features)
    for batch in batches:
        accumulator.update(batch)
    return accumulator.report(test, threshold, drift_share)
