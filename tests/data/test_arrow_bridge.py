"""Arrow <-> NumPy without pandas: the conversions the ingest path relies on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from loopml.data import _arrow


def test_mask_reads_nulls_as_false_at_any_offset() -> None:
    values = pa.array([True, None, False, True, None, True, True, False, True, None])
    for start in range(4):
        expected = [v is True for v in values.to_pylist()[start:]]
        assert _arrow.mask(values.slice(start)).tolist() == expected
    chunked = pa.chunked_array([values.slice(0, 3), values.slice(3)])
    assert _arrow.mask(chunked).tolist() == [v is True for v in values.to_pylist()]


@pytest.mark.parametrize(
    "type_",
    [pa.int8(), pa.uint16(), pa.int32(), pa.int64(), pa.float32(), pa.float64()],
)
def test_numbers_match_to_numpy(type_: pa.DataType) -> None:
    values = pa.array(np.arange(20), type_).slice(3, 11)
    assert np.array_equal(_arrow.numbers(values), values.to_numpy())
    chunked = pa.chunked_array([values.slice(0, 4), values.slice(4)])
    assert np.array_equal(_arrow.numbers(chunked), values.to_numpy())


def test_numbers_of_times_are_their_integers() -> None:
    stamps = pa.array([0, 5, 10**12], pa.timestamp("us")).slice(1)
    assert _arrow.numbers(stamps).tolist() == [5, 10**12]
    assert _arrow.numbers(pa.array([3, 4], pa.date32())).tolist() == [3, 4]


def test_numbers_refuse_nulls() -> None:
    with pytest.raises(ValueError, match="nulls"):
        _arrow.numbers(pa.array([1, None]))


def test_builders_round_trip() -> None:
    flags = np.array([True, False, True, True, False, False, True, False, True])
    assert _arrow.booleans(flags).to_pylist() == flags.tolist()
    assert _arrow.int64s(np.array([3, -1], np.int32)).to_pylist() == [3, -1]
    assert _arrow.strings(["a", "", "é"]).to_pylist() == ["a", "", "é"]
    assert _arrow.strings([]).to_pylist() == []
    assert _arrow.string("x").as_py() == "x"


def test_a_csv_ingest_with_an_integer_key_does_not_import_pandas(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("id,amount,when\n1,2.5,2024-01-01\n2,-1,2024-01-02\n")
    (tmp_path / "contract.yaml").write_text(
        "columns:\n  id: {type: int}\n  amount: {type: float, min: 0}\n"
        "  when: {type: timestamp}\nunique: [id]\n"
    )
    script = textwrap.dedent(
        f"""
        import sys
        import loopml
        ws = loopml.open({str(tmp_path / "ws")!r})
        _ = ws.data
        before = "pandas" in sys.modules
        result = ws.ingest("t", {str(tmp_path / "data.csv")!r},
                           contract={str(tmp_path / "contract.yaml")!r})
        assert result.rows_quarantined == 1, result
        print(before, "pandas" in sys.modules)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    before, after = run.stdout.split()
    if before == "True":
        pytest.skip("pandas is imported before the ingest")
    assert after == "False", "the ingest imported pandas (0.13 CPU-s)"
