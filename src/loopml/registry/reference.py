"""Reference profiles: what a model's inputs and outputs looked like when it was trained.

Monitoring compares live traffic with this, in one pass over a window: numbers by the
share of rows in each quantile bin of the training values (PSI, KS), text by category
frequencies (chi-square, Jensen-Shannon), and the model's scores likewise. Bins are
deciles of the training split's values (fewer when values repeat); the outer bins are
open, so any live value lands in one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

BINS = 10
TOP_CATEGORIES = 50
OTHER = "__other__"


def numeric_profile(values: Any, bins: int = BINS) -> dict[str, Any]:
    """Quantile bin edges of ``values`` and the share of values in each bin.

    ``edges`` are the inner boundaries (bins - 1 of them at most): bin i holds values
    in [edges[i-1], edges[i]), the first everything below edges[0], the last everything
    from edges[-1] up. Missing values are counted apart, as ``missing``.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    present = values[np.isfinite(values)]
    rows = len(values)
    if len(present) == 0:
        return {"edges": [], "shares": [], "missing": 1.0 if rows else 0.0, "rows": rows}
    # Observed values as edges ("higher"), so a value that fills several deciles gets a
    # bin of its own instead of an interpolated edge between it and the next value.
    inner = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1], method="higher")
    edges = np.unique(inner)
    which = np.searchsorted(edges, present, side="right")
    counts = np.bincount(which, minlength=len(edges) + 1)
    return {
        "edges": [float(e) for e in edges],
        "shares": [round(float(c) / len(present), 6) for c in counts],
        "missing": round(1 - len(present) / rows, 6),
        "rows": rows,
        "mean": float(present.mean()),
        "std": float(present.std()),
    }


def text_profile(values: Any, top: int = TOP_CATEGORIES) -> dict[str, Any]:
    """The share of each of the ``top`` most frequent values; the rest share ``__other__``.

    ``values`` is a sequence, or an Arrow array (counted by Arrow).
    """
    from collections import Counter

    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.Array | pa.ChunkedArray):
        counted = pc.value_counts(values.cast(pa.string())).to_pylist()
        counts = Counter(
            {
                "(missing)" if entry["values"] is None else entry["values"]: entry["counts"]
                for entry in counted
            }
        )
    else:
        counts = Counter("(missing)" if v is None else str(v) for v in values)
    rows = sum(counts.values())
    if not rows:
        return {"shares": {}, "rows": 0}
    kept = dict(counts.most_common(top))
    shares = {k: round(v / rows, 6) for k, v in sorted(kept.items())}
    rest = rows - sum(kept.values())
    if rest:
        shares[OTHER] = round(rest / rows, 6)
    return {"shares": shares, "rows": rows}


def features_profile(
    columns: Mapping[str, Any], numeric: Sequence[str], text: Sequence[str]
) -> dict[str, Any]:
    """Each input column's profile: name -> numeric or text profile, with its kind."""
    features = {name: {"kind": "numeric", **numeric_profile(columns[name])} for name in numeric}
    features.update({name: {"kind": "text", **text_profile(columns[name])} for name in text})
    return features


def prediction_profile(scores: Any, task: str) -> dict[str, Any]:
    """The profile of a model's scores; a multiclass model's by its top class."""
    import numpy as np

    scores = np.asarray(scores)
    if task == "multiclass":
        return {"kind": "text", **text_profile(scores.argmax(axis=1).tolist())}
    return {"kind": "numeric", **numeric_profile(scores)}
