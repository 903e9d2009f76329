"""Schedules: cron firing, the off-peak window holding heavy steps, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopml.errors import SpecError
from loopml.pipeline.schedule import in_window

LOOPML = str(Path(sys.executable).with_name("loopml"))

SPEC = """\
name: nightly
sources:
  tx:
    path: tx.csv
features:
  light:
    sql: "SELECT id, v * 2 AS v2 FROM tx"
    inputs: [tx]
  heavy:
    sql: "SELECT sum(v2) AS total FROM light"
    inputs: [light]
    heavy: true
  after:
    sql: "SELECT total + 1 AS t FROM heavy"
    inputs: [heavy]
schedule: {cron: "0 2 * * *", off_peak: "00:00-06:00"}
"""


@pytest.fixture
def spec(project: Path) -> Path:
    (project / "tx.csv").write_text("id,v\n1,1\n2,2\n3,3\n")
    path = project / "loopml.yaml"
    path.write_text(SPEC)
    return path


@pytest.mark.parametrize(
    ("window", "moment", "inside"),
    [
        ("00:00-06:00", "2026-01-01T05:59", True),
        ("00:00-06:00", "2026-01-01T06:00", False),
        ("22:00-04:00", "2026-01-01T23:30", True),
        ("22:00-04:00", "2026-01-01T03:59", True),
        ("22:00-04:00", "2026-01-01T12:00", False),
        (None, "2026-01-01T12:00", True),
    ],
)
def test_off_peak_windows(window, moment, inside) -> None:
    assert in_window(window, datetime.fromisoformat(moment).replace(tzinfo=UTC)) is inside


def test_a_registered_schedule_fires_once_per_cron_time(ws, spec: Path) -> None:
    entry = ws.pipelines.schedule(spec)
    assert (entry.pipeline, entry.cron, entry.off_peak) == ("nightly", "0 2 * * *", "00:00-06:00")
    created = datetime.now(UTC)
    # The first 02:00 after registration.
    first_fire = entry.next_run_at
    assert first_fire > created and (first_fire.hour, first_fire.minute) == (2, 0)

    assert ws.pipelines.run_due(now=first_fire.replace(hour=1)) == []  # not yet due
    inside = first_fire.replace(hour=3)  # due, and inside the off-peak window
    results = ws.pipelines.run_due(now=inside)
    assert [r.status for r in results] == ["succeeded"]
    assert {s.name: s.status for s in results[0].steps} == {
        "tx": "succeeded",
        "light": "succeeded",
        "heavy": "succeeded",
        "after": "succeeded",
    }
    assert ws.pipelines.run_due(now=inside.replace(minute=30)) == []  # already ran for 02:00
    (listed,) = ws.pipelines.schedules()
    assert listed.last_run_id == results[0].id
    assert listed.next_run_at.day != first_fire.day or listed.next_run_at.month != first_fire.month


def test_heavy_steps_wait_for_the_window_then_resume(ws, spec: Path) -> None:
    entry = ws.pipelines.schedule(spec)
    noon = entry.next_run_at.replace(hour=12)  # due (after 02:00) but outside 00:00-06:00
    (held,) = ws.pipelines.run_due(now=noon)
    states = {s.name: s.status for s in held.steps}
    assert held.status == "held"
    assert states == {"tx": "succeeded", "light": "succeeded", "heavy": "held", "after": "held"}
    assert "heavy" not in {d.name for d, _, _ in ws.data.ls()}

    assert ws.pipelines.run_due(now=noon.replace(hour=18)) == []  # still outside the window
    night = (
        noon.replace(day=noon.day + 1, hour=1)
        if noon.day < 28
        else noon.replace(hour=23, minute=59)
    )
    if not in_window("00:00-06:00", night):
        night = noon.replace(hour=0, minute=30)
    (resumed,) = ws.pipelines.run_due(now=night)
    assert resumed.id == held.id and resumed.status == "succeeded"
    after = {s.name: s for s in resumed.steps}
    assert after["light"].attempts == 1  # kept from the held run, not run again
    assert ws.data.read("after").to_pydict() == {"t": [2 * (1 + 2 + 3) + 1]}


def test_a_spec_without_schedule_cannot_be_added(ws, project: Path) -> None:
    (project / "tx.csv").write_text("id,v\n1,1\n")
    path = project / "loopml.yaml"
    path.write_text("name: once\nsources:\n  tx: {path: tx.csv}\n")
    with pytest.raises(SpecError) as caught:
        ws.pipelines.schedule(path)
    assert "no schedule" in str(caught.value)


def test_schedule_cli(ws, spec: Path) -> None:
    root = str(ws.settings.root)
    ws.close()
    added = subprocess.run(
        [LOOPML, "-w", root, "schedule", "add", str(spec), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    entry = json.loads(added.stdout)
    assert entry["pipeline"] == "nightly" and entry["cron"] == "0 2 * * *"
    listed = json.loads(
        subprocess.run(
            [LOOPML, "-w", root, "schedule", "ls", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert [s["pipeline"] for s in listed["schedules"]] == ["nightly"]
    due_at = listed["schedules"][0]["next_run_at"][:10] + "T03:00"
    ran = json.loads(
        subprocess.run(
            [LOOPML, "-w", root, "schedule", "run-due", "--now", due_at, "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert [r["status"] for r in ran["runs"]] == ["succeeded"]
    bad = subprocess.run(
        [LOOPML, "-w", root, "schedule", "run-due", "--now", "tomorrow"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    once = subprocess.run(
        [LOOPML, "-w", root, "scheduler", "--interval", "0", "--iterations", "2", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(once.stdout) == {"runs": 0}  # nothing due right now
