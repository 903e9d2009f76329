"""Acting on a retrain decision with a real pipeline: run it on the latest data, gate
the new version against the champion on the same holdout, and promote it, wait for
approval, reject it or record the failure; and retraining after a scheduled run.

Expectations are computed here: the holdout is read back and scored with each
version, and scikit-learn says which version is better on it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from tests.train._data import holdout_rows, tabular
from threadpoolctl import threadpool_limits

from loopml.monitor.retrain import RetrainPolicy, decide
from loopml.pipeline.retrain import policy_of
from loopml.pipeline.spec import load_spec
from loopml.workspace import Workspace

Write = Callable[[str, str], Path]

SPEC = """\
name: loop
sources:
  d:
    path: d.csv
split: {{input: d, by: stratified, column: y, test: 0.25, seed: 3}}
train:
  name: m
  model: sklearn:sklearn.linear_model.LogisticRegression
  target: y
  exclude: [{exclude}]
{evaluate}deploy: {{alias: champion}}
monitor:
  retrain: {{on: [{on}], auto_promote: {auto}}}
{schedule}"""


def spec_text(
    *,
    auto: bool = True,
    on: str = "drift",
    exclude: str = "uid, ts",
    evaluate: str = "",
    schedule: str = "",
) -> str:
    return SPEC.format(
        auto=str(auto).lower(), on=on, exclude=exclude, evaluate=evaluate, schedule=schedule
    )


def clean(rows: int = 400, seed: int = 2) -> pd.DataFrame:
    """Rows whose label follows x1, x2 and cat (see ``tabular``)."""
    return tabular(rows=rows, seed=seed)


def noise(rows: int = 400, seed: int = 1) -> pd.DataFrame:
    """Rows like ``clean`` whose labels are coin flips: a model learns nothing from them."""
    frame = tabular(rows=rows, seed=seed)
    frame["y"] = np.random.default_rng(seed + 100).integers(0, 2, size=rows)
    return frame


def champion(ws: Workspace) -> int:
    return ws.models.get("m@champion").number


def holdout_auc(ws: Workspace, ref: str) -> float:
    """ROC AUC of ``ref`` on the newest split's holdout, computed with scikit-learn."""
    rows = holdout_rows(ws, "d_split")
    scores = ws.models.load(ref).scores(rows)
    return float(roc_auc_score(np.asarray(rows["y"].to_pylist()), scores))


def retrain_events(ws: Workspace, decision_id: str) -> list[str]:
    events = ws.audit.ls(limit=1000)
    found = [
        e.action
        for e in events
        if e.action.startswith("model.retrain.") and e.details.get("decision") == decision_id
    ]
    return list(reversed(found))


def first_version(ws: Workspace, project: Path, write: Write, frame: pd.DataFrame, **spec):
    """Write the spec and ``frame`` as d.csv, run the pipeline and promote ``m@1``."""
    path = write("loopml.yaml", spec_text(**spec))
    frame.to_csv(project / "d.csv", index=False)
    with threadpool_limits(limits=1):
        first = ws.pipelines.run(path)
    assert first.status == "succeeded", [(s.name, s.error) for s in first.steps]
    ws.promote("m", 1, force=True, reason="the first champion")
    assert champion(ws) == 1
    return path


def retrain(ws: Workspace, path: Path, **options):
    with threadpool_limits(limits=1):
        return ws.pipelines.retrain(path, **options)


def test_the_policy_comes_from_the_spec(project: Path, write: Write) -> None:
    spec, _ = load_spec(write("loopml.yaml", spec_text(auto=False, on="drift, decay")))
    # A rejected retrain cools down for an hour unless the spec says otherwise.
    assert policy_of(spec) == RetrainPolicy(
        on=("drift", "decay"), auto_promote=False, cooldown_seconds=3600.0
    )
    text = "name: bare\ntrain: {model: auto, target: y}\ndeploy: {alias: prod}\n"
    spec, _ = load_spec(write("bare.yaml", text))
    # No retrain section: drift only, never promoted without approval, to the deploy alias.
    assert policy_of(spec) == RetrainPolicy(
        on=("drift",), auto_promote=False, alias="prod", cooldown_seconds=3600.0
    )


