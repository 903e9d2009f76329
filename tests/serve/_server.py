"""Real uvicorn servers on loopback ports, in a thread of the test process."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from loopml.serve.app import create_app
from loopml.serve.config import ServeConfig
from loopml.serve.server import uvicorn_config


def free_socket() -> socket.socket:
    """A listening socket on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(
    config: ServeConfig, *, observers: Any = (), ready: bool = True, **options: Any
) -> Iterator[tuple[str, Any]]:
    """Serve ``config`` with uvicorn in a thread; yield (base URL, app)."""
    app = create_app(config, observers=observers)
    sock = free_socket()
    settings = uvicorn_config(config, app=app, log_level="warning", **options)
    server = uvicorn.Server(settings)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    scheme = "https" if options.get("ssl_certfile") else "http"
    url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        if ready:
            certificate = options.get("ssl_certfile")
            wait_ready(
                url, verify=ssl.create_default_context(cafile=certificate) if certificate else True
            )
        yield url, app
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_ready(url: str, timeout: float = 60, verify: Any = True) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with httpx.Client(verify=verify) as client:
        while True:
            response = client.get(f"{url}/ready")
            if response.status_code == 200:
                return dict(response.json())
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready: {response.text}")
            time.sleep(0.05)
