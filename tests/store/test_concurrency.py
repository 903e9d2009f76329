"""Several processes ingesting into one dataset at once: no lost update, one clean chain."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.csv as pacsv
import pytest

import loopml

if TYPE_CHECKING:
    from conftest import ArtifactTarget

WRITERS = 4
ROWS_EACH = 2_000


def _run_writers(
    commands: list[list[str]], env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    # Start them all before waiting on any, so they overlap.
    running = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd in commands
    ]
    done = []
    for process, cmd in zip(running, commands, strict=True):
        out, err = process.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(cmd, process.returncode, out, err))
    return done


@pytest.mark.parametrize("artifact_target", ["local"], indirect=True)
def test_concurrent_ingests_into_one_dataset(
    metadata_url: str,
    artifact_target: ArtifactTarget,
    make_csv: Callable[..., Path],
    tmp_path: Path,
) -> None:
    from conftest import LOOPML_BIN

    files = [
        make_csv(
            [{"writer": w, "row": r, "value": w * ROWS_EACH + r} for r in range(ROWS_EACH + w)],
            name=f"writer-{w}.csv",
        )
        for w in range(WRITERS)
    ]
    root = tmp_path / "workspace"
    env = {
        **os.environ,
        "LOOPML_METADATA_URL": metadata_url,
        "LOOPML_ARTIFACTS_URL": artifact_target.url,
        "LOOPML_USER": "writer",
    }
    # The workspace is brand new: the writers also race to create the schema and the dataset.
    results = _run_writers(
        [[LOOPML_BIN, "-w", str(root), "ingest", "shared", str(f), "--json"] for f in files], env
    )
    for result in results:
        assert result.returncode == 0, result.stderr
    reports = [json.loads(result.stdout) for result in results]
    numbers = sorted(report["version"] for report in reports)
    assert numbers == list(range(1, WRITERS + 1))

    with loopml.open(root, metadata_url=metadata_url, artifacts_url=artifact_target.url) as ws:
        versions = ws.data.versions("shared")
        assert sorted(v.number for v in versions) == numbers
        # Each writer's version holds exactly that writer's rows: nothing lost or mixed.
        for report, path in zip(reports, files, strict=True):
            version = ws.data.get(f"shared@{report['version']}")
            assert version.id == report["id"]
            assert ws.data.read(version).to_pylist() == pacsv.read_csv(path).to_pylist()
            assert version.row_count == report["rows_accepted"]
        chain = ws.audit.verify()
        assert chain.ok, chain.problems
        events = ws.audit.ls(action="dataset.ingest")
        assert sorted(e.target for e in events) == [f"dataset:shared@{n}" for n in numbers]
        assert {e.outcome for e in events} == {"ok"}
        assert {e.actor for e in events} == {"writer"}
        report = ws.fsck()
        assert report.ok, report.problems
        assert (report.orphans, report.staging) == (0, 0)
