"""The prediction log: every logged row lands in Parquet in the store, with its request id,
version, latency, inputs and outputs; logging never blocks (a full queue drops and
counts); sampling is per request; files appear whole; keys stay inside the store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import loopml
from loopml.errors import InputError, StoreError
from loopml.monitor.log_reader import read_window
from loopml.serve.prediction_log import PredictionLog, StoreFiles, log_files, output_columns
from loopml.workspace import Workspace


@pytest.fixture
def plain_ws(tmp_path: Path) -> Iterator[Workspace]:
    with loopml.open(tmp_path / "ws") as ws:
        yield ws


def _rows(n: int, offset: int = 0) -> pa.Table:
    return pa.table(
        {
            "x1": [float(offset + i) for i in range(n)],
            "cat": [f"c{(offset + i) % 3}" for i in range(n)],
        }
    )


def _read_all(ws: Workspace, model: str) -> pa.Table:
    files = StoreFiles(ws.ctx.artifacts)
    tables = [pq.read_table(files.open(f.key)) for f in log_files(files, model)]
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def test_every_logged_row_is_written_with_its_request_and_outputs(plain_ws: Workspace) -> None:
    log = PredictionLog(plain_ws.ctx, "fraud", flush_rows=50, flush_seconds=10)
    threads = [
        threading.Thread(
            target=lambda t=t: [
                log.log(
                    f"t{t}-r{r}",
                    "fraud",
                    3,
                    _rows(2, offset=100 * t + 2 * r),
                    [{"prediction": 1, "score": 0.75}, {"prediction": 0, "score": 0.25}],
                    1.5 + t,
                )
                for r in range(40)
            ]
        )
        for t in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert log.dropped == 0 and log.rows_written == 4 * 40 * 2
    # 320 rows in files of at least 50 rows: several files, none of them partial.
    assert log.files_written >= 2
    table = _read_all(plain_ws, "fraud")
    assert table.num_rows == 320
    assert table.column_names[:7] == [
        "request_id", "row", "time", "model", "version", "shadow", "latency_ms"
    ]  # fmt: skip
    assert {"x1", "cat", "prediction", "score"} <= set(table.column_names)
    assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
    rows = {(r["request_id"], r["row"]): r for r in table.to_pylist()}
    assert len(rows) == 320
    one = rows[("t2-r5", 1)]
    assert one["x1"] == 211.0 and one["cat"] == "c1"
    assert (one["prediction"], one["score"], one["latency_ms"]) == (0, 0.25, 3.5)
    assert (one["model"], one["version"], one["shadow"]) == ("fraud", 3, False)
    # Files are filed by day and named by flush time, inside the store's root.
    root = Path(plain_ws.ctx.artifacts.root)  # type: ignore[attr-defined]
    files = sorted((root / "predictions" / "fraud").rglob("*.parquet"))
    assert len(files) == log.files_written
    assert all(f.parent.name.startswith("date=") for f in files)
    # Nothing is left in staging: each file was staged, then moved into place.
    assert not any((root / "staging").iterdir())


def test_bare_scores_are_named_by_the_versions_task(plain_ws: Workspace) -> None:
    binary = output_columns([0.9, 0.2], 2, "binary", [0, 1])
    assert binary["prediction"].to_pylist() == [1, 0]
    assert binary["score"].to_pylist() == [0.9, 0.2]
    multi = output_columns([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], 2, "multiclass", ["a", "b", "c"])
    assert multi["prediction"].to_pylist() == ["b", "a"]
    assert multi["score"].to_pylist() == [0.7, 0.5]
    assert multi["probabilities.c"].to_pylist() == [0.2, 0.2]
    assert output_columns([3.5], 1, "regression")["prediction"].to_pylist() == [3.5]
    anomaly = output_columns([1.2, -0.3], 2, "anomaly")
    assert anomaly["prediction"].to_pylist() == [1, 0]
    # Unknown task: the number is kept as a score, a list as probabilities by index.
    assert output_columns([0.4], 1)["score"].to_pylist() == [0.4]
    assert output_columns([[0.4, 0.6]], 1)["probabilities.1"].to_pylist() == [0.6]
    nested = output_columns([{"prediction": "b", "probabilities": {"a": 0.1, "b": 0.9}}], 1)
    assert nested["probabilities.b"].to_pylist() == [0.9]
    with pytest.raises(InputError, match="2 outputs for 3 input rows"):
        output_columns([1, 2], 3)
    # An input column named like a log column keeps its values under input.NAME.
    log = PredictionLog(plain_ws.ctx, "clash", flush_seconds=10)
    log.log("r1", "clash", 1, pa.table({"time": [7.0], "version": ["v"]}), [0.3], 2.0)
    log.close()
    row = _read_all(plain_ws, "clash").to_pylist()[0]
    assert (row["input.time"], row["input.version"], row["version"]) == (7.0, "v", 1)
    assert row["score"] == 0.3  # model "clash" is not registered: a generic name


def test_a_full_queue_drops_and_counts_and_never_blocks(plain_ws: Workspace) -> None:
    class SlowStore(PredictionLog):
        """A log whose store takes 0.3 s per file (a slow disk or network)."""

        def _write_table(self, table: pa.Table) -> None:
            time.sleep(0.3)
            super()._write_table(table)

    log = SlowStore(plain_ws.ctx, "slow", queue_size=5, flush_rows=1, flush_seconds=10)
    slowest = 0.0
    for r in range(200):
        began = time.perf_counter()
        log.log(f"r{r}", "slow", 1, _rows(1, r), [0.5], 1.0)
        slowest = max(slowest, time.perf_counter() - began)
    assert slowest < 0.05  # never waits for the store
    assert log.dropped >= 150
    log.close()
    assert log.rows_written + log.dropped == 200
    assert _read_all(plain_ws, "slow").num_rows == log.rows_written


def test_sampling_is_per_request_and_counted(plain_ws: Workspace) -> None:
    log = PredictionLog(plain_ws.ctx, "sampled", sample_rate=0.25, seed=7, flush_seconds=10)
    for r in range(2000):
        log.log(f"r{r}", "sampled", 1, _rows(3, r), [0.1, 0.2, 0.3], 1.0)
    log.close()
    kept = log.rows_written // 3
    assert kept + log.sampled_out == 2000 and log.dropped == 0
    assert 400 <= kept <= 600  # 25% of 2000, within about 4.5 standard deviations
    table = _read_all(plain_ws, "sampled")
    # A request is logged whole or not at all.
    counts = table.group_by("request_id").aggregate([("row", "count")])
    assert set(counts["row_count"].to_pylist()) == {3}


def test_a_quiet_log_flushes_by_time_and_flush_waits(plain_ws: Workspace) -> None:
    log = PredictionLog(plain_ws.ctx, "quiet", flush_seconds=0.2)
    log.log("only", "quiet", 2, _rows(1), [0.9], 4.0, shadow=True)
    deadline = time.monotonic() + 5
    while log.files_written == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.files_written == 1  # written without close() or flush()
    log.log("second", "quiet", 2, _rows(1), [0.1], 4.0)
    log.flush()
    assert log.rows_written == 2
    table = _read_all(plain_ws, "quiet")
    pairs = zip(table["request_id"].to_pylist(), table["shadow"].to_pylist(), strict=True)
    assert sorted(pairs) == [
        ("only", True),
        ("second", False),
    ]
    log.close()
    log.log("late", "quiet", 2, _rows(1), [0.1], 4.0)  # after close: counted, not raised
    assert log.dropped == 1


def test_bad_settings_and_keys_outside_the_log_are_refused(plain_ws: Workspace) -> None:
    with pytest.raises(InputError, match="invalid model name"):
        PredictionLog(plain_ws.ctx, "../../etc")
    with pytest.raises(InputError, match="sample_rate"):
        PredictionLog(plain_ws.ctx, "m", sample_rate=1.5)
    with pytest.raises(InputError, match="queue_size"):
        PredictionLog(plain_ws.ctx, "m", queue_size=0)
    files = StoreFiles(plain_ws.ctx.artifacts)
    for key in ["../x", "/etc/passwd", "objects/ab/cd", "predictions/../objects", "", "a\\b"]:
        with pytest.raises(StoreError):
            files.check_key(key)
    assert files.check_key("predictions/m/date=2026-01-01/x.parquet")


@pytest.mark.parametrize("workspace_factory", ["sqlite-s3"], indirect=True)
def test_the_log_works_on_an_s3_store(ws: Workspace) -> None:
    log = PredictionLog(ws.ctx, "remote", flush_rows=4, flush_seconds=10)
    for r in range(10):
        log.log(f"r{r}", "remote", 1, _rows(1, r), [0.5], 1.0)
    log.close()
    assert log.dropped == 0 and log.write_failures == 0
    files = StoreFiles(ws.ctx.artifacts)
    found = log_files(files, "remote")
    assert len(found) == log.files_written >= 3
    assert found[0].flushed >= found[-1].flushed  # newest first
    table = _read_all(ws, "remote")
    assert sorted(table["request_id"].to_pylist()) == sorted(f"r{r}" for r in range(10))
    window = read_window(ws.ctx, "remote", last_rows=3)
    assert window["request_id"].to_pylist() == ["r7", "r8", "r9"]


def test_a_malformed_request_is_dropped_alone_and_a_failed_write_is_retried(
    plain_ws: Workspace,
) -> None:
    class FlakyStore(PredictionLog):
        """A log whose store fails its first write (a network blip)."""

        failed = False

        def _write_table(self, table: pa.Table) -> None:
            if not self.failed:
                self.failed = True
                raise StoreError("connection reset by peer")
            super()._write_table(table)

    log = FlakyStore(plain_ws.ctx, "flaky", flush_seconds=0.1)
    log.log("good-1", "flaky", 1, _rows(2), [0.1, 0.2], 1.0)
    log.log("bad", "flaky", 1, _rows(2), [0.1], 1.0)  # one output for two rows
    log.log("not-a-table", "flaky", 1, {"x1": [1.0]}, [0.1], 1.0)  # type: ignore[arg-type]
    log.log("good-2", "flaky", 1, _rows(1), [0.3], 1.0)
    log.flush()  # the first write fails; its rows wait for the next flush
    assert log.write_failures == 1 and log.rows_written == 0
    log.close()
    assert log.dropped == 2 and log.rows_written == 3
    table = _read_all(plain_ws, "flaky")
    assert sorted(set(table["request_id"].to_pylist())) == ["good-1", "good-2"]
