"""Fixtures for pipeline tests: an embedded workspace and a project folder to write into.

Every test writes its own small ``loopml.yaml`` (and the CSV, SQL and Python files it
names) into ``project``; Python steps import their module from that folder. Module
names are unique per test (``module_name``), because Python keeps imported modules for
the life of the process and a name reused by another test would find that test's code.
"""

from __future__ import annotations

import csv
import textwrap
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import loopml
from loopml.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """An embedded workspace (SQLite and a local folder) under ``tmp_path``."""
    workspace = loopml.open(tmp_path / "ws")
    yield workspace
    workspace.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder for a spec and the files it names."""
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture
def write(project: Path) -> Callable[[str, str], Path]:
    """``write(relative_path, text)``: write dedented ``text`` into the project folder."""

    def write_file(relative: str, text: str) -> Path:
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return write_file


@pytest.fixture
def module_name() -> str:
    """A Python module name no other test uses."""
    return f"steps_{uuid.uuid4().hex[:10]}"


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` (mappings with the same keys) as a CSV file with a header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def rows_csv() -> Callable[[Path, Sequence[Mapping[str, Any]]], Path]:
    """``rows_csv(path, rows)``: write rows as a CSV file (see ``write_rows``)."""
    return write_rows
