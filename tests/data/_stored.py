"""What tests of PII keep-out share: every byte the workspace stored, and a check on it."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from pathlib import Path

import pyarrow.parquet as pq


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 of ``value`` with ``key``, in hex: what the hash policy must store."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def stored_text(ws_root: Path) -> list[tuple[Path, bytes]]:
    """Every file in the workspace as bytes; Parquet files also decoded, since a value
    compressed inside a page would not show up in the raw bytes."""
    found = []
    for path in sorted(ws_root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        found.append((path, data))
        if data[:4] == b"PAR1":
            table = pq.read_table(io.BytesIO(data))
            found.append((path, json.dumps(table.to_pylist(), default=str).encode()))
    return found


def assert_nowhere(ws_root: Path, secrets: list[str]) -> None:
    """Fail, naming the files, if any of ``secrets`` is stored anywhere in the workspace."""
    leaks = sorted(
        {
            f"{secret!r} in {path.relative_to(ws_root)}"
            for path, data in stored_text(ws_root)
            for secret in secrets
            if secret.encode() in data
        }
    )
    assert not leaks, "raw PII is stored: " + "; ".join(leaks)
