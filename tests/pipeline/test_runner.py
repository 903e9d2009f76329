"""Running a spec as a pipeline on the local executor: the step cache, parallel steps,
resources, retries, failures that commit nothing, resuming a killed run, and the CLI.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import loopml
from loopml.workspace import Workspace

Write = Callable[[str, str], Path]
RowsCsv = Callable[[Path, Sequence[Mapping[str, Any]]], Path]
LOOPML_BIN = str(Path(sys.executable).with_name("loopml"))

TX = [{"id": i, "amount": float(i)} for i in range(1, 7)]
RATES = [{"id": i, "rate": i / 10} for i in range(1, 7)]

DIAMOND = """\
name: diamond
sources:
  tx:
    path: data/tx.csv
  rates:
    path: data/rates.csv
features:
  scaled:
    sql: sql/scaled.sql
    inputs: [tx]
  flagged:
    sql: SELECT id, amount > 3 AS big FROM tx
    inputs: [tx]
  combined:
    sql: >-
      SELECT s.id, s.amount2, f.big, r.rate
      FROM scaled s JOIN flagged f USING (id) JOIN rates r USING (id) ORDER BY s.id
    inputs: [scaled, flagged, rates]
"""
SCALED_SQL = "SELECT id, amount * {factor} AS amount2 FROM tx\n"
DIAMOND_STEPS = {"tx", "rates", "scaled", "flagged", "combined"}


def steps_of(ws: Workspace, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's step records from ``ws.pipelines.show``, by step name."""
    return {step["step"]: step for step in ws.pipelines.show(run_id)["steps"]}


def version_counts(ws: Workspace, names: set[str]) -> dict[str, int]:
    return {name: len(ws.data.versions(name)) for name in names}


def assert_not_committed(ws: Workspace, name: str) -> None:
    with pytest.raises(loopml.NotFound):
        ws.data.versions(name)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment minus any workspace the caller's shell points at."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    return {**env, **extra}


@pytest.fixture
def diamond(project: Path, write: Write, rows_csv: RowsCsv) -> Path:
    rows_csv(project / "data" / "tx.csv", TX)
    rows_csv(project / "data" / "rates.csv", RATES)
    write("sql/scaled.sql", SCALED_SQL.format(factor=2))
    return write("loopml.yaml", DIAMOND)


# --------------------------------------------------------------------------- runs and the cache


def test_a_run_makes_every_step_and_records_it(ws: Workspace, diamond: Path) -> None:
    result = ws.pipelines.run(diamond)

    assert result.status == "succeeded"
    record = ws.pipelines.show(result.id)
    assert (record["status"], record["pipeline"], record["executor"]) == (
        "succeeded",
        "diamond",
        "local",
    )
    steps = steps_of(ws, result.id)
    assert set(steps) == DIAMOND_STEPS
    for name, step in steps.items():
        assert (step["status"], step["cache_hit"], step["attempts"]) == ("succeeded", False, 1)
        assert step["output"] == f"{name}@1"
        assert step["id"] == ws.data.get(step["output"]).id
        assert step["started_at"] <= step["ended_at"]
    # The joining step starts only after the steps it reads have ended.
    for upstream in ("scaled", "flagged", "rates"):
        assert steps[upstream]["ended_at"] <= steps["combined"]["started_at"]
    combined = ws.data.read("combined").to_pylist()
    assert combined == [
        {"id": t["id"], "amount2": t["amount"] * 2, "big": t["amount"] > 3, "rate": r["rate"]}
        for t, r in zip(TX, RATES, strict=True)
    ]


