"""Running one contender in a fresh process, for the benchmarks that compare several."""

from __future__ import annotations

import json
import subprocess
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
