"""The model server over real HTTP: predictions, bad input, batching, metrics, observers.

One uvicorn server (in a thread of this process, on a free loopback port) serves
``m@champion`` for the whole module; the clients are real HTTP clients.
"""

from __future__ import annotations

import concurrent.futures
import re
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pytest

from loopml.serve.config import ServeConfig
from loopml.workspace import Workspace

from ._server import running
from .conftest import ROWS

# One server (and one trained workspace) for the module: keep its tests on one worker.
pytestmark = pytest.mark.xdist_group("serve-app")
Seen = list[dict[str, Any]]


@pytest.fixture(scope="module")
def server(shared_ws: Workspace) -> Iterator[tuple[str, Seen, Any]]:
    seen: Seen = []

    def observer(request_id, model, version, inputs, outputs, latency_ms, shadow) -> None:  # type: ignore[no-untyped-def]
        seen.append(
            {
                "request_id": request_id,
                "model": model,
                "version": version,
                "inputs": inputs,
                "outputs": outputs,
                "latency_ms": latency_ms,
                "shadow": shadow,
                "thread": threading.current_thread().name,
            }
        )

    config = ServeConfig(
        "m@champion", workspace=str(shared_ws.settings.root), max_body_mb=1, max_wait_ms=20
    )
    with running(config, observers=[observer]) as (url, app):
        yield url, seen, app


def expected_scores(
    ws: Workspace | Any, rows: list[dict[str, Any]], ref: str = "m@1"
) -> np.ndarray:
    """What version ``ref`` scores ``rows`` (``ws`` may be a loaded Predictor)."""
    predictor = ws.models.load(ref) if isinstance(ws, Workspace) else ws
    table = pa.Table.from_pylist(
        rows, schema=pa.schema([("x1", pa.float64()), ("x2", pa.float64()), ("cat", pa.string())])
    )
    return np.asarray(predictor.scores(table))


def arrow_body(rows: list[dict[str, Any]]) -> bytes:
    table = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(match.group(2))
    return total


