"""``loopml evaluate``, ``promote``, ``rollback`` and ``model show|gates|card|approve...``.

The CLI is driven through its entry point, ``loopml.cli.main`` (what the ``loopml``
script calls), in this process so that each command does not pay the imports again;
one test runs the installed script in a subprocess for the exit code and one-line
errors a shell sees. The workspace (``m@1`` trained on ``x2`` only, weak; ``m@2`` on
every feature) is made once with the SDK and copied for each test.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from tests.cli.test_cli import clean_env, run
from tests.train._data import ingest, tabular
from threadpoolctl import threadpool_limits

import loopml
from loopml.cli import main

LOGISTIC = "sklearn:sklearn.linear_model.LogisticRegression"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        assert self.code == 0, self.err
        lines = self.out.strip().splitlines()
        assert len(lines) == 1, f"expected one JSON line, got: {self.out!r}"
        data = json.loads(lines[0])
        assert isinstance(data, dict)
        return data

    def user_error(self, mentions: str = "") -> str:
        """The one ``error:`` line a user mistake prints, after checking its shape."""
        assert self.code == 2, (self.code, self.err)
        assert "Traceback" not in self.err + self.out
        first = self.err.strip().splitlines()[0]
        assert first.startswith("error:"), first
        assert mentions in first, first
        return first


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-evaluate")
    frame = tabular(rows=1000)
    with threadpool_limits(limits=1), loopml.open(root / "ws") as ws:
        ingest(ws, "d", frame, root / "data")
        ingest(ws, "no_x2", frame.drop(columns=["x2"]), root / "data")
        ws.train("m", "d", "y", model=LOGISTIC, features=["x2"])
        ws.train("m", "d", "y", model=LOGISTIC)
    return root / "ws"


@pytest.fixture
def workspace(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template, tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture
def cli(workspace: Path, capsys: pytest.CaptureFixture[str]) -> Iterator:
    def invoke(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(["-w", str(workspace), *args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield invoke


def _open(workspace: Path) -> loopml.Workspace:
    return loopml.open(workspace)


def test_evaluate_prints_one_json_object_and_writes_the_report(
    cli, workspace: Path, tmp_path: Path
) -> None:
    report = tmp_path / "out" / "m2.html"

    data = cli(
        "evaluate", "m@2", "--sensitive", "cat", "--slice", "cat", "--report", str(report),
        "--json",
    ).json()  # fmt: skip

    with _open(workspace) as ws:
        trained = ws.models.get("m@2").metrics
        (stored,) = ws.evaluations.ls("m", 2)
    assert (data["evaluation"], data["model"], data["data"]) == (stored.id, "m@2", "d@1")
    assert (data["split"], data["rows"]) == ("holdout:m@2", 200)
    assert data["values"]["roc_auc"] == pytest.approx(trained["roc_auc"], abs=1e-6)
    assert data["values"] == stored.summary["values"]
    assert set(data["fairness"]) == {"cat"} and "cat" in data["slices"]
    assert {"gaussian_noise", "missing_values", "category_perturbation"} <= set(data["robustness"])
    assert data["metrics"]["confusion_matrix"]["labels"] == ["0", "1"]
    assert data["report"] == str(report)
    html = report.read_text(encoding="utf-8")
    assert "<svg" in html and "<script" not in html and "https://" not in html
    parser = HTMLParser()
    parser.feed(html)  # parses without error
    assert "Evaluation of m@2" in html

    # Without --json, a line for people; rows with no --data are the holdout.
    shown = cli("evaluate", "m@1", "--no-robustness")
    assert shown.code == 0, shown.err
    assert "m@1 on d@1 (holdout:m@1, 200 rows)" in shown.out
    assert "roc_auc" in shown.out


def test_bad_evaluations_are_one_line_and_store_nothing(cli, workspace: Path) -> None:
    cli("evaluate", "m@2", "--data", "no_x2").user_error("'x2'")
    cli("evaluate", "m@2", "--sensitive", "age_band").user_error("'age_band'")
    cli("evaluate", "m@9").user_error("m")
    cli("evaluate", "m@2", "--data", "ghost").user_error("ghost")
    with _open(workspace) as ws:
        assert ws.evaluations.ls("m") == []


def test_gates_promote_force_and_rollback(cli, workspace: Path) -> None:
    declared = cli(
        "model", "gates", "m", "--set", '{roc_auc: ">= 0.8", beat_champion_by: {roc_auc: 0.0}}',
        "--json",
    ).json()  # fmt: skip
    assert declared["gates"]["thresholds"] == {"roc_auc": ">= 0.8"}
    assert declared["gates"]["beat_champion_by"] == {"roc_auc": 0.0}
    typo = cli("model", "gates", "m", "--set", "{roc_aucc: 0.9}").user_error("roc_aucc")
    assert "did you mean 'roc_auc'" in typo
    assert cli("model", "gates", "m", "--json").json()["gates"] == declared["gates"]
    checked = cli("model", "gates", "m", "--check", "m@1", "--json")
    assert checked.code == 1  # a failing check is not a success for scripts
    assert [c["passed"] for c in json.loads(checked.out)["check"]] == [False, True]

    promoted = cli("promote", "m", "2", "--json").json()
    assert (promoted["version"], promoted["alias"], promoted["previous"]) == (2, "champion", None)
    assert promoted["forced"] is False and all(g["passed"] for g in promoted["gates"])

    refused = cli("promote", "m", "1")
    first = refused.user_error("m@1 fails 2 of 2 gates; champion is unchanged")
    assert "--force --reason" in first
    listed = refused.err.strip().splitlines()[1:]
    assert len(listed) == 2
    assert listed[0].strip().startswith("- roc_auc =") and "fails (>= 0.8)" in listed[0]
    assert listed[1].strip().startswith("- beat_champion_by.roc_auc:")
    cli("promote", "m", "1", "--force").user_error("reason")
    cli("promote", "m", "9").user_error("no version '9'")
    with _open(workspace) as ws:
        assert ws.models.aliases("m") == {"champion": 2}
        assert ws.audit.ls(action="model.promote")[0].outcome == "refused"

    forced = cli("promote", "m", "1", "--force", "--reason", "load test", "--json").json()
    assert (forced["version"], forced["previous"], forced["forced"]) == (1, 2, True)
    assert forced["reason"] == "load test"
    back = cli("rollback", "m", "--json").json()
    assert (back["version"], back["previous"], back["alias"]) == (2, 1, "champion")
    with _open(workspace) as ws:
        assert ws.models.aliases("m") == {"champion": 2}
        event = ws.audit.ls(action="model.promote")[0]
        assert event.details["forced"] is True and event.details["reason"] == "load test"
    cli("rollback", "m", "--alias", "challenger").user_error("challenger")


def test_model_show_lists_decisions_and_evaluations(cli, workspace: Path) -> None:
    cli("evaluate", "m@2", "--no-robustness", "--json").json()
    approved = cli("model", "approve", "m", "2", "--reason", "risk review 7")
    assert approved.code == 0 and "m@2 is approved" in approved.out
    cli("model", "reject", "m", "1", "--reason", "too weak", "--json").json()
    archived = cli("model", "archive", "m", "1", "--json").json()
    assert archived["status"] == "archived"
    cli("model", "approve", "m", "1").user_error("reason")

    shown = cli("model", "show", "m", "--json").json()
    by_number = {v["number"]: v for v in shown["versions"]}
    with _open(workspace) as ws:
        actor = ws.actor
        (evaluation,) = ws.evaluations.ls("m", 2)
    assert by_number[2]["status"] == "approved" and by_number[1]["status"] == "archived"
    assert [(d["status"], d["actor"], d["reason"]) for d in by_number[2]["decisions"]] == [
        ("approved", actor, "risk review 7")
    ]
    assert [d["status"] for d in by_number[1]["decisions"]] == ["rejected", "archived"]
    (listed,) = by_number[2]["evaluations"]
    assert (listed["id"], listed["split"], listed["rows"]) == (evaluation.id, "holdout:m@2", 200)
    assert listed["values"]["roc_auc"] == evaluation.summary["values"]["roc_auc"]
    assert by_number[1]["evaluations"] == []
    one = cli("model", "show", "m@2", "--json").json()
    assert one["number"] == 2 and len(one["evaluations"]) == 1 and one["decisions"]
    people = cli("model", "show", "m@2")
    assert "approved by" in people.out and "risk review 7" in people.out
    assert f"evaluated {evaluation.id[:12]} on d@1 (holdout:m@2)" in people.out


def test_model_card_writes_markdown(cli, workspace: Path, tmp_path: Path) -> None:
    cli("evaluate", "m@2", "--sensitive", "cat", "--no-robustness", "--json").json()
    out = tmp_path / "cards" / "card.md"  # its folder is made

    card = cli(
        "model", "card", "m@2", "--intended-use", "Fraud review queue ranking",
        "--limitations", "Not for credit decisions", "--out", str(out), "--json",
    ).json()  # fmt: skip

    with _open(workspace) as ws:
        version = ws.models.get("m@2")
    assert card["owner"] == version.owner and card["intended_use"] == "Fraud review queue ranking"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Model card: m@2\n")
    assert f"- Owner: {version.owner}" in text
    assert "## Intended use\n\nFraud review queue ranking" in text
    assert "## Limitations\n\nNot for credit decisions" in text
    assert f"- Run {version.run_id}" in text and "- Data: d@1" in text
    assert f"roc_auc {version.metrics['roc_auc']:.4f}" in text
    assert "## Fairness" in text and "- cat (" in text
    # Shown again without edits, it keeps what was written.
    again = cli("model", "card", "m@2")
    assert "Fraud review queue ranking" in again.out and "Not for credit decisions" in again.out


@pytest.mark.slow
def test_the_installed_script_refuses_a_failing_promotion_with_exit_2(
    workspace: Path, tmp_path: Path
) -> None:
    with _open(workspace) as ws:
        ws.evaluations.set_gates("m", {"roc_auc": ">= 0.9"})
        for number in (1, 2):  # evaluated here, so the script only checks and moves
            ws.evaluate(f"m@{number}", check_robustness=False)
    env = clean_env(LOOPML_WORKSPACE=str(workspace))

    refused = run(["promote", "m", "1"], tmp_path, env)

    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
    lines = refused.stderr.strip().splitlines()
    assert lines[0].startswith("error: m@1 fails 1 of 1 gates")
    assert lines[1].strip().startswith("- roc_auc =")
    done = run(["promote", "m", "2", "--json"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 2
    with _open(workspace) as ws:
        assert ws.models.aliases("m") == {"champion": 2}


def test_a_report_or_card_path_that_is_a_folder_is_refused_before_any_work(
    cli, workspace: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    with _open(workspace) as ws:
        events = len(ws.audit.ls(limit=10_000))

    refused = cli("evaluate", "m@1", "--report", str(folder))
    line = refused.user_error(f"{folder} is a folder")
    assert refused.err.strip().splitlines() == [line]  # one line, its hint in it
    assert "report.html" in refused.err  # the hint: name a file in it
    card = cli("model", "card", "m@1", "--intended-use", "Queue ranking", "--out", str(folder))
    assert card.user_error(f"{folder} is a folder") == line
    assert card.err.strip().splitlines() == [line]
    # A path whose folder is a file cannot be written either.
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cli("evaluate", "m@1", "--report", str(blocker / "r.html")).user_error("is a file")

    with _open(workspace) as ws:
        assert ws.evaluations.ls("m") == []
        assert "Queue ranking" not in str(ws.evaluations.card("m@1"))
        assert len(ws.audit.ls(limit=10_000)) == events
    assert list(folder.iterdir()) == []
