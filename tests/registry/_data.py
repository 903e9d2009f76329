"""Small synthetic datasets and user code for training tests.

The datasets are made here with NumPy and written as CSV or Parquet, so every
expectation (labels, holdout rows) is known without asking loopml. User code (custom
training functions, estimator classes) lives in a module written per test under a
unique name, because Python keeps imported modules for the life of the process.
"""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loopml.workspace import Workspace

ROWS = 1500


def tabular(rows: int = ROWS, seed: int = 0, task: str = "binary") -> pd.DataFrame:
    """Rows with an identifier, a timestamp, two numbers, a category and a target.

    ``task`` picks the target ``y``: 0/1 (binary), red/green/blue (multiclass), a float
    (regression) or an ``is_outlier`` 0/1 label with 5% far-away rows (anomaly).
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "uid": [f"user-{seed}-{i:06d}" for i in range(rows)],
            "ts": pd.date_range("2024-01-01", periods=rows, freq="h"),
            "x1": rng.normal(size=rows),
            "x2": rng.normal(size=rows),
            "cat": rng.choice(["a", "b", "c"], size=rows),
        }
    )
    signal = frame.x1 - 0.5 * frame.x2 + (frame.cat == "a") * 1.0
    noise = rng.normal(scale=0.6, size=rows)
    if task == "binary":
        frame["y"] = (signal + noise > 0.3).astype(int)
    elif task == "multiclass":
        value = signal + noise
        frame["y"] = np.where(value < -0.3, "red", np.where(value < 0.9, "green", "blue"))
    elif task == "regression":
        frame["y"] = 2.0 * frame.x1 - frame.x2 + 3.0 * (frame.cat == "b") + noise * 0.3
    elif task == "anomaly":
        outlier = rng.random(rows) < 0.05
        frame.loc[outlier, "x1"] = rng.normal(loc=8.0, size=outlier.sum())
        frame.loc[outlier, "x2"] = rng.normal(loc=-8.0, size=outlier.sum())
        frame["is_outlier"] = outlier.astype(int)
    else:
        raise ValueError(task)
    # A few missing values in a number and in the category.
    frame.loc[rng.random(rows) < 0.03, "x2"] = np.nan
    frame.loc[rng.random(rows) < 0.03, "cat"] = None
    return frame


def ingest(ws: Workspace, name: str, frame: pd.DataFrame, folder: Path, fmt: str = "csv") -> str:
    """Write ``frame`` as CSV or Parquet under ``folder`` and ingest it as ``name``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{uuid.uuid4().hex[:8]}.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    ws.ingest(name, str(path))
    return name


def holdout_rows(ws: Workspace, ref: str) -> pa.Table:
    """The rows of a split dataset version whose split is ``test``."""
    table = ws.data.read(ref)
    return table.filter(pc.equal(table["split"], "test"))


def write_module(folder: Path, body: str) -> str:
    """Write ``body`` as a module with a fresh name into ``folder``; return the name."""
    name = f"usercode_{uuid.uuid4().hex[:10]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return name


TRAINERS_MODULE = """\
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


def fit_logistic(X, y, *, task, params, seed, X_valid, y_valid):
    return LogisticRegression(C=params.get("C", 1.0)).fit(X, y)


def explode(X, y, *, task, params, seed, X_valid, y_valid):
    raise ValueError("the data has no signal at all")


class NoisyClassifier(ClassifierMixin, BaseEstimator):
    \"\"\"A logistic regression whose probabilities are blended with seeded noise.\"\"\"

    def __init__(self, noise=0.0, seed=0):
        self.noise = noise
        self.seed = seed

    def fit(self, X, y):
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        p = self.model_.predict_proba(X)[:, 1]
        r = np.random.default_rng(self.seed).random(len(X))
        q = (1.0 - self.noise) * p + self.noise * r
        return np.column_stack([1.0 - q, q])


def fit_noisy(X, y, *, task, params, seed, X_valid, y_valid):
    return NoisyClassifier(noise=params.get("noise", 0.0), seed=seed).fit(X, y)
"""
