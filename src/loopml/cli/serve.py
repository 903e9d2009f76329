"""``loopml serve``: a model version behind an HTTP endpoint, hot-swapped when its alias moves."""

from __future__ import annotations

from typing import Annotated

import typer

from loopml.cli._common import WorkspaceOption, open_workspace


def serve(
    ref: Annotated[
        str,
        typer.Argument(
            help="MODEL, MODEL@ALIAS or MODEL@VERSION. An alias (or the latest version, "
            "for a bare name) is watched: when it moves, the server loads and warms the "
            "new version and swaps to it without dropping a request."
        ),
    ],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes; each loads the model.")
    ] = 1,
    max_batch: Annotated[
        int, typer.Option("--max-batch", help="The most rows one vectorised predict takes.")
    ] = 256,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            "--max-wait-ms", help="How long a batch waits for requests already on their way."
        ),
    ] = 2.0,
    canary: Annotated[
        str | None,
        typer.Option(
            "--canary", help="VERSION:PCT: send PCT percent of the traffic to VERSION (3:10)."
        ),
    ] = None,
    shadow: Annotated[
        int | None,
        typer.Option(
            "--shadow",
            help="VERSION scores a copy of the traffic; logged, never returned to callers.",
        ),
    ] = None,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", help="Seconds between looks at the alias.")
    ] = 1.0,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", help="Largest request body accepted (413 above).")
    ] = 64.0,
    log_sample: Annotated[
        float,
        typer.Option(
            "--log-sample", help="Share of requests written to the prediction log (0: off)."
        ),
    ] = 1.0,
    ssl_certfile: Annotated[
        str | None, typer.Option("--ssl-certfile", help="PEM certificate: serve HTTPS.")
    ] = None,
    ssl_keyfile: Annotated[
        str | None, typer.Option("--ssl-keyfile", help="PEM private key of the certificate.")
    ] = None,
    executor: Annotated[
        str,
        typer.Option("--executor", "-e", help="local (uvicorn) or ray (a Ray Serve deployment)."),
    ] = "local",
    replicas: Annotated[
        int, typer.Option("--replicas", help="Ray Serve replicas (with --executor ray).")
    ] = 1,
    log_level: Annotated[
        str, typer.Option("--log-level", help="critical, error, warning, info or debug.")
    ] = "info",
    loop: Annotated[
        str, typer.Option("--loop", help="Event loop: auto (uvloop when installed) or asyncio.")
    ] = "auto",
    workspace: WorkspaceOption = None,
) -> None:
    """Serve a model over HTTP: POST /predict, GET /health, /ready and /metrics.

    POST /predict takes JSON records ({"records": [{...}]}), JSON columns
    ({"columns": {...}}) or an Arrow IPC stream (application/vnd.apache.arrow.stream),
    checked against the model's signature. Every answer names the model version.
    """
    with open_workspace(workspace) as ws:
        ws.serve(
            ref,
            host=host,
            port=port,
            workers=workers,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            canary=canary,
            shadow=shadow,
            poll_interval=poll_interval,
            max_body_mb=max_body_mb,
            log_sample=log_sample,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            executor=executor,
            replicas=replicas,
            log_level=log_level,
            loop=loop,
        )
