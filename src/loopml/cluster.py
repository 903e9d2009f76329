"""Connecting to Ray, in one place for every stage that runs work on a cluster."""

from __future__ import annotations

from typing import Any

from loopml.errors import InputError


def connect_ray(address: str | None = None) -> tuple[Any, bool]:
    """The ``ray`` module, connected; and whether this call started the connection.

    ``address`` is a ``ray://`` URL or ``auto``; without one a local cluster starts.
    Whoever started the connection shuts it down when done.

    Raises:
        InputError: Ray is not installed, or the cluster cannot be reached or started.
    """
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise InputError("--executor ray needs Ray", hint="pip install 'loopml[ray]'") from exc
    if ray.is_initialized():
        return ray, False
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
        )
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
        where = address or "a local cluster"
        raise InputError(
            f"cannot start or reach Ray at {where}: {exc}",
            hint="check --address (ray://host:10001 or auto), or omit it to start one",
        ) from exc
    return ray, True
