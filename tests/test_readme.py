"""The README's examples run as written: the SDK snippet, and the fraud project's commands."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import loopml
from loopml.examples.fraud import contract_path, generate_transactions

README = Path(__file__).resolve().parents[1] / "README.md"
LOOPML = str(Path(sys.executable).with_name("loopml"))


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_sdk_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "contracts").mkdir()
    generated = generate_transactions(tmp_path / "data" / "tx.csv", rows=3_000, seed=3)
    shutil.copyfile(contract_path(), tmp_path / "contracts" / "tx.yaml")
    monkeypatch.chdir(tmp_path)
    snippet, training, evaluation = _blocks("python")[:3]
    exec(
        compile(snippet, str(README), "exec"), {}
    )  # the snippet's own assert checks fsck and audit
    read, accepted, quarantined = (int(n) for n in capsys.readouterr().out.split())
    assert read == generated["rows"]
    assert quarantined == sum(generated["dirty"].values())
    assert accepted + quarantined == read
    assert pq.read_table(tmp_path / "out.parquet").num_rows == accepted

    # The training snippet continues in the same folder, on the ingested transactions.
    namespace: dict = {}
    exec(compile(training, str(README), "exec"), namespace)
    assert capsys.readouterr().out.split() == ["fraud@1", "6", "True"]
    probabilities = namespace["fraud_probability"]
    assert len(probabilities) == accepted and ((probabilities >= 0) & (probabilities <= 1)).all()
    with loopml.open(tmp_path / "ws") as ws:
        (notebook,) = ws.runs.ls("notebook")
        assert notebook.metrics == {"loss": 0.42} and notebook.status == "finished"

    # Evaluation, gates and promotion continue on the trained model.
    exec(compile(evaluation, str(README), "exec"), {})
    assert capsys.readouterr().out.split() == ["holdout:fraud@1", "True", "champion", "fraud@1"]
    html = (tmp_path / "fraud-1.html").read_text()
    assert "<svg" in html and "<script" not in html and "age_band" in html
    with loopml.open(tmp_path / "ws") as ws:
        (stored,) = ws.evaluations.ls("fraud", 1)
        assert stored.summary["values"]["demographic_parity_difference"] is not None


@pytest.mark.slow
def test_the_fraud_project_commands_run(tmp_path: Path) -> None:
    shell = next(block for block in _blocks("bash") if "init --example fraud" in block)
    assert "loopml run" in shell and "loopml run --resume RUN" in shell
    subprocess.run(
        [LOOPML, "init", "--example", "fraud", "fraud", "--rows", "3000"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    project = tmp_path / "fraud"
    first = json.loads(
        subprocess.run(
            [LOOPML, "run", "--json"], cwd=project, check=True, capture_output=True, text=True
        ).stdout
    )
    assert first["status"] == "succeeded"
    again = json.loads(
        subprocess.run(
            [LOOPML, "run", "--json"], cwd=project, check=True, capture_output=True, text=True
        ).stdout
    )
    assert all(step["cache_hit"] for step in again["steps"])
    listed = json.loads(
        subprocess.run(
            [LOOPML, "pipeline", "ls", "--json"],
            cwd=project,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert {r["run_id"] for r in listed["runs"]} == {first["run_id"], again["run_id"]}
    resumed = json.loads(
        subprocess.run(
            [LOOPML, "run", "--resume", first["run_id"], "--json"],
            cwd=project,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert resumed["status"] == "succeeded" and resumed["run_id"] == first["run_id"]
    added = subprocess.run(
        [LOOPML, "schedule", "add"], cwd=project, check=True, capture_output=True, text=True
    )
    assert "card-fraud" in added.stdout
