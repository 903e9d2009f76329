"""A spec's ``evaluate:`` section: the training step declares the gates and evaluates."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.cli.test_cli import LOOPML, clean_env
from tests.train._data import holdout_rows, tabular
from threadpoolctl import threadpool_limits

import loopml
from loopml.pipeline.spec import load_spec
from loopml.workspace import Workspace

Write = Callable[[str, str], Path]

SPEC = """\
name: tiny
sources:
  d:
    path: d.csv
split: {input: d, by: stratified, column: y, test: 0.25, seed: 3}
train:
  model: sklearn:sklearn.linear_model.LogisticRegression
  target: y
evaluate:
  sensitive: [cat]
  slices: [cat]
  gates:
    roc_auc: ">= 0.7"
    demographic_parity_difference: "<= 0.9"
    beat_champion_by: {roc_auc: 0.0}
"""


@pytest.mark.slow
def test_a_spec_with_evaluate_declares_the_gates_and_evaluates_once(
    ws: Workspace, project: Path, write: Write
) -> None:
    tabular(rows=800).to_csv(project / "d.csv", index=False)
    spec = write("loopml.yaml", SPEC)

    with threadpool_limits(limits=1):
        first = ws.pipelines.run(spec)
        again = ws.pipelines.run(spec)

    assert first.status == again.status == "succeeded"
    version = ws.models.get("tiny@1")
    gates = ws.evaluations.gates("tiny")
    assert gates is not None and gates.get_params() == {
        "thresholds": {"roc_auc": ">= 0.7", "demographic_parity_difference": "<= 0.9"},
        "beat_champion_by": {"roc_auc": 0.0},
        "sensitive": ["cat"],
        "slices": ["cat"],
    }
    (evaluation,) = ws.evaluations.ls("tiny")  # the cached second run evaluated nothing
    assert evaluation.model_ref == version.ref and evaluation.data_ref == "d_split@1"
    assert evaluation.split == "holdout:tiny@1"
    assert evaluation.rows == len(holdout_rows(ws, "d_split")) == 200
    assert evaluation.summary["sensitive"] == ["cat"]
    report = ws.evaluations.report(evaluation)
    assert set(report["fairness"]) == {"cat"} and set(report["slices"]) == {"cat"}
    assert report["metrics"]["roc_auc"] == pytest.approx(version.metrics["roc_auc"], abs=1e-6)

    # The declared gates hold, on that evaluation: no new one is made to check them.
    done = ws.promote("tiny", 1)
    assert [g.gate for g in done.gates if g.passed] == [
        "roc_auc",
        "demographic_parity_difference",
        "beat_champion_by.roc_auc",
    ]
    assert done.evaluation == evaluation.id
    assert len(ws.evaluations.ls("tiny")) == 1
    assert ws.audit.ls(action="model.gates", target="model:tiny")


def test_a_spec_gate_on_a_figure_that_does_not_exist_fails_validation(
    project: Path, write: Write, tmp_path: Path
) -> None:
    text = SPEC.replace('roc_auc: ">= 0.7"', 'roc_aucc: ">= 0.7"')
    spec = write("loopml.yaml", text)

    with pytest.raises(loopml.SpecError) as caught:
        load_spec(spec)
    message = str(caught.value)
    assert "evaluate.gates" in message and "roc_aucc" in message
    assert "did you mean 'roc_auc'" in message
    for bad, mentions in (
        ('"about 0.9"', "does not parse"),
        ("{roc_auc: high}", "beat_champion_by.roc_auc"),
    ):
        if bad.startswith("{"):
            other = SPEC.replace("beat_champion_by: {roc_auc: 0.0}", f"beat_champion_by: {bad}")
        else:
            other = SPEC.replace('">= 0.7"', bad)
        with pytest.raises(loopml.SpecError, match=mentions):
            load_spec(write("loopml.yaml", other))

    # The CLI says so in one line, exits 2, and makes nothing.
    write("loopml.yaml", text)
    done = subprocess.run(
        [str(LOOPML), "run", str(spec), "-w", str(tmp_path / "ws")],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "evaluate.gates" in done.stderr and "roc_aucc" in done.stderr
    assert not (tmp_path / "ws").exists() or not loopml.open(tmp_path / "ws").models.ls()


def test_a_gate_the_models_task_lacks_fails_before_a_version_is_registered(
    ws: Workspace, project: Path, write: Write
) -> None:
    tabular(rows=300).to_csv(project / "d.csv", index=False)
    spec = write("loopml.yaml", SPEC.replace('roc_auc: ">= 0.7"', 'rmse: "<= 1.0"'))
    load_spec(spec)  # a regression model could have it: the spec alone is fine

    result = ws.pipelines.run(spec)

    assert result.status == "failed"
    (train,) = [s for s in result.steps if s.step.name == "train"]
    assert train.status == "failed"
    assert "gate rmse" in (train.error or "") and "binary" in (train.error or "")
    assert ws.models.ls() == []