def test_new_data_that_makes_a_better_model_is_promoted(
    ws: Workspace, project: Path, write: Write
) -> None:
    path = first_version(ws, project, write, noise())
    clean().to_csv(project / "d.csv", index=False)  # the world's labels became learnable

    decision = retrain(ws, path, trigger="drift", reason="x1 moved")

    assert decision is not None and decision.status == "promoted", decision
    assert (decision.trigger, decision.reason) == ("drift", "x1 moved")
    assert decision.details["candidate"] == "m@2" and decision.details["alias"] == "champion"
    assert champion(ws) == 2
    # The gates declare nothing: "beat the champion on roc_auc by 0" is checked anyway,
    # on the new version's holdout, where scikit-learn finds the same gain.
    (gate,) = decision.details["gates"]
    assert gate["gate"] == "beat_champion_by.roc_auc" and gate["passed"]
    gain = holdout_auc(ws, "m@2") - holdout_auc(ws, "m@1")
    assert gain > 0.2 and gate["measured"] == pytest.approx(gain, abs=1e-5)

    promoted = ws.audit.ls(action="model.promote", target="alias:m@champion")[0]
    assert promoted.details["number"] == 2 and promoted.details["previous"] == 1
    assert decision.id[:12] in promoted.details["reason"]
    edges = ws.lineage("model:m@2")
    assert any(
        e.source == f"retrain:{decision.id}" and e.target == "model:m@2" and e.activity == "retrain"
        for e in edges
    )
    assert retrain_events(ws, decision.id) == [
        "model.retrain.due",
        "model.retrain.running",
        "model.retrain.promoted",
    ]
    assert [d.id for d in ws.pipelines.retrains("m")] == [decision.id]
    assert ws.audit.verify().ok


def test_a_worse_version_is_rejected_and_the_champion_stays(
    ws: Workspace, project: Path, write: Write
) -> None:
    path = first_version(ws, project, write, clean())
    # The spec now leaves out x1, the strongest signal: the new version is worse on the
    # same holdout, and auto_promote must not promote a regression.
    write("loopml.yaml", spec_text(exclude="uid, ts, x1"))

    decision = retrain(ws, path)

    assert decision is not None and decision.status == "rejected", decision
    assert decision.trigger == "manual" and decision.details["candidate"] == "m@2"
    assert champion(ws) == 1
    worse, better = holdout_auc(ws, "m@2"), holdout_auc(ws, "m@1")
    assert worse < better
    (gate,) = decision.details["gates"]
    assert gate["gate"] == "beat_champion_by.roc_auc" and not gate["passed"]
    assert gate["measured"] == pytest.approx(worse - better, abs=1e-5)
    assert "beat_champion_by.roc_auc" in decision.details["why"]
    assert not [e for e in ws.audit.ls(action="model.promote") if e.details.get("number") == 2]
    # The version it made is still linked to the retrain that made it.
    assert any(e.source == f"retrain:{decision.id}" for e in ws.lineage("model:m@2"))
    assert retrain_events(ws, decision.id)[-1] == "model.retrain.rejected"


def test_without_auto_promote_a_passing_version_awaits_approval(
    ws: Workspace, project: Path, write: Write
) -> None:
    gates = 'evaluate:\n  gates: {roc_auc: ">= 0.7"}\n'
    path = first_version(ws, project, write, noise(), auto=False, evaluate=gates)
    clean().to_csv(project / "d.csv", index=False)

    decision = retrain(ws, path, reason="weekly review")

    assert decision is not None and decision.status == "awaiting_approval", decision
    assert champion(ws) == 1
    # The declared threshold, and the implicit champion comparison beside it.
    by_gate = {g["gate"]: g for g in decision.details["gates"]}
    assert set(by_gate) == {"roc_auc", "beat_champion_by.roc_auc"}
    assert all(g["passed"] for g in by_gate.values())
    assert by_gate["roc_auc"]["measured"] == pytest.approx(holdout_auc(ws, "m@2"), abs=1e-5)
    # Approval is an ordinary promotion, through the same gates.
    ws.promote("m", 2, reason=f"approve retrain {decision.id}")
    assert champion(ws) == 2


def test_a_version_failing_a_declared_gate_is_rejected(
    ws: Workspace, project: Path, write: Write
) -> None:
    gates = 'evaluate:\n  gates: {roc_auc: ">= 0.99"}\n'
    path = first_version(ws, project, write, noise(), evaluate=gates)
    clean().to_csv(project / "d.csv", index=False)

    decision = retrain(ws, path)

    assert decision is not None and decision.status == "rejected"
    by_gate = {g["gate"]: g["passed"] for g in decision.details["gates"]}
    # Better than the champion, but not good enough: never promoted.
    assert by_gate == {"roc_auc": False, "beat_champion_by.roc_auc": True}
    assert "roc_auc" in decision.details["why"] and champion(ws) == 1


