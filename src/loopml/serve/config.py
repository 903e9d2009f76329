"""What a model server is told: the model, the workspace, batching, canary and shadow.

A ``ServeConfig`` is plain data. It travels to uvicorn's worker processes (and Ray
Serve replicas) as JSON in the ``LOOPML_SERVE_CONFIG`` environment variable, never as
a pickled object, and each worker rebuilds its app from it (``app_from_env``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

import orjson

from loopml.errors import InputError

ENV = "LOOPML_SERVE_CONFIG"


@dataclass(frozen=True)
class ServeConfig:
    """How to serve a model.

    Args:
        model: ``NAME``, ``NAME@ALIAS`` or ``NAME@VERSION``; an alias (or the latest
            version, for a bare name) is watched and hot-swapped when it moves.
        workspace: the workspace folder or metadata URL.
        max_batch: the most rows one vectorised predict takes.
        max_wait_ms: how long a batch may wait for more requests that are on their way.
        canary: ``(version number, percent)`` of traffic to send to another version.
        shadow: a version number scored on a copy of the traffic, never returned.
        poll_interval: seconds between looks at where the alias points.
        max_body_mb: the largest request body accepted.
        log_sample: the share of requests written to the prediction log (0 turns it off).
        load_before_start: load the model during start-up, before taking requests (Ray
            Serve replicas: the proxy routes only to replicas that finished starting);
            by default it loads in the background and ``/ready`` says when it is done.
        metadata_url, artifacts_url, s3_endpoint_url, user: workspace overrides, as
            ``loopml.open`` takes them.
    """

    model: str
    workspace: str | None = None
    max_batch: int = 256
    max_wait_ms: float = 2.0
    canary: tuple[int, float] | None = None
    shadow: int | None = None
    poll_interval: float = 1.0
    max_body_mb: float = 64.0
    log_sample: float = 1.0
    load_before_start: bool = False
    metadata_url: str | None = None
    artifacts_url: str | None = None
    s3_endpoint_url: str | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise InputError(f"max_batch is {self.max_batch}", hint="pass at least 1")
        if self.max_wait_ms < 0:
            raise InputError(f"max_wait_ms is {self.max_wait_ms}", hint="pass 0 or more")
        if self.poll_interval <= 0:
            raise InputError(f"poll_interval is {self.poll_interval}", hint="pass seconds > 0")
        if self.max_body_mb <= 0:
            raise InputError(f"max_body_mb is {self.max_body_mb}", hint="pass a size > 0")
        if not 0 <= self.log_sample <= 1:
            raise InputError(f"log_sample is {self.log_sample}", hint="pass a share from 0 to 1")
        if self.canary is not None:
            number, percent = self.canary
            if not 0 <= float(percent) <= 100:
                raise InputError(f"canary share {percent}% is not a percentage")
            object.__setattr__(self, "canary", (int(number), float(percent)))

    @property
    def name(self) -> str:
        """The model's name, without the alias or version."""
        return self.model.partition("@")[0]

    @property
    def max_body_bytes(self) -> int:
        """``max_body_mb`` in bytes."""
        return int(self.max_body_mb * 1024 * 1024)

    def to_json(self) -> str:
        """The config as JSON, for the environment of worker processes."""
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        """Rebuild a config from ``to_json``'s output.

        Raises:
            InputError: the text is not a config.
        """
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{ENV} is not JSON: {exc}") from exc
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or "model" not in data or set(data) - known:
            raise InputError(f"{ENV} is not a serve config", hint=f"its keys are {sorted(known)}")
        if data.get("canary") is not None:
            data["canary"] = tuple(data["canary"])
        return cls(**data)

    @classmethod
    def from_env(cls) -> ServeConfig:
        """The config in ``LOOPML_SERVE_CONFIG``.

        Raises:
            InputError: the variable is not set or not a config.
        """
        text = os.environ.get(ENV)
        if not text:
            raise InputError(f"{ENV} is not set", hint="start servers with `loopml serve`")
        return cls.from_json(text)


def parse_canary(text: str) -> tuple[int, float]:
    """``"3:10"`` (version 3 gets 10% of the traffic) as ``(3, 10.0)``.

    Raises:
        InputError: the text is not ``VERSION:PERCENT``.
    """
    version, sep, percent = text.partition(":")
    try:
        parsed = (int(version), float(percent.rstrip("%")))
    except ValueError:
        parsed = None
    if not sep or parsed is None or not 0 <= parsed[1] <= 100 or parsed[0] < 1:
        raise InputError(
            f"canary {text!r} is not VERSION:PERCENT", hint="for example --canary 3:10"
        )
    return parsed


def as_dict(config: ServeConfig) -> dict[str, Any]:
    """The config as a plain dict."""
    return asdict(config)
