"""What a run ran with: the interpreter, the platform, package versions and the code's git sha."""

from __future__ import annotations

import copy
import functools
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# The packages that decide what a training computes; a flavor adds its own library.
PACKAGES = (
    "loopml",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "scipy",
    "optuna",
    "skops",
)


@functools.lru_cache(maxsize=16)
def _environment(extra_packages: tuple[str, ...]) -> dict[str, Any]:
    packages = {}
    for name in (*PACKAGES, *extra_packages):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": packages,
    }


def environment(extra_packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Python and platform, and the installed version of each relevant package.

    Computed once per process (packages do not change under a running interpreter).
    """
    return copy.deepcopy(_environment(tuple(extra_packages)))


def code_version(folder: str | Path | None = None) -> dict[str, Any]:
    """The git sha and dirty flag of the checkout holding ``folder`` (default: the cwd).

    One ``git status`` call answers both. Empty when git is missing or the folder is
    not in a checkout with a commit; never raises.
    """
    git = shutil.which("git")
    if git is None:
        return {}
    cwd = Path(folder or Path.cwd())
    try:
        status = _git(git, cwd, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if status is None:
        return {}
    lines = status.splitlines()
    sha = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
    if sha is None or sha == "(initial)":
        return {}
    return {"git_sha": sha, "dirty": any(not line.startswith("#") for line in lines)}


def _git(git: str, cwd: Path, *args: str) -> str | None:
    # Fixed arguments, no shell: nothing a user typed reaches the command line.
    done = subprocess.run(
        [git, *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None