def test_running_again_is_all_cache_hits_with_the_same_outputs(
    ws: Workspace, diamond: Path
) -> None:
    first = ws.pipelines.run(diamond)
    before = version_counts(ws, DIAMOND_STEPS)

    second = ws.pipelines.run(diamond)

    assert second.status == "succeeded"
    assert second.id != first.id
    first_steps, second_steps = steps_of(ws, first.id), steps_of(ws, second.id)
    for name in DIAMOND_STEPS:
        assert second_steps[name]["status"] == "cached"
        assert second_steps[name]["cache_hit"] is True
        assert second_steps[name]["attempts"] == 0
        assert second_steps[name]["output"] == first_steps[name]["output"]
        assert second_steps[name]["id"] == first_steps[name]["id"]
    assert version_counts(ws, DIAMOND_STEPS) == before == dict.fromkeys(DIAMOND_STEPS, 1)
    assert [s["cache_hit"] for s in second.to_dict()["steps"]] == [True] * len(DIAMOND_STEPS)


def statuses(ws: Workspace, run_id: str) -> dict[str, str]:
    return {name: step["status"] for name, step in steps_of(ws, run_id).items()}


def test_a_changed_source_file_reruns_it_and_what_reads_it(
    ws: Workspace, diamond: Path, project: Path, rows_csv: RowsCsv
) -> None:
    first = ws.pipelines.run(diamond)
    new_rates = [{"id": r["id"], "rate": r["rate"] * 100} for r in RATES]
    rows_csv(project / "data" / "rates.csv", new_rates)

    second = ws.pipelines.run(diamond)

    assert statuses(ws, second.id) == {
        "tx": "cached",
        "scaled": "cached",
        "flagged": "cached",
        "rates": "succeeded",
        "combined": "succeeded",
    }
    steps = steps_of(ws, second.id)
    assert steps["rates"]["output"] == "rates@2"
    assert steps["combined"]["output"] == "combined@2"
    assert steps["tx"]["id"] == steps_of(ws, first.id)["tx"]["id"]
    assert ws.data.read("combined").column("rate").to_pylist() == [r["rate"] for r in new_rates]


def test_a_changed_sql_file_reruns_its_step_and_downstream(
    ws: Workspace, diamond: Path, write: Write
) -> None:
    ws.pipelines.run(diamond)
    write("sql/scaled.sql", SCALED_SQL.format(factor=10))

    second = ws.pipelines.run(diamond)

    assert statuses(ws, second.id) == {
        "tx": "cached",
        "rates": "cached",
        "flagged": "cached",
        "scaled": "succeeded",
        "combined": "succeeded",
    }
    assert ws.data.read("combined").column("amount2").to_pylist() == [t["amount"] * 10 for t in TX]
    # Back to the first SQL: its output is in the cache again, for every step.
    write("sql/scaled.sql", SCALED_SQL.format(factor=2))
    third = ws.pipelines.run(diamond)
    assert set(statuses(ws, third.id).values()) == {"cached"}
    assert ws.pipelines.show(third.id)["status"] == "succeeded"


PY_SPEC = """\
name: pyspec
sources:
  tx:
    path: data/tx.csv
features:
  py_step:
    python: {module}:scale
    inputs: [tx]
  after_py:
    sql: SELECT id, amount * 1 AS amount FROM py_step ORDER BY id
    inputs: [py_step]
"""
SCALE_MODULE = """\
import pyarrow.compute as pc


def scale(table):
    return table.set_column(1, "amount", pc.multiply(table["amount"], {factor}))
"""


def test_changed_python_code_reruns_its_step_with_the_new_code(
    ws: Workspace, project: Path, write: Write, rows_csv: RowsCsv, module_name: str
) -> None:
    rows_csv(project / "data" / "tx.csv", TX)
    write(f"{module_name}.py", SCALE_MODULE.format(factor=2.0))
    spec = write("loopml.yaml", PY_SPEC.format(module=module_name))
    ws.pipelines.run(spec)
    assert ws.data.read("after_py").column("amount").to_pylist() == [t["amount"] * 2 for t in TX]

    write(f"{module_name}.py", SCALE_MODULE.format(factor=3.0))
    second = ws.pipelines.run(spec)

    assert statuses(ws, second.id) == {
        "tx": "cached",
        "py_step": "succeeded",
        "after_py": "succeeded",
    }
    assert ws.data.read("py_step").column("amount").to_pylist() == [t["amount"] * 3 for t in TX]
    assert ws.data.read("after_py").column("amount").to_pylist() == [t["amount"] * 3 for t in TX]


