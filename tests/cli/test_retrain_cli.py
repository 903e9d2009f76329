"""``loopml retrain`` and ``loopml watch``, run as a user runs them: a real process on a
workspace prepared with the SDK; JSON out, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tests.cli.test_cli import LOOPML, clean_env
from tests.train._data import tabular
from threadpoolctl import threadpool_limits

import loopml
from loopml.serve.prediction_log import PredictionLog

pytestmark = pytest.mark.slow

SPEC = """\
name: loop
sources:
  d:
    path: data/*.csv
split: {input: d, by: stratified, column: y, test: 0.25, seed: 3}
train:
  name: m
  model: sklearn:sklearn.linear_model.LogisticRegression
  target: y
  exclude: [uid, ts]
deploy: {alias: champion}
monitor:
  drift: {test: psi, threshold: 0.2, window: 300, share: 0.3}
  alerts: [{on: drift, severity: critical, notify: [log]}]
  retrain: {on: [drift], auto_promote: true}
"""


def noise(rows: int, seed: int) -> pd.DataFrame:
    frame = tabular(rows=rows, seed=seed)
    frame["y"] = np.random.default_rng(seed + 100).integers(0, 2, size=rows)
    return frame


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(workspace root, spec path): ``m@1`` trained on coin-flip labels and promoted."""
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    spec = folder / "loopml.yaml"
    spec.write_text(SPEC)
    noise(300, seed=1).to_csv(folder / "data" / "1.csv", index=False)
    root = tmp_path / "ws"
    with threadpool_limits(limits=1), loopml.open(root) as ws:
        assert ws.pipelines.run(spec).status == "succeeded"
        ws.promote("m", 1, force=True, reason="the first champion")
    yield root, spec


def loopml_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOOPML), "-w", str(root), *args],
        env=clean_env(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def one_object(done: subprocess.CompletedProcess[str]) -> dict:
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def test_retrain_reports_its_outcome_and_exits_1_when_nothing_is_promoted(
    project: tuple[Path, Path],
) -> None:
    root, spec = project
    tabular(rows=300, seed=2).to_csv(spec.parent / "data" / "2.csv", index=False)

    promoted = loopml_cli(root, "retrain", str(spec), "--reason", "new labels", "--json")
    assert promoted.returncode == 0, promoted.stderr
    data = one_object(promoted)
    assert (data["status"], data["trigger"], data["reason"]) == ("promoted", "manual", "new labels")
    assert data["details"]["candidate"] == "m@2"
    assert [g["gate"] for g in data["details"]["gates"]] == ["beat_champion_by.roc_auc"]

    # Nothing changed since: no new version, rejected, said in words; not a failure.
    rejected = loopml_cli(root, "retrain", str(spec))
    assert rejected.returncode == 0
    assert "rejected" in rejected.stdout and "no new version" in rejected.stdout

    skipped = loopml_cli(root, "retrain", str(spec), "--trigger", "decay", "--json")
    assert skipped.returncode == 0 and one_object(skipped)["status"] == "skipped"

    # Drift right after a rejected retrain waits out the policy's cooldown...
    cooling = loopml_cli(root, "retrain", str(spec), "--trigger", "drift", "--json")
    assert cooling.returncode == 0 and one_object(cooling)["status"] == "skipped"
    # ...a person does not.
    (spec.parent / "data" / "1.csv").write_text("uid,x1\nu-1,oops\n")  # no target any more
    failed = loopml_cli(root, "retrain", str(spec), "--trigger", "manual", "--json")
    assert failed.returncode == 1
    broken = one_object(failed)
    assert broken["status"] == "failed" and broken["details"]["error"].startswith("pipeline failed")

    history = loopml_cli(root, "retrain", str(spec), "--history", "--json")
    assert history.returncode == 0
    listed = one_object(history)
    assert listed["model"] == "m"
    assert [(r["trigger"], r["status"]) for r in listed["retrains"]] == [
        ("manual", "failed"),
        ("manual", "rejected"),
        ("manual", "promoted"),
    ]
    with loopml.open(root) as ws:
        assert ws.models.get("m@champion").number == 2  # the failure changed nothing


def test_retrain_with_an_unknown_trigger_is_a_one_line_error(project: tuple[Path, Path]) -> None:
    root, spec = project
    done = loopml_cli(root, "retrain", str(spec), "--trigger", "cron")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "unknown retrain trigger 'cron'" in done.stderr
    with loopml.open(root) as ws:
        assert ws.pipelines.retrains("m") == []


def test_watch_once_checks_drift_alerts_and_retrains(project: tuple[Path, Path]) -> None:
    root, spec = project
    with loopml.open(root) as ws:
        predictor = ws.models.load("m@1")
        moved = tabular(rows=300, seed=4)
        moved["x1"] = moved["x1"] + 2.0
        log = PredictionLog(ws.ctx, "m", flush_rows=100, flush_seconds=60)
        for start in range(0, len(moved), 10):
            rows = pa.Table.from_pandas(
                moved.iloc[start : start + 10][predictor.features], preserve_index=False
            )
            log.log(f"req-{start}", "m", 1, rows, [float(s) for s in predictor.scores(rows)], 1.0)
        log.close()
    tabular(rows=300, seed=2).to_csv(spec.parent / "data" / "2.csv", index=False)

    done = loopml_cli(root, "watch", str(spec), "--once", "--json")

    assert done.returncode == 0, done.stderr
    data = one_object(done)
    assert data["model"] == "m"
    assert data["drift"]["flagged"] and data["drift"]["rows"] == 300
    assert [(a["rule"], a["severity"]) for a in data["alerts"]] == [("drift", "critical")]
    assert data["retrain"]["trigger"] == "drift" and data["retrain"]["status"] == "promoted"
    assert data["notes"][0].startswith("decay not checked")

    # For people: one line per tick, then the notes.
    again = loopml_cli(root, "watch", str(spec), "--once", "--window", "100")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("m: drift") and "decay n/a" in again.stdout
