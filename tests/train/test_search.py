"""Search: the space parses or fails naming the parameter; trials are child runs inside
the space; a seed repeats a sequential search; poor trials are pruned; Ray runs trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopml.errors import SpecError
from loopml.records import Run
from loopml.train.search import parse_space
from loopml.workspace import Workspace

from ._data import ingest, tabular

LOGISTIC = "sklearn:sklearn.linear_model.LogisticRegression"


@pytest.fixture
def data(lws: Workspace, tmp_path: Path) -> str:
    ingest(lws, "tx", tabular(rows=1000, task="binary"), tmp_path / "data")
    return "tx"


def _trials(ws: Workspace, parent: str) -> list[Run]:
    return ws.runs.ls(parent_id=parent, include_trials=True, limit=1000)


def test_space_forms_parse_as_documented() -> None:
    parsed = {
        d.name: d
        for d in parse_space(
            {
                "num_leaves": [15, 255],
                "learning_rate": [0.01, 0.3, "log"],
                "alpha": [0.5, 2.5, "linear"],
                "max_depth": {"low": 2, "high": 12, "step": 2},
                "criterion": ["gini", "entropy"],
                "hidden": {"choices": [[64], [64, 32]]},
            }
        )
    }
    assert (parsed["num_leaves"].kind, parsed["num_leaves"].low, parsed["num_leaves"].high) == (
        "int",
        15,
        255,
    )
    assert parsed["learning_rate"].kind == "float" and parsed["learning_rate"].log
    assert parsed["alpha"].kind == "float" and not parsed["alpha"].log
    assert (parsed["max_depth"].kind, parsed["max_depth"].step) == ("int", 2)
    assert parsed["criterion"].choices == ("gini", "entropy")
    assert parsed["hidden"].choices == ((64,), (64, 32))


def test_a_list_of_three_numbers_is_choices() -> None:
    # The module docstring: "criterion: [gini, entropy]  # choices (anything but two
    # numbers)". Three numbers are not two numbers, so they are choices.
    (dimension,) = parse_space({"max_depth": [2, 3, 4]})
    assert dimension.kind == "categorical"
    assert dimension.choices == (2, 3, 4)


@pytest.mark.parametrize(
    ("space", "words"),
    [
        ({"C": [5.0, 5.0]}, ["C", "low 5.0 must be below high 5.0"]),
        ({"tol": [0.1, 0.001]}, ["tol", "below high"]),
        ({"C": [0.0, 1.0, "log"]}, ["C", "log range needs low > 0"]),
        ({"C": [-1.0, 1.0, "log"]}, ["C", "log range needs low > 0"]),
        ({"C": [0.1, 1.0, "cubic"]}, ["C", "third item must be log or linear", "cubic"]),
        ({"max_iter": {"low": 10}}, ["max_iter", "needs low and high"]),
    ],
)
def test_a_space_that_does_not_parse_fails_the_run_naming_the_parameter(
    lws: Workspace, data: str, space: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(SpecError) as caught:
        lws.train("bad_space", data, "y", model=LOGISTIC, space=space, trials=2, parallel=1)
    message = str(caught.value)
    for word in words:
        assert word in message
    assert f"search space {words[0]}" in message

    (run,) = lws.runs.ls("bad_space")
    assert run.status == "failed"
    assert run.error is not None and "SpecError" in run.error and words[1] in run.error
    assert run.ended_at is not None
    assert _trials(lws, run.id) == []
    assert lws.models.ls() == []


@pytest.mark.slow
def test_parallel_trials_are_child_runs_inside_the_space(lws: Workspace, data: str) -> None:
    space = {
        "num_leaves": [4, 31],
        "learning_rate": [0.01, 0.3, "log"],
        "max_depth": {"choices": [2, 3, 4]},
    }
    result = lws.train(
        "lgb",
        data,
        "y",
        model="lightgbm",
        params={"n_estimators": 20},
        space=space,
        trials=6,
        parallel=2,
        executor="local",
    )
    trials = _trials(lws, result.run.id)
    assert len(trials) == 6
    assert {t.kind for t in trials} == {"trial"}
    assert {t.parent_id for t in trials} == {result.run.id}
    assert {t.experiment for t in trials} == {"lgb"}
    assert sorted(int(t.tags["trial"]) for t in trials) == list(range(6))
    for trial in trials:
        assert trial.status in {"finished", "pruned", "failed"}
        assert 4 <= trial.params["num_leaves"] <= 31
        assert isinstance(trial.params["num_leaves"], int)
        assert 0.01 <= trial.params["learning_rate"] <= 0.3
        assert trial.params["max_depth"] in {2, 3, 4}
        assert trial.ended_at is not None and trial.ended_at >= trial.started_at
    finished = [t for t in trials if t.status == "finished"]
    assert finished
    for trial in finished:
        assert 0.5 < trial.metrics["roc_auc"] <= 1.0

    search = result.search
    assert search is not None
    assert search["trials"] == 6
    assert search["finished"] + search["pruned"] + search["failed"] == 6
    assert search["finished"] == len(finished)
    # The best trial's params and value are the finished trials' best.
    best = max(finished, key=lambda t: t.metrics["roc_auc"])
    assert search["best_value"] == pytest.approx(best.metrics["roc_auc"])
    assert search["best_params"] == {k: best.params[k] for k in space}
    # The refit uses them: they are the version's params, with the fixed ones.
    assert result.version.params == {"n_estimators": 20, **search["best_params"]}
    assert result.run.params["best_params"] == search["best_params"]
    assert result.run.metrics["search_best_roc_auc"] == pytest.approx(search["best_value"])


def test_the_same_seed_repeats_a_sequential_search(lws: Workspace, data: str) -> None:
    space = {"C": [0.001, 10.0, "log"], "tol": [0.0001, 0.01, "log"]}

    def search(name: str, seed: int) -> dict[str, Any]:
        result = lws.train(
            name, data, "y", model=LOGISTIC, space=space, trials=4, parallel=1, seed=seed
        )
        assert result.search is not None
        assert result.version.params["C"] == result.search["best_params"]["C"]
        assert result.version.params["tol"] == result.search["best_params"]["tol"]
        return dict(result.search)

    first, second = search("seeded_a", 11), search("seeded_b", 11)
    assert first["best_params"] == second["best_params"]
    assert first["best_value"] == second["best_value"]
    trials_a = [t.params for t in sorted(_trials(lws, lws.runs.ls("seeded_a")[0].id), key=_number)]
    trials_b = [t.params for t in sorted(_trials(lws, lws.runs.ls("seeded_b")[0].id), key=_number)]
    assert trials_a == trials_b
    assert len(trials_a) == 4
    other = search("seeded_c", 12)
    trials_c = [t.params for t in sorted(_trials(lws, lws.runs.ls("seeded_c")[0].id), key=_number)]
    assert trials_c != trials_a
    assert other["trials"] == 4


def _number(run: Run) -> int:
    return int(run.tags["trial"])


@pytest.mark.slow
def test_poor_trials_are_pruned_and_recorded(
    lws: Workspace, data: str, trainers_module: tuple[Path, str]
) -> None:
    folder, module = trainers_module
    # fit_noisy blends the model's probabilities with noise: the more noise, the worse
    # its validation roc_auc, so after the startup trials the noisy ones fall below
    # the median at the first checkpoint and are pruned.
    result = lws.train(
        "noisy",
        data,
        "y",
        model=f"python:{module}:fit_noisy",
        space={"noise": [0.0, 1.0]},
        trials=14,
        parallel=1,
        seed=0,
        code_folder=folder,
    )
    search = result.search
    assert search is not None
    trials = _trials(lws, result.run.id)
    assert len(trials) == 14 == search["trials"]
    statuses = [t.status for t in trials]
    assert set(statuses) <= {"finished", "pruned", "failed"}
    assert statuses.count("pruned") == search["pruned"] >= 1
    assert statuses.count("finished") == search["finished"] >= 3
    assert statuses.count("failed") == search["failed"] == 0
    for trial in trials:
        steps = lws.runs.metrics(trial.id, "valid_roc_auc")
        assert [step for _, step, _, _ in steps] == [1]
        if trial.status == "finished":
            assert trial.metrics["roc_auc"] == pytest.approx(steps[0][2])
        else:  # a pruned trial has checkpoints only, no final score
            assert "roc_auc" not in trial.metrics
    # A pruned trial was worse, at its checkpoint, than the best finished trial.
    best = max(t.metrics["roc_auc"] for t in trials if t.status == "finished")
    for trial in trials:
        if trial.status == "pruned":
            assert lws.runs.metrics(trial.id, "valid_roc_auc")[0][2] < best
    # The best finished trial is the search's best, and a quiet one.
    finished = [t for t in trials if t.status == "finished"]
    top = max(finished, key=lambda t: t.metrics["roc_auc"])
    assert search["best_params"] == {"noise": top.params["noise"]}
    assert top.params["noise"] < 0.25
    assert result.version.params["noise"] == top.params["noise"]


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_trials_run_on_ray(lws: Workspace, data: str) -> None:
    import ray

    assert not ray.is_initialized()
    try:
        result = lws.train(
            "on_ray",
            data,
            "y",
            model=LOGISTIC,
            space={"C": [0.01, 10.0, "log"]},
            trials=2,
            parallel=2,
            executor="ray",
        )
        # The training started a local cluster, so it shut it down again.
        assert not ray.is_initialized()
    finally:
        if ray.is_initialized():
            ray.shutdown()
    trials = _trials(lws, result.run.id)
    assert len(trials) == 2
    assert {t.status for t in trials} == {"finished"}
    assert all(0.01 <= t.params["C"] <= 10.0 for t in trials)
    assert result.search is not None and result.search["finished"] == 2
    assert result.run.params["executor"] == "ray"
    assert result.version.params["C"] == result.search["best_params"]["C"]
