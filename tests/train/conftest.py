"""Fixtures for training tests: an embedded workspace and a folder of user code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import loopml
from loopml.workspace import Workspace

from ._data import TRAINERS_MODULE, write_module


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One OpenMP/BLAS thread per test process: with ``-n 2`` on a small machine, spinning
    OpenMP teams of two processes starve each other (seconds become minutes)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def lws(tmp_path: Path) -> Iterator[Workspace]:
    """An embedded workspace (SQLite and a local folder) under ``tmp_path``."""
    with loopml.open(tmp_path / "ws") as workspace:
        yield workspace


@pytest.fixture
def trainers_module(tmp_path: Path) -> tuple[Path, str]:
    """A folder holding a fresh module of training functions: (folder, module name)."""
    folder = tmp_path / "code"
    folder.mkdir()
    return folder, write_module(folder, TRAINERS_MODULE)
