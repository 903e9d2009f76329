"""A loaded model version: its preprocessing and fitted model behind one predict API.

Every flavor answers the same three questions on a table of the signature's columns:

- ``scores``: P(positive class) for binary tasks, the class probabilities (n x k) for
  multiclass ones, the predicted value for regression, and an anomaly score (higher
  is more anomalous) for anomaly detection;
- ``predict``: the class label, the value, or 1 for an anomaly and 0 otherwise;
- ``predict_proba``: the class probabilities (classification only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loopml.errors import InputError
from loopml.records import ModelVersion
from loopml.registry import torch_mlp

TASKS = ("binary", "multiclass", "regression", "anomaly")


class Predictor:
    """One model version, loaded and ready to predict.

    Args:
        version: the registered version (its signature names the input columns).
        model: the fitted model: a scikit-learn Pipeline (``sklearn``, ``custom``), a
            LightGBM or XGBoost booster, or a torch module (``torch-mlp``).
        preprocess: the fitted ColumnTransformer for boosters and the MLP, else None
            (a scikit-learn Pipeline carries its own).
    """

    def __init__(self, version: ModelVersion, model: Any, preprocess: Any = None) -> None:
        self.version = version
        self.model = model
        self.preprocess = preprocess
        self.task: str = version.task
        self.features: list[str] = [c["name"] for c in version.signature.get("inputs", [])]
        self.classes: list[Any] = list(version.meta.get("classes", []))
        features = version.meta.get("features") or {}
        self.text: list[str] = [*features.get("one_hot", []), *features.get("ordinal", [])]

    def frame(self, data: Any) -> Any:
        """``data`` as a pandas DataFrame of the signature's columns, in order.

        Accepts a pyarrow Table or RecordBatch, a pandas DataFrame, a list of records
        (dicts), or a dict of columns.

        Raises:
            InputError: a signature column is missing.
        """
        import pandas as pd
        import pyarrow as pa

        if isinstance(data, pa.Table | pa.RecordBatch):
            missing = [c for c in self.features if c not in data.schema.names]
            _check_missing(missing, self.version)
            return as_frame(data, self.features, self.text)
        if isinstance(data, Mapping):
            data = pd.DataFrame(dict(data))
        elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
            data = pd.DataFrame(list(data))
        if not isinstance(data, pd.DataFrame):
            raise InputError(
                f"cannot predict on a {type(data).__name__}",
                hint="pass a pyarrow Table, a pandas DataFrame, records or columns",
            )
        _check_missing([c for c in self.features if c not in data.columns], self.version)
        return as_frame(data, self.features, self.text)

    def scores(self, data: Any) -> Any:
        """Probabilities, values or anomaly scores (see the module docstring)."""
        frame = self.frame(data)
        flavor = self.version.flavor
        if flavor in {"sklearn", "custom"}:
            return self._sklearn_scores(frame)
        matrix = self.preprocess.transform(frame)
        if flavor == "lightgbm":
            return self.model.predict(matrix)
        if flavor == "xgboost":
            import xgboost

            return self.model.predict(xgboost.DMatrix(matrix))
        if flavor == "torch-mlp":
            arch = self.version.meta["arch"]
            return torch_mlp.to_scores(torch_mlp.forward(self.model, matrix, arch), arch)
        raise InputError(f"{self.version.ref}: unknown flavor {flavor!r}")

    def predict(self, data: Any) -> Any:
        """Class labels, values, or anomaly flags (1 anomalous, 0 normal)."""
        import numpy as np

        scores = self.scores(data)
        if self.task == "binary":
            return np.asarray(self.classes, dtype=object)[(scores >= 0.5).astype(int)]
        if self.task == "multiclass":
            return np.asarray(self.classes, dtype=object)[np.argmax(scores, axis=1)]
        if self.task == "anomaly":
            return (scores > 0).astype(np.int64)
        return scores

    def predict_proba(self, data: Any) -> Any:
        """Class probabilities, one column per class in ``classes`` order.

        Raises:
            InputError: the model is not a classifier.
        """
        import numpy as np

        if self.task not in {"binary", "multiclass"}:
            raise InputError(f"{self.version.ref} is a {self.task} model; it has no probabilities")
        scores = self.scores(data)
        if self.task == "binary":
            return np.column_stack([1.0 - scores, scores])
        return scores

    def _sklearn_scores(self, frame: Any) -> Any:
        if self.task == "binary":
            return self.model.predict_proba(frame)[:, 1]
        if self.task == "multiclass":
            return self.model.predict_proba(frame)
        if self.task == "anomaly":
            # decision_function is negative for outliers; flip it so higher is stranger.
            return -self.model.decision_function(frame)
        return self.model.predict(frame)

    def __repr__(self) -> str:
        return f"Predictor({self.version.ref}, {self.version.flavor}, {self.task})"


def _check_missing(missing: list[str], version: ModelVersion) -> None:
    if missing:
        raise InputError(
            f"{version.ref} needs columns {', '.join(missing)}",
            hint="pass every column of the model's signature (`loopml model show`)",
        )


MISSING_TEXT = "__missing__"


def as_frame(data: Any, columns: Sequence[str], text: Sequence[str] = ()) -> Any:
    """``columns`` of an Arrow table or DataFrame as the DataFrame preprocessing expects.

    Text columns (``text``) become object columns whose missing values are
    ``MISSING_TEXT``, a category of its own for the encoders; this is the same in
    training and serving, and in the ONNX graph's inputs.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    is_text = set(text)
    if isinstance(data, pa.Table | pa.RecordBatch):
        # Straight from Arrow: numbers as float64 (NaN for null), text with nulls filled
        # by Arrow, then object columns; a tenth of the time of to_pandas() and fixing up.
        columns_out = {}
        for name in columns:
            column = data.column(name)
            if name in is_text:
                filled = pc.fill_null(column.cast(pa.string()), MISSING_TEXT)
                columns_out[name] = pd.Series(filled.to_numpy(zero_copy_only=False), dtype=object)
            else:
                column = column.cast(pa.float64())
                columns_out[name] = pd.Series(column.to_numpy(zero_copy_only=False))
        return pd.DataFrame(columns_out)
    frame = data[list(columns)].copy()
    for name in text:
        values = frame[name].astype(object)
        frame[name] = values.where(values.notna(), MISSING_TEXT).map(str).astype(object)
    return frame