def test_unchanged_data_makes_no_new_version(ws: Workspace, project: Path, write: Write) -> None:
    path = first_version(ws, project, write, clean())

    decision = retrain(ws, path)

    assert decision is not None and decision.status == "rejected"
    assert decision.details["why"].startswith("no new version")
    assert decision.details["candidate"] == "m@1"
    assert [v.number for v in ws.models.versions("m")] == [1] and champion(ws) == 1


@pytest.mark.parametrize("breakage", ["no target column", "source file gone"])
def test_a_failing_pipeline_fails_the_retrain_and_the_champion_serves_on(
    ws: Workspace, project: Path, write: Write, breakage: str
) -> None:
    path = first_version(ws, project, write, clean())
    if breakage == "no target column":
        clean(seed=5).rename(columns={"y": "label"}).to_csv(project / "d.csv", index=False)
    else:
        (project / "d.csv").unlink()

    decision = retrain(ws, path, trigger="drift", reason="drift")  # must not raise

    assert decision is not None and decision.status == "failed", decision
    # The error names the failing step and says why; each step's error is kept.
    error, steps = decision.details["error"], decision.details["step_errors"]
    if breakage == "no target column":
        assert error == f"pipeline failed: d_split: {steps['d_split']}"
        assert "column 'y'" in steps["d_split"]
    else:
        assert error == f"pipeline failed: d: {steps['d']}"
        assert "d.csv does not exist" in steps["d"]
    assert "upstream" in steps["train"]
    assert champion(ws) == 1 and [v.number for v in ws.models.versions("m")] == [1]
    assert retrain_events(ws, decision.id)[-1] == "model.retrain.failed"
    # A failed retrain is final: it does not block the next one.
    clean(seed=6).to_csv(project / "d.csv", index=False)
    again = retrain(ws, path, trigger="drift", reason="drift again")
    assert again is not None and again.status in {"promoted", "rejected"}


def test_a_trigger_the_policy_ignores_or_a_retrain_in_flight_runs_nothing(
    ws: Workspace, project: Path, write: Write
) -> None:
    path = first_version(ws, project, write, noise())
    clean().to_csv(project / "d.csv", index=False)
    runs = len(ws.pipelines.runs())

    assert retrain(ws, path, trigger="decay") is None  # the policy retrains on drift only
    assert ws.pipelines.retrains("m") == []

    # Another watcher's retrain is in flight: this one does not start a second.
    busy = decide(ws.ctx, "m", policy_of(load_spec(path)[0]), "drift", "another watcher")
    assert busy is not None
    assert retrain(ws, path, trigger="drift") is None
    assert [d.id for d in ws.pipelines.retrains("m")] == [busy.id]
    assert champion(ws) == 1 and [v.number for v in ws.models.versions("m")] == [1]
    assert len(ws.pipelines.runs()) == runs  # no pipeline ran


def test_a_retrain_must_beat_what_the_deploy_alias_serves(
    ws: Workspace, project: Path, write: Write
) -> None:
    # The spec deploys to "prod"; no "champion" alias exists at all.
    text = spec_text().replace("deploy: {alias: champion}", "deploy: {alias: prod}")
    path = write("loopml.yaml", text)
    clean().to_csv(project / "d.csv", index=False)
    with threadpool_limits(limits=1):
        assert ws.pipelines.run(path).status == "succeeded"
    ws.promote("m", 1, alias="prod")
    write("loopml.yaml", text.replace("exclude: [uid, ts]", "exclude: [uid, ts, x1]"))

    decision = retrain(ws, path)

    # Worse than what prod serves: rejected, though there is no "champion" to beat.
    assert decision is not None and decision.status == "rejected", decision
    (gate,) = decision.details["gates"]
    assert not gate["passed"] and gate["required"] == "0 higher than m@1"
    assert gate["measured"] == pytest.approx(
        holdout_auc(ws, "m@2") - holdout_auc(ws, "m@1"), abs=1e-5
    )
    assert ws.models.aliases("m") == {"prod": 1}


