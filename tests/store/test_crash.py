"""A writer killed at any point leaves no partial version: the commit protocol under SIGKILL.

One ``loopml ingest`` of a 300k-row CSV with a contract is timed, then the same ingest
is started again and again and killed (SIGKILL, no chance to clean up) at delays spread
over that duration: during start-up, while reading and staging, while storing objects,
around the commit. After every kill the workspace (SQLite and a local store, the
embedded default) must hold only complete versions, and fsck and the audit chain must
pass; ``gc`` then removes whatever the dead writers left behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import loopml
from loopml.examples.fraud import contract_path, generate_transactions
from loopml.workspace import Workspace

pytestmark = pytest.mark.slow

ROWS = 300_000
KILLS = 12
FIRST_KILL = 0.05


@pytest.fixture(scope="module")
def transactions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "transactions.csv"
    generate_transactions(path, rows=ROWS)
    return path


def _source(transactions: Path, folder: Path, run: int) -> Path:
    """A folder source: the big CSV plus one extra row, so every run stores new objects.

    With the same bytes every time, objects would be shared (write-once) with the
    first version and a crash between storing and committing would leave no orphan.
    """
    folder.mkdir(parents=True)
    try:
        os.link(transactions, folder / "base.csv")
    except OSError:
        shutil.copyfile(transactions, folder / "base.csv")
    with transactions.open() as handle:
        header = handle.readline()
    with transactions.open("rb") as handle:
        handle.seek(-4096, os.SEEK_END)
        last = handle.read().decode().rstrip("\n").rsplit("\n", 1)[-1]
    row = f"{90_000_000 + run},{last.split(',', 1)[1]}"
    (folder / "extra.csv").write_text(header + row + "\n")
    return folder


def _embedded_env() -> dict[str, str]:
    """The environment without any setting that would move the stores out of the folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env["LOOPML_USER"] = "crash-test"
    return env


def _check_committed(ws: Workspace, rows_read: int) -> int:
    """Every visible version is complete; return how many there are."""
    versions = sorted(ws.data.versions("tx"), key=lambda v: v.number)
    assert [v.number for v in versions] == list(range(1, len(versions) + 1))
    for version in versions:
        assert version.rows_read == rows_read
        assert version.row_count + version.rows_quarantined == rows_read
        assert version.row_count == sum(f.rows for f in version.files)
        for stored in version.files:
            ws.ctx.artifacts.verify(stored.sha256)
        assert version.quarantine is not None
        ws.ctx.artifacts.verify(version.quarantine.sha256)
        readable = sum(
            pq.read_table(path, columns=["tx_id"]).num_rows for path in ws.data.files(version)
        )
        assert readable == version.row_count
        assert ws.data.quarantine(version).num_rows == version.rows_quarantined
    fsck = ws.fsck()
    assert fsck.ok, fsck.problems
    assert fsck.checked >= (len(versions[0].files) + 1 if versions else 0)
    chain = ws.audit.verify()
    assert chain.ok, chain.problems
    # A version and its audit event commit together: one event per version, none more.
    committed = [e for e in ws.audit.ls(limit=1000, action="dataset.ingest") if e.outcome == "ok"]
    assert sorted(e.target for e in committed) == [f"dataset:tx@{v.number}" for v in versions]
    return len(versions)


def test_sigkill_never_leaves_a_partial_version(transactions: Path, tmp_path: Path) -> None:
    from conftest import LOOPML_BIN

    root = tmp_path / "workspace"
    contract = str(contract_path())
    sources = (_source(transactions, tmp_path / f"source-{run}", run) for run in range(1_000))

    def command() -> list[str]:
        source = str(next(sources))
        return [LOOPML_BIN, "-w", str(root), "ingest", "tx", source, "-c", contract, "--json"]

    env = _embedded_env()
    # Two clean runs: the faster (warm caches) sets the kill schedule, so a busy machine
    # during the first run does not push every kill past the end of the ingest.
    durations = []
    for _ in range(2):
        started = time.monotonic()
        done = subprocess.run(command(), env=env, capture_output=True, text=True, timeout=300)
        durations.append(time.monotonic() - started)
        assert done.returncode == 0, done.stderr
    typical = min(durations)
    with loopml.open(root) as ws:
        assert ws.settings.metadata_url.startswith("sqlite:")
        assert "://" not in ws.settings.artifacts_url
        assert _check_committed(ws, ROWS + 1) == 2

    delays = [FIRST_KILL + (typical - FIRST_KILL) * i / (KILLS - 1) for i in range(KILLS)]
    outcomes = []
    count = 2
    for delay in delays:
        process = subprocess.Popen(
            command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            _, err = process.communicate(timeout=delay)
            assert process.returncode == 0, err
            outcomes.append("finished")
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            outcomes.append("killed")
        with loopml.open(root) as ws:
            now = _check_committed(ws, ROWS + 1)
        # A killed writer commits its version entirely or not at all.
        assert now - count in (0, 1), f"killed after {delay:.2f}s: {now - count} new versions"
        count = now
    assert outcomes.count("killed") >= KILLS // 2, outcomes
    assert count < 2 + KILLS, "no kill landed before a commit"

    with loopml.open(root) as ws:
        before = ws.fsck()
        report = ws.gc(older_than=0)
        # The dead writers left staging data (and, killed between storing and committing,
        # orphaned objects: a narrow window that a kill may or may not hit).
        assert report.staging_removed >= 1
        assert report.staging_removed == before.staging
        assert report.objects_removed == before.orphans
        after = ws.fsck()
        assert after.ok, after.problems
        assert (after.orphans, after.staging) == (0, 0)
        assert after.checked == before.checked
        assert _check_committed(ws, ROWS + 1) == count
        latest = ws.data.read("tx", columns=["tx_id", "amount"])
        assert latest.num_rows == ws.data.get("tx").row_count
        # The workspace still takes new versions after all those crashes.
        small = next(sources) / "extra.csv"
        again = ws.ingest("tx", str(small), contract=contract)
        assert again.version.number == count + 1
        assert again.rows_accepted == 1
        assert ws.audit.verify().ok
