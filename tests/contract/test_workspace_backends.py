"""A workspace behaves the same over every metadata x artifacts combination."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from loopml.errors import InputError, NotFound
from loopml.workspace import Workspace

if TYPE_CHECKING:
    from conftest import WorkspaceFactory

FIRST = [
    {"id": 1, "amount": 12.5, "category": "grocery"},
    {"id": 2, "amount": 3.25, "category": "travel"},
    {"id": 3, "amount": 99.0, "category": "fuel"},
]
SECOND = [*FIRST, {"id": 4, "amount": 0.5, "category": "online"}]


def test_versions_resolve_and_read_back(
    workspace_factory: WorkspaceFactory, make_csv: Callable[..., Path]
) -> None:
    ws = workspace_factory()
    metadata, artifacts = workspace_factory.backend.split("-")
    assert ws.ctx.metadata.scheme == metadata
    assert ws.ctx.artifacts.scheme == {"local": "file"}.get(artifacts, artifacts)

    first = ws.ingest("tx", str(make_csv(FIRST)))
    second = ws.ingest("tx", str(make_csv(SECOND)))
    assert (first.version.number, second.version.number) == (1, 2)
    assert first.version.id != second.version.id
    assert (first.rows_read, second.rows_read) == (3, 4)

    assert ws.data.get("tx").number == 2
    assert ws.data.get("tx@latest").number == 2
    assert ws.data.get("tx@1").id == first.version.id
    assert ws.data.get("tx@2").id == second.version.id
    assert ws.data.get(f"tx@{first.version.id[:8]}").number == 1
    assert ws.data.get(f"tx@{second.version.id[:4]}").number == 2
    assert [v.number for v in ws.data.versions("tx")] == [2, 1]

    assert ws.data.read("tx@1").to_pylist() == FIRST
    assert ws.data.read("tx").to_pylist() == SECOND
    assert ws.data.get("tx@1").row_count == 3

    with pytest.raises(NotFound):
        ws.data.get("tx@3")
    with pytest.raises(NotFound):
        ws.data.get("other")
    with pytest.raises(InputError):
        ws.data.get("tx@")


def test_same_content_gives_the_same_id_and_objects(
    ws: Workspace, make_csv: Callable[..., Path]
) -> None:
    path = make_csv(FIRST)
    one = ws.ingest("tx", str(path)).version
    two = ws.ingest("tx", str(path)).version
    assert (one.number, two.number) == (1, 2)
    assert one.id == two.id
    assert one.files == two.files
    assert ws.data.get(f"tx@{one.id[:12]}").id == one.id
    # Write-once objects: the second ingest stored nothing new.
    assert ws.fsck().checked == len(one.files)
    assert len(list(ws.ctx.artifacts.iter_objects())) == len(one.files)


def test_fsck_and_audit_are_ok(ws: Workspace, make_csv: Callable[..., Path]) -> None:
    ws.ingest("tx", str(make_csv(FIRST)))
    ws.ingest("tx", str(make_csv(SECOND)))
    ws.ingest("other", str(make_csv(FIRST)))
    report = ws.fsck()
    assert report.ok, report.problems
    assert report.checked >= 2
    assert (report.orphans, report.staging) == (0, 0)
    chain = ws.audit.verify()
    assert chain.ok, chain.problems
    assert chain.checked == 3
    assert [e.target for e in reversed(ws.audit.ls())] == [
        "dataset:tx@1",
        "dataset:tx@2",
        "dataset:other@1",
    ]


def test_another_workspace_on_the_same_stores_sees_the_versions(
    workspace_factory: WorkspaceFactory, make_csv: Callable[..., Path], tmp_path: Path
) -> None:
    writer = workspace_factory()
    version = writer.ingest("tx", str(make_csv(FIRST))).version
    # A second workspace folder (its own cache) on the same database and store.
    reader = workspace_factory(tmp_path / "elsewhere")
    assert reader.data.get("tx@1").id == version.id
    assert reader.data.read("tx@1").to_pylist() == FIRST
    assert reader.fsck().ok
    assert reader.audit.verify().ok


def test_fsck_reports_a_damaged_committed_object(
    ws: Workspace, make_csv: Callable[..., Path]
) -> None:
    version = ws.ingest("tx", str(make_csv(FIRST))).version
    damaged = version.files[0].sha256
    ws.ctx.artifacts.delete(damaged)
    report = ws.fsck()
    assert not report.ok
    assert any(damaged[:12] in problem for problem in report.problems)
