"""What a training run records: params, metrics, tags, inputs, environment, code version,
status and times, resources and their cost; and GPU placement with its fallback."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

import loopml
from loopml.config import WORKSPACE_FILE
from loopml.errors import InputError, NotFound, SpecError
from loopml.records import ModelVersion
from loopml.workspace import Workspace

from ._data import ingest, tabular

LOGISTIC = "sklearn:sklearn.linear_model.LogisticRegression"


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git checkout with one committed file."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text("print('v1')\n")
    _git(folder, "init", "-q")
    _git(folder, "add", "train.py")
    _git(folder, "commit", "-q", "-m", "first")
    return folder


def test_a_training_run_records_what_it_did(lws: Workspace, tmp_path: Path, repo: Path) -> None:
    ingest(lws, "tx", tabular(rows=800), tmp_path / "data")
    lws.features.split("tx_split", "tx", by="stratified", column="y", test=0.25, seed=2)
    before = datetime.now(UTC)
    result = lws.train(
        "churn",
        "tx_split",
        "y",
        model=LOGISTIC,
        params={"C": 0.3},
        tags={"team": "risk", "ticket": 42},
        seed=4,
        code_folder=repo,
    )
    after = datetime.now(UTC)
    run = lws.runs.get(result.run.id)
    assert run == result.run

    assert (run.kind, run.status, run.experiment, run.parent_id) == (
        "train",
        "finished",
        "churn",
        None,
    )
    assert run.error is None
    assert before <= run.started_at <= run.ended_at <= after  # type: ignore[operator]

    assert run.params["model"] == LOGISTIC
    assert run.params["params"] == {"C": 0.3}
    assert run.params["seed"] == 4
    assert run.params["target"] == "y"
    assert run.params["task"] == "binary"
    assert run.params["device"] == "cpu"
    assert run.params["features"]["numeric"] == ["x1", "x2"]

    assert run.tags["team"] == "risk" and run.tags["ticket"] == "42"
    assert run.tags["model_version"] == "churn@1"

    # Metrics: the holdout metrics under scikit-learn's names, also in the metric log.
    assert set(run.metrics) == {"roc_auc", "average_precision", "f1", "accuracy", "log_loss"}
    assert run.metrics == dict(result.version.metrics)
    logged = {key: value for key, _, value, _ in lws.runs.metrics(run.id)}
    assert logged == pytest.approx(dict(result.version.metrics))

    # Inputs: the dataset version and the split it was measured on.
    (read,) = run.inputs
    version = lws.data.get("tx_split")
    assert read["dataset"] == version.ref == "tx_split@1"
    assert read["id"] == version.id
    assert read["split"]["by"] == "column" and read["split"]["column"] == "split"
    rows = read["split"]["rows"]
    assert rows["train"] + rows["valid"] + rows["test"] == read["rows"] == 800
    assert rows["test"] == 200  # stratified: round(0.25 * n) of each class

    # Environment and code version.
    assert run.environment["python"] == platform.python_version()
    import sklearn

    assert run.environment["packages"]["scikit-learn"] == sklearn.__version__
    assert run.code["git_sha"] == _git(repo, "rev-parse", "HEAD")
    assert run.code["dirty"] is False

    # Artifacts of the version, on the run too.
    assert run.artifacts == dict(result.version.artifacts)

    # Resources, and no cost without a price table.
    assert run.resources["cpu_seconds"] > 0
    assert run.resources["wall_seconds"] > 0
    assert run.resources["peak_rss_bytes"] > 0
    assert run.resources["wall_seconds"] <= (after - before).total_seconds()
    assert run.cost is None
    assert result.to_dict()["cost"] is None
    assert result.to_dict()["run_id"] == run.id


def test_the_code_version_is_dirty_after_a_tracked_file_changes(
    lws: Workspace, tmp_path: Path, repo: Path
) -> None:
    ingest(lws, "tx", tabular(rows=300), tmp_path / "data")
    clean = lws.train("m", "tx", "y", model=LOGISTIC, code_folder=repo)
    (repo / "train.py").write_text("print('v2')\n")
    dirty = lws.train("m", "tx", "y", model=LOGISTIC, code_folder=repo)
    sha = _git(repo, "rev-parse", "HEAD")
    assert (clean.run.code["git_sha"], clean.run.code["dirty"]) == (sha, False)
    assert (dirty.run.code["git_sha"], dirty.run.code["dirty"]) == (sha, True)
    # A new commit moves the sha and cleans the checkout.
    _git(repo, "commit", "-q", "-am", "second")
    again = lws.train("m", "tx", "y", model=LOGISTIC, code_folder=repo)
    assert again.run.code["git_sha"] == _git(repo, "rev-parse", "HEAD") != sha
    assert again.run.code["dirty"] is False
    # Outside any checkout there is no code version, and no error.
    outside = tmp_path / "not_a_repo"
    outside.mkdir()
    plain = lws.train("m", "tx", "y", model=LOGISTIC, code_folder=outside)
    assert plain.run.code == {}


def test_cost_comes_from_the_price_table(tmp_path: Path) -> None:
    root = tmp_path / "priced"
    root.mkdir()
    (root / WORKSPACE_FILE).write_text(
        yaml.safe_dump({"prices": {"cpu_hour": 3600, "gpu_hour": 0, "memory_gib_hour": 0}})
    )
    with loopml.open(root) as ws:
        ingest(ws, "tx", tabular(rows=600), tmp_path / "data")
        result = ws.train(
            "priced", "tx", "y", model=LOGISTIC, space={"C": [0.1, 1.0]}, trials=2, parallel=1
        )
        run = ws.runs.get(result.run.id)
        # One CPU second costs 1 at 3600 per CPU hour; GPU and memory are free.
        assert run.resources["cpu_seconds"] > 0
        assert run.cost == pytest.approx(run.resources["cpu_seconds"], abs=1e-6)
        trials = ws.runs.ls(parent_id=run.id, include_trials=True)
        assert len(trials) == 2
        for trial in trials:
            assert trial.cost == pytest.approx(trial.resources["cpu_seconds"], abs=1e-6)


def test_a_bad_price_table_leaves_no_run_running_and_no_version(tmp_path: Path) -> None:
    root = tmp_path / "badprice"
    root.mkdir()
    (root / WORKSPACE_FILE).write_text(yaml.safe_dump({"prices": {"cpu_hour": -1}}))
    with loopml.open(root) as ws:
        ingest(ws, "tx", tabular(rows=300), tmp_path / "data")
        with pytest.raises(SpecError, match=r"prices\.cpu_hour"):
            ws.train("priced", "tx", "y", model=LOGISTIC)
        # The error is the workspace file's, so the training should not half-happen:
        # no run stays "running" forever, and no version is registered for a run that
        # could not be closed.
        statuses = [run.status for run in ws.runs.ls("priced")]
        assert "running" not in statuses, statuses
        assert [v.number for v in _versions(ws, "priced")] == []


def _versions(ws: Workspace, name: str) -> list[ModelVersion]:
    try:
        return list(ws.models.versions(name))
    except NotFound:
        return []


# ---------------------------------------------------------------------- GPUs


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU is visible to this process, whatever the machine has."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def test_a_gpu_without_one_fails_and_names_the_fallback(
    lws: Workspace, tmp_path: Path, no_gpu: None
) -> None:
    ingest(lws, "tx", tabular(rows=300), tmp_path / "data")
    with pytest.raises(InputError) as caught:
        lws.train("gpu", "tx", "y", model="lightgbm", gpus=1)
    assert "gpu_fallback" in str(caught.value)
    assert "no GPU is visible" in str(caught.value)
    (run,) = lws.runs.ls("gpu")
    assert run.status == "failed" and "gpu_fallback" in (run.error or "")
    with pytest.raises(NotFound):
        lws.models.get("gpu")


def test_gpu_fallback_trains_on_the_cpu_and_says_so(
    lws: Workspace, tmp_path: Path, no_gpu: None
) -> None:
    ingest(lws, "tx", tabular(rows=300), tmp_path / "data")
    result = lws.train(
        "gpu", "tx", "y", model="lightgbm", params={"n_estimators": 10}, gpus=1, gpu_fallback=True
    )
    assert result.run.status == "finished"
    assert "no GPU is visible" in result.run.tags["gpu_fallback"]
    assert result.run.params["device"] == "cpu"
    assert result.run.params["gpus"] == 1
    assert result.run.resources["gpu_seconds"] == 0
    assert result.version.number == 1


def test_a_scikit_learn_model_on_a_gpu_is_an_error(lws: Workspace, tmp_path: Path) -> None:
    ingest(lws, "tx", tabular(rows=300), tmp_path / "data")
    with pytest.raises(InputError, match="sklearn models train on the CPU only") as caught:
        lws.train("gpu", "tx", "y", model=LOGISTIC, gpus=1)
    assert "gpu_fallback" in str(caught.value)
    (run,) = lws.runs.ls("gpu")
    assert run.status == "failed"
    # With the fallback it trains, and the tag says why it is on the CPU.
    result = lws.train("gpu", "tx", "y", model=LOGISTIC, gpus=1, gpu_fallback=True)
    assert "CPU only" in result.run.tags["gpu_fallback"]
