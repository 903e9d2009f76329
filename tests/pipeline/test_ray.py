"""The ray executor against a real local Ray cluster: the same pipeline makes the same
dataset versions as the local executor, cache hits work the same, and a step that fails
on a Ray worker reports its error in the step record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import loopml
from loopml.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

Write = Callable[[str, str], Path]
RowsCsv = Callable[[Path, Sequence[Mapping[str, Any]]], Path]
LOOPML_BIN = str(Path(sys.executable).with_name("loopml"))

PIPELINE = """\
name: ray-parity
sources:
  tx:
    path: data/tx.csv
features:
  positive:
    sql: SELECT * FROM tx WHERE amount > 0
    inputs: [tx]
  history:
    rolling: {input: positive, entity: customer_id, time: ts, value: amount,
              windows: [1h, 1d], aggs: [count, sum, mean]}
split: {input: history, by: random, test: 0.25, seed: 3}
"""
STEPS = ["tx", "positive", "history", "history_split"]

FAILING = """\
name: ray-failure
sources:
  tx:
    path: data/tx.csv
features:
  exploding:
    python: {module}:explode
    inputs: [tx]
  after:
    sql: SELECT * FROM exploding
    inputs: [exploding]
"""
EXPLODING_MODULE = """\
def explode(table):
    raise KeyError("customer 7 has no segment")
"""


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A real local Ray cluster with 2 cpus, for the whole module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def transactions() -> list[dict[str, Any]]:
    """48 transactions of 4 customers over two days, a few with a negative amount."""
    start = datetime(2024, 3, 1)
    return [
        {
            "tx_id": i,
            "customer_id": i % 4 + 1,
            "ts": (start + timedelta(minutes=47 * i)).isoformat(),
            "amount": -5.0 if i % 11 == 0 else round(3.5 + (i * 7) % 13, 2),
        }
        for i in range(1, 49)
    ]


def run_in(folder: Path, spec: Path, executor: str) -> tuple[Any, dict[str, dict[str, Any]]]:
    with loopml.open(folder) as ws:
        result = ws.pipelines.run(spec, executor=executor)
        record = ws.pipelines.show(result.id)
    return result, {
        step["step"]: step | {"executor": record["executor"]} for step in record["steps"]
    }


def test_local_and_ray_make_the_same_versions(
    ray_cluster: Any, tmp_path: Path, project: Path, write: Write, rows_csv: RowsCsv
) -> None:
    rows = transactions()
    rows_csv(project / "data" / "tx.csv", rows)
    spec = write("loopml.yaml", PIPELINE)

    local, local_steps = run_in(tmp_path / "local_ws", spec, "local")
    remote, ray_steps = run_in(tmp_path / "ray_ws", spec, "ray")

    assert (local.status, remote.status) == ("succeeded", "succeeded")
    assert (local.executor, remote.executor) == ("local", "ray")
    assert sorted(local_steps) == sorted(ray_steps) == sorted(STEPS)
    for name in STEPS:
        assert local_steps[name]["status"] == ray_steps[name]["status"] == "succeeded"
        assert ray_steps[name]["executor"] == "ray"
        assert ray_steps[name]["id"] == local_steps[name]["id"], name
    with loopml.open(tmp_path / "ray_ws") as ws:
        assert ws.data.get("positive").row_count == sum(r["amount"] > 0 for r in rows)
        split = ws.data.read("history_split")
        assert split.num_rows == ws.data.get("positive").row_count
        assert set(split.column("split").to_pylist()) <= {"train", "valid", "test"}

    # The cache is the runner's, whichever executor ran the steps.
    again, again_steps = run_in(tmp_path / "ray_ws", spec, "ray")
    assert again.status == "succeeded"
    for name in STEPS:
        assert again_steps[name]["cache_hit"] is True
        assert again_steps[name]["id"] == ray_steps[name]["id"]


def test_a_step_failing_on_ray_reports_its_error(
    ray_cluster: Any,
    ws: Workspace,
    project: Path,
    write: Write,
    rows_csv: RowsCsv,
    module_name: str,
) -> None:
    rows_csv(project / "data" / "tx.csv", transactions())
    write(f"{module_name}.py", EXPLODING_MODULE)
    spec = write("loopml.yaml", FAILING.format(module=module_name))

    result = ws.pipelines.run(spec, executor="ray")

    assert result.status == "failed"
    steps = {step["step"]: step for step in ws.pipelines.show(result.id)["steps"]}
    assert steps["tx"]["status"] == "succeeded"
    failed = steps["exploding"]
    assert failed["status"] == "failed"
    assert "exploding" in failed["error"]
    assert "KeyError" in failed["error"]
    assert "customer 7 has no segment" in failed["error"]
    assert steps["after"]["status"] == "skipped"
    with pytest.raises(loopml.NotFound):
        ws.data.versions("exploding")
    assert ws.fsck().ok
    # The cluster is the test's: the executor did not shut it down.
    assert ray_cluster.is_initialized()


def test_the_cli_runs_on_a_cluster_given_by_address(
    ray_cluster: Any, tmp_path: Path, project: Path, write: Write, rows_csv: RowsCsv
) -> None:
    rows_csv(project / "data" / "tx.csv", transactions())
    spec = write("loopml.yaml", PIPELINE)
    address = ray_cluster.get_runtime_context().gcs_address
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "RAY_ADDRESS"))}
    flags = ["--executor", "ray", "--address", address]

    done = subprocess.run(
        [LOOPML_BIN, "run", str(spec), "-w", str(tmp_path / "cli_ws"), "--json", *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout)
    assert (printed["status"], printed["executor"]) == ("succeeded", "ray")
    assert [s["step"] for s in printed["steps"]] == STEPS
    _, local_steps = run_in(tmp_path / "local_ws", spec, "local")
    assert {s["step"]: s["id"] for s in printed["steps"]} == {
        name: local_steps[name]["id"] for name in STEPS
    }
    # The CLI connected to the cluster and left it running.
    assert ray_cluster.is_initialized()
    assert ray_cluster.cluster_resources().get("CPU") == 2
