"""One tick of the closed loop on a real pipeline and a real prediction log: drift over
the log, decay from labels, the spec's alert rules (deduplicated, escalated), and a
retrain decided and run when the policy acts on what was found."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tests.train._data import tabular
from threadpoolctl import threadpool_limits

from loopml.errors import InputError
from loopml.monitor.feedback import record_feedback
from loopml.pipeline.loop import Tick, tick, watch
from loopml.pipeline.spec import load_spec
from loopml.serve.prediction_log import PredictionLog
from loopml.workspace import Workspace

Write = Callable[[str, str], Path]

SPEC = """\
name: loop
sources:
  d:
    path: data/*.csv
split: {{input: d, by: stratified, column: y, test: 0.25, seed: 3}}
train:
  name: m
  model: sklearn:sklearn.linear_model.LogisticRegression
  target: y
  exclude: [uid, ts]
deploy: {{alias: champion}}
monitor:
  drift: {{test: psi, threshold: 0.2, window: 400, share: 0.3}}
  alerts:
    - {{on: drift, severity: warning, notify: [log], escalate_after: 30m, escalate_to: [log]}}
  retrain: {{on: [{on}], auto_promote: true}}
"""


def noise(rows: int, seed: int) -> pd.DataFrame:
    frame = tabular(rows=rows, seed=seed)
    frame["y"] = np.random.default_rng(seed + 100).integers(0, 2, size=rows)
    return frame


def shifted(rows: int, seed: int) -> pd.DataFrame:
    """The world moved: x1 two standard deviations up; labels follow it as before."""
    frame = tabular(rows=rows, seed=seed)
    frame["x1"] = frame["x1"] + 2.0
    frame["y"] = (frame["x1"] - 2.0 - 0.5 * frame["x2"].fillna(0) > 0.3).astype(int)
    return frame


def setup(ws: Workspace, project: Path, write: Write, *, on: str, first: pd.DataFrame):
    """Run the spec on ``first`` as data/1.csv and make ``m@1`` the champion."""
    path = write("loopml.yaml", SPEC.format(on=on))
    (project / "data").mkdir(exist_ok=True)
    first.to_csv(project / "data" / "1.csv", index=False)
    with threadpool_limits(limits=1):
        run = ws.pipelines.run(path)
    assert run.status == "succeeded", [(s.name, s.error) for s in run.steps]
    ws.promote("m", 1, force=True, reason="the first champion")
    return load_spec(path)


def serve(ws: Workspace, frame: pd.DataFrame, version: int = 1) -> None:
    """Log ``frame``'s rows as served predictions of ``m@version``, ten rows a request."""
    predictor = ws.models.load(f"m@{version}")
    log = PredictionLog(ws.ctx, "m", flush_rows=200, flush_seconds=60)
    for start in range(0, len(frame), 10):
        part = frame.iloc[start : start + 10]
        rows = pa.Table.from_pandas(part[["uid", *predictor.features]], preserve_index=False)
        outputs = [{"prediction": int(s >= 0.5), "score": float(s)} for s in predictor.scores(rows)]
        log.log(f"req-{version}-{start}", "m", version, rows, outputs, 1.0)
    log.close()


def run_tick(ws: Workspace, spec, root: Path, **options) -> Tick:
    with threadpool_limits(limits=1):
        return tick(ws.ctx, spec, root, **options)


def test_drift_raises_the_alert_and_a_retrain_promotes_a_better_version(
    ws: Workspace, project: Path, write: Write
) -> None:
    spec, root = setup(ws, project, write, on="drift", first=noise(400, seed=1))
    serve(ws, shifted(400, seed=2))
    shifted(400, seed=3).to_csv(project / "data" / "2.csv", index=False)  # the latest data

    found = run_tick(ws, spec, root)

    assert found.model == "m" and found.drift is not None
    assert found.drift.flagged and found.drift.rows == 400 and found.drift.number == 1
    assert "x1" in found.drift.statistics["drifted_features"]
    assert "x2" not in found.drift.statistics["drifted_features"]
    assert found.decay is None and any(n.startswith("decay not checked") for n in found.notes)
    (alert,) = found.alerts
    assert (alert.model, alert.rule, alert.severity, alert.status) == (
        "m",
        "drift",
        "warning",
        "open",
    )
    assert [a.id for a in ws.alerts.ls("all", model="m")] == [alert.id]
    decision = found.retrain
    assert decision is not None and decision.trigger == "drift"
    assert decision.details["monitor_result"] == found.drift.id
    assert "x1" in decision.reason and "400 rows" in decision.reason
    assert decision.status == "promoted", decision.details
    assert decision.details["candidate"] == "m@2" and ws.models.get("m@champion").number == 2
    # The drift check is stored in the time series, as every tick's are.
    assert [r.id for r in ws.monitor.history("m")] == [found.drift.id]
    data = json.loads(json.dumps(found.to_dict(), default=str))
    assert data["drift"]["flagged"] and data["retrain"]["status"] == "promoted"
    assert data["alerts"][0]["id"] == alert.id


def test_an_empty_log_is_a_note_not_an_error(ws: Workspace, project: Path, write: Write) -> None:
    spec, root = setup(ws, project, write, on="drift", first=tabular(rows=300, seed=1))

    found = run_tick(ws, spec, root)

    assert found.drift is None and found.decay is None
    assert found.alerts == [] and found.escalated == [] and found.retrain is None
    assert [n.split(":")[0] for n in found.notes] == ["drift not checked", "decay not checked"]
    assert "no prediction of m is logged in the window" in found.notes[0]
    assert "no labelled predictions of m@1" in found.notes[1]
    assert ws.pipelines.retrains("m") == [] and ws.alerts.ls("all") == []
    assert ws.monitor.history("m") == []


def test_an_open_alert_is_not_raised_twice_and_escalates_when_unacknowledged(
    ws: Workspace, project: Path, write: Write
) -> None:
    # The policy retrains on decay only: drift alerts, but starts no retrain.
    spec, root = setup(ws, project, write, on="decay", first=tabular(rows=300, seed=1))
    serve(ws, shifted(400, seed=2))
    start = datetime.now(UTC)

    first = run_tick(ws, spec, root, now=start)
    second = run_tick(ws, spec, root, now=start + timedelta(minutes=5))

    assert first.drift is not None and first.drift.flagged
    assert second.drift is not None and second.drift.flagged
    (raised,) = first.alerts
    (repeated,) = second.alerts
    assert repeated.id == raised.id and (raised.count, repeated.count) == (1, 2)
    (stored,) = ws.alerts.ls("all", model="m")
    assert stored.id == raised.id and stored.count == 2 and stored.status == "open"
    for found in (first, second):
        assert found.retrain is None
        assert any(n.startswith("drift: no retrain (not the policy's trigger") for n in found.notes)
    assert ws.pipelines.retrains("m") == []
    assert first.escalated == [] and second.escalated == []

    # Nobody acknowledged it within 30 minutes: the next tick escalates it, once.
    later = run_tick(ws, spec, root, now=start + timedelta(minutes=31))
    assert [a.id for a in later.escalated] == [raised.id]
    again = run_tick(ws, spec, root, now=start + timedelta(minutes=32))
    assert again.escalated == []
    assert ws.alerts.get(raised.id).escalated_at is not None


def test_decay_from_labels_triggers_a_retrain_when_the_policy_says(
    ws: Workspace, project: Path, write: Write
) -> None:
    same = tabular(rows=300, seed=1)
    spec, root = setup(ws, project, write, on="decay", first=same)
    served = tabular(rows=400, seed=5)  # like the training data: no drift
    serve(ws, served)
    # The labels say the opposite of what the model learned.
    labels = pa.table({"uid": served["uid"].tolist(), "y": (1 - served["y"]).tolist()})
    record_feedback(ws.ctx, "m", labels, key="uid", label="y")

    found = run_tick(ws, spec, root)

    assert found.drift is not None and not found.drift.flagged
    assert found.decay is not None and found.decay.flagged
    assert found.alerts == []  # the only rule watches drift
    decision = found.retrain
    assert decision is not None and decision.trigger == "decay"
    assert decision.details["monitor_result"] == found.decay.id
    assert decision.reason.startswith("roc_auc fell by")
    # The data did not change: the pipeline trains nothing new, and nothing is promoted.
    assert decision.status == "rejected" and decision.details["why"].startswith("no new version")
    assert ws.models.get("m@champion").number == 1


def test_watch_runs_ticks_from_the_spec_file(ws: Workspace, project: Path, write: Write) -> None:
    setup(ws, project, write, on="drift", first=tabular(rows=300, seed=1))
    seen: list[Tick] = []

    with threadpool_limits(limits=1):
        ticks = watch(
            ws.ctx, project / "loopml.yaml", interval=0, iterations=2, on_tick=seen.append
        )

    assert len(ticks) == 2 and [t.model for t in seen] == ["m", "m"]
    assert all(t.retrain is None and t.drift is None for t in ticks)


def test_decay_retrains_even_when_drift_the_policy_ignores_is_flagged_too(
    ws: Workspace, project: Path, write: Write
) -> None:
    spec, root = setup(ws, project, write, on="decay", first=tabular(rows=300, seed=1))
    served = shifted(400, seed=2)
    serve(ws, served)
    # The inputs drifted, and the labels say the model is now wrong.
    labels = pa.table({"uid": served["uid"].tolist(), "y": (1 - served["y"]).tolist()})
    record_feedback(ws.ctx, "m", labels, key="uid", label="y")

    found = run_tick(ws, spec, root)

    assert found.drift is not None and found.drift.flagged
    assert found.decay is not None and found.decay.flagged
    # The policy acts on decay: drift being flagged first must not hide it.
    decision = found.retrain
    assert decision is not None and decision.trigger == "decay"
    assert decision.details["monitor_result"] == found.decay.id


@pytest.mark.parametrize(
    ("option", "mentions"),
    [
        ({"interval": -1}, "interval -1"),
        ({"interval": float("nan")}, "interval nan"),
        ({"interval": 0, "window": "abc"}, "'abc'"),
        ({"interval": 0, "window": 0}, "window of 0 rows"),
    ],
)
def test_watch_refuses_a_bad_interval_or_window_before_any_tick(
    ws: Workspace, project: Path, write: Write, option: dict, mentions: str
) -> None:
    # The spec names a model that does not exist yet: a tick would still run (and note
    # it), so a tick that ran would show in ``seen``.
    path = write("loopml.yaml", SPEC.format(on="drift"))
    seen: list[Tick] = []

    with pytest.raises(InputError) as caught:
        watch(ws.ctx, path, iterations=1, on_tick=seen.append, **option)

    assert mentions in caught.value.message
    assert seen == []
    # The same call with good options does tick.
    assert len(watch(ws.ctx, path, interval=0, iterations=1, on_tick=seen.append)) == 1
    assert len(seen) == 1 and seen[0].model == "m"
