"""The retrain policy's decisions: which triggers it acts on, at most one retrain in
flight per model (also when two watchers decide at once, on SQLite and PostgreSQL),
stale decisions abandoned, and every decision and move audited."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.train._data import ingest, tabular

import loopml
from loopml.errors import InputError, NotFound
from loopml.monitor import retrain as policy_store
from loopml.monitor.retrain import STALE_AFTER, RetrainPolicy, decide, list_decisions, move
from loopml.store.tables import retrain_decisions
from loopml.workspace import Workspace

LOGISTIC = "sklearn:sklearn.linear_model.LogisticRegression"
DRIFT_ONLY = RetrainPolicy(on=("drift",))


def _with_model(ws: Workspace, folder: Path, name: str = "m") -> Workspace:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        ingest(ws, "d", tabular(rows=120, seed=1), folder)
        ws.train(name, "d", "y", model=LOGISTIC)
    return ws


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """An embedded workspace holding model ``m`` (one version)."""
    with loopml.open(tmp_path / "ws") as workspace:
        yield _with_model(workspace, tmp_path / "data")


def _decisions(ws: Workspace, model: str = "m") -> list[policy_store.RetrainDecision]:
    with ws.ctx.read() as conn:
        return list_decisions(conn, model)


def _actions(ws: Workspace) -> list[tuple[str, str]]:
    """(action, decision id) of every retrain audit event, oldest first."""
    events = [e for e in ws.audit.ls(limit=1000) if e.action.startswith("model.retrain.")]
    return [(e.action, e.details["decision"]) for e in reversed(events)]


def test_the_policy_acts_on_its_triggers_and_always_on_a_manual_one(ws: Workspace) -> None:
    assert DRIFT_ONLY.acts_on("drift") and DRIFT_ONLY.acts_on("manual")
    assert not DRIFT_ONLY.acts_on("decay") and not DRIFT_ONLY.acts_on("schedule")
    assert RetrainPolicy(on=()).acts_on("manual") and not RetrainPolicy(on=()).acts_on("drift")

    # Not the policy's trigger: nothing is recorded, nothing audited.
    assert decide(ws.ctx, "m", DRIFT_ONLY, "decay", "roc_auc fell") is None
    assert decide(ws.ctx, "m", DRIFT_ONLY, "schedule", "nightly") is None
    assert _decisions(ws) == [] and _actions(ws) == []

    manual = decide(ws.ctx, "m", RetrainPolicy(on=()), "manual", "asked by a person")
    assert manual is not None
    assert (manual.model, manual.trigger, manual.status) == ("m", "manual", "due")
    assert manual.reason == "asked by a person" and manual.finished_at is None
    assert manual.details["policy"] == {
        "on": [],
        "auto_promote": False,
        "alias": "champion",
        "cooldown_seconds": 0.0,
    }
    assert [d.id for d in _decisions(ws)] == [manual.id]
    assert _actions(ws) == [("model.retrain.due", manual.id)]


def test_bad_triggers_and_unknown_models_are_refused(ws: Workspace) -> None:
    with pytest.raises(InputError, match="unknown retrain trigger 'cron'"):
        decide(ws.ctx, "m", DRIFT_ONLY, "cron", "")
    with pytest.raises(InputError, match="unknown trigger 'weekly'"):
        RetrainPolicy(on=("drift", "weekly"))
    with pytest.raises(NotFound):
        decide(ws.ctx, "nope", DRIFT_ONLY, "drift", "")
    with pytest.raises(NotFound), ws.ctx.read() as conn:
        policy_store.get(conn, "0" * 32)
    assert _decisions(ws) == [] and _decisions(ws, "nope") == []


def test_at_most_one_retrain_is_in_flight_and_every_move_is_audited(ws: Workspace) -> None:
    first = decide(ws.ctx, "m", DRIFT_ONLY, "drift", "psi 0.4 on x1", {"monitor_result": "r1"})
    assert first is not None and first.details["monitor_result"] == "r1"
    assert decide(ws.ctx, "m", DRIFT_ONLY, "drift", "again") is None  # due blocks
    assert decide(ws.ctx, "m", DRIFT_ONLY, "manual", "by hand") is None  # whatever the trigger

    running = move(ws.ctx, first.id, "running")
    assert running.status == "running" and running.finished_at is None
    assert decide(ws.ctx, "m", DRIFT_ONLY, "drift", "again") is None  # running blocks

    done = move(ws.ctx, first.id, "rejected", {"why": "beat_champion_by.roc_auc fails"})
    assert done.status == "rejected" and done.finished_at is not None
    # Details merge: the decision keeps what it was given, and gains what came of it.
    assert done.details["monitor_result"] == "r1"
    assert done.details["why"] == "beat_champion_by.roc_auc fails"
    with pytest.raises(InputError, match="already rejected"):
        move(ws.ctx, first.id, "promoted")
    with pytest.raises(InputError, match="unknown retrain status"):
        move(ws.ctx, first.id, "done")

    second = decide(ws.ctx, "m", DRIFT_ONLY, "drift", "drift again")
    assert second is not None and second.id != first.id
    move(ws.ctx, second.id, "running")
    move(ws.ctx, second.id, "failed", {"error": "source d.csv is gone"})
    assert [(d.id, d.status) for d in _decisions(ws)] == [
        (second.id, "failed"),
        (first.id, "rejected"),
    ]
    assert _actions(ws) == [
        ("model.retrain.due", first.id),
        ("model.retrain.running", first.id),
        ("model.retrain.rejected", first.id),
        ("model.retrain.due", second.id),
        ("model.retrain.running", second.id),
        ("model.retrain.failed", second.id),
    ]
    failed = ws.audit.ls(action="model.retrain.failed")[0]
    assert failed.outcome == "failed" and failed.target == "model:m"
    assert failed.details["error"] == "source d.csv is gone"
    assert ws.audit.verify().ok


def test_one_model_in_flight_does_not_block_another(ws: Workspace, tmp_path: Path) -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        ws.train("other", "d", "y", model=LOGISTIC)
    assert decide(ws.ctx, "m", DRIFT_ONLY, "drift", "") is not None
    assert decide(ws.ctx, "other", DRIFT_ONLY, "drift", "") is not None
    assert len(_decisions(ws, "m")) == len(_decisions(ws, "other")) == 1
    with ws.ctx.read() as conn:
        assert len(list_decisions(conn)) == 2
        assert len(list_decisions(conn, limit=1)) == 1


def test_a_decision_stale_in_flight_is_abandoned_and_no_longer_blocks(ws: Workspace) -> None:
    old = decide(ws.ctx, "m", DRIFT_ONLY, "drift", "long ago", {"monitor_result": "r0"})
    assert old is not None
    move(ws.ctx, old.id, "running")
    # Younger than STALE_AFTER: it still blocks.
    _age(ws, old.id, STALE_AFTER - timedelta(minutes=5))
    assert decide(ws.ctx, "m", DRIFT_ONLY, "drift", "too soon") is None

    _age(ws, old.id, STALE_AFTER + timedelta(minutes=5))  # its process died long ago
    new = decide(ws.ctx, "m", DRIFT_ONLY, "drift", "drift again")
    assert new is not None and new.status == "due"
    with ws.ctx.read() as conn:
        abandoned = policy_store.get(conn, old.id)
    assert abandoned.status == "failed" and abandoned.details["error"] == "abandoned"
    # What it was about is kept beside why it ended.
    assert abandoned.details["monitor_result"] == "r0" and abandoned.details["policy"]
    assert abandoned.finished_at is not None
    event = ws.audit.ls(action="model.retrain.failed")[0]
    assert event.outcome == "failed" and event.details["decision"] == old.id
    assert "abandoned" in event.details["error"]
    assert [a for a, _ in _actions(ws)][-2:] == ["model.retrain.failed", "model.retrain.due"]


def _age(ws: Workspace, decision_id: str, age: timedelta) -> None:
    with ws.ctx.write() as conn:
        conn.execute(
            retrain_decisions.update()
            .where(retrain_decisions.c.id == decision_id)
            .values(created_at=datetime.now(UTC) - age)
        )


ROUNDS = 8


def _race(workspaces: list[Workspace]) -> None:
    """Watchers (each its own workspace: its own engine and connections, as separate
    processes have) decide at the same moment, ROUNDS times; exactly one wins a round."""
    for round_number in range(ROUNDS):
        won = _one_round(workspaces)
        assert len(won) == 1, f"round {round_number}: {len(won)} decisions"
        move(workspaces[0].ctx, won[0].id, "rejected")
    decisions = _decisions(workspaces[0])
    assert len(decisions) == ROUNDS and {d.status for d in decisions} == {"rejected"}
    due = [e for e in workspaces[0].audit.ls(limit=1000) if e.action == "model.retrain.due"]
    assert len(due) == ROUNDS


def test_watchers_deciding_at_once_on_sqlite_make_one_decision(tmp_path: Path) -> None:
    with loopml.open(tmp_path / "ws") as first:
        _with_model(first, tmp_path / "data")
        others = [loopml.open(tmp_path / "ws") for _ in range(3)]
        try:
            _race([first, *others])
        finally:
            for other in others:
                other.close()


def test_watchers_deciding_at_once_on_postgresql_make_one_decision(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    def opened() -> Workspace:
        return loopml.open(tmp_path / "ws", metadata_url=fresh_pg_url)

    with opened() as first:
        _with_model(first, tmp_path / "data")
        others = [opened() for _ in range(3)]
        try:
            _race([first, *others])
        finally:
            for other in others:
                other.close()


def _one_round(workspaces: list[Workspace]) -> list[policy_store.RetrainDecision]:
    """Every watcher decides at once (released by one barrier); the decisions made."""
    barrier = threading.Barrier(len(workspaces))
    won: list[policy_store.RetrainDecision] = []
    errors: list[BaseException] = []

    def watcher(workspace: Workspace, index: int) -> None:
        try:
            barrier.wait(timeout=30)
            found = decide(workspace.ctx, "m", DRIFT_ONLY, "drift", f"watcher {index}")
            if found is not None:
                won.append(found)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=watcher, args=(w, i)) for i, w in enumerate(workspaces)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [], errors
    return won


@pytest.mark.parametrize("waiting", ["rejected", "awaiting_approval"])
def test_drift_waits_out_the_cooldown_after_a_rejected_or_waiting_retrain(
    ws: Workspace, waiting: str
) -> None:
    cooling = RetrainPolicy(on=("drift",), cooldown_seconds=3600)
    first = decide(ws.ctx, "m", cooling, "drift", "psi 0.4 on x1")
    assert first is not None
    move(ws.ctx, first.id, "running")
    move(ws.ctx, first.id, waiting, {"why": "did not beat the champion"})

    assert decide(ws.ctx, "m", cooling, "drift", "still drifting") is None
    assert (
        decide(ws.ctx, "m", RetrainPolicy(on=("decay",), cooldown_seconds=3600), "decay", "")
        is None
    )
    assert [d.id for d in _decisions(ws)] == [first.id]
    # Without a cooldown, persisting drift retrains at once.
    no_wait = decide(ws.ctx, "m", RetrainPolicy(on=("drift",), cooldown_seconds=0), "drift", "")
    assert no_wait is not None and no_wait.id != first.id
    move(ws.ctx, no_wait.id, "running")
    move(ws.ctx, no_wait.id, waiting)
    # A person asking is never made to wait.
    manual = decide(ws.ctx, "m", cooling, "manual", "asked by a person")
    assert manual is not None and manual.trigger == "manual"
    move(ws.ctx, manual.id, "running")
    move(ws.ctx, manual.id, waiting)
    assert decide(ws.ctx, "m", cooling, "drift", "still drifting") is None

    # Once the newest decision is older than the cooldown, drift retrains again.
    for decision in (first, no_wait, manual):
        _age(ws, decision.id, timedelta(seconds=3600) + timedelta(minutes=1))
    later = decide(ws.ctx, "m", cooling, "drift", "drifting an hour later")
    assert later is not None and later.status == "due"


def test_a_failed_or_promoted_retrain_does_not_cool_down(ws: Workspace) -> None:
    cooling = RetrainPolicy(on=("drift",), cooldown_seconds=3600)
    for final in ("failed", "promoted"):
        decision = decide(ws.ctx, "m", cooling, "drift", "")
        assert decision is not None, final
        move(ws.ctx, decision.id, "running")
        move(ws.ctx, decision.id, final)
    assert decide(ws.ctx, "m", cooling, "drift", "") is not None


def test_a_decision_another_process_finished_is_not_moved_again(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = decide(ws.ctx, "m", DRIFT_ONLY, "drift", "")
    assert decision is not None
    running = move(ws.ctx, decision.id, "running")
    move(ws.ctx, decision.id, "failed", {"error": "abandoned"})  # another process finished it

    with pytest.raises(InputError, match="already failed"):
        move(ws.ctx, decision.id, "promoted", {"alias": "champion"})

    # Even when the mover read it before the other process finished it (a stale read),
    # the compare-and-set leaves it as the other process left it.
    stale = iter([running])
    real_get = policy_store.get
    monkeypatch.setattr(policy_store, "get", lambda conn, i: next(stale, None) or real_get(conn, i))
    with pytest.raises(InputError, match="already"):
        move(ws.ctx, decision.id, "promoted", {"alias": "champion"})
    monkeypatch.undo()

    with ws.ctx.read() as conn:
        after = policy_store.get(conn, decision.id)
    assert after.status == "failed" and "alias" not in after.details
    assert after.details["error"] == "abandoned"
    assert [a for a, i in _actions(ws) if i == decision.id] == [
        "model.retrain.due",
        "model.retrain.running",
        "model.retrain.failed",
    ]
