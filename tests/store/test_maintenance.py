"""fsck and gc over every workspace combination, and their exit codes on the command line."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from loopml.workspace import Workspace

if TYPE_CHECKING:
    from conftest import WorkspaceFactory

ROWS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


def test_gc_removes_orphans_and_staging_but_never_committed_objects(
    ws: Workspace, make_csv: Callable[..., Path]
) -> None:
    version = ws.ingest("tx", str(make_csv(ROWS))).version
    orphan = ws.ctx.artifacts.put_bytes(b"stored, never committed")
    before = ws.fsck()
    assert before.ok
    assert before.orphans == 1
    report = ws.gc(older_than=0)
    assert report.objects_removed == 1
    assert report.bytes_freed == orphan.size
    assert not ws.ctx.artifacts.exists(orphan.sha256)
    after = ws.fsck()
    assert after.ok, after.problems
    assert (after.orphans, after.staging, after.checked) == (0, 0, before.checked)
    assert ws.data.read(version).to_pylist() == ROWS


def test_gc_keeps_what_is_younger_than_its_age_guard(
    ws: Workspace, make_csv: Callable[..., Path]
) -> None:
    ws.ingest("tx", str(make_csv(ROWS)))
    orphan = ws.ctx.artifacts.put_bytes(b"a running ingest stored this a moment ago")
    report = ws.gc()
    assert (report.staging_removed, report.objects_removed) == (0, 0)
    assert ws.ctx.artifacts.exists(orphan.sha256)
    assert ws.fsck().orphans == 1


@pytest.mark.parametrize("workspace_factory", ["sqlite-local"], indirect=True)
def test_cli_fsck_exits_4_naming_a_missing_object(
    workspace_factory: WorkspaceFactory,
    make_csv: Callable[..., Path],
    loopml_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    ws = workspace_factory()
    version = ws.ingest("tx", str(make_csv(ROWS))).version
    missing = version.files[0].sha256
    ws.ctx.artifacts.delete(missing)
    result = loopml_cli(
        "-w", workspace_factory.root, "fsck", "--json", env=workspace_factory.cli_env()
    )
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert any(re.search(missing[:12], problem) for problem in data["problems"])
    assert result.returncode == 4, "fsck found a missing object but exited 0"
