"""Pipeline overhead: what the runner costs per step when the steps do nearly nothing.

Builds a DAG of a tiny source (a 3-row CSV) and ``--steps`` trivial SQL steps, either a
chain (``SELECT * FROM`` the previous step) or a fan (each step reads the source), then
in a fresh process per round: runs a one-step warm-up pipeline in a scratch workspace
(so imports are not counted), runs the DAG once in a new workspace (every step
executes) and once more (every step is a cache hit). Per-step overhead is a run's wall
time divided by the DAG's steps, the source included. Prints one JSON line per measure
and a summary line::

    .venv/bin/python bench/pipeline.py --steps 20 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_EXECUTED_SECONDS_PER_STEP = 0.2
TARGET_CACHED_SECONDS_PER_STEP = 0.05


def spec_text(steps: int, shape: str) -> str:
    """A spec with a tiny source and ``steps`` no-op SQL steps in a chain or a fan.

    Fan steps each add a constant column, so that no two steps share a definition
    (identical steps would share one cache entry).
    """
    lines = ["name: overhead", "sources:", "  s0:", "    path: tiny.csv", "features:"]
    for number in range(1, steps + 1):
        if shape == "chain":
            previous, sql = f"s{number - 1}", f"SELECT * FROM s{number - 1}"
        else:
            previous, sql = "s0", f"SELECT *, {number} AS step FROM s0"
        lines += [f"  s{number}:", f"    sql: {sql}", f"    inputs: [{previous}]"]
    return "\n".join(lines) + "\n"


def write_project(folder: Path, steps: int, shape: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.csv").write_text("id,amount\n1,1.5\n2,2.5\n3,3.5\n")
    spec = folder / "loopml.yaml"
    spec.write_text(spec_text(steps, shape))
    return spec


def child(folder: Path, steps: int, shape: str, executor: str) -> dict:
    """One round in this fresh process: warm up, then time a cold run and a cached run."""
    import loopml

    cluster = None
    if executor == "ray":
        import ray

        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        cluster = ray
    try:
        warm_spec = write_project(folder / "warm", 1, shape)
        with loopml.open(folder / "warm" / "ws") as ws:
            ws.pipelines.run(warm_spec, executor=executor)
        spec = write_project(folder / "project", steps, shape)
        with loopml.open(folder / "ws") as ws:
            start = time.perf_counter()
            first = ws.pipelines.run(spec, executor=executor)
            executed = time.perf_counter() - start
            start = time.perf_counter()
            second = ws.pipelines.run(spec, executor=executor)
            cached = time.perf_counter() - start
    finally:
        if cluster is not None:
            cluster.shutdown()
    first_states = [s.status for s in first.steps]
    second_states = [s.status for s in second.steps]
    return {
        "steps": len(first.steps),
        "executed_seconds": executed,
        "cached_seconds": cached,
        "all_executed": first.status == "succeeded" and set(first_states) == {"succeeded"},
        "all_cached": second.status == "succeeded" and set(second_states) == {"cached"},
    }


def run_child(folder: Path, args: argparse.Namespace) -> dict:
    argv = [sys.executable, __file__, "--steps", str(args.steps), "--shape", args.shape]
    argv += ["--executor", args.executor, "--child", str(folder)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["(no stderr)"]
        return {"error": f"exit {done.returncode}: {lines[-1]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(name: str, rounds: list[dict], key: str, flag: str, target: float) -> dict:
    per_step = [r[key] / r["steps"] for r in rounds]
    median = statistics.median(per_step)
    return {
        "name": name,
        "steps": rounds[0]["steps"],
        "median_seconds_per_step": round(median, 4),
        "median_run_seconds": round(statistics.median(r[key] for r in rounds), 3),
        "rounds_seconds_per_step": [round(value, 4) for value in per_step],
        "every_step_" + flag.removeprefix("all_"): all(r[flag] for r in rounds),
        "target_seconds_per_step": target,
        "meets_target": median < target,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="no-op SQL steps after the source")
    parser.add_argument("--repeat", type=int, default=3, help="rounds, each in a fresh process")
    parser.add_argument("--shape", choices=["chain", "fan"], default="chain")
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child), args.steps, args.shape, args.executor)))
        return

    rounds = []
    with tempfile.TemporaryDirectory(prefix="loopml-bench-pipeline-") as tmp:
        for number in range(args.repeat):
            result = run_child(Path(tmp) / f"round-{number}", args)
            if "error" in result:
                print(json.dumps({"name": "round", "round": number, **result}), flush=True)
                return
            rounds.append(result)
    executed = measure(
        "executed_step",
        rounds,
        "executed_seconds",
        "all_executed",
        TARGET_EXECUTED_SECONDS_PER_STEP,
    )
    cached = measure(
        "cached_step", rounds, "cached_seconds", "all_cached", TARGET_CACHED_SECONDS_PER_STEP
    )
    for line in (executed, cached):
        print(json.dumps(line), flush=True)
    print(
        json.dumps(
            {
                "name": "summary",
                "shape": args.shape,
                "executor": args.executor,
                "dag_steps": rounds[0]["steps"],
                "repeat": args.repeat,
                "cpus": os.cpu_count(),
                "executed_seconds_per_step": executed["median_seconds_per_step"],
                "cached_seconds_per_step": cached["median_seconds_per_step"],
                "meets_targets": executed["meets_target"] and cached["meets_target"],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
