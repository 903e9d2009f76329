"""Rolling-window features: loopml against hand-written DuckDB SQL and pandas.

Generates deterministic transactions (customer_id over ~50k customers, ts over 60 days,
amount) as Parquet under ``bench/.data/``, ingests them once, then times interleaved
rounds of each contender computing per-customer count, sum and mean of amount over
the previous 1h, 24h and 7d (strictly before each transaction), each in a fresh
process so that its peak RSS is its own. Every contender writes its result as
Parquet. The first round also checks that all three agree on a sample of rows.
Prints one JSON line per contender and a summary line::

    .venv/bin/python bench/features.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _spawn import spawn_measured as spawn  # bench/ is the script folder, on sys.path

DATA_ROOT = Path(__file__).resolve().parent / ".data"
CUSTOMERS = 50_000
DAYS = 60
WINDOWS = {"1h": "1 hour", "24h": "24 hours", "7d": "7 days"}
AGGS = ["count", "sum", "mean"]
SAMPLE_ROWS = 2_000
TARGET_RATIO_VS_DUCKDB = 1.5
CONTENDERS = ["loopml", "duckdb", "pandas"]


def feature_names() -> list[str]:
    return [f"amount_{agg}_{window}" for window in WINDOWS for agg in AGGS]


def generate(rows: int, folder: Path) -> dict:
    """Writes ``tx.parquet`` (deterministic) into ``folder``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(20240601)
    seconds = rng.integers(0, DAYS * 86_400, rows)
    start = np.datetime64("2024-01-01T00:00:00", "s")
    table = pa.table(
        {
            "tx_id": pa.array(np.arange(1, rows + 1)),
            "customer_id": pa.array(rng.integers(1, CUSTOMERS + 1, rows)),
            "ts": pa.array(start + seconds).cast(pa.timestamp("us")),
            "amount": pa.array(np.round(rng.lognormal(3.5, 1.2, rows), 2)),
        }
    )
    pq.write_table(table, folder / "tx.parquet")
    return {}


def ingest(folder: Path, workspace: Path) -> dict:
    """Ingests ``tx.parquet`` once; returns the version's Parquet files."""
    import loopml

    with loopml.open(workspace) as ws:
        ws.ingest("tx", str(folder / "tx.parquet"))
        return {"files": ws.data.files("tx"), "rows": ws.data.get("tx").row_count}


def sample_ids(rows: int) -> list[int]:
    import numpy as np

    rng = np.random.default_rng(7)
    return sorted(int(i) for i in rng.choice(np.arange(1, rows + 1), SAMPLE_ROWS, replace=False))


