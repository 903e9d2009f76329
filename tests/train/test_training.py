"""Training's helpers over Arrow tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from loopml.train.training import _few_rows


def test_a_few_rows_are_taken_from_their_span_as_take_would() -> None:
    pieces = pa.Table.from_batches(
        [
            pa.record_batch({"a": list(range(0, 5)), "b": list("abcde")}),
            pa.record_batch({"a": list(range(5, 9)), "b": [None, "g", "h", "i"]}),
        ]
    )
    for rows in ([1, 3, 2], [4, 5, 7], [8], [6, 0]):
        chosen = np.array(rows)
        assert _few_rows(pieces, chosen).equals(pieces.take(chosen))
    assert _few_rows(pieces, np.array([], dtype=np.int64)).num_rows == 0
