"""Run tracking: loopml's runs against MLflow's fluent API on a SQLite backend.

Two workloads, each contender in the same invocation, interleaved round by round, each
round in a fresh process and a fresh store (a new workspace, a new SQLite file):

- ``metrics``: one run logs ``--metrics`` values of one key, then ends. Timed apart:
  starting the run, the logging calls, and ending it (loopml's final flush, MLflow's
  ``end_run``), so the per-call figure is given with and without the end.
- ``runs``: ``--runs`` runs, each started with 5 params, given 5 metrics and ended.

Imports, opening the workspace and creating MLflow's tables and experiment happen
before the clock. After it stops, each child reads back what it logged to prove the
values were stored. Prints one JSON line per workload and contender, then a summary
with the ratios (MLflow's time / loopml's) next to the target::

    .venv-bench/bin/python bench/tracking.py --metrics 10000 --runs 200 --rounds 3

MLflow is not a loopml dependency: ``make bench`` installs it in ``.venv-bench`` from
``bench/requirements.txt``. ``--mlflow-python`` runs MLflow's half with another
interpreter, for an MLflow kept in a virtual environment of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _spawn import spawn  # bench/ is the script folder, on sys.path

DATA_ROOT = Path(__file__).resolve().parent / ".data"
CONTENDERS = ["loopml", "mlflow"]
WORKLOADS = ["metrics", "runs"]
EXPERIMENT = "bench"
PARAMS = {"alpha": 0.1, "depth": 6, "optimizer": "adam", "batch": 256, "dropout": 0.2}
RUN_METRICS = ["loss", "accuracy", "auc", "precision", "recall"]
TARGET_METRIC_RATIO = 50.0


def values(count: int) -> list[float]:
    """The logged values: a decreasing loss curve, the same for every contender."""
    return [1.0 / (i + 1) for i in range(count)]


# ---------------------------------------------------------------------- children


def loopml_metrics(folder: Path, count: int) -> dict:
    import loopml

    points = values(count)
    ws = loopml.open(folder / "ws")
    _ = ws.runs  # Load the tracking modules before the clock, as MLflow's are imported.
    start = time.perf_counter()
    run = ws.runs.start(EXPERIMENT)
    started = time.perf_counter()
    for value in points:
        run.log_metric("loss", value)
    logged = time.perf_counter()
    run.end()
    ended = time.perf_counter()
    stored = len(ws.runs.metrics(run.id, "loss"))
    ws.close()
    return timings(start, started, logged, ended) | {"stored": stored}


def mlflow_metrics(folder: Path, count: int) -> dict:
    import mlflow

    points = values(count)
    mlflow_setup(folder)
    start = time.perf_counter()
    active = mlflow.start_run()
    started = time.perf_counter()
    for step, value in enumerate(points):
        mlflow.log_metric("loss", value, step=step)
    logged = time.perf_counter()
    mlflow.end_run()
    ended = time.perf_counter()
    stored = len(mlflow.MlflowClient().get_metric_history(active.info.run_id, "loss"))
    return timings(start, started, logged, ended) | {"stored": stored}


def loopml_runs(folder: Path, count: int) -> dict:
    import loopml

    ws = loopml.open(folder / "ws")
    _ = ws.runs
    start = time.perf_counter()
    for _run in range(count):
        run = ws.runs.start(EXPERIMENT, params=PARAMS)
        for number, key in enumerate(RUN_METRICS):
            run.log_metric(key, 0.5 + number / 10)
        run.end()
    seconds = time.perf_counter() - start
    found = ws.runs.ls(EXPERIMENT, limit=count + 1)
    stored = sum(len(r.params) == len(PARAMS) and len(r.metrics) == 5 for r in found)
    ws.close()
    return {"seconds": seconds, "stored": stored}


def mlflow_runs(folder: Path, count: int) -> dict:
    import mlflow

    experiment_id = mlflow_setup(folder)
    start = time.perf_counter()
    for _run in range(count):
        mlflow.start_run()
        mlflow.log_params(PARAMS)
        for number, key in enumerate(RUN_METRICS):
            mlflow.log_metric(key, 0.5 + number / 10)
        mlflow.end_run()
    seconds = time.perf_counter() - start
    found = mlflow.MlflowClient().search_runs([experiment_id], max_results=count + 1)
    stored = sum(len(r.data.params) == len(PARAMS) and len(r.data.metrics) == 5 for r in found)
    return {"seconds": seconds, "stored": stored}


def mlflow_setup(folder: Path) -> str:
    """Points MLflow at a new SQLite file and creates its tables and the experiment."""
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # table creation logs at INFO
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    # Artifacts would go to ./mlruns by default; nothing here logs one, but keep it local.
    experiment_id = mlflow.create_experiment(
        EXPERIMENT, artifact_location=(folder / "artifacts").as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def timings(start: float, started: float, logged: float, ended: float) -> dict:
    return {
        "start_seconds": started - start,
        "log_seconds": logged - started,
        "end_seconds": ended - logged,
        "seconds": ended - started,  # the calls and the end: what the per-call figures use
    }


CHILDREN = {
    ("loopml", "metrics"): loopml_metrics,
    ("mlflow", "metrics"): mlflow_metrics,
    ("loopml", "runs"): loopml_runs,
    ("mlflow", "runs"): mlflow_runs,
}


# ---------------------------------------------------------------------- parent


def measure(name: str, workload: str, count: int, folder: Path, python: str) -> dict:
    """One round of one contender on one workload, in a fresh process and folder."""
    workdir = Path(tempfile.mkdtemp(dir=folder, prefix=f"{name}-{workload}-"))
    argv = [python, __file__, "--child", name, workload, str(count), str(workdir)]
    try:
        return spawn(argv, timeout=1800)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def summarize(name: str, workload: str, count: int, rounds: list[dict]) -> dict:
    """Folds the rounds of one contender on one workload into its JSON line."""
    line: dict = {"name": f"{name}_{workload}", "workload": workload, "count": count}
    failed = [r["error"] for r in rounds if "error" in r]
    if failed or not rounds:
        return line | {"error": failed[0] if failed else "not run"}
    seconds = statistics.median(r["seconds"] for r in rounds)
    line["median_seconds"] = round(seconds, 4)
    if workload == "metrics":
        log = statistics.median(r["log_seconds"] for r in rounds)
        line["us_per_call"] = round(log / count * 1e6, 2)
        line["us_per_call_with_end"] = round(seconds / count * 1e6, 2)
        line["calls_per_s"] = round(count / log)
        line["calls_per_s_with_end"] = round(count / seconds)
        line["median_start_ms"] = round(
            statistics.median(r["start_seconds"] for r in rounds) * 1e3, 2
        )
        line["median_end_ms"] = round(statistics.median(r["end_seconds"] for r in rounds) * 1e3, 2)
    else:
        line["ms_per_run"] = round(seconds / count * 1e3, 3)
        line["runs_per_s"] = round(count / seconds, 1)
    line["runs_seconds"] = [round(r["seconds"], 4) for r in rounds]
    line["stored"] = rounds[-1]["stored"]
    line["all_stored"] = all(r["stored"] == count for r in rounds)
    return line


def summary(lines: dict[tuple[str, str], dict], args: argparse.Namespace) -> dict:
    """MLflow's time over loopml's for each figure, next to the target."""

    def ratio(workload: str, key: str) -> float | None:
        mine, theirs = lines[("loopml", workload)], lines[("mlflow", workload)]
        if "error" in mine or "error" in theirs or not mine[key]:
            return None
        return round(theirs[key] / mine[key], 1)

    # The headline counts the end: loopml's calls only append to a buffer until it flushes.
    per_call = ratio("metrics", "us_per_call_with_end")
    return {
        "name": "summary",
        "metrics": args.metrics,
        "runs": args.runs,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work skews the timings
        "mlflow_version": mlflow_version(args.mlflow_python),
        "ratio_log_metric_with_end": per_call,
        "ratio_log_metric_calls_only": ratio("metrics", "us_per_call"),
        "ratio_runs": ratio("runs", "ms_per_run"),
        "target_ratio_log_metric_with_end": TARGET_METRIC_RATIO,
        "meets_target": None if per_call is None else per_call >= TARGET_METRIC_RATIO,
    }


def mlflow_version(python: str) -> str | None:
    argv = [python, "-c", "from importlib.metadata import version; print(version('mlflow'))"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=2000, help="values one run logs")
    parser.add_argument("--runs", type=int, default=50, help="runs of 5 params, 5 metrics")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--mlflow-python", default=sys.executable, help="the interpreter that runs MLflow"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, workload, count, folder = args.child
        print(json.dumps(CHILDREN[(name, workload)](Path(folder), int(count))))
        return

    counts = {"metrics": args.metrics, "runs": args.runs}
    pythons = {"loopml": sys.executable, "mlflow": args.mlflow_python}
    DATA_ROOT.mkdir(exist_ok=True)
    rounds: dict[tuple[str, str], list[dict]] = {
        (name, workload): [] for workload in WORKLOADS for name in CONTENDERS
    }
    with tempfile.TemporaryDirectory(dir=DATA_ROOT, prefix="tracking-") as tmp:
        for _ in range(args.rounds):
            for key, done in rounds.items():
                if done and "error" in done[-1]:
                    continue  # A contender that failed once is reported, not retried.
                name, workload = key
                done.append(measure(name, workload, counts[workload], Path(tmp), pythons[name]))
    lines = {key: summarize(*key, counts[key[1]], done) for key, done in rounds.items()}
    for line in lines.values():
        print(json.dumps(line), flush=True)
    print(json.dumps(summary(lines, args)), flush=True)


if __name__ == "__main__":
    main()
