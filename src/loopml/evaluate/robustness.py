"""Robustness: how much a metric drops when the inputs are perturbed.

Three perturbations, each seeded and applied to a copy of the rows:

- ``gaussian_noise``: every numeric feature gets noise of ``noise`` times its standard
  deviation;
- ``missing_values``: a ``missing`` share of each feature's cells is blanked;
- ``category_perturbation``: a ``swap`` share of each text feature's values is replaced
  by another value seen in that column.

The drop is ``baseline - perturbed`` for metrics where greater is better, and
``perturbed - baseline`` otherwise, so a positive drop is always a loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

PERTURBATIONS = ("gaussian_noise", "missing_values", "category_perturbation")


def robustness(
    score_rows: Callable[[Any], Any],
    frame: Any,
    evaluate: Callable[[Any], float],
    *,
    numeric: Sequence[str],
    text: Sequence[str],
    greater_is_better: bool = True,
    noise: float = 0.1,
    missing: float = 0.1,
    swap: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """The metric on ``frame`` as it is and under each perturbation, and the drops.

    Args:
        score_rows: the model: a DataFrame of features -> scores.
        frame: the evaluation rows (a pandas DataFrame of the model's input columns).
        evaluate: scores -> the metric.
        numeric: the numeric feature columns.
        text: the text (categorical) feature columns.
        greater_is_better: the metric's direction.
        noise, missing, swap: the strength of each perturbation.
        seed: the random seed.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    baseline = float(evaluate(score_rows(frame)))
    perturbed = {
        "gaussian_noise": _noisy(frame, numeric, noise, rng),
        "missing_values": _blanked(frame, [*numeric, *text], missing, rng),
        "category_perturbation": _swapped(frame, text, swap, rng),
    }
    result: dict[str, Any] = {"baseline": round(baseline, 6)}
    for name, rows in perturbed.items():
        value = float(evaluate(score_rows(rows)))
        drop = baseline - value if greater_is_better else value - baseline
        result[name] = {"value": round(value, 6), "drop": round(drop, 6)}
    return result


def _noisy(frame: Any, columns: Sequence[str], strength: float, rng: Any) -> Any:
    import numpy as np

    out = frame.copy()
    for column in columns:
        values = out[column].to_numpy(dtype=np.float64, na_value=np.nan)
        spread = np.nanstd(values) if np.isfinite(values).any() else 0.0
        out[column] = values + rng.normal(0.0, strength * (spread or 1.0), size=len(values))
    return out


def _blanked(frame: Any, columns: Sequence[str], share: float, rng: Any) -> Any:
    out = frame.copy()
    for column in columns:
        hit = rng.random(len(out)) < share
        values = out[column].astype(object).copy()
        values[hit] = None
        out[column] = values
    return out


def _swapped(frame: Any, columns: Sequence[str], share: float, rng: Any) -> Any:
    import numpy as np

    out = frame.copy()
    for column in columns:
        values = out[column].astype(object).to_numpy().copy()
        seen = [v for v in dict.fromkeys(values.tolist()) if v is not None]
        if len(seen) < 2:
            continue
        for index in np.flatnonzero(rng.random(len(values)) < share):
            others = [v for v in seen if v != values[index]]
            values[index] = others[rng.integers(len(others))]
        out[column] = values
    return out
