"""What a run used (CPU seconds, wall time, peak memory, GPU seconds) and what it cost.

CPU time counts this process and the worker processes it waited for (trials), from
``os.times``: the whole process, so work running beside a training in other threads
(other pipeline steps, a notebook's) is counted too, and the figure is an upper bound
when anything else runs. Peak RSS is the larger of this process's and its waited-for
children's high-water marks (``getrusage``), so in a long-lived process it is the peak
since the process started: an upper bound on the run's own peak.

The price table lives in the workspace file (``workspace.yaml``)::

    prices:
      cpu_hour: 0.04        # per CPU core hour
      gpu_hour: 2.50        # per GPU hour
      memory_gib_hour: 0.005  # per GiB of peak RSS held for the run's wall time
      currency: USD

Without one, a run's cost is None: no made-up prices.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from loopml.errors import SpecError

PRICE_KEYS = ("cpu_hour", "gpu_hour", "memory_gib_hour")


def _peak_rss_bytes() -> int:
    import resource

    # Linux reports kilobytes, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(max(own, children) * scale)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class ResourceMeter:
    """Measures a stretch of work: start it, do the work, read ``usage()``."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = _cpu_seconds()
        self.gpu_seconds = 0.0

    def add_gpu(self, seconds: float) -> None:
        """Count ``seconds`` of GPU time (a fit that ran on a GPU)."""
        self.gpu_seconds += seconds

    def usage(self) -> dict[str, float]:
        """CPU seconds, wall seconds, peak RSS bytes and GPU seconds so far."""
        return {
            "cpu_seconds": round(_cpu_seconds() - self._cpu, 3),
            "wall_seconds": round(time.perf_counter() - self._wall, 3),
            "peak_rss_bytes": float(_peak_rss_bytes()),
            "gpu_seconds": round(self.gpu_seconds, 3),
        }


def price_table(extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """The workspace's price table, validated; None when it has none.

    Raises:
        SpecError: a price is not a non-negative number, or an unknown key.
    """
    prices = extra.get("prices")
    if prices is None:
        return None
    if not isinstance(prices, Mapping):
        raise SpecError("workspace.yaml: prices must be a mapping such as {cpu_hour: 0.04}")
    table: dict[str, Any] = {"currency": str(prices.get("currency", "USD"))}
    for key, value in prices.items():
        if key == "currency":
            continue
        if key not in PRICE_KEYS:
            raise SpecError(
                f"workspace.yaml: prices.{key} is not a known price",
                hint=f"use {', '.join(PRICE_KEYS)} and currency",
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise SpecError(f"workspace.yaml: prices.{key} must be a number >= 0, not {value!r}")
        table[key] = float(value)
    return table


def cost(usage: Mapping[str, float], prices: Mapping[str, Any] | None) -> float | None:
    """What ``usage`` cost under ``prices`` (None without a price table)."""
    if prices is None:
        return None
    hours = usage.get("wall_seconds", 0.0) / 3600
    gib = usage.get("peak_rss_bytes", 0.0) / 2**30
    total = (
        usage.get("cpu_seconds", 0.0) / 3600 * prices.get("cpu_hour", 0.0)
        + usage.get("gpu_seconds", 0.0) / 3600 * prices.get("gpu_hour", 0.0)
        + gib * hours * prices.get("memory_gib_hour", 0.0)
    )
    return round(total, 6)
