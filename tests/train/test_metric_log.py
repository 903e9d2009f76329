"""The metric log: buffered writes, what a crash keeps, and reading runs back."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import loopml
from loopml.errors import InputError, NotFound


@pytest.fixture
def ws(tmp_path: Path):
    with loopml.open(tmp_path / "ws") as workspace:
        yield workspace


def _stored(ws, run_id: str) -> list[tuple[str, int, float, float]]:
    return ws.runs.metrics(run_id)


def test_values_are_written_in_batches_and_all_of_them_by_the_end(ws) -> None:
    run = ws.runs.start("exp", flush_every=100, flush_seconds=3600)
    for i in range(250):
        run.log_metric("loss", 1.0 / (i + 1))
    # Two full batches are written; the rest waits in memory.
    assert len(_stored(ws, run.id)) == 200
    ended = run.end()
    values = _stored(ws, run.id)
    assert len(values) == 250
    assert [step for _, step, _, _ in values] == list(range(250))
    assert values[-1][2] == pytest.approx(1.0 / 250)
    assert ended.status == "finished" and ended.metrics["loss"] == pytest.approx(1.0 / 250)


def test_a_value_waits_at_most_flush_seconds(ws) -> None:
    run = ws.runs.start("exp", flush_every=10_000, flush_seconds=0.2)
    run.log_metric("a", 1.0)
    time.sleep(0.6)
    assert [v for _, _, v, _ in _stored(ws, run.id)] == [1.0]
    run.log_metric("a", 2.0)
    time.sleep(0.6)
    assert [v for _, _, v, _ in _stored(ws, run.id)] == [1.0, 2.0]
    run.end()
    assert len(_stored(ws, run.id)) == 2


def test_what_was_flushed_survives_a_crash(tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    loopml.open(folder).close()
    script = textwrap.dedent(
        f"""
        import os, signal, loopml
        ws = loopml.open({str(folder)!r})
        run = ws.runs.start("crashy", flush_every=1000, flush_seconds=3600)
        print(run.id, flush=True)
        for i in range(3010):
            run.log_metric("loss", float(i))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    run_id = done.stdout.split()[0]
    with loopml.open(folder) as ws:
        values = ws.runs.metrics(run_id)
        run = ws.runs.get(run_id)
        # Three batches were committed; the ten values after them died with the process.
        assert len(values) == 3000
        assert [v for _, _, v, _ in values] == [float(i) for i in range(3000)]
        assert run.status == "running" and run.ended_at is None


def test_params_tags_and_nan_round_trip_and_bad_values_are_refused(ws) -> None:
    with ws.runs.start("exp", params={"alpha": 0.5}, tags={"team": "risk"}) as run:
        run.log_params({"layers": [64, 32]})
        run.set_tag("stage", 2)
        run.log_metric("loss", float("nan"))
        run.log_metric("loss", 0.25, step=10)
        with pytest.raises(InputError, match="not a number"):
            run.log_metric("loss", "high")
        with pytest.raises(InputError, match="bad key"):
            run.log_metric("", 1.0)
    got = ws.runs.get(run.id)
    assert got.params == {"alpha": 0.5, "layers": [64, 32]}
    assert got.tags == {"team": "risk", "stage": "2"}
    history = ws.runs.metrics(run.id, "loss")
    assert [s for _, s, _, _ in history] == [0, 10]
    assert math.isnan(history[0][2]) and history[1][2] == 0.25
    assert got.status == "finished" and got.ended_at is not None


def test_a_run_that_raises_is_recorded_as_failed_with_its_error(ws) -> None:
    with pytest.raises(ZeroDivisionError), ws.runs.start("exp") as run:
        run.log_metric("x", 1)
        _ = 1 / 0
    got = ws.runs.get(run.id)
    assert got.status == "failed"
    assert got.error is not None and "ZeroDivisionError" in got.error
    assert got.metrics == {"x": 1.0}


def test_compare_marks_the_params_that_differ_and_lookups_take_prefixes(ws) -> None:
    a = ws.runs.start("exp", params={"lr": 0.1, "depth": 3})
    a.log_metric("auc", 0.8)
    a.end()
    b = ws.runs.start("exp", params={"lr": 0.2, "depth": 3})
    b.log_metric("auc", 0.9)
    b.end()
    table = ws.runs.compare([a.id[:8], b.id])
    assert table["runs"] == [a.id, b.id]
    assert table["differing_params"] == ["lr"]
    assert table["params"]["depth"] == [3, 3]
    assert table["metrics"]["auc"] == [0.8, 0.9]
    assert [r.id for r in ws.runs.ls("exp")] == [b.id, a.id]
    with pytest.raises(NotFound):
        ws.runs.get("0" * 32)


def test_runs_are_audited_when_they_start_and_end(ws) -> None:
    run = ws.runs.start("exp")
    run.end("pruned")
    events = [(e.action, e.target) for e in ws.audit.ls() if e.target == f"run:{run.id}"]
    assert ("run.start", f"run:{run.id}") in events
    assert ("run.end", f"run:{run.id}") in events
    assert ws.audit.verify().ok


def test_a_lone_value_is_written_by_the_deadline_without_another_call(ws) -> None:
    run = ws.runs.start("exp", flush_every=10_000, flush_seconds=0.2)
    run.log_metric("loss", 0.5)
    deadline = time.monotonic() + 5
    while not _stored(ws, run.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [v for _, _, v, _ in _stored(ws, run.id)] == [0.5]
    run.end()