TWINS = """\
name: twins
sources:
  tx:
    path: data/tx.csv
features:
  first_copy:
    sql: SELECT * FROM tx
    inputs: [tx]
    resources: {{cpus: {cpus}}}
  second_copy:
    sql: SELECT * FROM tx
    inputs: [tx]
    resources: {{cpus: {cpus}}}
  from_second:
    sql: SELECT count(*) AS n FROM second_copy
    inputs: [second_copy]
"""


def test_steps_with_the_same_definition_each_make_their_own_dataset(
    ws: Workspace, project: Path, write: Write, rows_csv: RowsCsv
) -> None:
    rows_csv(project / "data" / "tx.csv", TX)
    # Each step needs every cpu, so one runs (and fills the cache) before the other.
    spec = write("loopml.yaml", TWINS.format(cpus=os.cpu_count() or 1))

    result = ws.pipelines.run(spec)

    assert result.status == "succeeded"
    steps = steps_of(ws, result.id)
    for name in ("first_copy", "second_copy", "from_second"):
        assert steps[name]["output"] == f"{name}@1", steps[name]
        assert ws.data.get(name).row_count == (1 if name == "from_second" else len(TX))
    assert ws.data.read("second_copy").to_pylist() == ws.data.read("first_copy").to_pylist()


# --------------------------------------------------------------------------- parallelism


SLEEP_MODULE = """\
import time


def pause(table, seconds):
    time.sleep(seconds)
    return table
"""
SLEEPERS = """\
name: sleepers
sources:
  tx:
    path: data/tx.csv
features:
  sleeper_a:
    python: {module}:pause
    inputs: [tx]
    params: {{seconds: {seconds}}}
    resources: {{cpus: {cpus}}}
  sleeper_b:
    python: {module}:pause
    inputs: [tx]
    params: {{seconds: {seconds}}}
    resources: {{cpus: {cpus}}}
"""


def run_sleepers(
    ws: Workspace,
    project: Path,
    write: Write,
    rows_csv: RowsCsv,
    module: str,
    cpus: int,
    seconds: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    rows_csv(project / "data" / "tx.csv", TX)
    write(f"{module}.py", SLEEP_MODULE)
    spec = write("loopml.yaml", SLEEPERS.format(module=module, cpus=cpus, seconds=seconds))
    result = ws.pipelines.run(spec)
    assert result.status == "succeeded"
    steps = steps_of(ws, result.id)
    return steps["sleeper_a"], steps["sleeper_b"]


def test_independent_steps_run_at_the_same_time(
    ws: Workspace, project: Path, write: Write, rows_csv: RowsCsv, module_name: str
) -> None:
    assert (os.cpu_count() or 1) >= 2, "the local executor needs 2 cpus to overlap two steps"
    a, b = run_sleepers(ws, project, write, rows_csv, module_name, cpus=1, seconds=1.0)

    for step in (a, b):
        assert (step["ended_at"] - step["started_at"]).total_seconds() >= 1.0
    assert a["started_at"] < b["ended_at"] and b["started_at"] < a["ended_at"]


def test_steps_that_each_need_every_cpu_never_overlap(
    ws: Workspace, project: Path, write: Write, rows_csv: RowsCsv, module_name: str
) -> None:
    cpus = os.cpu_count() or 1
    a, b = run_sleepers(ws, project, write, rows_csv, module_name, cpus=cpus, seconds=0.5)

    first, second = sorted([a, b], key=lambda s: s["started_at"])
    assert first["ended_at"] <= second["started_at"]


# --------------------------------------------------------------------------- retries


FLAKY_MODULE = """\
import time
from pathlib import Path

CALLS = Path(__file__).with_name("calls.txt")


def flaky(table, failures):
    with CALLS.open("a") as handle:
        handle.write(f"{time.time()}\\n")
    calls = len(CALLS.read_text().splitlines())
    if calls <= failures:
        raise RuntimeError(f"flaky failure on call {calls}")
    return table
"""
FLAKY_SPEC = """\
name: flaky
sources:
  tx:
    path: data/tx.csv
features:
  flaky_step:
    python: {module}:flaky
    inputs: [tx]
    params: {{failures: 2}}
    retries: {retries}
    backoff: {backoff}
  after_flaky:
    sql: SELECT count(*) AS n FROM flaky_step
    inputs: [flaky_step]
  sibling:
    sql: SELECT id FROM tx
    inputs: [tx]
"""


@pytest.fixture
def flaky(
    project: Path, write: Write, rows_csv: RowsCsv, module_name: str
) -> Callable[[int, float], Path]:
    rows_csv(project / "data" / "tx.csv", TX)
    write(f"{module_name}.py", FLAKY_MODULE)

    def spec(retries: int, backoff: float) -> Path:
        text = FLAKY_SPEC.format(module=module_name, retries=retries, backoff=backoff)
        return write("loopml.yaml", text)

    return spec


def test_a_step_is_retried_after_its_backoff_until_it_succeeds(
    ws: Workspace, flaky: Callable[[int, float], Path], project: Path
) -> None:
    backoff = 0.2
    result = ws.pipelines.run(flaky(2, backoff))

    assert result.status == "succeeded"
    steps = steps_of(ws, result.id)
    assert (steps["flaky_step"]["status"], steps["flaky_step"]["attempts"]) == ("succeeded", 3)
    assert steps["flaky_step"]["error"] is None
    assert steps["after_flaky"]["status"] == "succeeded"
    assert ws.data.read("after_flaky").column("n").to_pylist() == [len(TX)]
    calls = [float(line) for line in (project / "calls.txt").read_text().split()]
    assert len(calls) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= backoff for gap in gaps), gaps


