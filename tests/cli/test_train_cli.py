"""``loopml train``, ``loopml runs ...`` and ``loopml model ...`` driven as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score
from tests.cli.test_cli import clean_env, one_json_object, run

import loopml


@pytest.fixture
def project(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    n = 3000
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    logit = 2 * x1 - x2 + (colour == "red") * 1.5
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    table = pa.table({"x1": x1, "x2": x2, "colour": colour, "label": label})
    pq.write_table(table, tmp_path / "data.parquet")
    env = clean_env(LOOPML_WORKSPACE=str(tmp_path / "ws"))
    ingested = run(["ingest", "d", "data.parquet", "--json"], tmp_path, env)
    assert ingested.returncode == 0, ingested.stderr
    return tmp_path


def _env(project: Path) -> dict[str, str]:
    return clean_env(LOOPML_WORKSPACE=str(project / "ws"))


def test_train_prints_the_run_the_version_and_holdout_metrics(project: Path) -> None:
    env = _env(project)
    first = one_json_object(
        run(["train", "m", "--data", "d", "--target", "label", "--json"], project, env)
    )
    second = one_json_object(
        run(
            [
                "train", "m", "--data", "d@1", "--target", "label",
                "--model", "sklearn:sklearn.linear_model.LogisticRegression",
                "--param", "C=0.5", "--json",
            ],
            project,
            env,
        )
    )  # fmt: skip
    assert (first["model"], first["model_version"]) == ("m", 1)
    assert (second["model_version"], second["flavor"], second["task"]) == (2, "sklearn", "binary")
    assert second["params"]["C"] == 0.5
    assert set(second["metrics"]) >= {"roc_auc", "average_precision", "f1", "accuracy", "log_loss"}
    # The holdout metric is what the registered model scores on the holdout rows.
    with loopml.open(project / "ws") as ws:
        version = ws.models.get("m@2")
        predictor = ws.models.load(version)
        table = ws.data.read("d")
        split = version.inputs[0]["split"]
        assert split["rows"]["test"] == 600
        assert version.run_id == second["run_id"]
        assert 0.5 < second["metrics"]["roc_auc"] <= 1.0
        scores = predictor.scores(table)
        assert roc_auc_score(table["label"].to_numpy(), scores) == pytest.approx(
            second["metrics"]["roc_auc"], abs=0.05
        )


def test_runs_ls_show_compare_and_model_ls_show(project: Path) -> None:
    env = _env(project)
    a = one_json_object(run(["train", "m", "-d", "d", "-t", "label", "--json"], project, env))
    b = one_json_object(
        run(["train", "m", "-d", "d", "-t", "label", "-p", "max_depth=3", "--json"], project, env)
    )
    listed = one_json_object(run(["runs", "ls", "--model", "m", "--json"], project, env))
    assert [r["id"] for r in listed["runs"]] == [b["run_id"], a["run_id"]]
    assert all(r["status"] == "finished" and r["kind"] == "train" for r in listed["runs"])
    shown = one_json_object(run(["runs", "show", a["run_id"][:10], "--json"], project, env))
    assert shown["id"] == a["run_id"]
    assert shown["inputs"][0]["dataset"] == "d@1"
    assert shown["resources"]["wall_seconds"] > 0 and shown["environment"]["python"]
    compared = one_json_object(
        run(["runs", "compare", a["run_id"], b["run_id"], "--json"], project, env)
    )
    assert "params" in compared["differing_params"]
    table = run(["runs", "compare", a["run_id"], b["run_id"]], project, env)
    assert table.returncode == 0 and "roc_auc" in table.stdout

    models = one_json_object(run(["model", "ls", "--json"], project, env))
    assert [(m["model"], m["versions"], m["latest"]["number"]) for m in models["models"]] == [
        ("m", 2, 2)
    ]
    one = one_json_object(run(["model", "show", "m@1", "--json"], project, env))
    assert one["run_id"] == a["run_id"]
    assert [c["name"] for c in one["signature"]["inputs"]] == ["x1", "x2", "colour"]
    every = one_json_object(run(["model", "show", "m", "--json"], project, env))
    assert [v["number"] for v in every["versions"]] == [1, 2]
    human = run(["model", "show", "m@2"], project, env)
    assert human.returncode == 0 and "artifact model: skops" in human.stdout


def test_a_search_from_the_command_line_records_its_trials(project: Path) -> None:
    env = _env(project)
    out = one_json_object(
        run(
            [
                "train", "m", "-d", "d", "-t", "label", "--space",
                "{max_depth: [2, 6], learning_rate: [0.05, 0.3, log]}",
                "--trials", "4", "--parallel", "1", "--json",
            ],
            project,
            env,
        )
    )  # fmt: skip
    search = out["search"]
    assert search["trials"] == 4 == search["finished"] + search["pruned"] + search["failed"]
    assert 2 <= out["params"]["max_depth"] <= 6
    assert out["params"]["max_depth"] == search["best_params"]["max_depth"]
    trials = one_json_object(
        run(["runs", "ls", "--trials-of", out["run_id"], "--json"], project, env)
    )
    assert len(trials["runs"]) == 4
    assert {r["parent_id"] for r in trials["runs"]} == {out["run_id"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "lable"], "did you mean 'label'"),
        (
            ["--target", "label", "--model", "sklearn:sklearn.ensemble.RandomForestClasifier"],
            "RandomForestClassifier",
        ),
        (["--target", "label", "--model", "tensorflow"], "unknown model"),
        (["--target", "label", "--space", "{max_depth: [6, 2]}"], "max_depth"),
        (["--target", "label", "--space", "{max_depth: [1, 2"], "not valid YAML"),
        (["--target", "label", "--param", "max_dept=3"], "did you mean max_depth"),
        (["--target", "label", "--gpus", "1"], "gpu_fallback"),
    ],
)
def test_bad_input_gets_one_line_naming_it_and_exit_2(
    project: Path, args: list[str], message: str
) -> None:
    env = _env(project)
    done = run(["train", "m", "--data", "d", *args], project, env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    with loopml.open(project / "ws") as ws:
        assert ws.models.ls() == [] or all(count == 0 for _, _, count in ws.models.ls())


def test_a_failed_training_is_recorded_as_a_failed_run(project: Path) -> None:
    env = _env(project)
    done = run(["train", "m", "--data", "d", "--target", "nope"], project, env)
    assert done.returncode == 2
    listed = json.loads(run(["runs", "ls", "--json"], project, env).stdout)
    (failed,) = listed["runs"]
    assert failed["status"] == "failed" and "nope" in failed["error"]


def test_model_show_names_each_versions_aliases(project: Path) -> None:
    env = _env(project)
    for _ in range(2):
        one_json_object(run(["train", "m", "-d", "d", "-t", "label", "--json"], project, env))
    with loopml.open(project / "ws") as ws:
        ws.models.set_alias("m", "champion", 1, reason="first")
        ws.models.set_alias("m", "challenger", 2, reason="new")
    every = one_json_object(run(["model", "show", "m", "--json"], project, env))
    assert every["aliases"] == {"champion": 1, "challenger": 2}
    assert [v["aliases"] for v in every["versions"]] == [["champion"], ["challenger"]]
    champion = one_json_object(run(["model", "show", "m@champion", "--json"], project, env))
    assert champion["number"] == 1 and champion["aliases"] == ["champion"]
    human = run(["model", "show", "m"], project, env)
    assert "m@2" in human.stdout and "[challenger]" in human.stdout
