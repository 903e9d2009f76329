"""Promotion through gates, forced promotion, rollback and status decisions.

Three versions of ``m`` are trained once on the same data, of known quality:
``m@1`` sees only ``x1`` (middling; its holdout is drawn with another seed),
``m@2`` only ``x2`` (weak), ``m@3`` every feature (strong). Each test gets a copy of
that workspace, so it may move aliases and declare gates freely.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score
from tests.train._data import ingest, tabular
from threadpoolctl import threadpool_limits

import loopml
from loopml.errors import GateFailed, InputError, NotFound
from loopml.evaluate.gates import Gates
from loopml.workspace import Workspace

from .conftest import LOGISTIC, holdout_index

FRAME = tabular(rows=1000)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("three")
    with threadpool_limits(limits=1), loopml.open(root / "ws") as ws:
        ingest(ws, "d", FRAME, root / "data")
        ws.train("m", "d", "y", model=LOGISTIC, features=["x1"], seed=1)
        ws.train("m", "d", "y", model=LOGISTIC, features=["x2"], seed=0)
        ws.train("m", "d", "y", model=LOGISTIC, seed=0)
    return root / "ws"


@pytest.fixture
def three(template: Path, tmp_path: Path) -> Iterator[Workspace]:
    shutil.copytree(template, tmp_path / "ws")
    with loopml.open(tmp_path / "ws") as ws:
        yield ws


def _promotions(ws: Workspace) -> list:
    return ws.audit.ls(action="model.promote", target="alias:m@champion", limit=10_000)


def test_the_versions_are_of_the_quality_the_tests_assume(three: Workspace) -> None:
    auc = {n: three.models.get(f"m@{n}").metrics["roc_auc"] for n in (1, 2, 3)}
    assert auc[2] + 0.05 < auc[1] < auc[3] - 0.05


def test_beat_the_champion_is_measured_on_the_candidates_holdout_rows(three: Workspace) -> None:
    ws = three
    ws.evaluations.set_gates("m", {"roc_auc": ">= 0.55", "beat_champion_by": {"roc_auc": 0.0}})
    first = ws.promote("m", 1)
    assert (first.previous, first.champion_evaluation, first.forced) == (None, None, False)
    assert ws.models.aliases("m") == {"champion": 1}

    with pytest.raises(GateFailed) as caught:
        ws.promote("m", 2)
    assert len(caught.value.failures) == 1
    assert caught.value.failures[0].startswith("beat_champion_by.roc_auc: roc_auc")
    assert "fails" in caught.value.failures[0]
    assert ws.models.aliases("m") == {"champion": 1}

    # Both were scored on the rows of m@2's holdout that m@1 did not train on either:
    # the champion is never scored on rows it has seen.
    compared = "holdout:m@2|unseen:m@1"
    (own,) = [e for e in ws.evaluations.ls("m", 2) if e.split == compared]
    (full,) = [e for e in ws.evaluations.ls("m", 2) if e.split == "holdout:m@2"]
    on_candidate = [e for e in ws.evaluations.ls("m", 1) if e.split == compared]
    assert len(on_candidate) == 1 and full.rows == 200
    candidate_rows = holdout_index(FRAME, "y", seed=0, stratify=True)
    champion_rows = holdout_index(FRAME, "y", seed=1, stratify=True)
    unseen = sorted(set(candidate_rows) & set(champion_rows))
    assert set(candidate_rows) != set(champion_rows) and 0 < len(unseen) < 200
    assert own.rows == on_candidate[0].rows == len(unseen)
    rows = ws.data.read("d@1").take(unseen)
    expected = roc_auc_score(rows["y"].to_numpy(), ws.models.load("m@1").scores(rows))
    mine = roc_auc_score(rows["y"].to_numpy(), ws.models.load("m@2").scores(rows))
    assert on_candidate[0].summary["values"]["roc_auc"] == pytest.approx(expected, abs=1e-6)
    assert own.summary["values"]["roc_auc"] == pytest.approx(mine, abs=1e-6)
    gain = mine - expected
    refused = _promotions(ws)[0]
    assert refused.outcome == "refused"
    (margin,) = [g for g in refused.details["gates"] if g["gate"] == "beat_champion_by.roc_auc"]
    assert margin["measured"] == pytest.approx(gain, abs=1e-5) and gain < 0

    promoted = ws.promote("m", 3)
    assert (promoted.version.number, promoted.previous) == (3, 1)
    assert all(g.passed for g in promoted.gates) and len(promoted.gates) == 2
    champion = ws.evaluations.get(promoted.champion_evaluation or "")
    assert (champion.model_ref, champion.split) == ("m@1", "holdout:m@3|unseen:m@1")
    assert ws.models.aliases("m") == {"champion": 3}


def test_a_refusal_is_audited_and_force_needs_a_reason_and_is_audited(three: Workspace) -> None:
    ws = three
    ws.evaluations.set_gates("m", {"roc_auc": ">= 0.9", "accuracy": 0.75})
    ws.promote("m", 3)
    assert ws.models.aliases("m") == {"champion": 3}

    with pytest.raises(GateFailed) as caught:
        ws.promote("m", 2)
    assert "m@2 fails" in caught.value.message and "champion is unchanged" in caught.value.message
    assert [f.split(" ")[0] for f in caught.value.failures] == ["roc_auc", "accuracy"]
    assert "--force --reason" in (caught.value.hint or "")
    refused = _promotions(ws)[0]
    assert (refused.outcome, refused.actor, refused.details["forced"]) == (
        "refused",
        ws.actor,
        False,
    )
    assert [g["passed"] for g in refused.details["gates"]] == [False, False]

    for reason in ("", "   "):
        with pytest.raises(InputError, match="reason"):
            ws.promote("m", 2, force=True, reason=reason)
    assert ws.models.aliases("m") == {"champion": 3}

    forced = ws.promote("m", 2, force=True, reason="the outage needs the small model")
    assert forced.forced and (forced.version.number, forced.previous) == (2, 3)
    assert ws.models.aliases("m") == {"champion": 2}
    event = _promotions(ws)[0]
    assert event.outcome == "ok"
    assert event.details["forced"] is True
    assert event.details["reason"] == "the outage needs the small model"
    assert (event.details["number"], event.details["previous"]) == (2, 3)
    assert not any(g["passed"] for g in event.details["gates"])
    moved_from = {e.source for e in ws.lineage("alias:m@champion")}
    assert {"model:m@3", "model:m@2"} <= moved_from

    back = ws.rollback("m", reason="outage over")
    assert (back.version.number, back.previous) == (3, 2)
    assert ws.models.aliases("m") == {"champion": 3}
    rolled = ws.audit.ls(action="model.rollback", target="alias:m@champion")[0]
    assert rolled.details["reason"] == "outage over" and rolled.details["number"] == 3
    assert ws.audit.verify().ok


def test_promoting_what_does_not_exist_changes_nothing(three: Workspace) -> None:
    ws = three
    ws.promote("m", 1)
    events = len(ws.audit.ls(limit=10_000))
    for model, number in (("m", 9), ("ghost", 1)):
        with pytest.raises(NotFound):
            ws.promote(model, number)
    with pytest.raises(InputError, match="alias"):
        ws.promote("m", 3, alias="has space")
    assert ws.models.aliases("m") == {"champion": 1}
    assert len(ws.audit.ls(limit=10_000)) == events
    assert ws.evaluations.ls("m", 3) == []


def test_fairness_gates_evaluate_the_declared_columns(three: Workspace) -> None:
    ws = three
    ws.evaluations.set_gates("m", {"demographic_parity_difference": "<= 0.9"})
    with pytest.raises(GateFailed) as caught:
        ws.promote("m", 3)
    (failure,) = caught.value.failures
    assert "not measured" in failure and "--sensitive" in failure
    assert ws.models.aliases("m") == {}

    ws.evaluations.set_gates("m", {"demographic_parity_difference": "<= 0.9"}, sensitive=["cat"])
    done = ws.promote("m", 3)
    used = ws.evaluations.get(done.evaluation or "")
    assert used.summary["sensitive"] == ["cat"]
    (gate,) = done.gates
    assert gate.passed and gate.measured == used.summary["values"]["demographic_parity_difference"]
    assert ws.models.aliases("m") == {"champion": 3}
    # Checking again reuses that evaluation rather than scoring the rows again.
    count = len(ws.evaluations.ls("m", 3))
    assert [r.passed for r in ws.evaluations.check("m@3")] == [True]
    assert len(ws.evaluations.ls("m", 3)) == count


def test_decisions_record_who_and_why(three: Workspace) -> None:
    ws = three
    with pytest.raises(InputError, match="reason"):
        ws.models.set_status("m", 3, "approved", reason="")
    ws.models.set_status("m", 3, "approved", reason="passed the risk review")
    ws.models.set_status("m", 2, "rejected", reason="too weak")
    ws.models.set_status("m", 2, "archived", reason="")

    assert ws.models.get("m@3").status == "approved"
    assert ws.models.get("m@2").status == "archived"
    approved = ws.models.decisions("m", 3)
    assert [(d["status"], d["actor"], d["reason"]) for d in approved] == [
        ("approved", ws.actor, "passed the risk review")
    ]
    assert [d["status"] for d in ws.models.decisions("m", 2)] == ["rejected", "archived"]
    card = ws.evaluations.card("m@3")
    assert card["status"] == "approved"
    assert card["decisions"][0]["reason"] == "passed the risk review"
    audited = ws.audit.ls(action="model.status", target="model:m@2", limit=10_000)
    assert [e.details["to"] for e in audited] == ["archived", "rejected"]
    assert {e.actor for e in audited} == {ws.actor}


def test_a_robustness_gate_is_measured_even_after_an_evaluation_without_it(
    three: Workspace,
) -> None:
    ws = three
    quick = ws.evaluate("m@3", check_robustness=False)
    ws.evaluations.set_gates("m", {"max_robustness_drop": "<= 0.5", "roc_auc": 0.9})

    done = ws.promote("m", 3)

    assert done.evaluation != quick.id  # that one measured no robustness: measured now
    used = ws.evaluations.get(done.evaluation or "")
    drop = used.summary["values"]["max_robustness_drop"]
    assert (done.gates[0].gate, done.gates[0].passed, done.gates[0].measured) == (
        "max_robustness_drop",
        True,
        drop,
    )
    # Without robustness measured, the gate says how to measure it.
    (result,) = Gates({"max_robustness_drop": 0.5}).check("binary", quick.summary["values"])
    assert not result.passed and "--no-robustness" in result.message


def test_a_challenger_trained_on_new_data_is_compared_on_its_own_holdout(
    three: Workspace, tmp_path: Path
) -> None:
    ws = three
    newer = tabular(rows=500, seed=8)
    ingest(ws, "d", newer, tmp_path / "data")
    ws.train("m", "d@2", "y", model=LOGISTIC)  # m@4
    ws.evaluations.set_gates("m", {"beat_champion_by": {"roc_auc": 0.0}})
    ws.promote("m", 1)

    done = ws.promote("m", 4)

    champion = ws.evaluations.get(done.champion_evaluation or "")
    # m@1 never saw d@2's rows: every row of m@4's holdout is compared.
    assert (champion.model_ref, champion.data_ref, champion.split) == (
        "m@1",
        "d@2",
        "holdout:m@4|unseen:m@1",
    )
    rows = ws.data.read("d@2").take(holdout_index(newer, "y", seed=0, stratify=True))
    assert champion.rows == len(rows) == 100
    expected = roc_auc_score(rows["y"].to_numpy(), ws.models.load("m@1").scores(rows))
    assert champion.summary["values"]["roc_auc"] == pytest.approx(expected, abs=1e-6)
    # Asked directly, the holdout of m@4 is on the data m@4 was trained on.
    direct = ws.evaluate("m@1", holdout_of="m@4", check_robustness=False)
    assert (direct.data_ref, direct.split, direct.rows) == ("d@2", "holdout:m@4", 100)
    with pytest.raises(InputError, match="not trained on d@1"):
        ws.evaluate("m@1", "d@1", holdout_of="m@4")


def test_a_rejected_version_is_refused_even_when_its_gates_pass_unless_forced(
    three: Workspace,
) -> None:
    ws = three
    ws.evaluations.set_gates("m", {"roc_auc": ">= 0.5"})
    ws.promote("m", 1)
    assert [r.passed for r in ws.evaluations.check("m@2")] == [True]  # every gate passes
    ws.models.set_status("m", 2, "rejected", reason="x")

    with pytest.raises(GateFailed) as caught:
        ws.promote("m", 2)
    assert "m@2 fails 1 of 2 gates" in caught.value.message
    assert caught.value.failures == ["m@2 is rejected"]
    assert ws.models.aliases("m") == {"champion": 1}
    refused = _promotions(ws)[0]
    assert refused.outcome == "refused"
    assert [(g["gate"], g["passed"]) for g in refused.details["gates"]] == [
        ("status", False),
        ("roc_auc", True),
    ]

    forced = ws.promote("m", 2, force=True, reason="rejected by mistake")
    assert forced.forced and (forced.version.number, forced.previous) == (2, 1)
    assert ws.models.aliases("m") == {"champion": 2}
    event = _promotions(ws)[0]
    assert (event.outcome, event.details["forced"]) == ("ok", True)
    assert event.details["reason"] == "rejected by mistake"


def test_an_archived_version_is_refused_too(three: Workspace) -> None:
    ws = three
    ws.models.set_status("m", 3, "archived", reason="retired")
    with pytest.raises(GateFailed) as caught:
        ws.promote("m", 3)  # no gates declared: only the status fails
    assert caught.value.failures == ["m@3 is archived"]
    assert ws.models.aliases("m") == {}
    ws.models.set_status("m", 3, "approved", reason="back in service")
    assert ws.promote("m", 3).version.number == 3


def test_a_champion_that_moved_meanwhile_is_not_overwritten(three: Workspace) -> None:
    from loopml.errors import Conflict
    from loopml.registry import aliases

    ws = three
    aliases.set_alias(ws.ctx, "m", "champion", 1)
    moves = len(ws.audit.ls(target="alias:m@champion", limit=10_000))

    with pytest.raises(Conflict) as caught:
        aliases.set_alias(ws.ctx, "m", "champion", 3, expect={"champion": 2})
    assert "m@champion moved" in caught.value.message
    assert ws.models.aliases("m") == {"champion": 1}
    assert len(ws.audit.ls(target="alias:m@champion", limit=10_000)) == moves
    # Another alias named in ``expect`` guards the move just the same.
    with pytest.raises(Conflict, match="m@prod"):
        aliases.set_alias(ws.ctx, "m", "champion", 3, expect={"champion": 1, "prod": 1})
    assert ws.models.aliases("m") == {"champion": 1}
    # Where it still points as expected (None: unset), the move goes through.
    aliases.set_alias(ws.ctx, "m", "champion", 3, expect={"champion": 1, "prod": None})
    assert ws.models.aliases("m") == {"champion": 3}


def test_a_promotion_whose_champion_moves_during_the_check_raises_conflict(
    three: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.errors import Conflict
    from loopml.evaluate import promotion
    from loopml.registry import aliases

    ws = three
    ws.evaluations.set_gates("m", {"beat_champion_by": {"roc_auc": 0.0}})
    ws.promote("m", 1)
    checked = promotion.check

    def check_while_another_promotes(*args, **kwargs):  # type: ignore[no-untyped-def]
        found = checked(*args, **kwargs)
        aliases.set_alias(ws.ctx, "m", "champion", 2, reason="another process")
        return found

    monkeypatch.setattr(promotion, "check", check_while_another_promotes)
    with pytest.raises(Conflict, match="m@champion moved"):
        ws.promote("m", 3)
    assert ws.models.aliases("m") == {"champion": 2}  # the other move stands


def test_a_forced_promotion_past_gates_that_cannot_be_checked_is_audited(
    three: Workspace,
) -> None:
    from datetime import UTC, datetime

    from loopml.store.tables import model_gates

    ws = three
    # Stored directly: set_gates refuses a column the data does not have.
    with ws.ctx.write() as conn:
        conn.execute(
            model_gates.insert().values(
                model="m",
                gates={
                    "thresholds": {"roc_auc": ">= 0.5"},
                    "beat_champion_by": {},
                    "sensitive": ["nonexistent"],
                    "slices": [],
                },
                updated_by="test",
                updated_at=datetime.now(UTC),
            )
        )
    with pytest.raises(InputError, match="'nonexistent'") as unforced:
        ws.promote("m", 3)
    assert not isinstance(unforced.value, GateFailed)
    assert ws.models.aliases("m") == {}

    forced = ws.promote("m", 3, force=True, reason="gates are broken, ship anyway")

    assert forced.forced and forced.evaluation is None
    ((gate, passed, message),) = [(g.gate, g.passed, g.message) for g in forced.gates]
    assert (gate, passed) == ("evaluation", False)
    assert "'nonexistent'" in message
    assert ws.models.aliases("m") == {"champion": 3}
    event = _promotions(ws)[0]
    assert (event.outcome, event.details["forced"]) == ("ok", True)
    assert event.details["reason"] == "gates are broken, ship anyway"
    assert event.details["evaluation"] is None
    (audited,) = event.details["gates"]
    assert audited["gate"] == "evaluation" and audited["message"] == message
    assert ws.evaluations.ls("m", 3) == []


def test_an_evaluation_at_another_threshold_is_not_reused_for_the_gates(three: Workspace) -> None:
    ws = three
    skewed = ws.evaluate("m@3", sensitive=["cat"], threshold=0.9, check_robustness=False)
    ws.evaluations.set_gates("m", {"demographic_parity_difference": "<= 0.9"}, sensitive=["cat"])

    done = ws.promote("m", 3)

    assert done.evaluation is not None and done.evaluation != skewed.id
    used = ws.evaluations.get(done.evaluation)
    assert (used.summary["threshold"], used.summary["target"]) == (0.5, "y")
    assert used.summary["sensitive"] == ["cat"]
