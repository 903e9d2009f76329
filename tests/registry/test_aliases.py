"""Aliases, rollback and status decisions: governed, reversible, audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.train._data import ingest, tabular

from loopml.errors import Conflict, InputError, NotFound
from loopml.registry import aliases as registry_aliases
from loopml.workspace import Workspace

LOGISTIC = "sklearn:sklearn.linear_model.LogisticRegression"


@pytest.fixture
def three_versions(lws: Workspace, tmp_path: Path) -> Workspace:
    ingest(lws, "d", tabular(rows=300), tmp_path / "data")
    for c in (0.1, 1.0, 10.0):
        lws.train("m", "d", "y", model=LOGISTIC, params={"C": c})
    return lws


def test_an_alias_resolves_and_rollback_walks_back(three_versions: Workspace) -> None:
    ws, ctx = three_versions, three_versions.ctx
    registry_aliases.set_alias(ctx, "m", "champion", 1, reason="first")
    registry_aliases.set_alias(ctx, "m", "champion", 2, reason="better")
    registry_aliases.set_alias(ctx, "m", "champion", 3, reason="better still")
    assert ws.models.get("m@champion").number == 3
    assert registry_aliases.rollback(ctx, "m", "champion").number == 2
    assert ws.models.get("m@champion").number == 2
    assert registry_aliases.rollback(ctx, "m", "champion").number == 1
    with pytest.raises(Conflict, match="no earlier version"):
        registry_aliases.rollback(ctx, "m", "champion")
    # Promoting again after rollbacks starts a new history from there.
    registry_aliases.set_alias(ctx, "m", "champion", 3)
    assert registry_aliases.rollback(ctx, "m", "champion").number == 1
    with ctx.read() as conn:
        assert registry_aliases.aliases(conn, "m") == {"champion": 1}
    actions = [e.action for e in ws.audit.ls(target="alias:m@champion")]
    assert actions.count("model.alias") == 4 and actions.count("model.rollback") == 3
    assert ws.audit.verify().ok
    upstream = ws.lineage("alias:m@champion")
    assert {edge.source for edge in upstream} >= {"model:m@1", "model:m@3"}


def test_bad_aliases_and_unknown_versions_are_refused(three_versions: Workspace) -> None:
    ctx = three_versions.ctx
    for bad in ("cafe", "latest", "1st", "has space"):
        with pytest.raises(InputError):
            registry_aliases.set_alias(ctx, "m", bad, 1)
    with pytest.raises(NotFound):
        registry_aliases.set_alias(ctx, "m", "champion", 9)
    with pytest.raises(Conflict, match="no alias"):
        registry_aliases.rollback(ctx, "m", "challenger")
    with pytest.raises(NotFound):
        three_versions.models.get("m@challenger")


def test_status_decisions_record_who_and_why(three_versions: Workspace) -> None:
    ws, ctx = three_versions, three_versions.ctx
    assert ws.models.get("m@2").status == "candidate"
    with pytest.raises(InputError, match="reason"):
        registry_aliases.set_status(ctx, "m", 2, "approved", reason=" ")
    with pytest.raises(InputError, match="unknown status"):
        registry_aliases.set_status(ctx, "m", 2, "blessed", reason="x")
    approved = registry_aliases.set_status(ctx, "m", 2, "approved", reason="passed review")
    assert approved.status == "approved" == ws.models.get("m@2").status
    registry_aliases.set_status(ctx, "m", 2, "archived", reason="")
    with ctx.read() as conn:
        history = registry_aliases.decisions(conn, "m", 2)
    assert [(d["status"], d["reason"], d["actor"]) for d in history] == [
        ("approved", "passed review", ctx.actor),
        ("archived", "", ctx.actor),
    ]
    (event, *_) = ws.audit.ls(action="model.status")
    assert event.details["to"] == "archived" and event.details["from"] == "approved"


def test_a_move_expecting_an_alias_elsewhere_is_refused_and_moves_nothing(
    three_versions: Workspace,
) -> None:
    ws, ctx = three_versions, three_versions.ctx
    registry_aliases.set_alias(ctx, "m", "champion", 1, reason="first")
    events = len(ws.audit.ls(limit=10_000))

    with pytest.raises(Conflict) as caught:
        registry_aliases.set_alias(ctx, "m", "champion", 3, expect={"champion": 2})
    assert "m@champion moved while m@3 was being checked" in caught.value.message
    with pytest.raises(Conflict, match="m@champion"):
        registry_aliases.set_alias(ctx, "m", "champion", 3, expect={"champion": None})
    with ctx.read() as conn:
        assert registry_aliases.aliases(conn, "m") == {"champion": 1}
    assert len(ws.audit.ls(limit=10_000)) == events
    # A rollback finds no trace of the refused moves: champion has nowhere earlier to go.
    with pytest.raises(Conflict, match="no earlier version"):
        registry_aliases.rollback(ctx, "m", "champion")

    registry_aliases.set_alias(ctx, "m", "champion", 3, expect={"champion": 1})
    assert ws.models.get("m@champion").number == 3
