"""``loopml demo`` runs the whole closed loop, as a user runs it: one process, real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import loopml

LOOPML = Path(sys.executable).with_name("loopml")


@pytest.mark.slow
def test_the_demo_closes_the_loop_with_no_failed_request(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    target, elsewhere = tmp_path / "ws", tmp_path / "elsewhere"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    # The demo writes generated data: never into LOOPML_WORKSPACE, only where -w says.
    env["LOOPML_WORKSPACE"] = str(elsewhere)
    done = subprocess.run(
        [LOOPML, "-w", str(target), "demo", "--report", "report.html", "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert not elsewhere.exists()
    assert Path(summary["workspace"]) == target

    assert summary["failed_requests"] == 0 and summary["requests"] > 100
    # Both versions answered: the champion before the drift, the retrained one after.
    assert set(summary["versions_served"]) == {"1", "2"}
    assert summary["promoted"] and summary["swapped"] and summary["champion"] == "fraud@2"
    assert summary["fsck_ok"] and summary["audit_ok"]
    html = (cwd / "report.html").read_text()
    assert "<svg" in html and "<script" not in html and "fraud@2" in html

    with loopml.open(target) as ws:
        # The drift alert fired once, the retrain was decided by it and promoted.
        (alert,) = ws.alerts.ls("all", model="fraud")
        assert alert.rule and alert.severity == "warning"
        (retrain,) = ws.pipelines.retrains("fraud")
        assert (retrain.trigger, retrain.status) == ("drift", "promoted")
        assert retrain.details["candidate"] == "fraud@2"
        assert all(g["passed"] for g in retrain.details["gates"])
        # The new version was evaluated with fairness on its holdout, and the champion
        # measured on the same rows for the comparison.
        (own,) = [e for e in ws.evaluations.ls("fraud", 2) if e.split == "holdout:fraud@2"]
        assert own.summary["values"]["demographic_parity_difference"] is not None
        # The comparison: both versions on the rows of that holdout fraud@1 never fitted.
        compared = "holdout:fraud@2|unseen:fraud@1"
        (mine,) = [e for e in ws.evaluations.ls("fraud", 2) if e.split == compared]
        (theirs,) = [e for e in ws.evaluations.ls("fraud", 1) if e.split == compared]
        assert 0 < mine.rows == theirs.rows <= own.rows
        actions = [e.action for e in ws.audit.ls(limit=1000)]
        for action in ("model.promote", "model.retrain.due", "model.retrain.promoted"):
            assert action in actions