def write_sample(paths: list[str], out: Path, rows: int) -> None:
    """Keeps the sampled rows of a result, sorted by tx_id, for the parent to compare."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    table = ds.dataset(paths, format="parquet").to_table(columns=["tx_id", *feature_names()])
    keep = pc.is_in(table["tx_id"], value_set=pa.array(sample_ids(rows)))
    pq.write_table(table.filter(keep).sort_by("tx_id"), out)


def run_loopml(workspace: Path, out: Path) -> dict:
    import loopml

    with loopml.open(workspace) as ws:
        start = time.perf_counter()  # Like the baselines, time the work, not the setup.
        version = ws.features.rolling(
            "tx_history",
            "tx",
            entity="customer_id",
            time="ts",
            value="amount",
            windows=list(WINDOWS),
            aggs=AGGS,
            time_since_previous=False,
        )
        seconds = time.perf_counter() - start
        if (out / "sample").exists():
            write_sample(ws.data.files(version), out / "sample.parquet", version.row_count)
    return {"seconds": seconds, "rows": version.row_count, "version_id": version.id}


def duckdb_sql(files: list[str], out: Path) -> str:
    """What one writes by hand: RANGE frames over the time, written to Parquet."""
    columns = []
    for window, interval in WINDOWS.items():
        frame = (
            f"OVER (PARTITION BY customer_id ORDER BY ts RANGE BETWEEN INTERVAL '{interval}' "
            "PRECEDING AND INTERVAL '1 microsecond' PRECEDING)"
        )
        columns += [
            f"count(*) {frame} AS amount_count_{window}",
            f"sum(amount) {frame} AS amount_sum_{window}",
            f"avg(amount) {frame} AS amount_mean_{window}",
        ]
    listed = ", ".join(f"'{f}'" for f in files)
    return (
        f"COPY (SELECT *, {', '.join(columns)} FROM read_parquet([{listed}])) "
        f"TO '{out / 'result.parquet'}' (FORMAT parquet)"
    )


def run_duckdb(files: list[str], out: Path) -> dict:
    import duckdb

    start = time.perf_counter()
    con = duckdb.connect()
    con.execute(duckdb_sql(files, out))
    rows = con.execute(f"SELECT count(*) FROM '{out / 'result.parquet'}'").fetchone()[0]
    seconds = time.perf_counter() - start
    con.close()
    if (out / "sample").exists():
        write_sample([str(out / "result.parquet")], out / "sample.parquet", rows)
    return {"seconds": seconds, "rows": rows}


def run_pandas(files: list[str], out: Path) -> dict:
    import numpy as np
    import pandas as pd

    start = time.perf_counter()
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    ordered = frame.sort_values(["customer_id", "ts"], kind="stable")
    positions = ordered.index.to_numpy()
    grouped = ordered.set_index("ts").groupby("customer_id", sort=False)["amount"]
    for window in WINDOWS:
        # closed="left": the window is [t - w, t). The result comes grouped by customer,
        # in the sorted order, so it is scattered back to the input's positions.
        rolling = grouped.rolling(window, closed="left")
        for agg, values in [
            ("count", rolling.count().fillna(0).astype("int64")),
            ("sum", rolling.sum()),
            ("mean", rolling.mean()),
        ]:
            column = np.empty(len(frame), dtype=values.dtype)
            column[positions] = values.to_numpy()
            frame[f"amount_{agg}_{window}"] = column
    frame.to_parquet(out / "result.parquet", index=False)
    seconds = time.perf_counter() - start
    if (out / "sample").exists():
        write_sample([str(out / "result.parquet")], out / "sample.parquet", len(frame))
    return {"seconds": seconds, "rows": len(frame)}


def child(mode: str, folder: Path, workspace: Path, out: Path, rows: int) -> dict:
    """Runs one step in this fresh process and returns what it measured."""
    if mode == "generate":
        return generate(rows, folder)
    if mode == "ingest":
        return ingest(folder, workspace)
    files = json.loads((folder / "files.json").read_text())
    if mode == "loopml":
        return run_loopml(workspace, out)
    if mode == "duckdb":
        return run_duckdb(files, out)
    if mode == "pandas":
        return run_pandas(files, out)
    raise SystemExit(f"unknown child mode {mode!r}")


def run_child(mode: str, folder: Path, workspace: Path, out: Path, rows: int) -> dict:
    argv = [sys.executable, __file__, "--rows", str(rows), "--child", mode]
    result = spawn([*argv, str(folder), str(workspace), str(out)], timeout=3600)
    if "error" in result:
        return result
    return result["reported"] | {"rss_mib": result["rss_mib"], "wall": result["wall"]}


def summarize(name: str, rounds: list[dict]) -> dict:
    """Folds the rounds of one contender into its JSON line."""
    failed = [r["error"] for r in rounds if "error" in r]
    if failed or not rounds:
        return {"name": name, "error": failed[0] if failed else "not run"}
    seconds = statistics.median(r["seconds"] for r in rounds)
    line = {"name": name, "rows": rounds[0]["rows"], "median_seconds": round(seconds, 3)}
    line["rows_per_s"] = round(rounds[0]["rows"] / seconds)
    line["peak_rss_mib"] = round(max(r["rss_mib"] for r in rounds), 1)
    line["runs_seconds"] = [round(r["seconds"], 3) for r in rounds]
    if "version_id" in rounds[0]:
        line["same_version_id_every_round"] = len({r["version_id"] for r in rounds}) == 1
    return line


def compare(samples: dict[str, Path]) -> dict:
    """How many sampled values of each contender differ from loopml's.

    A missing value (NULL or NaN) matches a missing value, and a count of 0.
    """
    import pyarrow.parquet as pq

    def missing(value: object) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    def same(a: object, b: object) -> bool:
        if missing(a) or missing(b):
            return (missing(a) or a == 0) and (missing(b) or b == 0)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)  # type: ignore[arg-type]

    tables = {name: pq.read_table(path).to_pylist() for name, path in samples.items()}
    reference = tables["loopml"]
    mismatches = {}
    for name, rows in tables.items():
        bad = abs(len(rows) - len(reference))
        for mine, theirs in zip(reference, rows, strict=False):
            bad += sum(not same(value, theirs[key]) for key, value in mine.items())
        mismatches[name] = bad
    return {
        "sample_rows": len(reference),
        "mismatched_values": mismatches,
        "agree": not any(mismatches.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="transactions")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, *paths = args.child
        print(json.dumps(child(mode, *map(Path, paths), rows=args.rows)))
        return

    DATA_ROOT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DATA_ROOT, prefix="features-") as tmp:
        folder = Path(tmp)
        workspace = folder / "workspace"
        start = time.perf_counter()
        steps = {}
        for step in ["generate", "ingest"]:
            steps[step] = run_child(step, folder, workspace, folder, args.rows)
            if "error" in steps[step]:
                print(json.dumps({"name": step, "error": steps[step]["error"]}))
                return
        (folder / "files.json").write_text(json.dumps(steps["ingest"]["files"]))
        dataset = {
            "rows": steps["ingest"]["rows"],
            "customers": CUSTOMERS,
            "days": DAYS,
            "parquet_mib": round((folder / "tx.parquet").stat().st_size / 2**20, 1),
            "setup_seconds": round(time.perf_counter() - start, 2),
        }
        rounds: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
        samples: dict[str, Path] = {}
        for round_number in range(args.repeat):
            for name in CONTENDERS:
                if rounds[name] and "error" in rounds[name][-1]:
                    continue  # A contender that failed once is reported, not retried.
                out = Path(tempfile.mkdtemp(dir=folder, prefix=f"{name}-"))
                if round_number == 0:
                    (out / "sample").touch()  # Sampling happens after the clock stops.
                rounds[name].append(run_child(name, folder, workspace, out, args.rows))
                if round_number == 0 and (out / "sample.parquet").exists():
                    samples[name] = out / "sample.parquet"
                (out / "result.parquet").unlink(missing_ok=True)
        lines = {name: summarize(name, rounds[name]) for name in CONTENDERS}
        for line in lines.values():
            print(json.dumps(line), flush=True)
        print(
            json.dumps(
                {
                    "name": "pipeline_overhead",
                    "see": "bench/pipeline.py (20-step no-op DAG, executed and cached)",
                }
            ),
            flush=True,
        )
        agreement = (
            compare(samples)
            if set(samples) == set(CONTENDERS)
            else {"agree": None, "note": f"samples from {sorted(samples)} only"}
        )
        print(json.dumps(summary(lines, dataset, agreement)), flush=True)


def summary(lines: dict[str, dict], dataset: dict, agreement: dict) -> dict:
    """Time ratios of loopml against the baselines, next to the target."""

    def ratio(baseline: dict) -> float | None:
        if "error" in lines["loopml"] or "error" in baseline:
            return None
        return round(lines["loopml"]["median_seconds"] / baseline["median_seconds"], 3)

    return {
        "name": "summary",
        **dataset,
        "windows": list(WINDOWS),
        "aggs": AGGS,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work skews the timings
        "ratio_vs_duckdb": ratio(lines["duckdb"]),
        "ratio_vs_pandas": ratio(lines["pandas"]),
        "target_ratio_vs_duckdb": TARGET_RATIO_VS_DUCKDB,
        **agreement,
    }


if __name__ == "__main__":
    main()
