"""The ``loopml`` executable, driven as a user would: JSON output, the workspace option,
one-line errors with exit code 2, health checks, and a light import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LOOPML = Path(sys.executable).with_name("loopml")
HEAVY = {"pyarrow", "duckdb", "pandas", "sqlalchemy"}

CONTRACT = """\
columns:
  id: {type: int, nullable: false}
  email: {type: string}
  amount: {type: float, min: 0}
unique: [id]
"""
ROWS = [
    (1, "ann@example.com", 5.0),
    (2, "bob@example.com", -2.0),
    (3, "cy@example.com", 7.5),
    (4, "di@example.com", 1.0),
    (3, "eve@example.com", 3.0),
]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env.update(extra)
    return env


def run(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOOPML), *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_json_object(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got: {proc.stdout!r}"
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def assert_user_error(proc: subprocess.CompletedProcess[str], mentions: str = "") -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {proc.stderr!r}"
    assert lines[0].startswith("error:"), lines[0]
    assert mentions in lines[0]


def write_inputs(folder: Path) -> None:
    (folder / "c.yaml").write_text(CONTRACT)
    (folder / "people.csv").write_text(
        "id,email,amount\n" + "".join(f"{i},{e},{a}\n" for i, e, a in ROWS)
    )
    (folder / "more.csv").write_text(
        "id,email,amount\n" + "".join(f"{i},{e},{a * 3}\n" for i, e, a in ROWS[:3])
    )


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory):
    """A workspace with two versions of ``people`` (the first with quarantined rows)."""
    root = tmp_path_factory.mktemp("cli")
    write_inputs(root)
    init = one_json_object(run(["init", "ws", "--json"], root))
    first = run(["ingest", "people", "people.csv", "-c", "c.yaml", "-w", "ws", "--json"], root)
    assert first.returncode == 0, first.stderr
    second = run(["-w", "ws", "ingest", "people", "more.csv", "--json"], root)
    assert second.returncode == 0, second.stderr
    return root, json.loads(first.stdout), json.loads(second.stdout), init


def test_init_creates_a_workspace(populated) -> None:
    root, *_, init = populated
    assert Path(init["workspace"]) == (root / "ws").absolute()
    assert {"workspace", "metadata", "artifacts", "owner"} <= set(init)
    assert (root / "ws").is_dir()


def test_ingest_json_reports_what_happened(populated) -> None:
    _, first, second, _ = populated
    required = {
        "dataset",
        "version",
        "rows_read",
        "rows_accepted",
        "rows_quarantined",
        "quarantine_reasons",
        "pii_warnings",
        "schema_changes",
        "seconds",
    }
    assert required <= set(first)
    assert first["dataset"] == "people" and first["version"] == 1
    # Derived from ROWS: one negative amount, one repeat of an accepted id.
    assert first["rows_read"] == len(ROWS)
    assert first["rows_quarantined"] == 2
    assert first["rows_accepted"] == len(ROWS) - 2
    assert sum(first["quarantine_reasons"].values()) == 2
    assert all(
        isinstance(k, str) and isinstance(v, int) for k, v in first["quarantine_reasons"].items()
    )
    assert first["pii_warnings"] == ["email"]
    assert first["schema_changes"] == {}
    assert isinstance(first["seconds"], int | float) and first["seconds"] >= 0
    assert second["version"] == 2 and second["rows_quarantined"] == 0


def test_data_ls_json(populated) -> None:
    root, *_ = populated
    data = one_json_object(run(["data", "ls", "-w", "ws", "--json"], root))
    (entry,) = data["datasets"]
    assert entry["name"] == "people"
    assert entry["latest"] == 2 and entry["versions"] == 2
    assert entry["rows"] == 3


def test_data_show_json(populated) -> None:
    root, first, *_ = populated
    data = one_json_object(run(["data", "show", "people@1", "-w", "ws", "--json"], root))
    assert data["number"] == 1
    assert data["id"] == first["id"]
    assert data["row_count"] == first["rows_accepted"]
    assert [c["name"] for c in data["schema"]] == ["id", "email", "amount"]
    assert [v["number"] for v in data["versions"]] == [2, 1]


def test_data_diff_json(populated) -> None:
    root, *_ = populated
    data = one_json_object(
        run(["data", "diff", "people@1", "people@2", "-w", "ws", "--json"], root)
    )
    assert data["a"] == "people@1" and data["b"] == "people@2"
    assert data["rows"]["delta"] == 0
    assert "amount" in data["columns"]


def test_data_export_json(populated, tmp_path: Path) -> None:
    root, first, *_ = populated
    target = tmp_path / "out.csv"
    data = one_json_object(
        run(["data", "export", "people@1", str(target), "-w", "ws", "--json"], root)
    )
    assert data["rows"] == first["rows_accepted"]
    lines = target.read_text().strip().splitlines()
    assert len(lines) == 1 + first["rows_accepted"]


def test_data_quarantine_json(populated) -> None:
    root, first, *_ = populated
    data = one_json_object(run(["data", "quarantine", "people@1", "-w", "ws", "--json"], root))
    assert data["total"] == first["rows_quarantined"]
    # Derived from ROWS: data row 2 has a negative amount, data row 5 repeats id 3.
    negative = [n for n, (_, _, a) in enumerate(ROWS, start=1) if a < 0]
    repeated = [
        n for n, (i, _, _) in enumerate(ROWS, start=1) if i in [r[0] for r in ROWS[: n - 1]]
    ]
    assert sorted(r["row"] for r in data["rows"]) == sorted(negative + repeated)


def test_workspace_option_before_the_command_and_from_env(populated) -> None:
    # Every other test here passes -w after the command.
    root, first, second, _ = populated
    before = one_json_object(run(["-w", "ws", "data", "show", "people", "--json"], root))
    from_env = one_json_object(
        run(
            ["data", "show", "people", "--json"],
            root,
            env=clean_env(LOOPML_WORKSPACE=str(root / "ws")),
        )
    )
    assert before == from_env
    assert before["id"] == second["id"] and before["id"] != first["id"]


def test_fsck_and_audit_verify_pass_on_a_healthy_workspace(populated) -> None:
    root, *_ = populated
    assert one_json_object(run(["fsck", "-w", "ws", "--json"], root))["ok"] is True
    report = one_json_object(run(["audit", "verify", "-w", "ws", "--json"], root))
    assert report["ok"] is True
    assert report["checked"] >= 2  # at least the two ingests


# --- user mistakes ----------------------------------------------------------------------------


def test_missing_file_is_one_line(populated) -> None:
    root, *_ = populated
    assert_user_error(run(["ingest", "people", "nope.csv", "-w", "ws"], root), "nope.csv")


@pytest.mark.parametrize(
    "text",
    [
        "columns:\n  id: {type: money}\n",
        "columns:\n  id: {type: int\n",  # YAML syntax error
        "- not a mapping\n",
    ],
    ids=["bad-type", "yaml-syntax", "not-a-mapping"],
)
def test_bad_contract_is_one_line(populated, tmp_path: Path, text: str) -> None:
    root, *_ = populated
    contract = tmp_path / "bad.yaml"
    contract.write_text(text)
    proc = run(["ingest", "people", "people.csv", "-c", str(contract), "-w", "ws"], root)
    assert_user_error(proc, "bad.yaml")


def test_missing_contract_is_one_line(populated) -> None:
    root, *_ = populated
    assert_user_error(
        run(["ingest", "people", "people.csv", "-c", "nope.yaml", "-w", "ws"], root), "nope.yaml"
    )


def test_unknown_dataset_is_one_line(populated) -> None:
    root, *_ = populated
    assert_user_error(run(["data", "show", "nothing", "-w", "ws"], root), "nothing")


def test_bad_pii_policy_is_one_line(populated) -> None:
    root, *_ = populated
    assert_user_error(
        run(["ingest", "people", "people.csv", "--pii", "email=bogus", "-w", "ws"], root), "bogus"
    )


def test_malformed_ref_is_one_line(populated) -> None:
    root, *_ = populated
    assert_user_error(run(["data", "show", "people@", "-w", "ws"], root))


# --- startup cost ----------------------------------------------------------------------------


def imported_modules(code: str, cwd: Path) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    assert "loopml" in names
    return names


def heavy_in(names: set[str]) -> set[str]:
    return {name for name in names if name.split(".")[0] in HEAVY}


def test_import_loopml_is_light(tmp_path: Path) -> None:
    assert heavy_in(imported_modules("import loopml", tmp_path)) == set()


def test_cli_help_is_light(tmp_path: Path) -> None:
    code = (
        "import sys; sys.argv = ['loopml', '--help']\n"
        "from loopml.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None)\n"
    )
    names = imported_modules(code, tmp_path)
    assert "loopml.cli" in names
    assert heavy_in(names) == set()


def test_help_lists_the_commands(tmp_path: Path) -> None:
    proc = run(["--help"], tmp_path)
    assert proc.returncode == 0
    for command in ("init", "ingest", "data", "fsck", "audit"):
        assert command in proc.stdout
