"""The audit chain: every ingest leaves a linked event, and tampering is caught and named.

Tampering is done as an attacker with database access would: plain SQL on the
metadata database, behind loopml's back. Runs on every metadata backend.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import loopml
from loopml.errors import ContractViolation, NotFound
from loopml.governance.audit import GENESIS, _event_hash, event_digest
from loopml.workspace import Workspace

ROWS = [{"id": 1, "amount": 10.0}, {"id": 2, "amount": 20.0}, {"id": 3, "amount": 30.0}]
STRICT_CONTRACT = """\
columns:
  id: {type: int, nullable: false}
  amount: {type: float, min: 0}
max_quarantine_fraction: 0.1
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


@pytest.fixture
def open_ws(metadata_url: str, tmp_path: Path, root: Path) -> Iterator[Callable[..., Workspace]]:
    """Open workspaces on this test's metadata database and a local store."""
    opened: list[Workspace] = []

    def open_(user: str = "alice") -> Workspace:
        workspace = loopml.open(
            root, metadata_url=metadata_url, artifacts_url=str(tmp_path / "store"), user=user
        )
        opened.append(workspace)
        return workspace

    yield open_
    for workspace in opened:
        workspace.close()


@pytest.fixture
def cli_env(metadata_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LOOPML_METADATA_URL": metadata_url,
        "LOOPML_ARTIFACTS_URL": str(tmp_path / "store"),
    }


@pytest.fixture
def three_ingests(open_ws: Callable[..., Workspace], make_csv: Callable[..., Path]) -> Workspace:
    ws = open_ws()
    for count in (1, 2, 3):
        ws.ingest("tx", str(make_csv(ROWS[:count])))
    return ws


def _sql(ws: Workspace, statement: str, **params: object) -> int:
    with ws.ctx.metadata.engine.begin() as conn:
        return conn.execute(sa.text(statement), params).rowcount


def _sql_value(ws: Workspace, statement: str) -> object:
    with ws.ctx.metadata.engine.connect() as conn:
        return conn.execute(sa.text(statement)).scalar_one()


def _names_event(problems: tuple[str, ...], seq: int) -> bool:
    return any(re.search(rf"\bevents? {seq}\b", problem) for problem in problems)


