"""Regression tests for the review fixes, driven through the ``loopml`` executable: usage
errors, human ``data show``, ``--from`` without ``--query``, where ``init`` writes,
settings that survive a second ``init``, and a tampered audit chain."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

LOOPML = Path(sys.executable).with_name("loopml")


def clean_env(**extra: str) -> dict[str, str]:
    # No LOOPML_* from the caller, and no terminal size: output is what a pipe gets.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOOPML_") and k not in {"COLUMNS", "LINES"}
    }
    env.update(extra)
    return env


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOOPML), *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def one_json_object(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = ok(proc).stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got: {proc.stdout!r}"
    return json.loads(lines[0])


def assert_usage_error(proc: subprocess.CompletedProcess[str], mentions: str) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, (proc.returncode, output)
    assert "Traceback" not in output
    assert "Usage:" in output
    assert mentions in output


# --- usage errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, mentions",
    [(["nosuch"], "nosuch"), (["ingest"], "Missing argument")],
    ids=["unknown-command", "missing-argument"],
)
def test_usage_errors_exit_2_without_a_traceback(
    tmp_path: Path, args: list[str], mentions: str
) -> None:
    assert_usage_error(run(args, tmp_path), mentions)


def test_from_without_query_is_a_usage_error(tmp_path: Path) -> None:
    proc = run(["ingest", "ds", "--from", "sqlite:///x.db"], tmp_path)
    assert_usage_error(proc, "--query")
    # Refused before anything is opened or created.
    assert list(tmp_path.iterdir()) == []


# --- data show for people --------------------------------------------------------------------

SHOW_COLUMNS = ["item_id", "price", "label", "seen_at"]
SHOW_ROWS = [
    (1, 2.5, "apple", "2024-01-02 03:04:05"),
    (2, 10.25, "pear", "2024-02-03 04:05:06"),
    (3, 0.75, "fig", "2024-03-04 05:06:07"),
]


def test_data_show_prints_every_column_for_people(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text(
        ",".join(SHOW_COLUMNS)
        + "\n"
        + "".join(",".join(str(v) for v in row) + "\n" for row in SHOW_ROWS)
    )
    (tmp_path / "c.yaml").write_text(
        "columns:\n"
        "  item_id: {type: int}\n"
        "  price: {type: float}\n"
        "  label: {type: string}\n"
        "  seen_at: {type: timestamp}\n"
    )
    ok(run(["-w", "ws", "ingest", "items", "items.csv", "-c", "c.yaml"], tmp_path))

    proc = ok(run(["-w", "ws", "data", "show", "items"], tmp_path))

    assert "Traceback" not in proc.stdout + proc.stderr
    assert "items@1" in proc.stdout
    for column in SHOW_COLUMNS:
        assert column in proc.stdout, proc.stdout
    assert f"rows {len(SHOW_ROWS)}" in proc.stdout


# --- init ------------------------------------------------------------------------------------


def test_init_with_the_global_workspace_option_creates_that_folder(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    target = tmp_path / "target"

    data = one_json_object(run(["-w", str(target), "init", "--json"], cwd))

    assert Path(data["workspace"]) == target
    assert (target / "loopml.db").is_file()
    assert list(cwd.iterdir()) == []


def test_second_init_merges_into_the_workspace_file(tmp_path: Path) -> None:
    other = tmp_path / "other-store"
    ok(run(["init", "ws", "--owner", "bob"], tmp_path))

    data = one_json_object(run(["init", "ws", "--artifacts", str(other), "--json"], tmp_path))

    settings = yaml.safe_load((tmp_path / "ws" / "workspace.yaml").read_text())
    assert settings["owner"] == "bob"
    assert settings["artifacts"] == str(other)
    assert data["owner"] == "bob"
    assert data["artifacts"] == str(other)


# --- audit -----------------------------------------------------------------------------------


def test_audit_verify_exits_4_after_an_event_is_edited(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("id,amount\n1,2.5\n2,3.5\n")
    ok(run(["-w", "ws", "ingest", "things", "d.csv"], tmp_path))
    assert one_json_object(run(["-w", "ws", "audit", "verify", "--json"], tmp_path))["ok"]

    with sqlite3.connect(tmp_path / "ws" / "loopml.db") as conn:
        changed = conn.execute(
            "UPDATE audit_events SET actor = 'mallory' "
            "WHERE seq = (SELECT min(seq) FROM audit_events)"
        ).rowcount
    assert changed == 1

    proc = run(["-w", "ws", "audit", "verify", "--json"], tmp_path)
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    assert report["problems"]

    human = run(["-w", "ws", "audit", "verify"], tmp_path)
    assert human.returncode == 4
