"""Fixtures for serving tests: a workspace holding a few versions of a small model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.train._data import ingest, tabular
from tests.train.conftest import one_thread

import loopml
from loopml.workspace import Workspace

__all__ = ["one_thread"]

LOGISTIC = "sklearn:sklearn.linear_model.LogisticRegression"


def three_versions(folder: Path) -> Workspace:
    """A workspace with model ``m`` (binary, columns x1, x2, cat) in three versions that
    give different scores, and ``m@champion`` at version 1."""
    ws = loopml.open(folder / "ws")
    ingest(ws, "d", tabular(rows=300), folder / "data")
    for c in (0.01, 1.0, 100.0):
        ws.train("m", "d", "y", model=LOGISTIC, params={"C": c})
    ws.models.set_alias("m", "champion", 1)
    return ws


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """Three versions of ``m`` for a whole module; tests must not move its aliases."""
    ws = three_versions(tmp_path_factory.mktemp("serve"))
    yield ws
    ws.close()


@pytest.fixture
def own_ws(tmp_path: Path) -> Iterator[Workspace]:
    """Three versions of ``m`` for one test, which may move aliases and damage objects."""
    ws = three_versions(tmp_path)
    yield ws
    ws.close()


ROWS = [
    {"x1": 1.0, "x2": 0.5, "cat": "a"},
    {"x1": -1.0, "x2": None, "cat": None},
    {"x1": 0.2, "x2": -2.0, "cat": "c"},
    {"x1": 3, "x2": 1.5, "cat": "never-seen"},
]
