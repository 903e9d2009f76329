"""Fixtures for evaluation tests: trained workspaces, and the holdout rebuilt by hand.

The training tests' fixtures (``lws``, ``one_thread``) are reused. ``holdout_index``
rebuilds a training holdout with scikit-learn alone, the way the training docs say it
is made (20% of the rows, stratified by class, seeded), so what an evaluation scores
is checked against rows chosen without asking loopml.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.train._data import ingest, tabular
from tests.train.conftest import lws, one_thread, trainers_module
from threadpoolctl import threadpool_limits

import loopml
from loopml.workspace import Workspace

__all__ = ["lws", "one_thread", "trainers_module"]

LOGISTIC = "sklearn:sklearn.linear_model.LogisticRegression"
ROWS = 1000


def holdout_index(frame: pd.DataFrame, target: str | None, seed: int, stratify: bool) -> np.ndarray:
    """The row numbers of a training holdout: 20% of the rows, seeded, stratified by
    ``target`` for classification (sorted, as rows keep their order)."""
    from sklearn.model_selection import train_test_split

    labels = frame[target].to_numpy() if (stratify and target) else None
    _, test = train_test_split(
        np.arange(len(frame)), test_size=0.2, random_state=seed, stratify=labels
    )
    return np.sort(test)


@dataclass
class Trained:
    """A workspace with dataset ``d`` (``frame``) and model ``m``'s versions on it."""

    ws: Workspace
    frame: pd.DataFrame
    root: Path


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """``m@1``: a logistic regression on every feature of ``d@1`` (seed 0).

    Shared by the tests of a module: they may add evaluations, datasets and versions,
    but only one test of a module may move aliases, declare gates or write cards.
    """
    root = tmp_path_factory.mktemp("binary")
    frame = tabular(rows=ROWS)
    with threadpool_limits(limits=1), loopml.open(root / "ws") as ws:
        ingest(ws, "d", frame, root / "data")
        ws.train("m", "d", "y", model=LOGISTIC)
        yield Trained(ws, frame, root)
