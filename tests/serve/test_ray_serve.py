"""``--executor ray``: the same model app as a Ray Serve deployment on a real local Ray."""

from __future__ import annotations

import time

import httpx
import pytest

from loopml.serve import ray_serve
from loopml.serve.config import ServeConfig
from loopml.workspace import Workspace

from ._server import free_port
from .conftest import ROWS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


def test_ray_serve_replicas_answer_predictions(shared_ws: Workspace) -> None:
    import ray
    from ray import serve

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        config = ServeConfig("m@champion", workspace=str(shared_ws.settings.root))
        ray_serve.run(config, replicas=2, port=port, blocking=False)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        # Replicas run once they have loaded the model; then every one of them answers.
        while serve.status().applications[ray_serve.APP_NAME].status != "RUNNING":
            assert time.monotonic() < deadline, "Ray Serve did not get ready"
            time.sleep(0.25)
        status = serve.status().applications[ray_serve.APP_NAME]
        (deployment,) = status.deployments.values()
        assert deployment.replica_states.get("RUNNING") == 2
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/ready").json()["primary"] == "m@1"
            answers = [client.post("/predict", json={"records": ROWS}) for _ in range(20)]
            bad = client.post("/predict", json={"records": [{"x1": "one"}]})
        assert all(a.status_code == 200 for a in answers)
        assert {a.headers["x-model-version"] for a in answers} == {"m@1"}
        assert len(answers[0].json()["scores"]) == len(ROWS)
        assert bad.status_code == 422 and "x2" in bad.json()["fields"]
    finally:
        serve.shutdown()
        ray.shutdown()
