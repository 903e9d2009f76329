"""Running one contender in a fresh process, for the benchmarks that compare several:
``spawn`` returns what it printed, ``spawn_measured`` also its wall time and peak RSS;
``paired`` folds their rounds into the figure a target is checked on."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path


def spawn(argv: list[str], timeout: float) -> dict:
    """Runs ``argv`` in the repository root; returns its last stdout line, or an error."""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=Path(__file__).resolve().parent.parent,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{argv[0]}: {exc}"}
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        return {"error": f"exit {done.returncode}: {(lines or ['(no stderr)'])[-1]}"}
    last = (done.stdout.strip().splitlines() or ["{}"])[-1]
    try:
        return json.loads(last)
    except json.JSONDecodeError:
        return {"error": f"stdout is not JSON: {last[-200:]!r}"}


def spawn_measured(argv: list[str], timeout: float) -> dict:
    """Runs ``argv``; returns its wall seconds, peak RSS and last stdout line, or an error."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        try:
            process = subprocess.Popen(argv, stdout=stdout, stderr=stderr)
        except OSError as exc:
            return {"error": f"{argv[0]}: {exc}"}
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        # wait4 rather than Popen.wait, because it also returns this child's own rusage.
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read().decode(), stderr.read().decode()
    if process.returncode != 0:
        lines = [line.strip() for line in err.splitlines() if line.strip()] or ["(no stderr)"]
        return {"error": f"exit {process.returncode}: {lines[-1]}"}
    # The JSON may be pretty-printed (the whole of stdout) or follow log lines (the last).
    for text in [out, (out.strip().splitlines() or ["{}"])[-1]]:
        try:
            return {"wall": wall, "rss_mib": usage.ru_maxrss / 1024, "reported": json.loads(text)}
        except json.JSONDecodeError:
            pass
    return {"error": f"stdout is not JSON: {out.strip()[-200:]!r}"}


def paired(mine: list[dict], base: list[dict], figure: Callable[[dict, dict], float]) -> float:
    """The median over rounds of ``figure(loopml's run, the baseline's run)``.

    The two ran back to back in each round, so a round's figure sees about the same
    machine load on both sides; on a shared, noisy machine the median of such pairs
    drifts less than a ratio of medians.
    """
    return statistics.median(figure(m, b) for m, b in zip(mine, base, strict=True))
