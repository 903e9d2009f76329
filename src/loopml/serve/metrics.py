"""Prometheus metrics of a model server.

Each app has its own registry (several apps may share a process, in tests). With
several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` is set by ``loopml serve``
before the workers start, every worker writes its values there, and ``/metrics``
(answered by whichever worker gets the request) adds up all of them; the model
version gauge then shows each live worker's versions.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.064,
    0.128,
    0.256,
    0.512,
    1.0,
    2.5,
    5.0,
)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)

__all__ = ["CONTENT_TYPE", "ServeMetrics"]


class ServeMetrics:
    """The counters and histograms of one app."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode values live in files; the registry is only for collecting.
        self.registry = CollectorRegistry(auto_describe=True)
        registry = None if self.multiprocess else self.registry
        self.requests = Counter(
            "loopml_requests",
            "Prediction requests answered, by model version and HTTP status.",
            ["model", "version", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "loopml_request_errors",
            "Requests answered with an error, by HTTP status.",
            ["model", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "loopml_request_latency_seconds",
            "Time from a prediction request's arrival to its answer.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.rows = Counter(
            "loopml_predicted_rows",
            "Rows scored, by model version and role (primary, canary, shadow).",
            ["model", "version", "role"],
            registry=registry,
        )
        self.batch_rows = Histogram(
            "loopml_batch_rows",
            "Rows per vectorised predict call.",
            ["model", "version"],
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_requests = Histogram(
            "loopml_batch_requests",
            "Requests per vectorised predict call (above 1: micro-batching at work).",
            ["model", "version"],
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.swaps = Counter(
            "loopml_model_swaps",
            "Versions loaded for serving, by outcome (loaded, failed).",
            ["model", "version", "outcome"],
            registry=registry,
        )
        self.serving = Gauge(
            "loopml_model_serving",
            "1 for each model version a worker serves, by role.",
            ["model", "version", "role"],
            registry=registry,
            multiprocess_mode="livemax",
        )

    def render(self) -> bytes:
        """The text exposition of every metric (of every worker, in multiprocess mode)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
