"""The same model app on Ray Serve: ``loopml serve ... --executor ray --replicas N``.

Each replica builds the Starlette app from the config's JSON (``ServeConfig.to_json``),
so it loads, warms, micro-batches and hot-swaps exactly as under uvicorn; Ray Serve's
proxy spreads the requests over the replicas.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from loopml.errors import InputError
from loopml.serve.config import ServeConfig

APP_NAME = "loopml"


def deployment(config: ServeConfig, *, replicas: int = 1) -> Any:
    """The Ray Serve application (a bound deployment) serving ``config``.

    Raises:
        InputError: Ray Serve is not installed, or replicas < 1.
    """
    if replicas < 1:
        raise InputError(f"--replicas {replicas}", hint="pass 1 or more")
    try:
        from ray import serve
    except ModuleNotFoundError as exc:
        raise InputError("Ray Serve is not installed", hint="pip install 'loopml[ray]'") from exc

    class ModelServer:
        """One replica: the loopml model app, built from the config's JSON."""

        def __init__(self, config_json: str) -> None:
            self.config_json = config_json

        def __serve_build_asgi_app__(self) -> Any:
            from loopml.serve.app import create_app

            return create_app(ServeConfig.from_json(self.config_json))

    ingress = serve.ingress()(ModelServer)
    wrapped = serve.deployment(
        name=f"loopml-{config.name}",
        num_replicas=replicas,
        # Requests a replica takes at once; micro-batching turns them into few predicts.
        max_ongoing_requests=256,
    )(ingress)
    # A replica takes requests once it has started: let that include loading the model.
    return wrapped.bind(dataclasses.replace(config, load_before_start=True).to_json())


def run(
    config: ServeConfig,
    *,
    replicas: int = 1,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    blocking: bool = True,
) -> None:
    """Deploy ``config`` on Ray Serve (starting a local Ray unless ``address`` is given).

    Args:
        config: what to serve.
        replicas: model replicas.
        host, port: where Ray Serve's HTTP proxy listens.
        address: a Ray cluster address (``auto``, ``ray://...``); default a local one.
        blocking: wait until interrupted, then shut Serve down.

    Raises:
        InputError: Ray Serve is not installed, or bad options.
    """
    app = deployment(config, replicas=replicas)
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    if not blocking:
        return
    try:
        import time

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
