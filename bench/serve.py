"""Real-time serving: ``loopml serve`` against ``mlflow models serve`` and in-process predict.

Trains two models through loopml on a seeded synthetic table (8 numbers, a 3-value text
column, a 0/1 target): a logistic regression and a 100-tree random forest. Each model
is then served, one server at a time, by:

- ``loopml``: ``loopml serve MODEL@1 --workers 1`` (micro-batching, compiled trees);
- ``mlflow``: ``mlflow models serve --env-manager local --workers 1`` on the very same
  fitted scikit-learn pipeline, saved with ``mlflow.sklearn`` and answering
  ``predict_proba`` (the scores loopml returns);
- ``inprocess``: no server at all, the floor: the pipeline's ``predict_proba`` on one
  row (``inprocess_sklearn``), and loopml's scorer for it (``inprocess_loopml``).

Single-row latency is measured sequentially over one kept-alive connection (p50, p99
of ``--requests`` after a warm-up); throughput with 16 concurrent kept-alive clients
for ``--seconds`` (20 by default). The clients are raw sockets in this process, the
same for both servers. Prints one JSON line per server and model, then one summary
per model with the ratios to MLflow next to the targets (p50 at most half of MLflow's;
throughput at least 3x on the logistic model and 10x on the forest)::

    .venv-bench/bin/python bench/serve.py --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
NUMERIC = [f"x{i}" for i in range(8)]
MODELS = {
    "logistic": ("sklearn:sklearn.linear_model.LogisticRegression", {"max_iter": 500}, 3.0),
    "forest": (
        "sklearn:sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 100, "random_state": 0},
        10.0,
    ),
}
CLIENTS = 16
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def make_workspace(folder: Path, rows: int) -> Any:
    """A workspace with dataset ``serve_data`` and versions 1 of ``logistic`` and ``forest``."""
    import numpy as np
    import pandas as pd

    import loopml

    rng = np.random.default_rng(7)
    frame = pd.DataFrame({name: rng.normal(size=rows) for name in NUMERIC})
    frame["segment"] = rng.choice(["retail", "smb", "enterprise"], size=rows)
    signal_ = frame.x0 - 0.7 * frame.x1 + 0.5 * frame.x2 * frame.x3 + (frame.segment == "smb")
    frame["label"] = (signal_ + rng.normal(scale=0.8, size=rows) > 0.4).astype(int)
    path = folder / "serve_data.parquet"
    frame.to_parquet(path, index=False)
    ws = loopml.open(folder / "ws")
    ws.ingest("serve_data", str(path))
    for name, (model, params, _) in MODELS.items():
        ws.train(name, "serve_data", "label", model=model, params=params)
    return ws


def sample_rows(count: int) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(11)
    segments = ["retail", "smb", "enterprise"]
    return [
        {
            **{name: round(float(rng.normal()), 6) for name in NUMERIC},
            "segment": segments[int(rng.integers(3))],
        }
        for _ in range(count)
    ]


def http_request(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """One HTTP response from a kept-alive socket: (status, body)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    match = _LENGTH.search(head)
    if match is None:
        raise ConnectionError(f"no Content-Length in {head[:200]!r}")
    length = int(match.group(1))
    while len(buffer) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    body = bytes(buffer[end : end + length])
    del buffer[: end + length]
    return int(head[9:12]), body