def test_a_step_out_of_retries_fails_and_skips_what_reads_it(
    ws: Workspace, flaky: Callable[[int, float], Path], project: Path
) -> None:
    result = ws.pipelines.run(flaky(1, 0.05))

    assert result.status == "failed"
    record = ws.pipelines.show(result.id)
    assert record["status"] == "failed"
    assert "flaky_step" in record["error"]
    steps = steps_of(ws, result.id)
    failed = steps["flaky_step"]
    assert (failed["status"], failed["attempts"]) == ("failed", 2)
    assert "flaky failure on call 2" in failed["error"]
    assert "flaky_step" in failed["error"]
    assert steps["after_flaky"]["status"] == "skipped"
    assert steps["after_flaky"]["attempts"] == 0
    # A step that does not read the failed one still runs.
    assert steps["sibling"]["status"] == "succeeded"
    assert len((project / "calls.txt").read_text().split()) == 2
    assert_not_committed(ws, "flaky_step")
    assert_not_committed(ws, "after_flaky")
    assert ws.fsck().ok


# --------------------------------------------------------------------------- failures


BROKEN = """\
name: broken
sources:
  tx:
    path: data/tx.csv
features:
  {name}:
    {body}
    inputs: [tx]
  downstream:
    sql: SELECT * FROM {name}
    inputs: [{name}]
"""
RAISING_MODULE = """\
def check(table):
    raise ValueError("amounts must be below 3, got 6")
"""


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("bad_sql", "sql: SELECT no_such_column FROM tx", ["bad_sql", "no_such_column"]),
        (
            "bad_python",
            "python: {module}:check",
            ["bad_python", "ValueError", "amounts must be below 3, got 6"],
        ),
    ],
)
def test_a_failing_step_names_itself_and_commits_nothing(
    ws: Workspace,
    project: Path,
    write: Write,
    rows_csv: RowsCsv,
    module_name: str,
    name: str,
    body: str,
    expected: list[str],
) -> None:
    rows_csv(project / "data" / "tx.csv", TX)
    write(f"{module_name}.py", RAISING_MODULE)
    spec = write("loopml.yaml", BROKEN.format(name=name, body=body.format(module=module_name)))

    result = ws.pipelines.run(spec)

    assert result.status == "failed"
    steps = steps_of(ws, result.id)
    assert steps["tx"]["status"] == "succeeded"
    assert steps[name]["status"] == "failed"
    for text in expected:
        assert text in steps[name]["error"]
    assert steps["downstream"]["status"] == "skipped"
    assert_not_committed(ws, name)
    assert_not_committed(ws, "downstream")
    assert [v.ref for v in ws.data.versions("tx")] == ["tx@1"]
    report = ws.fsck()
    assert report.ok, report.problems


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('raise ValueError("no config for region eu-9")\n', ["ValueError", "eu-9"]),
        ("def check(table) return table\n", ["SyntaxError"]),
    ],
    ids=["raises", "syntax-error"],
)
def test_a_python_module_that_fails_to_import_fails_its_step(
    ws: Workspace,
    project: Path,
    write: Write,
    rows_csv: RowsCsv,
    module_name: str,
    source: str,
    expected: list[str],
) -> None:
    rows_csv(project / "data" / "tx.csv", TX)
    write(f"{module_name}.py", source)
    body = f"python: {module_name}:check"
    spec = write("loopml.yaml", BROKEN.format(name="import_step", body=body))

    result = ws.pipelines.run(spec)

    assert result.status == "failed"
    steps = steps_of(ws, result.id)
    assert steps["import_step"]["status"] == "failed"
    for text in ["import_step", *expected]:
        assert text in steps["import_step"]["error"]
    assert steps["downstream"]["status"] == "skipped"
    assert_not_committed(ws, "import_step")
    assert ws.fsck().ok