@pytest.mark.slow
def test_a_scheduled_run_is_gated_and_promoted_when_the_policy_retrains_on_schedule(
    ws: Workspace, project: Path, write: Write
) -> None:
    path = write("loopml.yaml", spec_text(on="schedule", schedule='schedule: {cron: "0 2 * * *"}'))
    noise().to_csv(project / "d.csv", index=False)
    entry = ws.pipelines.schedule(path)

    def run_due() -> list:
        due = ws.pipelines.schedules()[0].next_run_at + timedelta(minutes=30)
        with threadpool_limits(limits=1):
            return ws.pipelines.run_due(now=due)

    (first,) = run_due()
    assert first.status == "succeeded" and entry.pipeline == "loop"
    # The first version has no champion to beat: it passes and is promoted.
    (decision,) = ws.pipelines.retrains("m")
    assert (decision.trigger, decision.status) == ("schedule", "promoted")
    assert decision.details["pipeline_run"] == first.id and champion(ws) == 1

    clean().to_csv(project / "d.csv", index=False)
    (second,) = run_due()
    newest = ws.pipelines.retrains("m")[0]
    assert newest.details["pipeline_run"] == second.id
    assert (newest.status, newest.details["candidate"]) == ("promoted", "m@2")
    assert champion(ws) == 2 and holdout_auc(ws, "m@2") > holdout_auc(ws, "m@1")

    run_due()  # nothing changed since: the run trains nothing new
    third = ws.pipelines.retrains("m")[0]
    assert third.status == "rejected" and third.details["why"].startswith("no new version")
    assert len(ws.pipelines.retrains("m")) == 3 and champion(ws) == 2


def test_a_scheduled_run_is_not_gated_when_the_policy_ignores_schedules(
    ws: Workspace, project: Path, write: Write
) -> None:
    path = write("loopml.yaml", spec_text(on="drift", schedule='schedule: {cron: "0 2 * * *"}'))
    clean().to_csv(project / "d.csv", index=False)
    ws.pipelines.schedule(path)
    due = ws.pipelines.schedules()[0].next_run_at + timedelta(minutes=30)

    with threadpool_limits(limits=1):
        (result,) = ws.pipelines.run_due(now=due)

    assert result.status == "succeeded" and ws.models.get("m").number == 1
    assert ws.pipelines.retrains("m") == []
    assert "champion" not in ws.models.aliases("m")


def test_a_version_awaiting_approval_waits_as_the_challenger(
    ws: Workspace, project: Path, write: Write
) -> None:
    path = first_version(ws, project, write, noise(), auto=False)
    clean().to_csv(project / "d.csv", index=False)

    decision = retrain(ws, path, trigger="drift", reason="x1 moved")

    assert decision is not None and decision.status == "awaiting_approval", decision
    assert (decision.details["candidate"], decision.details["alias"]) == ("m@2", "challenger")
    assert ws.models.aliases("m") == {"champion": 1, "challenger": 2}
    moved = ws.audit.ls(target="alias:m@challenger")[0]
    assert moved.details["number"] == 2 and decision.id[:12] in moved.details["reason"]
    assert not [e for e in ws.audit.ls(action="model.promote") if e.details.get("number") == 2]
    # Drift that persists waits out the cooldown: no second retrain, no new version.
    assert retrain(ws, path, trigger="drift", reason="still drifting") is None
    assert [v.number for v in ws.models.versions("m")] == [1, 2]
    # Approving it is an ordinary promotion.
    ws.promote("m", 2, reason=f"approve retrain {decision.id}")
    assert champion(ws) == 2


def test_the_retrain_cooldown_is_read_from_the_spec(project: Path, write: Write) -> None:
    from loopml.errors import SpecError

    text = spec_text().replace("auto_promote: true}", "auto_promote: true, cooldown: 2h}")
    assert "cooldown: 2h" in text
    spec, _ = load_spec(write("loopml.yaml", text))
    assert policy_of(spec).cooldown_seconds == 7200
    assert spec.monitor is not None and spec.monitor.retrain is not None
    assert spec.monitor.retrain.cooldown == "2h"

    bad = spec_text().replace("auto_promote: true}", "auto_promote: true, cooldown: soon}")
    with pytest.raises(SpecError) as caught:
        load_spec(write("bad.yaml", bad))
    assert "monitor.retrain.cooldown" in caught.value.message and "soon" in caught.value.message
