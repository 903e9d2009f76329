"""Running the model server under uvicorn: workers, TLS, and TCP_NODELAY.

With ``workers > 1`` uvicorn starts worker processes that each build the app from
``LOOPML_SERVE_CONFIG`` (``loopml.serve.app:app_from_env``); nothing is pickled. Each
accepted connection gets TCP_NODELAY set here: uvicorn's workers accept on a socket
rebuilt from the parent's, and without it a kept-alive connection stalls about 40 ms
per response, Nagle's algorithm waiting on the client's delayed ACK (uvicorn #3149).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from loopml.context import Context
from loopml.errors import InputError
from loopml.registry import versions
from loopml.serve.config import ENV, ServeConfig, parse_canary

FACTORY = "loopml.serve.app:app_from_env"


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Set TCP_NODELAY on the socket under ``transport`` (no-op for non-TCP sockets)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in {socket.AF_INET, socket.AF_INET6}:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with TCP_NODELAY on every accepted connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)


def uvicorn_config(
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_level: str = "info",
    loop: str = "auto",
    app: Any = None,
) -> Any:
    """The uvicorn Config for serving ``config``.

    Args:
        config: what to serve.
        host, port: where to listen.
        workers: worker processes (each loads the model).
        ssl_certfile, ssl_keyfile: a PEM certificate and key, for HTTPS.
        log_level: uvicorn's log level.
        loop: the event loop: auto (uvloop when installed), asyncio or uvloop.
        app: an app to serve in this process (default: the factory, from the environment).

    Raises:
        InputError: bad workers, or only one of the TLS files.
    """
    import uvicorn

    if workers < 1:
        raise InputError(f"--workers {workers}", hint="pass 1 or more")
    if loop not in {"auto", "asyncio", "uvloop"}:
        raise InputError(f"unknown event loop {loop!r}", hint="use auto, asyncio or uvloop")
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise InputError(
            "TLS needs both --ssl-certfile and --ssl-keyfile", hint="pass the certificate and key"
        )
    for path in (ssl_certfile, ssl_keyfile):
        if path and not os.path.isfile(path):
            raise InputError(f"TLS file {path} does not exist")
    return uvicorn.Config(
        app if app is not None else FACTORY,
        factory=app is None,
        host=host,
        port=port,
        workers=workers if app is None else None,
        http=NoDelayHttpToolsProtocol,
        loop=loop,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        log_level=log_level,
        log_config=_log_config(log_level),
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config, with loopml's serving logger (loads, swaps) beside it."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["loopml"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def run(
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_level: str = "info",
    loop: str = "auto",
) -> None:
    """Serve ``config`` until interrupted (blocking).

    Raises:
        InputError: bad options.
    """
    import uvicorn

    os.environ[ENV] = config.to_json()
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every worker writes its metrics here; /metrics adds them up.
        metrics_dir = tempfile.mkdtemp(prefix="loopml-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        settings = uvicorn_config(
            config,
            host=host,
            port=port,
            workers=workers,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            log_level=log_level,
            loop=loop,
        )
        server = uvicorn.Server(settings)
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            sock = settings.bind_socket()
            Multiprocess(settings, sockets=[sock]).run()
        else:
            server.run()
    finally:
        if metrics_dir is not None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            shutil.rmtree(metrics_dir, ignore_errors=True)


def serve(
    ctx: Context,
    ref: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    max_batch: int = 256,
    max_wait_ms: float = 2.0,
    canary: str | tuple[int, float] | None = None,
    shadow: int | None = None,
    poll_interval: float = 1.0,
    max_body_mb: float = 64.0,
    log_sample: float = 1.0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    executor: str = "local",
    replicas: int = 1,
    log_level: str = "info",
    loop: str = "auto",
) -> None:
    """Serve model ``ref`` of the workspace until interrupted (blocking).

    The reference, the canary and the shadow are checked before anything starts, so a
    typo fails at once with one clear error.

    Args:
        ctx: the workspace's context.
        ref: ``NAME``, ``NAME@ALIAS`` or ``NAME@VERSION``; aliases are watched.
        host, port: where to listen.
        workers: uvicorn worker processes (local executor).
        max_batch, max_wait_ms: micro-batching bounds.
        canary: ``"VERSION:PERCENT"`` or ``(version, percent)``.
        shadow: a version scored on a copy of the traffic.
        poll_interval: seconds between looks at the alias.
        max_body_mb: the largest request body.
        log_sample: the share of requests written to the prediction log (0: none).
        ssl_certfile, ssl_keyfile: serve HTTPS with this certificate and key.
        executor: ``local`` (uvicorn) or ``ray`` (Ray Serve).
        replicas: Ray Serve replicas.
        log_level: uvicorn's log level.
        loop: uvicorn's event loop (auto, asyncio, uvloop).

    Raises:
        NotFound: the model, canary or shadow version does not exist.
        InputError: bad options.
    """
    if executor not in {"local", "ray"}:
        raise InputError(f"unknown executor {executor!r}", hint="use local or ray")
    if isinstance(canary, str):
        canary = parse_canary(canary)
    settings = ctx.settings
    config = ServeConfig(
        model=ref,
        workspace=str(settings.root),
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        canary=canary,
        shadow=shadow,
        poll_interval=poll_interval,
        max_body_mb=max_body_mb,
        log_sample=log_sample,
        metadata_url=settings.metadata_url,
        artifacts_url=settings.artifacts_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        user=settings.user,
    )
    with ctx.read() as conn:
        versions.resolve(conn, ref)
        for number in (canary[0] if canary else None, shadow):
            if number is not None:
                versions.resolve(conn, f"{config.name}@{number}")
    if executor == "ray":
        if ssl_certfile or workers != 1:
            raise InputError(
                "--executor ray takes --replicas, not --workers or TLS files",
                hint="Ray Serve's proxy terminates HTTP; put TLS in front of it",
            )
        from loopml.serve import ray_serve

        ray_serve.run(config, replicas=replicas, host=host, port=port)
        return
    run(
        config,
        host=host,
        port=port,
        workers=workers,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        log_level=log_level,
        loop=loop,
    )