# --------------------------------------------------------------------------- resume


SLOW_MODULE = """\
import time
from pathlib import Path


def slow(table):
    time.sleep(float(Path(__file__).with_name("sleep.txt").read_text()))
    return table
"""
SLOW_SPEC = """\
name: resumable
sources:
  tx:
    path: data/tx.csv
features:
  slow_step:
    python: {module}:slow
    inputs: [tx]
"""


def wait_for(
    ws: Workspace, process: subprocess.Popen[str], ready: Callable[[dict[str, Any]], bool]
) -> str:
    """Poll the workspace until the only run satisfies ``ready``; return its id."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"loopml run ended early: {process.communicate()}")
        runs = ws.pipelines.runs()
        if runs:
            record = ws.pipelines.show(runs[0]["run_id"])
            if ready(record):
                return str(record["run_id"])
        time.sleep(0.1)
    raise AssertionError("the run did not get there within 60 s")


@pytest.mark.slow
def test_a_killed_run_resumes_without_rerunning_finished_steps(
    ws: Workspace, project: Path, write: Write, rows_csv: RowsCsv, module_name: str, tmp_path: Path
) -> None:
    rows_csv(project / "data" / "tx.csv", TX)
    write(f"{module_name}.py", SLOW_MODULE)
    write("sleep.txt", "30")
    spec = write("loopml.yaml", SLOW_SPEC.format(module=module_name))
    workspace = str(tmp_path / "ws")
    process = subprocess.Popen(
        [LOOPML_BIN, "run", str(spec), "-w", workspace],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def second_step_running(record: dict[str, Any]) -> bool:
            steps = {s["step"]: s["status"] for s in record["steps"]}
            return steps == {"tx": "succeeded", "slow_step": "running"}

        run_id = wait_for(ws, process, second_step_running)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    crashed = ws.pipelines.show(run_id)
    assert crashed["status"] == "running"  # Nobody was left to record the end.
    before = steps_of(ws, run_id)["tx"]

    write("sleep.txt", "0")
    resumed = subprocess.run(
        [LOOPML_BIN, "run", "--resume", run_id, "-w", workspace, "--json"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert resumed.returncode == 0, resumed.stderr
    printed = json.loads(resumed.stdout)
    assert (printed["run_id"], printed["status"]) == (run_id, "succeeded")
    record = ws.pipelines.show(run_id)
    assert record["status"] == "succeeded"
    assert len(ws.pipelines.runs()) == 1
    steps = steps_of(ws, run_id)
    assert steps["tx"] == before
    assert (steps["tx"]["attempts"], steps["tx"]["output"]) == (1, "tx@1")
    assert steps["slow_step"]["status"] == "succeeded"
    assert steps["slow_step"]["output"] == "slow_step@1"
    assert [v.ref for v in ws.data.versions("tx")] == ["tx@1"]
    assert ws.data.read("slow_step").num_rows == len(TX)


def test_resuming_an_unknown_run_is_not_found(ws: Workspace) -> None:
    with pytest.raises(loopml.NotFound) as caught:
        ws.pipelines.resume("no-such-run")

    assert "no-such-run" in caught.value.message


def test_resuming_a_failed_run_reruns_only_what_did_not_succeed(
    ws: Workspace, flaky: Callable[[int, float], Path], project: Path
) -> None:
    failed = ws.pipelines.run(flaky(1, 0.0))  # Calls 1 and 2 fail; the third succeeds.
    assert failed.status == "failed"
    before = steps_of(ws, failed.id)

    resumed = ws.pipelines.resume(failed.id)

    assert resumed.id == failed.id
    assert resumed.status == "succeeded", resumed.to_dict()
    steps = steps_of(ws, failed.id)
    for name in ("tx", "sibling"):
        assert steps[name] == before[name]
    assert steps["flaky_step"]["status"] == "succeeded"
    assert steps["after_flaky"]["status"] == "succeeded"
    assert len((project / "calls.txt").read_text().split()) == 3


# --------------------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_the_fraud_example_runs_in_its_folder_and_then_is_all_cache_hits(tmp_path: Path) -> None:
    folder = tmp_path / "fraud"
    env = cli_env()

    def loopml_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LOOPML_BIN, *args],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    folder.mkdir()
    init = loopml_cli("init", "--example", "fraud", str(folder), "--rows", "5000")
    assert init.returncode == 0, init.stderr
    assert (folder / "loopml.yaml").exists()

    first = loopml_cli("run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "succeeded" in first.stdout
    second = loopml_cli("run", "--json")
    assert second.returncode == 0, second.stderr
    data = json.loads(second.stdout)

    assert data["status"] == "succeeded"
    assert [(s["step"], s["cache_hit"]) for s in data["steps"]] == [
        ("transactions", True),
        ("tx_history", True),
        ("training_set", True),
        ("training_set_split", True),
        ("train", True),
    ]
    with loopml.open(folder / "loopml-workspace") as ws:
        assert ws.data.get("transactions").rows_read == 5000
        split = ws.data.get("training_set_split")
        assert split.row_count == ws.data.get("training_set").row_count > 0
        assert {c.name for c in split.schema} >= {"split", "amount_vs_week", "is_fraud"}
        # One training, one model version: the second run reused it.
        (model,) = ws.models.versions("card-fraud")
        assert model.flavor == "lightgbm" and model.inputs[0]["dataset"] == split.ref
        assert data["steps"][-1]["output"] == model.ref
        trained = ws.runs.get(model.run_id)
        assert len(ws.runs.ls(parent_id=trained.id)) == 8

    listed = loopml_cli("pipeline", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)["runs"]
    assert [r["run_id"] for r in runs] == [data["run_id"], runs[1]["run_id"]]
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    shown = loopml_cli("pipeline", "show", data["run_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["run_id"] == data["run_id"]
    assert {s["step"]: s["cache_hit"] for s in record["steps"]} == {
        "transactions": True,
        "tx_history": True,
        "training_set": True,
        "training_set_split": True,
        "train": True,
    }


def test_the_cli_names_a_bad_field_and_its_line_and_exits_2(
    project: Path, write: Write, tmp_path: Path
) -> None:
    spec = write("loopml.yaml", "name: bad\nsources:\n  tx:\n    pth: tx.csv\n")

    done = subprocess.run(
        [LOOPML_BIN, "run", str(spec), "-w", str(tmp_path / "ws")],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert "loopml.yaml:4: sources.tx.pth" in done.stderr
    assert "Traceback" not in done.stderr
