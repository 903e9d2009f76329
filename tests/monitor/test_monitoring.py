"""Drift checks of a trained model over dataset versions and its prediction log, stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.train._data import ingest, tabular

import loopml
from loopml.errors import InputError, NotFound
from loopml.monitor.monitoring import check_drift, parse_window, stream_batches
from loopml.serve.prediction_log import PredictionLog
from loopml.workspace import Workspace

# One worker trains the model once (a session fixture: xdist may interleave other
# modules' tests, which would tear a module fixture down); the tests share it.
pytestmark = pytest.mark.xdist_group("monitor-monitoring")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, Path]]:
    """A workspace with model ``m`` (a logistic regression on x1, x2, cat), and datasets
    ``same`` (like its training data) and ``shifted`` (x1 moved by 1.5 and cat skewed)."""
    from threadpoolctl import threadpool_limits

    folder = tmp_path_factory.mktemp("monitoring")
    with threadpool_limits(limits=1), loopml.open(folder / "ws") as ws:
        ingest(ws, "d", tabular(rows=1500, seed=4), folder / "data")
        ws.train("m", "d", "y", model="sklearn:sklearn.linear_model.LogisticRegression")
        ingest(ws, "same", tabular(rows=3000, seed=5), folder / "data")
        shifted = tabular(rows=3000, seed=6)
        shifted["x1"] = shifted["x1"] + 1.5
        shifted["cat"] = np.where(np.arange(3000) % 10 < 8, "a", shifted["cat"])
        ingest(ws, "shifted", shifted, folder / "data")
        yield ws, folder


def _log(ws: Workspace, model: str, frame: pd.DataFrame, version: int = 1) -> None:
    """Log ``frame``'s rows as served predictions of ``model``, ten rows a request."""
    predictor = ws.models.load(f"m@{version}")
    log = PredictionLog(ws.ctx, model, flush_rows=1000, flush_seconds=0.05)
    try:
        for start in range(0, len(frame), 10):
            rows = pa.Table.from_pandas(frame.iloc[start : start + 10][predictor.features])
            scores = predictor.scores(rows)
            outputs = [{"prediction": int(s >= 0.5), "score": float(s)} for s in scores]
            log.log(f"req-{start}", model, version, rows, outputs, 1.0)
    finally:
        log.close()


def test_a_dataset_like_the_training_data_does_not_drift(trained: tuple[Workspace, Path]) -> None:
    ws, _ = trained
    result = ws.monitor.drift("m", data="same", store=False)
    assert result.source == "dataset:same@1" and result.rows == 3000
    assert result.flagged is False and result.statistics["drifted_features"] == []
    assert [f["name"] for f in result.statistics["features"]] == ["x1", "x2", "cat"]
    assert result.statistics["prediction"]["drifted"] is False


def test_a_shifted_dataset_drifts_and_the_result_is_stored(trained: tuple[Workspace, Path]) -> None:
    ws, _ = trained
    before = {r.id for r in ws.monitor.history("m")}
    result = ws.monitor.drift("m@1", data="shifted", test="ks")
    assert result.flagged and result.statistics["drifted_features"] == ["x1", "cat"]
    # x1 carries the model's signal: the scores drift too.
    assert result.statistics["prediction"]["drifted"]
    by_name = {f["name"]: f for f in result.statistics["features"]}
    assert by_name["x1"]["test"] == "ks" and by_name["cat"]["test"] == "chi2"
    stored = [r for r in ws.monitor.history("m") if r.id not in before]
    assert [r.id for r in stored] == [result.id]
    assert stored[0].flagged and stored[0].statistics == result.statistics
    assert stored[0].report is None and stored[0].rows == 3000
    events = ws.audit.ls(action="monitor.drift")
    assert next(e.details["result"] for e in events if e.target == "model:m@1") == result.id


def test_a_dataset_streamed_in_small_batches_counts_as_in_one(
    trained: tuple[Workspace, Path],
) -> None:
    ws, _ = trained
    small = check_drift(ws.ctx, "m", data="shifted", batch_rows=256, store=False)
    large = check_drift(ws.ctx, "m", data="shifted", store=False)
    assert small.statistics == large.statistics and small.rows == 3000


def test_parquet_streams_row_group_by_row_group(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    table = pa.table({"v": np.arange(10_000, dtype=np.float64), "w": np.zeros(10_000)})
    pq.write_table(table, path, row_group_size=3_000)
    # 500: groups past 4 batches, read batch by batch; 1000 and 5000: read a group at once.
    for batch_rows in (500, 1_000, 5_000):
        batches = list(stream_batches([str(path)], batch_rows, columns=["v"]))
        assert all(b.num_rows <= batch_rows and b.schema.names == ["v"] for b in batches)
        assert pa.Table.from_batches(batches)["v"].to_pylist() == table["v"].to_pylist()


def test_the_live_log_is_checked_by_count_and_by_time(trained: tuple[Workspace, Path]) -> None:
    ws, _ = trained
    model = "m"
    _log(ws, model, tabular(rows=600, seed=7))
    steady = ws.monitor.drift(model, window=500)
    assert steady.source == "log:last 500 rows" and steady.rows == 500
    assert not steady.flagged
    assert steady.statistics["prediction"]["rows"] == 500
    assert steady.window_start is not None and steady.window_start <= steady.window_end
    moved = tabular(rows=600, seed=8)
    moved["x1"] = moved["x1"] + 2.0
    _log(ws, model, moved)
    drifted = ws.monitor.drift(model, window="1h")
    assert drifted.source.startswith("log:since ") and drifted.rows == 1200
    # A duration is read an hour at a time: three slices count what one count window does.
    sliced = ws.monitor.drift(model, window="3h", store=False)
    whole = ws.monitor.drift(model, window=1200, store=False)
    assert sliced.rows == whole.rows == 1200
    assert sliced.statistics == whole.statistics
    recent = ws.monitor.drift(model, window=600)
    assert recent.flagged and "x1" in recent.statistics["drifted_features"]
    assert recent.statistics["prediction"]["drifted"]


def test_an_empty_window_is_an_error_and_stores_nothing(trained: tuple[Workspace, Path]) -> None:
    ws, _ = trained
    before = len(ws.monitor.history("m", kind=None))
    with pytest.raises(InputError, match="no prediction of m is logged"):
        check_drift(ws.ctx, "m", window="1h", now=datetime.now(UTC) - timedelta(days=400))
    assert len(ws.monitor.history("m", kind=None)) == before


def test_data_without_the_signature_columns_is_refused(trained: tuple[Workspace, Path]) -> None:
    ws, folder = trained
    frame = tabular(rows=200, seed=9).drop(columns=["x2"])
    ingest(ws, "partial", frame, folder / "data")
    with pytest.raises(InputError, match=r"lacks column\(s\) x2 of m@1's signature"):
        ws.monitor.drift("m", data="partial")
    with pytest.raises(NotFound):
        ws.monitor.drift("m", data="nothing-here")
    with pytest.raises(NotFound):
        ws.monitor.drift("unknown-model", data="same")


def test_windows_parse_as_counts_or_durations() -> None:
    assert parse_window(None) == 10_000
    assert parse_window("2_500") == 2500 and parse_window(7) == 7
    assert parse_window("30m") == timedelta(minutes=30)
    assert parse_window("90m") == timedelta(minutes=90)
    assert parse_window("7d") == timedelta(days=7)
    for bad in ("0", "soon", "-3", "5y", "1.5h", 0):
        with pytest.raises(InputError):
            parse_window(bad)
