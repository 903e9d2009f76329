"""``loopml monitor`` driven as a user would: JSON statistics, the stored time series,
one-line errors for an empty window or data without the model's columns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.test_cli import assert_user_error, clean_env, one_json_object, run
from tests.train._data import ingest, tabular

import loopml

# One worker builds the workspace once (a session fixture: xdist may interleave other
# modules' tests, which would tear a module fixture down); the tests share it.
pytestmark = pytest.mark.xdist_group("monitor-cli")


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder whose workspace ``ws`` holds model ``m`` and datasets ``same``, ``moved``
    (x1 shifted by 2) and ``partial`` (no x2)."""
    from threadpoolctl import threadpool_limits

    folder = tmp_path_factory.mktemp("monitor-cli")
    with threadpool_limits(limits=1), loopml.open(folder / "ws") as ws:
        ingest(ws, "d", tabular(rows=1200, seed=4), folder / "data")
        ws.train("m", "d", "y", model="sklearn:sklearn.linear_model.LogisticRegression")
        ingest(ws, "same", tabular(rows=2000, seed=5), folder / "data")
        moved = tabular(rows=2000, seed=6)
        moved["x1"] = moved["x1"] + 2.0
        ingest(ws, "moved", moved, folder / "data")
        ingest(ws, "partial", tabular(rows=100, seed=7).drop(columns=["x2"]), folder / "data")
    yield folder


def _env(project: Path) -> dict[str, str]:
    return clean_env(LOOPML_WORKSPACE=str(project / "ws"))


def test_monitor_prints_each_column_and_the_verdict_and_stores_it(project: Path) -> None:
    env = _env(project)
    moved = one_json_object(run(["monitor", "m", "--data", "moved", "--json"], project, env))
    assert (moved["model"], moved["version"], moved["source"]) == ("m", 1, "dataset:moved@1")
    assert moved["drifted"] is True and moved["flagged"] is True
    assert moved["drifted_features"] == ["x1"] and moved["prediction"]["drifted"] is True
    features = {f["name"]: f for f in moved["features"]}
    assert set(features) == {"x1", "x2", "cat"}
    assert set(features["x1"]["statistics"]) == {"psi", "ks", "ks_p", "chi2", "chi2_p", "js"}
    assert features["x1"]["statistics"]["psi"] > 0.2 and features["x2"]["drifted"] is False

    # The spec's monitor.drift sets the test and its threshold.
    spec = project / "loopml.yaml"
    spec.write_text(
        "name: w\nmonitor:\n  drift: {test: js, threshold: 0.08, window: 500, share: 0.6}\n"
    )
    people = run(["monitor", "m@1", "--data", "same", "--spec", str(spec)], project, env)
    assert people.returncode == 0, people.stderr
    assert "m@1 on dataset:same@1: js >= 0.08 drifts" in people.stdout
    assert "no drift: 0/3 columns drifted, scores stable over 2,000 rows" in people.stdout

    history = one_json_object(run(["monitor", "m", "--history", "--json"], project, env))
    listed = [(r["flagged"], r["source"], r["test"], r["drift_share"]) for r in history["results"]]
    assert history["results"][-2]["id"] == moved["id"]
    assert listed[-2:] == [
        (True, "dataset:moved@1", "psi", 0.5),
        (False, "dataset:same@1", "js", 0.6),
    ]


def test_bad_windows_and_data_are_one_line_errors_and_store_nothing(project: Path) -> None:
    env = _env(project)
    before = one_json_object(run(["monitor", "m", "--history", "--json"], project, env))
    empty = run(["monitor", "m", "--window", "24h", "--json"], project, env)
    assert_user_error(empty, "no prediction of m is logged in the window")
    assert empty.stdout == ""
    assert_user_error(
        run(["monitor", "m", "--data", "partial", "--json"], project, env),
        "lacks column(s) x2 of m@1's signature",
    )
    # A flag overrides the spec (which asks for js).
    spec = project / "spec-ks.yaml"
    spec.write_text("name: w\nmonitor:\n  drift: {test: js}\n")
    assert_user_error(
        run(
            ["monitor", "m", "--data", "same", "--spec", str(spec), "--test", "t-test"],
            project,
            env,
        ),
        "unknown drift test 't-test'",
    )
    assert_user_error(run(["monitor", "m", "--window", "soon"], project, env), "window 'soon'")
    after = one_json_object(run(["monitor", "m", "--history", "--json"], project, env))
    assert after["results"] == before["results"]