def latency(port: int, requests: list[bytes], count: int) -> dict[str, Any]:
    """Sequential single-row requests over one kept-alive connection: p50 and p99 in ms."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray()
    timings = []
    errors = 0
    warm = min(300, count // 4)
    for i in range(count + warm):
        started = time.perf_counter()
        sock.sendall(requests[i % len(requests)])
        status, _ = read_response(sock, buffer)
        elapsed = time.perf_counter() - started
        errors += status != 200
        if i >= warm:
            timings.append(elapsed * 1000)
    sock.close()
    timings.sort()
    return {
        "p50_ms": round(statistics.median(timings), 3),
        "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 3),
        "latency_errors": errors,
    }


async def _client(port: int, requests: list[bytes], stop_at: float, counts: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    loop = asyncio.get_running_loop()
    i = 0
    try:
        while loop.time() < stop_at:
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            match = _LENGTH.search(head)
            if match is None:
                raise ConnectionError("no Content-Length")
            await reader.readexactly(int(match.group(1)))
            counts["ok" if head[9:12] == b"200" else "errors"] += 1
    finally:
        writer.close()


def throughput(port: int, requests: list[bytes], seconds: float) -> dict[str, Any]:
    """Requests per second with ``CLIENTS`` concurrent kept-alive clients."""

    async def main() -> dict[str, int]:
        counts = {"ok": 0, "errors": 0}
        loop = asyncio.get_running_loop()
        # Each client starts at another offset, so concurrent requests differ.
        shifted = [requests[i * 7 :] + requests[: i * 7] for i in range(CLIENTS)]
        await asyncio.gather(
            *(_client(port, s, loop.time() + 1.0, {"ok": 0, "errors": 0}) for s in shifted)
        )  # warm-up
        stop_at = loop.time() + seconds
        await asyncio.gather(*(_client(port, s, stop_at, counts) for s in shifted))
        return counts

    counts = asyncio.run(main())
    return {"rps": round(counts["ok"] / seconds, 1), "throughput_errors": counts["errors"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(argv: list[str], port: int, ready_path: str, env: dict[str, str]) -> subprocess.Popen:
    """Start a server and wait until ``ready_path`` answers 200."""
    import httpx

    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"{argv[0]} did not get ready")


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def measure(
    server: str,
    model: str,
    argv: list[str],
    port: int,
    ready: str,
    path: str,
    bodies: list[bytes],
    args: argparse.Namespace,
    env: dict[str, str],
) -> dict[str, Any]:
    requests = [http_request(path, body) for body in bodies]
    process = start(argv, port, ready, env)
    try:
        result = {"bench": "serve", "model": model, "server": server}
        result.update(latency(port, requests, args.requests))
        result.update(throughput(port, requests, args.seconds))
    finally:
        stop(process)
    print(json.dumps(result), flush=True)
    return result


def in_process(ws: Any, model: str, rows: list[dict[str, Any]], count: int) -> list[dict]:
    """The floor: one row scored in this process, by the pipeline and by loopml's scorer."""
    import pyarrow as pa

    from loopml.registry.compiled import compile_scorer

    predictor = ws.models.load(f"{model}@1")
    scorer = compile_scorer(predictor) or predictor
    tables = [pa.Table.from_pylist([row]) for row in rows]
    frames = [predictor.frame(t) for t in tables]
    results = []
    for name, call in (
        ("inprocess_sklearn", lambda i: predictor.model.predict_proba(frames[i % len(frames)])),
        ("inprocess_loopml", lambda i: scorer.scores(tables[i % len(tables)])),
    ):
        for i in range(50):
            call(i)
        timings = []
        for i in range(count):
            started = time.perf_counter()
            call(i)
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        result = {
            "bench": "serve",
            "model": model,
            "server": name,
            "p50_ms": round(statistics.median(timings), 3),
            "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 3),
        }
        if name == "inprocess_loopml":
            result["scorer"] = getattr(scorer, "kind", "pipeline")
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20000, help="training rows")
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests")
    parser.add_argument("--seconds", type=float, default=20.0, help="throughput seconds")
    parser.add_argument("--models", default="logistic,forest")
    parser.add_argument("--servers", default="loopml,mlflow")
    args = parser.parse_args()

    import mlflow.sklearn
    import orjson
    import skops.io

    folder = Path(tempfile.mkdtemp(prefix="loopml-bench-serve-"))
    # MLflow starts ``uvicorn`` by name: the bench environment's must come first.
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    try:
        ws = make_workspace(folder, args.rows)
        rows = sample_rows(256)
        for model in args.models.split(","):
            results: dict[str, dict[str, Any]] = {}
            for entry in in_process(ws, model, rows, args.requests):
                results[entry["server"]] = entry
            if "loopml" in args.servers:
                port = free_port()
                argv = [
                    str(BIN / "loopml"), "serve", f"{model}@1", "-w", str(folder / "ws"),
                    "--port", str(port), "--workers", "1", "--log-level", "warning",
                ]  # fmt: skip
                bodies = [orjson.dumps({"records": [row]}) for row in rows]
                results["loopml"] = measure(
                    "loopml", model, argv, port, "/ready", "/predict", bodies, args, env
                )
            if "mlflow" in args.servers:
                pipeline = ws.models.load(f"{model}@1").model
                path = folder / f"mlflow-{model}"
                # MLflow saves with skops too; it asks which of the file's types to trust.
                trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
                mlflow.sklearn.save_model(
                    pipeline,
                    str(path),
                    pyfunc_predict_fn="predict_proba",
                    skops_trusted_types=trusted,
                )
                port = free_port()
                argv = [
                    str(BIN / "mlflow"), "models", "serve", "-m", str(path), "--env-manager",
                    "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                ]  # fmt: skip
                bodies = [orjson.dumps({"dataframe_records": [row]}) for row in rows]
                results["mlflow"] = measure(
                    "mlflow", model, argv, port, "/ping", "/invocations", bodies, args, env
                )
            if {"loopml", "mlflow"} <= set(results):
                ours, theirs = results["loopml"], results["mlflow"]
                p50_ratio = ours["p50_ms"] / theirs["p50_ms"]
                rps_ratio = ours["rps"] / max(theirs["rps"], 1e-9)
                target = MODELS[model][2]
                print(
                    json.dumps(
                        {
                            "bench": "serve",
                            "model": model,
                            "summary": True,
                            "p50_ratio_vs_mlflow": round(p50_ratio, 3),
                            "p50_target": 0.5,
                            "p50_ok": p50_ratio <= 0.5,
                            "rps_ratio_vs_mlflow": round(rps_ratio, 2),
                            "rps_target": target,
                            "rps_ok": rps_ratio >= target,
                            "floor_p50_ms": results["inprocess_sklearn"]["p50_ms"],
                        }
                    ),
                    flush=True,
                )
        ws.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
