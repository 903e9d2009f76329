"""Profiles built while rows are written: sketches, samples, and merging in any split."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import loopml
from loopml.data import writer
from loopml.data._sketch import HyperLogLog, SystematicSample, quantiles
from loopml.data.profile import MAX_TOP_DISTINCT, QUANTILES, Profiler, profile_group


def _table(rows: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i:03d}" for i in range(40)])
    return pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "x": pa.array(rng.normal(10.0, 3.0, rows), mask=rng.random(rows) < 0.1),
            "word": pa.array(words[rng.integers(0, len(words), rows)]),
            "key": pa.array([f"k{v}" for v in rng.integers(0, 3 * MAX_TOP_DISTINCT, rows)]),
            "ts": pa.array(
                np.datetime64("2024-01-01", "s") + rng.integers(0, 10**6, rows), pa.timestamp("s")
            ),
            "flag": pa.array(rng.random(rows) < 0.25),
            "tags": pa.array([[int(v)] * int(v % 3) for v in rng.integers(0, 5, rows)]),
        }
    )


def _profile(table: pa.Table, group_rows: int, hinted: bool = False) -> dict:
    profiler = Profiler()
    for start in range(0, table.num_rows, group_rows):
        sketched = profiler.sketched if hinted else frozenset()
        profiler.add(profile_group(table.slice(start, group_rows), profiler.hasher, sketched))
    return profiler.result(table.schema)


def _same(a: dict, b: dict) -> None:
    """Equal profiles, but for the last bits of merged means and deviations."""
    for name in a:
        for key in a[name]:
            if key in ("mean", "std") and a[name][key] is not None:
                assert a[name][key] == pytest.approx(b[name][key], rel=1e-12), (name, key)
            else:
                assert a[name][key] == b[name][key], (name, key)


def test_the_profile_does_not_depend_on_how_rows_are_grouped() -> None:
    table = _table(30_000)
    whole = _profile(table, table.num_rows)
    _same(whole, _profile(table, 4_096))
    _same(whole, _profile(table, 7_777, hinted=True))


def test_merged_profile_matches_numpy() -> None:
    table = _table(30_000)
    profile = _profile(table, 5_000)
    x = table.column("x").drop_null().to_numpy()
    assert profile["x"]["nulls"] == table.column("x").null_count
    assert profile["x"]["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert profile["x"]["std"] == pytest.approx(x.std(ddof=1), rel=1e-12)
    assert profile["x"]["min"] == x.min() and profile["x"]["max"] == x.max()
    # Under 2 * QUANTILE_SAMPLE values the sample is every value: exact quantiles.
    for q, value in profile["x"]["quantiles"].items():
        assert value == pytest.approx(np.quantile(x, float(q)), rel=1e-12)
    words = table.column("word").to_pylist()
    assert profile["word"]["distinct"] == len(set(words))
    counts = {w: words.count(w) for w in set(words)}
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:10]
    assert profile["word"]["top"] == [list(item) for item in expected]
    assert profile["word"]["min"] == min(words) and profile["word"]["max"] == max(words)


def test_a_column_with_many_values_has_an_estimate_and_no_top_values() -> None:
    table = _table(60_000)
    profile = _profile(table, 8_192, hinted=True)
    true = len(set(table.column("key").to_pylist()))
    assert true > MAX_TOP_DISTINCT
    assert "top" not in profile["key"]
    assert abs(profile["key"]["distinct"] - true) <= 0.02 * true
    assert profile["id"]["distinct"] == pytest.approx(60_000, rel=0.02)
    assert profile["ts"]["distinct"] == pytest.approx(
        len(set(table.column("ts").to_pylist())), rel=0.02
    )


def test_bool_and_nested_columns() -> None:
    table = _table(10_000)
    profile = _profile(table, 3_000)
    flags = table.column("flag").to_pylist()
    assert profile["flag"]["mean"] == pytest.approx(sum(flags) / len(flags))
    assert dict(map(tuple, profile["flag"]["top"])) == {
        True: flags.count(True),
        False: flags.count(False),
    }
    tags = [tuple(t) for t in table.column("tags").to_pylist()]
    assert profile["tags"]["distinct"] == len(set(tags))
    assert sum(n for _, n in profile["tags"]["top"]) <= len(tags)
    assert {tuple(v): n for v, n in profile["tags"]["top"]} == {t: tags.count(t) for t in set(tags)}
    assert "min" not in profile["tags"]


def test_nan_is_the_largest_value_as_in_duckdb() -> None:
    table = pa.table({"v": pa.array([1.0, math.nan, -2.0, None])})
    stats = _profile(table, 2)["v"]
    assert (stats["count"], stats["nulls"], stats["min"]) == (4, 1, -2.0)
    assert stats["max"] is None and stats["mean"] is None  # NaN is stored as null


def test_an_empty_profile_has_every_column() -> None:
    profile = Profiler().result(_table(1).schema)
    assert profile["x"] == {
        "kind": "numeric",
        "count": 0,
        "distinct": 0,
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "quantiles": {},
        "nulls": 0,
    }
    assert profile["word"]["top"] == [] and profile["flag"]["top"] == []


@pytest.mark.parametrize("cardinality", [1, 10, 1_000, 100_000, 1_000_000])
def test_hyperloglog_estimates_within_one_percent(cardinality: int) -> None:
    sketch = HyperLogLog()
    values = np.arange(cardinality, dtype=np.int64) * 7919 + 13
    sketch.add_values(values)
    sketch.add_values(values[::3])  # repeats change nothing
    assert sketch.estimate() == pytest.approx(cardinality, rel=0.01, abs=0.5)


def test_hyperloglog_of_parts_merges_into_that_of_the_whole() -> None:
    values = np.random.default_rng(3).integers(0, 10**12, 50_000)
    whole, left, right = HyperLogLog(), HyperLogLog(), HyperLogLog()
    whole.add_values(values)
    left.add_values(values[:20_000])
    right.add_values(values[15_000:])
    left.merge(right)
    assert np.array_equal(left.registers, whole.registers)


def test_systematic_sample_is_every_stride_th_value_however_fed() -> None:
    values = np.arange(1_000, dtype=np.float64)
    whole, pieces = SystematicSample(100), SystematicSample(100)
    whole.add(values)
    for start in range(0, 1_000, 37):
        pieces.add(values[start : start + 37])
    assert np.array_equal(whole.values(), pieces.values())
    assert 100 <= len(whole.values()) <= 200
    stride = int(whole.values()[1] - whole.values()[0])
    assert np.array_equal(whole.values(), values[::stride])


def test_quantiles_interpolate_like_numpy_with_nan_last() -> None:
    values = np.random.default_rng(1).normal(size=1_001)
    assert quantiles(values, QUANTILES) == pytest.approx(np.quantile(values, QUANTILES))
    with_nan = np.array([3.0, math.nan, 1.0, 2.0])
    low, high = quantiles(with_nan, (0.0, 1.0))
    assert low == 1.0 and math.isnan(high)


def test_a_version_of_many_parts_is_profiled_as_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(writer, "GROUP_ROWS", 1_000)  # many parts, profiled apart
    rng = np.random.default_rng(11)
    table = pa.table(
        {
            "n": pa.array(rng.integers(0, 500, 12_345)),
            "c": pa.array([f"c{i % 17}" for i in range(12_345)]),
        }
    )
    workspace = loopml.open(tmp_path / "ws")
    try:
        version = writer.write_version(
            workspace.ctx,
            "many",
            table.to_batches(max_chunksize=1_000),
            table.schema,
            source="test",
            action="dataset.ingest",
        )
    finally:
        workspace.close()
    assert len(version.files) == 13
    n = table.column("n").to_numpy()
    assert version.profile["n"]["count"] == 12_345
    assert version.profile["n"]["mean"] == pytest.approx(n.mean(), rel=1e-12)
    assert version.profile["n"]["distinct"] == pytest.approx(len(np.unique(n)), rel=0.01)
    assert version.profile["c"]["distinct"] == 17
    assert version.profile["c"]["top"][0] == ["c0", len(range(0, 12_345, 17))]
    _same(dict(version.profile), _profile(table, 12_345))