def test_each_ingest_appends_a_linked_event(three_ingests: Workspace) -> None:
    events = list(reversed(three_ingests.audit.ls()))
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.action for e in events] == ["dataset.ingest"] * 3
    assert [e.target for e in events] == ["dataset:tx@1", "dataset:tx@2", "dataset:tx@3"]
    assert {e.actor for e in events} == {"alice"}
    assert {e.outcome for e in events} == {"ok"}
    assert [e.details["rows"] for e in events] == [1, 2, 3]
    assert events[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    for event in events:
        assert event.hash == event_digest(event)
    assert three_ingests.data.get("tx@3").id == events[2].details["id"]
    report = three_ingests.audit.verify()
    assert report.ok, report.problems
    assert report.checked == 3


def test_the_acting_identity_is_recorded(
    open_ws: Callable[..., Workspace], make_csv: Callable[..., Path]
) -> None:
    open_ws(user="alice").ingest("tx", str(make_csv(ROWS)))
    open_ws(user="bob@example.com").ingest("tx", str(make_csv(ROWS[:1])))
    events = open_ws(user="carol").audit.ls()
    assert [(e.actor, e.target) for e in events] == [
        ("bob@example.com", "dataset:tx@2"),
        ("alice", "dataset:tx@1"),
    ]


def test_an_empty_chain_verifies(open_ws: Callable[..., Workspace]) -> None:
    report = open_ws().audit.verify()
    assert report.ok
    assert report.checked == 0


def test_verify_names_an_edited_event(three_ingests: Workspace) -> None:
    changed = _sql(
        three_ingests, "UPDATE audit_events SET target = 'dataset:other@1' WHERE seq = 2"
    )
    assert changed == 1
    report = three_ingests.audit.verify()
    assert not report.ok
    assert _names_event(report.problems, 2)
    assert any("edited" in p and "dataset:other@1" in p for p in report.problems)
    assert not _names_event(report.problems, 1)


def test_verify_catches_an_edit_to_any_field(three_ingests: Workspace) -> None:
    edits = {"actor": "mallory", "action": "dataset.delete", "outcome": "failed"}
    for column, value in edits.items():
        original = _sql_value(three_ingests, f"SELECT {column} FROM audit_events WHERE seq = 1")
        _sql(three_ingests, f"UPDATE audit_events SET {column} = :value WHERE seq = 1", value=value)
        report = three_ingests.audit.verify()
        assert not report.ok, column
        assert _names_event(report.problems, 1), report.problems
        _sql(
            three_ingests,
            f"UPDATE audit_events SET {column} = :value WHERE seq = 1",
            value=original,
        )
        assert three_ingests.audit.verify().ok, f"restoring {column} restores the chain"


def test_verify_catches_an_edit_with_a_recomputed_hash(three_ingests: Workspace) -> None:
    """A forger who rehashes the edited event still breaks the next event's link."""
    second = next(e for e in three_ingests.audit.ls() if e.seq == 2)
    forged = _event_hash(
        second.seq,
        second.time,
        second.actor,
        second.action,
        "dataset:forged@2",
        second.outcome,
        second.details,
        second.prev_hash,
    )
    _sql(
        three_ingests,
        "UPDATE audit_events SET target = 'dataset:forged@2', hash = :hash WHERE seq = 2",
        hash=forged,
    )
    report = three_ingests.audit.verify()
    assert not report.ok
    assert _names_event(report.problems, 3)


def test_verify_names_a_deleted_middle_event(three_ingests: Workspace) -> None:
    assert _sql(three_ingests, "DELETE FROM audit_events WHERE seq = 2") == 1
    report = three_ingests.audit.verify()
    assert not report.ok
    assert report.checked == 2
    assert _names_event(report.problems, 2)


def test_verify_names_a_deleted_last_event(three_ingests: Workspace) -> None:
    assert _sql(three_ingests, "DELETE FROM audit_events WHERE seq = 3") == 1
    report = three_ingests.audit.verify()
    assert not report.ok
    assert _names_event(report.problems, 3)


def test_verify_catches_a_deleted_head(three_ingests: Workspace) -> None:
    _sql(three_ingests, "DELETE FROM audit_head")
    report = three_ingests.audit.verify()
    assert not report.ok


# The command line only maps the report to output and an exit code: one backend is enough.
@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)
def test_cli_verify_fails_and_names_the_event(
    three_ingests: Workspace,
    root: Path,
    cli_env: dict[str, str],
    loopml_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    intact = loopml_cli("-w", root, "audit", "verify", env=cli_env)
    assert intact.returncode == 0, intact.stderr
    assert "3 event(s)" in intact.stdout

    _sql(three_ingests, "UPDATE audit_events SET target = 'dataset:hidden@9' WHERE seq = 2")
    broken = loopml_cli("-w", root, "audit", "verify", env=cli_env)
    assert broken.returncode == 4
    assert re.search(r"\bevent 2\b", broken.stdout + broken.stderr)

    as_json = loopml_cli("-w", root, "audit", "verify", "--json", env=cli_env)
    assert as_json.returncode == 4
    data = json.loads(as_json.stdout)
    assert data["ok"] is False
    assert data["checked"] == 3
    assert _names_event(tuple(data["problems"]), 2)


def test_a_failed_ingest_is_audited(
    open_ws: Callable[..., Workspace], make_csv: Callable[..., Path], tmp_path: Path
) -> None:
    ws = open_ws()
    ws.ingest("tx", str(make_csv(ROWS)))
    contract = tmp_path / "contract.yaml"
    contract.write_text(STRICT_CONTRACT)
    # Half the rows break "min: 0", far above the 10% the contract allows.
    bad = make_csv([{"id": i, "amount": -1.0 if i % 2 else 1.0} for i in range(10)])
    with pytest.raises(ContractViolation):
        ws.ingest("tx", str(bad), contract=str(contract))

    latest = ws.audit.ls(limit=1)[0]
    assert (latest.action, latest.target, latest.outcome) == (
        "dataset.ingest",
        "dataset:tx",
        "failed",
    )
    assert latest.actor == "alice"
    assert "broke the contract" in latest.details["error"]
    # Nothing was committed: the failure is the only trace.
    assert [v.number for v in ws.data.versions("tx")] == [1]
    report = ws.audit.verify()
    assert report.ok, report.problems
    assert report.checked == 2


def test_a_failed_first_ingest_creates_no_dataset(
    open_ws: Callable[..., Workspace], tmp_path: Path
) -> None:
    ws = open_ws()
    with pytest.raises(NotFound):
        ws.ingest("ghost", str(tmp_path / "missing.csv"))
    [event] = ws.audit.ls()
    assert (event.target, event.outcome) == ("dataset:ghost", "failed")
    with pytest.raises(NotFound):
        ws.data.get("ghost")
    assert ws.audit.verify().ok


@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)
def test_a_failed_cli_ingest_is_audited(
    open_ws: Callable[..., Workspace],
    make_csv: Callable[..., Path],
    root: Path,
    cli_env: dict[str, str],
    tmp_path: Path,
    loopml_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    contract = tmp_path / "contract.yaml"
    contract.write_text(STRICT_CONTRACT)
    bad = make_csv([{"id": i, "amount": -5.0} for i in range(4)])
    result = loopml_cli(
        "-w",
        root,
        "ingest",
        "tx",
        bad,
        "--contract",
        contract,
        env={**cli_env, "LOOPML_USER": "cli-user"},
    )
    assert result.returncode == 2
    assert "contract" in result.stderr
    [event] = open_ws().audit.ls()
    assert (event.actor, event.target, event.outcome) == ("cli-user", "dataset:tx", "failed")


def test_gc_is_audited(open_ws: Callable[..., Workspace], make_csv: Callable[..., Path]) -> None:
    ws = open_ws()
    ws.ingest("tx", str(make_csv(ROWS)))
    ws.gc(older_than=0)
    latest = ws.audit.ls(limit=1)[0]
    assert (latest.action, latest.outcome, latest.actor) == ("store.gc", "ok", "alice")
    assert ws.audit.verify().ok
