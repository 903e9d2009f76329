"""The Arrow feature encoding training fits on: the saved transformer's output, row-major."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from loopml.registry.predictor import as_frame
from loopml.train import preprocess


def test_the_arrow_encoding_equals_the_transformer_and_is_row_major() -> None:
    rng = np.random.default_rng(3)
    rows = 400
    amount = rng.normal(size=rows)
    amount[::7] = np.nan
    table = pa.table(
        {
            "amount": pa.array(amount, from_pandas=True),  # NaN becomes a null
            "count": pa.array(rng.integers(0, 50, rows)),
            "color": pa.array(rng.choice(["red", "green", "blue", None], rows)),
            "size": pa.array(rng.choice(["s", "m", "l", "xl"], rows)),
        }
    )
    plan = preprocess.FeaturePlan(
        numeric=("amount", "count"), one_hot=("color",), ordinal=("size",)
    )
    fit_rows = np.arange(0, 300)
    test_rows = np.arange(300, rows)[::-1]  # any order, as given
    text = ["color", "size"]
    # Categories come from the fit rows only; "xl" is then unknown to the encoders.
    sizes = table["size"].to_numpy(zero_copy_only=False)
    categories = preprocess.categories_of(table, text, np.flatnonzero(sizes[:200] != "xl"))
    transformer = preprocess.build(plan, scale=False, impute=False, categories=categories)
    transformer.fit(as_frame(table.take(fit_rows), plan.columns, text))

    fit, test = preprocess.encode(table, plan, categories, [fit_rows, test_rows])

    for matrix, chosen in ((fit, fit_rows), (test, test_rows)):
        expected = transformer.transform(as_frame(table.take(chosen), plan.columns, text))
        assert matrix.shape == expected.shape == (len(chosen), 2 + len(categories["color"]) + 1)
        np.testing.assert_array_equal(matrix, expected)
        # Row-major, as NumPy row selection gives a hand-written fit.
        assert matrix.flags["C_CONTIGUOUS"]
    # Unknown categories are -1 for the ordinal column; missing text is a category.
    assert (test[:, -1] == -1).sum() == (sizes[test_rows] == "xl").sum() > 0
    assert "__missing__" in categories["color"]