def test_predictions_match_the_model_and_name_its_version(
    server: tuple[str, Seen, Any], shared_ws: Workspace
) -> None:
    url, _, _ = server
    expected = expected_scores(shared_ws, ROWS)
    columns = {k: [r[k] for r in ROWS] for k in ("x1", "x2", "cat")}
    with httpx.Client(base_url=url) as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        ready = client.get("/ready").json()
        assert ready["ready"] is True and ready["primary"] == "m@1"
        answers = [
            client.post("/predict", json={"records": ROWS}),
            client.post("/predict", json={"columns": columns}),
            client.post(
                "/predict",
                content=arrow_body(ROWS),
                headers={"content-type": "application/vnd.apache.arrow.stream"},
            ),
        ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-model-version"] == "m@1"
        body = answer.json()
        assert (body["model"], body["version"]) == ("m", 1)
        np.testing.assert_allclose(body["scores"], expected, rtol=1e-9)
        assert body["predictions"] == [int(s >= 0.5) for s in expected]
        assert body["request_id"] == answer.headers["x-request-id"]


def test_bad_input_gets_a_4xx_naming_the_field_and_never_a_500(
    server: tuple[str, Seen, Any],
) -> None:
    url, _, _ = server
    cases = [
        (b'{"records": [{"x1": 1', "application/json", 422, None),
        (b'{"records": [{"x1": 1, "x2": 2}]}', "application/json", 422, ["cat"]),
        (
            b'{"records": [{"x1": 1, "x2": 2, "cat": "a", "bonus": 1}]}',
            "application/json",
            422,
            ["bonus"],
        ),
        (b'{"records": [{"x1": "one", "x2": 2, "cat": "a"}]}', "application/json", 422, ["x1"]),
        (b'{"records": [{"x1": NaN, "x2": 2, "cat": "a"}]}', "application/json", 422, None),
        (b"\x80\x04\x95", "application/python-pickle", 415, None),
        (b"garbage", "application/vnd.apache.arrow.stream", 422, None),
        (b"x" * (2 * 1024 * 1024), "application/json", 413, None),
    ]
    with httpx.Client(base_url=url) as client:
        for body, content_type, status, fields in cases:
            answer = client.post("/predict", content=body, headers={"content-type": content_type})
            assert answer.status_code == status, (body[:40], answer.text)
            error = answer.json()
            assert error["error"] and error["version"] == 1
            assert answer.headers["x-model-version"] == "m@1"
            if fields is not None:
                assert error["fields"] == fields
        assert client.post("/predict", json={"records": ROWS}).status_code == 200
        text = client.get("/metrics").text
    assert metric(text, "loopml_requests_total", status="500") == 0
    assert metric(text, "loopml_request_errors_total", status="422") >= 6


def test_a_huge_streamed_body_is_refused_before_it_is_read(
    server: tuple[str, Seen, Any],
) -> None:
    """A chunked upload without a length gets 413 once it passes the limit (1 MiB here),
    long before its 100 MB are sent, and the server keeps serving."""
    url, _, _ = server
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    chunk = b"x" * 65536
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        answer = b""
        while sent < 100 * 1024 * 1024:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answer = sock.recv(65536)
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:  # the server closed the connection on us: read its answer
                answer = sock.recv(65536)
                break
            sent += len(chunk)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 20 * 1024 * 1024
    with httpx.Client(base_url=url) as client:
        assert client.post("/predict", json={"records": ROWS}).status_code == 200


def test_concurrent_requests_are_batched_and_each_caller_gets_its_rows(
    server: tuple[str, Seen, Any], shared_ws: Workspace
) -> None:
    url, _, _ = server
    requests = [
        [{"x1": i / 10, "x2": -i / 7, "cat": "abc"[i % 3]}] * (1 + i % 3) for i in range(48)
    ]
    with httpx.Client(base_url=url) as client:
        before = client.get("/metrics").text

    shared = httpx.Client(base_url=url, limits=httpx.Limits(max_connections=32))

    def call(rows: list[dict[str, Any]]) -> list[float]:
        answer = shared.post("/predict", json={"records": rows})
        assert answer.status_code == 200
        return list(answer.json()["scores"])

    with shared, concurrent.futures.ThreadPoolExecutor(24) as pool:
        results = list(pool.map(call, requests * 2))
    predictor = shared_ws.models.load("m@1")
    for rows, scores in zip(requests * 2, results, strict=True):
        np.testing.assert_allclose(scores, expected_scores(predictor, rows), rtol=1e-9)
    with httpx.Client(base_url=url) as client:
        after = client.get("/metrics").text
    labels = {"model": "m", "version": "1"}

    def batches(text: str, **extra: str) -> float:
        return metric(text, "loopml_batch_requests_bucket", **labels, **extra)

    calls = metric(after, "loopml_batch_requests_count", **labels) - metric(
        before, "loopml_batch_requests_count", **labels
    )
    single = batches(after, le="1.0") - batches(before, le="1.0")
    requests_batched = metric(after, "loopml_batch_requests_sum", **labels) - metric(
        before, "loopml_batch_requests_sum", **labels
    )
    assert requests_batched == 96
    # Fewer predict calls than requests: some calls scored several requests at once.
    assert calls < 96 and calls > single
    assert metric(after, "loopml_request_latency_seconds_count", **labels) >= 96
    assert metric(after, "loopml_model_serving", role="primary", **labels) == 1


def test_observers_see_each_prediction_off_the_request_path(
    server: tuple[str, Seen, Any],
) -> None:
    url, seen, _ = server
    with httpx.Client(base_url=url) as client:
        answer = client.post(
            "/predict", json={"records": ROWS[:2]}, headers={"x-request-id": "order-42"}
        )
    assert answer.headers["x-request-id"] == "order-42"
    for _ in range(200):
        found = [s for s in seen if s["request_id"] == "order-42"]
        if found:
            break
        threading.Event().wait(0.01)
    (entry,) = found
    assert (entry["model"], entry["version"], entry["shadow"]) == ("m", 1, False)
    assert entry["inputs"].to_pylist() == ROWS[:2]
    assert entry["outputs"] == answer.json()["scores"]
    assert entry["latency_ms"] > 0 and entry["thread"].startswith("observers")


def test_metrics_are_prometheus_text(server: tuple[str, Seen, Any]) -> None:
    url, _, _ = server
    from prometheus_client.parser import text_string_to_metric_families

    with httpx.Client(base_url=url) as client:
        client.post(
            "/predict",
            content=orjson.dumps({"records": ROWS}),
            headers={"content-type": "application/json"},
        )
        text = client.get("/metrics").text
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "loopml_requests",
        "loopml_request_latency_seconds",
        "loopml_batch_rows",
        "loopml_batch_requests",
        "loopml_model_serving",
    } <= names
