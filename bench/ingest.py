"""Ingest throughput and memory: loopml against raw pyarrow and pandas.

Generates a deterministic mixed CSV and a data contract under ``bench/.data/``, then
times interleaved rounds of each contender, each in a fresh process so that its peak
RSS is its own. Prints one JSON line per contender and a summary line. The target is
checked on ``ratio_vs_pyarrow_paired``: in each round, pyarrow's time over loopml's
(``ws.ingest`` with its contract and profile; the work, timed inside each process after
its imports, as pyarrow is), and the median of those. ``ratio_cli_vs_pyarrow_process``
compares whole processes instead: the ``loopml ingest`` command against a script doing
pyarrow's read and write, interpreter start and imports included on both sides::

    .venv/bin/python bench/ingest.py --rows 1000000 --repeat 7 --big-gb 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _spawn import paired
from _spawn import spawn_measured as spawn  # bench/ is the script folder, on sys.path

DATA_ROOT = Path(__file__).resolve().parent / ".data"
LOOPML_CLI = Path(sys.executable).parent / "loopml"
CATEGORIES = ["grocery", "fuel", "travel", "dining", "retail", "health", "utilities", "online"]
COUNTRIES = ["US", "GB", "DE", "FR", "JP", "BR"]
CHANNELS = ["web", "app", "store", "phone", "partner", "marketplace", "kiosk"]
STATUSES = ["settled", "pending", "refunded", "disputed", "failed", "reversed"]
DOMAINS = ["example.com", "mail.test", "corp.example", "post.test"]
BAD_AMOUNT_EVERY = 1000  # One row in a thousand breaks `amount: min 0`, to exercise quarantine.
REPORT_KEYS = ["rows_accepted", "rows_quarantined", "quarantine_reasons", "pii_warnings", "seconds"]
TARGET_RATIO_VS_PYARROW = 0.7
TARGET_BIG_RSS_MIB = 1024


def contract_yaml(unique: bool) -> str:
    """The data contract for the generated CSV, as YAML text."""
    text = f"""columns:
  tx_id: {{type: int, nullable: false}}
  customer_id: {{type: int, nullable: false, min: 1, max: 200000}}
  quantity: {{type: int, nullable: false, min: 1, max: 100}}
  amount: {{type: float, nullable: false, min: 0, max: 1000000}}
  discount: {{type: float, nullable: true, min: 0, max: 0.5}}
  score: {{type: float, nullable: true, min: 0, max: 1}}
  age: {{type: int, nullable: true, min: 18, max: 99}}
  category: {{type: string, nullable: false, allowed: [{", ".join(CATEGORIES)}]}}
  country: {{type: string, nullable: false, allowed: [{", ".join(COUNTRIES)}]}}
  channel: {{type: string, allowed: [{", ".join(CHANNELS)}]}}
  status: {{type: string, nullable: true, allowed: [{", ".join(STATUSES)}]}}
  email: {{type: string, regex: '^[^@]+@[^@]+$'}}
  merchant: {{type: string}}
  ts: {{type: timestamp, nullable: false}}
  flag: {{type: bool}}
