"""Who is acting: the embedded default is the OS user, who owns what they create."""

from __future__ import annotations

import getpass
import os


def current_user(configured: str | None = None) -> str:
    """Return the acting identity: ``configured``, else ``LOOPML_USER``, else the OS user."""
    if configured:
        return configured
    if env := os.environ.get("LOOPML_USER"):
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"
