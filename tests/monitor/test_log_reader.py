"""Reading the prediction log back: the latest N rows across files, a time range, shadow
rows left out unless asked for, oldest first, and clear errors for empty windows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import loopml
from loopml.errors import InputError, StoreError
from loopml.monitor.log_reader import read_window
from loopml.serve.prediction_log import PredictionLog
from loopml.workspace import Workspace


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, datetime]]:
    """Model ``m``: 3 files of served rows (r0..r59), then shadow rows in a 4th file, and
    the moment between the first two files and the third."""
    ws = loopml.open(tmp_path_factory.mktemp("log") / "ws")
    log = PredictionLog(ws.ctx, "m", flush_seconds=60)
    middle = None
    for part in range(3):
        if part == 2:
            time.sleep(0.02)
            middle = datetime.now(UTC)
            time.sleep(0.02)
        for r in range(20 * part, 20 * part + 20):
            log.log(f"r{r}", "m", 1, pa.table({"x": [float(r)]}), [r / 100], 1.0)
        log.flush()
    for r in range(5):
        log.log(f"s{r}", "m", 2, pa.table({"x": [float(r)]}), [0.5], 1.0, shadow=True)
    log.close()
    assert log.files_written == 4 and middle is not None
    yield ws, middle
    ws.close()


def test_the_latest_rows_come_oldest_first_across_files(logged: tuple[Workspace, datetime]) -> None:
    ws, _ = logged
    window = read_window(ws.ctx, "m", last_rows=25)
    assert window["request_id"].to_pylist() == [f"r{r}" for r in range(35, 60)]
    assert window["x"].to_pylist() == [float(r) for r in range(35, 60)]
    everything = read_window(ws.ctx, "m", last_rows=1000)
    assert everything.num_rows == 60 and not any(everything["shadow"].to_pylist())
    times = everything["time"].to_pylist()
    assert times == sorted(times)
    with_shadow = read_window(ws.ctx, "m", last_rows=3, include_shadow=True)
    assert with_shadow["request_id"].to_pylist() == ["s2", "s3", "s4"]
    assert with_shadow["version"].to_pylist() == [2, 2, 2]


def test_a_time_range_selects_by_the_rows_time(logged: tuple[Workspace, datetime]) -> None:
    ws, middle = logged
    later = read_window(ws.ctx, "m", since=middle)
    assert later["request_id"].to_pylist() == [f"r{r}" for r in range(40, 60)]
    earlier = read_window(ws.ctx, "m", until=middle)
    assert earlier.num_rows == 40 and earlier["request_id"][-1].as_py() == "r39"
    # Naive times are UTC; combined with a count, the latest rows of the range.
    naive = middle.astimezone(UTC).replace(tzinfo=None)
    assert read_window(ws.ctx, "m", until=naive, last_rows=5)["x"].to_pylist() == [
        35.0, 36.0, 37.0, 38.0, 39.0
    ]  # fmt: skip
    future = read_window(ws.ctx, "m", since=datetime.now(UTC) + timedelta(hours=1))
    assert future.num_rows == 0 and "time" in future.column_names


def test_windows_that_cannot_hold_rows(logged: tuple[Workspace, datetime], tmp_path: Path) -> None:
    ws, middle = logged
    with pytest.raises(InputError, match="last_rows 0"):
        read_window(ws.ctx, "m", last_rows=0)
    with pytest.raises(InputError, match="since must be < until"):
        read_window(ws.ctx, "m", since=middle, until=middle)
    nothing = read_window(ws.ctx, "never-logged", last_rows=10)
    assert nothing.num_rows == 0
    assert nothing.column_names[:3] == ["request_id", "row", "time"]
    with pytest.raises(InputError, match="invalid model name"):
        read_window(ws.ctx, "../m", last_rows=10)


def test_reading_stops_once_the_window_is_full(tmp_path: Path) -> None:
    """Older files are not even opened for a window the newest file fills: damaging the
    oldest one changes nothing for that window, and is reported for a larger one."""
    with loopml.open(tmp_path / "ws") as ws:
        log = PredictionLog(ws.ctx, "m", flush_seconds=60)
        for part in range(3):
            for r in range(10):
                log.log(f"p{part}-{r}", "m", 1, pa.table({"x": [1.0]}), [0.5], 1.0)
            log.flush()
        log.close()
        root = Path(ws.ctx.artifacts.root)  # type: ignore[attr-defined]
        oldest = sorted((root / "predictions" / "m").rglob("*.parquet"))[0]
        oldest.write_bytes(b"not parquet at all")
        assert read_window(ws.ctx, "m", last_rows=15).num_rows == 15
        with pytest.raises(StoreError, match="cannot be read"):
            read_window(ws.ctx, "m", last_rows=30)
