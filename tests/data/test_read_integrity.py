"""Reading a version verifies its files as it reads them: a damaged file is refused as
damaged (never returned, never reported as a mere parse error), in a fresh process."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

import loopml
from loopml.errors import IntegrityError


def _ingested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, pa.Table]:
    """A version of 2,000 rows in four parts; the path of its third part."""
    from loopml.data import writer

    monkeypatch.setattr(writer, "GROUP_ROWS", 500)
    table = pa.table({"id": list(range(2000)), "name": [f"n{i % 37}" for i in range(2000)]})
    root = tmp_path / "ws"
    with loopml.open(root) as ws:
        version = writer.write_version(
            ws.ctx,
            "rows",
            table.to_batches(max_chunksize=500),
            table.schema,
            source="test",
            action="dataset.ingest",
        )
        assert len(version.files) == 4
        part = ws.data.files(version)[2]
    return root, Path(part), table


def _damage(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_a_sound_version_reads_whole_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _part, table = _ingested(tmp_path, monkeypatch)
    with loopml.open(root) as ws:
        assert ws.data.read("rows").select(["id", "name"]).equals(table)


@pytest.mark.parametrize("damage", ["truncated", "one_byte_changed"])
def test_a_damaged_part_is_refused_as_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    root, part, _table = _ingested(tmp_path, monkeypatch)
    data = part.read_bytes()
    if damage == "truncated":
        _damage(part, data[: len(data) // 2])  # Arrow alone would fail to parse it
    else:
        middle = len(data) // 2  # a page's bytes: Arrow may well read it without noticing
        _damage(part, data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    with loopml.open(root) as ws, pytest.raises(IntegrityError, match="corrupt"):
        ws.data.read("rows")