"""
    return text + ("unique: [tx_id]\n" if unique else "")


def generate(rows: int, folder: Path) -> None:
    """Writes ``data.csv`` (15 columns, deterministic) and the contracts into ``folder``."""
    # Heavy imports stay inside the child modes, so the parent process stays small and
    # the children it spawns do not inherit its RSS high-water mark.
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv

    rng = np.random.default_rng(20240601)

    def pick(values: list[str], null_fraction: float = 0.0) -> pa.Array:
        indices = pa.array(
            rng.integers(0, len(values), rows), mask=rng.random(rows) < null_fraction
        )
        return pc.take(pa.array(values), indices)

    customer = rng.integers(1, 200_001, rows)
    amount = np.round(np.minimum(rng.lognormal(4.0, 1.5, rows), 1_000_000.0), 2)
    amount[::BAD_AMOUNT_EVERY] = -1.0
    seconds = rng.integers(0, 365 * 86_400, rows)
    merchant = pc.cast(pa.array(rng.integers(0, 50_000, rows)), pa.string())
    email_user = pc.binary_join_element_wise("user", pc.cast(pa.array(customer), pa.string()), "")
    table = pa.table(
        {
            "tx_id": pa.array(np.arange(1, rows + 1)),
            "customer_id": pa.array(customer),
            "quantity": pa.array(rng.integers(1, 101, rows)),
            "amount": pa.array(amount),
            "discount": pa.array(np.round(rng.random(rows) * 0.5, 3), mask=rng.random(rows) < 0.3),
            "score": pa.array(rng.random(rows), mask=rng.random(rows) < 0.05),
            "age": pa.array(rng.integers(18, 100, rows), mask=rng.random(rows) < 0.1),
            "category": pick(CATEGORIES),
            "country": pick(COUNTRIES),
            "channel": pick(CHANNELS),
            "status": pick(STATUSES, null_fraction=0.08),
            "email": pc.binary_join_element_wise(email_user, pick(DOMAINS), "@"),
            "merchant": pc.binary_join_element_wise("merchant-", merchant, ""),
            "ts": pa.array(np.datetime64("2024-01-01T00:00:00", "s") + seconds),
            "flag": pa.array(rng.random(rows) < 0.2),
        }
    )
    pyarrow.csv.write_csv(table, folder / "data.csv")
    (folder / "contract.yaml").write_text(contract_yaml(unique=True))
    (folder / "contract-no-unique.yaml").write_text(contract_yaml(unique=False))


def child(mode: str, csv: Path, contract: Path, out: Path, rows: int) -> dict:
    """Runs one step in this fresh process and returns what it measured."""
    if mode == "generate":
        generate(rows, out)
        return {}
    if mode == "pyarrow":
        import pyarrow.csv
        import pyarrow.parquet

        start = time.perf_counter()
        table = pyarrow.csv.read_csv(csv)
        pyarrow.parquet.write_table(table, out / "data.parquet")
        return {"seconds": time.perf_counter() - start, "rows": table.num_rows}
    if mode == "pyarrow_stream":
        # The bounded-memory way to do it with pyarrow: a streaming reader into a writer.
        import pyarrow.csv
        import pyarrow.parquet

        start = time.perf_counter()
        reader = pyarrow.csv.open_csv(csv)
        rows = 0
        with pyarrow.parquet.ParquetWriter(out / "data.parquet", reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return {"seconds": time.perf_counter() - start, "rows": rows}
    if mode == "pandas":
        import pandas

        start = time.perf_counter()
        frame = pandas.read_csv(csv, parse_dates=["ts"])
        frame.to_parquet(out / "data.parquet")
        return {"seconds": time.perf_counter() - start, "rows": len(frame)}
    if mode == "loopml_sdk":
        import loopml

        workspace = loopml.open(out)
        # Like the baselines (which import pyarrow or pandas first), time the work, not
        # the imports: load the data plane's modules before the clock starts.
        _ = workspace.data
        start = time.perf_counter()
        result = workspace.ingest("bench", str(csv), contract=str(contract))
        seconds = time.perf_counter() - start
        report = {key: getattr(result, key, None) for key in REPORT_KEYS}
        return {"seconds": seconds, "rows": result.rows_read, **loopml_fields(report)}
    raise SystemExit(f"unknown child mode {mode!r}")


def loopml_fields(report: dict) -> dict:
    """The parts of an ingest report worth printing next to the timings."""
    return {
        ("reported_seconds" if key == "seconds" else key): report.get(key) for key in REPORT_KEYS
    }


def measure(name: str, csv: Path, contract: Path, workdir: Path, timeout: float) -> dict:
    """One round of contender ``name``: seconds, rows, peak RSS and extras, or an error."""
    if name == "loopml_cli":
        # A user ingests into a workspace made once (`loopml init`): making it, with
        # its database and migrations, is not part of an ingest, so it is not timed.
        made = spawn([str(LOOPML_CLI), "init", str(workdir), "--json"], timeout)
        if "error" in made:
            return made
        argv = [str(LOOPML_CLI), "-w", str(workdir), "ingest", "bench", str(csv)]
        result = spawn([*argv, "--contract", str(contract), "--json"], timeout)
        if "error" in result:
            return result
        report = result["reported"]
        rows = report.get("rows_read")
        line = {"seconds": result["wall"], "rows": rows, "rss_mib": result["rss_mib"]}
        return line | loopml_fields(report)
    argv = [sys.executable, __file__, "--child", name, str(csv), str(contract), str(workdir)]
    result = spawn(argv, timeout)
    if "error" in result:
        return result
    # The whole process too (interpreter, imports, work): what the CLI's wall compares to.
    return result["reported"] | {"rss_mib": result["rss_mib"], "process_seconds": result["wall"]}


def summarize(name: str, rounds: list[dict]) -> dict:
    """Folds the rounds of one contender into its JSON line."""
    if not rounds:
        return {"name": name, "error": "not run"}
    failed = [r["error"] for r in rounds if "error" in r]
    if failed:
        return {"name": name, "error": failed[0], "failed_rounds": len(failed)}
    seconds = statistics.median(r["seconds"] for r in rounds)
    line = {"name": name, "rows": rounds[0]["rows"], "median_seconds": round(seconds, 3)}
    line["rows_per_s"] = round(rounds[0]["rows"] / seconds) if rounds[0]["rows"] else None
    line["peak_rss_mib"] = round(max(r["rss_mib"] for r in rounds), 1)
    line["runs_seconds"] = [round(r["seconds"], 3) for r in rounds]
    if rounds[0].get("reported_seconds") is not None:
        line["median_reported_seconds"] = round(
            statistics.median(r["reported_seconds"] for r in rounds), 3
        )
    if rounds[0].get("process_seconds") is not None:
        line["median_process_seconds"] = round(
            statistics.median(r["process_seconds"] for r in rounds), 3
        )
    skip = {"seconds", "rows", "rss_mib", "reported_seconds", "process_seconds"}
    return line | {key: value for key, value in rounds[-1].items() if key not in skip}


def big_run(folder: Path, gigabytes: float) -> dict:
    """Ingests a ~``gigabytes`` GB copy-stacked CSV with the CLI; the file is then deleted."""
    big = folder / "big.csv"
    copies = 0
    with (folder / "data.csv").open("rb") as source, big.open("wb") as target:
        target.write(source.readline())
        body_start = source.tell()
        while target.tell() < gigabytes * 1e9:
            source.seek(body_start)
            shutil.copyfileobj(source, target, 16 << 20)
            copies += 1
    size_gb = round(big.stat().st_size / 1e9, 2)
    try:
        # Copies repeat tx_id, so the big run's contract has no unique key.
        contract = folder / "contract-no-unique.yaml"
        result = measure("loopml_cli", big, contract, folder / "big-workspace", timeout=3600)
        (folder / "big-stream").mkdir(exist_ok=True)
        baseline = measure("pyarrow_stream", big, contract, folder / "big-stream", timeout=3600)
    finally:
        big.unlink()
    line = summarize("loopml_cli_big", [result])
    base = summarize("pyarrow_stream_big", [baseline])
    print(json.dumps(base | {"csv_gb": size_gb}), flush=True)
    ratio = (
        round(line["rows_per_s"] / base["rows_per_s"], 3)
        if line.get("rows_per_s") and base.get("rows_per_s")
        else None
    )
    line |= {"csv_gb": size_gb, "copies": copies, "ratio_vs_pyarrow_stream": ratio}
    return line | {"target_peak_rss_mib": TARGET_BIG_RSS_MIB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--big-gb", type=float, default=0, help="also ingest a ~G GB CSV")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, *paths = args.child
        print(json.dumps(child(mode, *map(Path, paths), rows=args.rows)))
        return

    DATA_ROOT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DATA_ROOT, prefix="ingest-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        argv = [sys.executable, __file__, "--rows", str(args.rows), "--child", "generate"]
        generated = spawn([*argv, "-", "-", tmp], timeout=1800)
        if "error" in generated:
            print(json.dumps({"name": "generate", "error": generated["error"]}))
            return
        csv, contract = folder / "data.csv", folder / "contract.yaml"
        dataset = {
            "csv_mib": round(csv.stat().st_size / 2**20, 1),
            "generate_seconds": round(time.perf_counter() - start, 2),
        }
        names = ["pyarrow", "pyarrow_stream", "pandas", "loopml_cli", "loopml_sdk"]
        rounds: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(args.repeat):
            for name in names:
                if rounds[name] and "error" in rounds[name][-1]:
                    continue  # A contender that failed once is reported, not retried.
                workdir = Path(tempfile.mkdtemp(dir=folder, prefix=f"{name}-"))
                rounds[name].append(measure(name, csv, contract, workdir, timeout=1800))
                shutil.rmtree(workdir, ignore_errors=True)
        lines = {name: summarize(name, rounds[name]) for name in names}
        if rounds["loopml_sdk"] and "error" in lines["loopml_sdk"]:
            lines["loopml_sdk"]["note"] = "SDK call failed; loopml figures use the CLI only"
        for line in lines.values():
            print(json.dumps(line), flush=True)
        if args.big_gb > 0:
            print(json.dumps(big_run(folder, args.big_gb)), flush=True)
        print(json.dumps(summary(lines, rounds, dataset)), flush=True)


def summary(lines: dict[str, dict], rounds: dict[str, list[dict]], dataset: dict) -> dict:
    """Throughput ratios of loopml against the baselines, next to the targets."""
    sdk, cli = lines["loopml_sdk"], lines["loopml_cli"]
    if "error" not in sdk:
        basis, loopml_rate = "loopml_sdk", sdk["rows_per_s"]
    elif cli.get("rows") and cli.get("median_reported_seconds"):
        basis, loopml_rate = (
            "loopml_cli reported seconds",
            cli["rows"] / cli["median_reported_seconds"],
        )
    else:
        basis, loopml_rate = None, None

    def ratio(rate: float | None, baseline: dict) -> float | None:
        if rate is None or "error" in baseline:
            return None
        return round(rate / baseline["rows_per_s"], 3)

    def process_ratio(baseline: dict) -> float | None:
        if "error" in cli or "error" in baseline or not baseline.get("median_process_seconds"):
            return None
        return round(baseline["median_process_seconds"] / cli["median_seconds"], 3)

    result = {
        "name": "summary",
        **dataset,
        "cpus": os.cpu_count(),
        "loopml_basis": basis,
        "ratio_vs_pyarrow": ratio(loopml_rate, lines["pyarrow"]),
        "ratio_vs_pyarrow_stream": ratio(loopml_rate, lines["pyarrow_stream"]),
        "ratio_vs_pandas": ratio(loopml_rate, lines["pandas"]),
        # Whole processes on both sides: `loopml ingest` against a Python script doing
        # pyarrow's read and write, each with its interpreter start and imports.
        "ratio_cli_vs_pyarrow_process": process_ratio(lines["pyarrow"]),
        "ratio_cli_vs_pyarrow_stream_process": process_ratio(lines["pyarrow_stream"]),
        "target_ratio_vs_pyarrow": TARGET_RATIO_VS_PYARROW,
    }
    if basis == "loopml_sdk" and "error" not in lines["pyarrow"]:
        # pyarrow's time over loopml's, round by round: a throughput ratio.
        result["ratio_vs_pyarrow_paired"] = round(
            paired(
                rounds["loopml_sdk"], rounds["pyarrow"], lambda m, b: b["seconds"] / m["seconds"]
            ),
            3,
        )
        result["meets_target"] = result["ratio_vs_pyarrow_paired"] >= TARGET_RATIO_VS_PYARROW
    return result


if __name__ == "__main__":
    main()
