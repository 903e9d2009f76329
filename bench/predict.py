"""Batch scoring: ``loopml predict`` against the same work done by hand.

Generates a seeded table (10 numbers, a text column, a 0/1 target) as Parquet under
``bench/.data/``, ingests it into a template workspace and trains a logistic
regression on a 50,000-row sample (none of this is timed). Each round copies the
template to a fresh workspace and runs each contender in a fresh process,
interleaved:

- ``loopml``: ``ws.predict(model, data="big", out="scored")``: streaming the version in
  batches of 65,536 rows, scoring, writing Parquet parts with their profile, hashing
  them into the store, and committing the version with lineage and audit.
- ``baseline``: what a user writes: ``pyarrow`` reads the same Parquet file in the
  same batches, ``to_pandas``, the fitted scikit-learn pipeline's ``predict_proba``,
  and a ``ParquetWriter`` writes the rows with ``prediction`` and ``score``.

Imports, opening the workspace and loading the model happen before the clock. Prints
one JSON line per contender (median seconds of the rounds, rows/s, peak RSS of the
process) and a summary with the ratio loopml / baseline::

    .venv-bench/bin/python bench/predict.py --rows 1000000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _spawn import spawn_measured  # bench/ is the script folder, on sys.path

DATA_ROOT = Path(__file__).resolve().parent / ".data"
NUMERIC = [f"x{i}" for i in range(10)]
BATCH_ROWS = 65_536
LOGISTIC = "sklearn:sklearn.linear_model.LogisticRegression"


def generate(rows: int, path: Path, seed: int = 7) -> None:
    """Writes ``rows`` seeded rows: 10 numbers, a text column and a 0/1 target."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(rows, len(NUMERIC)))
    region = rng.integers(0, 8, rows)
    logit = numbers[:, :4] @ np.array([1.0, -0.7, 0.5, 0.3]) + (region == 2) * 0.8
    columns = {name: pa.array(numbers[:, i]) for i, name in enumerate(NUMERIC)}
    columns["region"] = pa.array(np.array([f"r{i}" for i in range(8)])[region])
    columns["y"] = pa.array((rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64))
    pq.write_table(pa.table(columns), path)


def prepare(rows: int) -> Path:
    """The template workspace: ``big`` (``rows`` rows) and model ``m``, made once."""
    import loopml

    template = DATA_ROOT / f"predict-{rows}"
    if (template / "ready").exists():
        return template
    shutil.rmtree(template, ignore_errors=True)
    template.mkdir(parents=True)
    generate(rows, template / "big.parquet")
    generate(50_000, template / "train.parquet", seed=8)
    with loopml.open(template / "ws") as ws:
        ws.ingest("big", str(template / "big.parquet"))
        ws.ingest("train", str(template / "train.parquet"))
        ws.train("m", "train", "y", model=LOGISTIC)
    (template / "ready").touch()
    return template


def run_loopml(workspace: Path) -> dict:
    import loopml
    from loopml.registry.versions import load

    with loopml.open(workspace) as ws:
        load(ws.ctx, ws.models.get("m"))  # imports and the first load, off the clock
        start = time.perf_counter()
        result = ws.predict("m", data="big", out="scored", batch_rows=BATCH_ROWS)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": result.rows, "batches": result.batches}


def run_baseline(workspace: Path, out: Path) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import loopml

    with loopml.open(workspace) as ws:
        model = ws.models.load("m").model  # the fitted scikit-learn pipeline
        paths = ws.data.files("big")
    features = [*NUMERIC, "region"]
    start = time.perf_counter()
    rows = 0
    writer = None
    batches = (batch for path in paths for batch in pq.ParquetFile(path).iter_batches(BATCH_ROWS))
    for batch in batches:
        frame = batch.select(features).to_pandas()
        score = model.predict_proba(frame)[:, 1]
        table = pa.Table.from_batches([batch])
        table = table.append_column("prediction", pa.array((score >= 0.5).astype(np.int64)))
        table = table.append_column("score", pa.array(score))
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema, compression="snappy")
        writer.write_table(table)
        rows += table.num_rows
    if writer is not None:
        writer.close()
    return {"seconds": time.perf_counter() - start, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--role", choices=["loopml", "baseline"])
    parser.add_argument("--workspace", type=Path)
    args = parser.parse_args()
    if args.role == "loopml":
        print(json.dumps(run_loopml(args.workspace)))
        return
    if args.role == "baseline":
        print(json.dumps(run_baseline(args.workspace, args.workspace / "baseline.parquet")))
        return

    template = prepare(args.rows)
    measured: dict[str, list[dict]] = {"loopml": [], "baseline": []}
    for _ in range(args.rounds):
        for role in measured:
            with tempfile.TemporaryDirectory(dir=DATA_ROOT) as scratch:
                workspace = Path(scratch) / "ws"
                shutil.copytree(template / "ws", workspace)
                argv = [sys.executable, __file__, "--role", role, "--workspace", str(workspace)]
                outcome = spawn_measured(argv, timeout=1800)
                if "error" in outcome:
                    print(json.dumps({"contender": role, **outcome}))
                    sys.exit(1)
                measured[role].append(outcome)
    summary = {}
    for role, outcomes in measured.items():
        seconds = statistics.median(o["reported"]["seconds"] for o in outcomes)
        line = {
            "bench": "predict",
            "contender": role,
            "rows": args.rows,
            "rounds": args.rounds,
            "seconds": round(seconds, 3),
            "rows_per_second": round(args.rows / seconds),
            "peak_rss_mib": round(max(o["rss_mib"] for o in outcomes)),
        }
        summary[role] = line
        print(json.dumps(line))
    ratio = summary["loopml"]["seconds"] / summary["baseline"]["seconds"]
    print(
        json.dumps(
            {
                "bench": "predict",
                "summary": True,
                "rows": args.rows,
                "loopml_over_baseline": round(ratio, 3),
                "note": "loopml also profiles, hashes and commits the output version",
            }
        )
    )


if __name__ == "__main__":
    main()
