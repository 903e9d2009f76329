"""Hot swap, canary and shadow on a real server under real concurrent HTTP load.

The alias moves ten times while clients keep sending requests: no request fails, and
the server answers from each new version, each answer's scores being those of the
version it names. A damaged version is never switched to. A canary gets its share of
the traffic; a shadow scores a copy that only observers see.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from loopml.serve.config import ServeConfig
from loopml.workspace import Workspace

from ._server import running
from .conftest import ROWS

pytestmark = pytest.mark.slow
ROW = ROWS[:1]


def version_scores(ws: Workspace) -> dict[int, float]:
    """Each version's score of ``ROW``."""
    import pyarrow as pa

    table = pa.Table.from_pylist(ROW)
    return {v: float(ws.models.load(f"m@{v}").scores(table)[0]) for v in (1, 2, 3)}


class Load:
    """Clients sending ``ROW`` over kept-alive connections until stopped."""

    def __init__(self, url: str, clients: int = 6) -> None:
        self.url = url
        self.answers: list[tuple[int, int | None, float | None]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post("/predict", json={"records": ROW})
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text}")
                    continue
                body = answer.json()
                assert answer.headers["x-model-version"] == f"m@{body['version']}"
                self.answers.append((answer.status_code, body["version"], body["scores"][0]))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def wait_for_version(self, version: int, timeout: float = 30) -> None:
        start = len(self.answers)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(v == version for _, v, _ in self.answers[start:]):
                return
            time.sleep(0.02)
        raise AssertionError(f"no answer from version {version} within {timeout}s")


def test_the_alias_moves_ten_times_under_load_and_no_request_fails(own_ws: Workspace) -> None:
    expected = version_scores(own_ws)
    config = ServeConfig(
        "m@champion", workspace=str(own_ws.settings.root), poll_interval=0.05, max_wait_ms=1
    )
    moves = [2, 3, 1, 2, 3, 1, 2, 3, 1, 3]
    with running(config) as (url, _), Load(url) as load:
        load.wait_for_version(1)
        for number in moves:
            own_ws.models.set_alias("m", "champion", number, reason="test")
            load.wait_for_version(number)
            time.sleep(0.05)
    assert load.failures == []
    assert len(load.answers) > 100
    seen = Counter(version for _, version, _ in load.answers)
    assert set(seen) == {1, 2, 3}
    for _, version, score in load.answers:
        assert score == pytest.approx(expected[version], rel=1e-9)  # type: ignore[index]
    # After the last move, answers come from the last target only.
    assert {version for _, version, _ in load.answers[-20:]} == {3}


def test_a_damaged_version_is_never_switched_to(own_ws: Workspace) -> None:
    config = ServeConfig("m@champion", workspace=str(own_ws.settings.root), poll_interval=0.05)
    damaged = own_ws.models.get("m@2").artifacts["model"]["sha256"]
    path = own_ws.settings.root / "store" / "objects" / damaged[:2] / damaged
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-100] + b"tampered")
    with running(config) as (url, _), Load(url, clients=3) as load:
        load.wait_for_version(1)
        own_ws.models.set_alias("m", "champion", 2, reason="damaged")
        with httpx.Client(base_url=url) as client:
            deadline = time.monotonic() + 30
            while "error" not in (ready := client.get("/ready").json()):
                assert time.monotonic() < deadline, ready
                time.sleep(0.05)
            assert "m@2" in ready["error"] and "corrupt" in ready["error"]
            assert ready["ready"] is True and ready["primary"] == "m@1"
            time.sleep(0.3)  # a few more polls: still refused, still serving version 1
            metrics = client.get("/metrics").text
        assert 'loopml_model_swaps_total{model="m",outcome="failed",version="2"} 1.0' in metrics
        count = len(load.answers)
        own_ws.models.set_alias("m", "champion", 3, reason="a good one")
        load.wait_for_version(3)
    assert load.failures == []
    assert {v for _, v, _ in load.answers[:count]} == {1}


def test_canary_gets_its_share_and_shadow_is_only_observed(shared_ws: Workspace) -> None:
    expected = version_scores(shared_ws)
    observed: list[tuple[str, int, list[Any], bool]] = []
    lock = threading.Lock()

    def observer(request_id, model, version, inputs, outputs, latency_ms, shadow) -> None:  # type: ignore[no-untyped-def]
        with lock:
            observed.append((request_id, version, outputs, shadow))

    config = ServeConfig(
        "m@champion", workspace=str(shared_ws.settings.root), canary=(2, 30), shadow=3
    )
    answers = []
    with running(config, observers=[observer]) as (url, _):
        with httpx.Client(base_url=url) as client:
            ready = client.get("/ready").json()
            assert (ready["primary"], ready["canary"], ready["shadow"]) == ("m@1", "m@2", "m@3")
            for _ in range(400):
                answer = client.post("/predict", json={"records": ROW})
                assert answer.status_code == 200
                answers.append(answer.json())
        deadline = time.monotonic() + 10
        while sum(1 for o in observed if o[3]) < 400 and time.monotonic() < deadline:
            time.sleep(0.02)
    versions = Counter(a["version"] for a in answers)
    # 400 draws at 30%: mean 120, sd 9.2; 4.5 sd either side.
    assert set(versions) == {1, 2}
    assert 79 <= versions[2] <= 161, versions
    for answer in answers:
        assert answer["scores"][0] == pytest.approx(expected[answer["version"]], rel=1e-9)
    shadows = [o for o in observed if o[3]]
    primaries = {o[0]: o for o in observed if not o[3]}
    assert len(shadows) == 400 and all(version == 3 for _, version, _, _ in shadows)
    assert {o[0] for o in shadows} == {a["request_id"] for a in answers} == set(primaries)
    assert shadows[0][2][0] == pytest.approx(expected[3], rel=1e-9)
    # The prediction log (on by default) got both, written when the server stopped.
    from loopml.monitor.log_reader import read_window

    logged = read_window(shared_ws.ctx, "m", include_shadow=True).to_pylist()
    assert Counter((r["version"], r["shadow"]) for r in logged) == Counter(
        {(3, True): 400, **{(v, False): n for v, n in versions.items()}}
    )
    assert {r["request_id"] for r in logged} == {a["request_id"] for a in answers}
