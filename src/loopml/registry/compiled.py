"""Compiled scoring: a fitted scikit-learn pipeline as flat NumPy arrays.

Serving predicts a row or a small batch at a time, where scikit-learn's per-call
overhead dominates: a ColumnTransformer builds DataFrames per step, and a random
forest walks its trees one by one in Python (milliseconds for a hundred trees). This
module turns the fitted preprocessing (imputer, scaler, one-hot and ordinal encoders)
and the estimator (linear models, decision trees and forests of them) into arrays
(LightGBM and XGBoost boosters keep their native predict; their preprocessing is
compiled):

- numbers are imputed and scaled with the fitted statistics, text is encoded with
  ``pyarrow.compute.index_in`` against the fitted categories;
- every tree's nodes go into one flat array, and all trees are traversed together,
  level by level, for all rows at once (a handful of vectorised steps per level).

``compile_scorer`` compiles what it recognises and then checks the compiled scores
against the original model's on sample rows; anything it does not recognise, or any
disagreement, gives ``None`` and the caller keeps the original model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from loopml.records import ModelVersion
from loopml.registry.predictor import MISSING_TEXT, Predictor

_INT = ("int", "uint")
_FLOAT = ("float", "double", "halffloat", "decimal")
_TEXT = ("string", "large_string", "utf8", "large_utf8", "dictionary")


def arrow_type(signature_type: str) -> Any:
    """The Arrow type a signature column's values take in serving.

    Integers are int64, other numbers float64, booleans bool and text string; the
    models see numbers as float64 and text as strings either way.
    """
    import pyarrow as pa

    kind = signature_type.split("[")[0].split("<")[0].split("(")[0]
    if kind.startswith("bool"):
        return pa.bool_()
    if kind.startswith(_INT):
        return pa.int64()
    if kind.startswith(_FLOAT):
        return pa.float64()
    if kind.startswith(_TEXT):
        return pa.string()
    return pa.float64()


def sample_table(version: ModelVersion, rows: int = 64, seed: int = 0) -> Any:
    """Synthetic rows of ``version``'s signature, drawn from its reference profile.

    Numbers are drawn around the training deciles (with some missing values where the
    column is nullable), text from the training categories plus a missing and an unseen
    value. They exercise every branch of the preprocessing for checks and warm-up.
    """
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    profile = (version.meta.get("reference_profile") or {}).get("features") or {}
    columns = {}
    for field in version.signature.get("inputs", []):
        name, kind = field["name"], arrow_type(field["type"])
        nullable = field.get("nullable", True)
        entry = profile.get(name) or {}
        missing = rng.random(rows) < (0.1 if nullable else 0.0)
        if kind == pa.string():
            known = [k for k in (entry.get("shares") or {}) if k not in {"(missing)", "__other__"}]
            choices = [*known, "an-unseen-value"]
            values: list[Any] = [str(rng.choice(choices)) for _ in range(rows)]
        elif kind == pa.bool_():
            values = [bool(v) for v in rng.random(rows) < 0.5]
        else:
            edges = entry.get("edges") or [-1.0, 0.0, 1.0]
            low, high = float(min(edges)), float(max(edges))
            spread = (high - low) or 1.0
            drawn = rng.uniform(low - 0.1 * spread, high + 0.1 * spread, rows)
            drawn[: min(rows, len(edges))] = edges[: min(rows, len(edges))]
            values = [round(v) for v in drawn] if kind == pa.int64() else list(drawn)
        columns[name] = pa.array(
            [None if m else v for v, m in zip(values, missing, strict=True)], type=kind
        )
    return pa.table(columns)


class CompiledScorer:
    """The scores of a compiled pipeline; the same contract as ``Predictor.scores``.

    Args:
        encode: table -> the float64 feature matrix the estimator takes.
        score: feature matrix -> scores.
        kind: what was compiled, for logs (``linear``, ``forest``, ``lightgbm booster``).
    """

    def __init__(
        self, encode: Callable[[Any], Any], score: Callable[[Any], Any], kind: str
    ) -> None:
        self._encode = encode
        self._score = score
        self.kind = kind

    def scores(self, table: Any) -> Any:
        """Scores of the rows of ``table`` (a pyarrow Table holding the signature's columns)."""
        return self._score(self._encode(table))

    def __repr__(self) -> str:
        return f"CompiledScorer({self.kind})"


def compile_scorer(predictor: Predictor, sample: Any | None = None) -> CompiledScorer | None:
    """A compiled scorer for ``predictor``, or None when it cannot be compiled exactly.

    Args:
        predictor: a loaded version: a scikit-learn Pipeline, or a LightGBM or XGBoost
            booster with its ColumnTransformer.
        sample: rows to check the compiled scores on (default: ``sample_table``).
    """
    flavor = predictor.version.flavor
    compiled: tuple[Callable[[Any], Any], str] | None
    try:
        if flavor in {"lightgbm", "xgboost"}:
            # The booster is native code already; its preprocessing is what costs.
            encode = _compile_columns(predictor.preprocess, predictor.features)
            compiled = (_booster_scores(predictor.model, flavor), f"{flavor} booster")
        elif flavor in {"sklearn", "custom"} and predictor.task != "anomaly":
            steps = getattr(predictor.model, "steps", None)
            if not steps or len(steps) != 2:
                return None
            encode = _compile_columns(steps[0][1], predictor.features)
            compiled = _compile_estimator(steps[1][1], predictor.task)
        else:
            return None
    except _Unsupported:
        return None
    if encode is None or compiled is None:
        return None
    scorer = CompiledScorer(encode, compiled[0], compiled[1])
    table = sample if sample is not None else sample_table(predictor.version, 256)
    try:
        expected = np.asarray(predictor.scores(table), dtype=float)
        got = np.asarray(scorer.scores(table), dtype=float)
    except Exception:
        return None
    if expected.shape != got.shape or not np.allclose(got, expected, rtol=1e-7, atol=1e-9):
        return None
    return scorer


def _booster_scores(booster: Any, flavor: str) -> Callable[[Any], Any]:
    if flavor == "lightgbm":
        return lambda matrix: booster.predict(matrix)

    def xgboost_scores(matrix: Any) -> Any:
        import xgboost

        return booster.predict(xgboost.DMatrix(matrix))

    return xgboost_scores


class _Unsupported(Exception):
    """Something in the pipeline this module does not compile."""


def _compile_columns(transformer: Any, features: Sequence[str]) -> Callable[[Any], Any] | None:
    """The ColumnTransformer as a function of an Arrow table."""
    from sklearn.compose import ColumnTransformer

    if not isinstance(transformer, ColumnTransformer):
        return None
    if getattr(transformer, "sparse_output_", False):
        return None
    blocks = []
    for name, part, columns in transformer.transformers_:
        if name == "remainder":
            if part != "drop":
                raise _Unsupported(name)
            continue
        blocks.append(_compile_block(part, list(columns)))

    def encode(table: Any) -> Any:
        parts = [block(table) for block in blocks]
        return parts[0] if len(parts) == 1 else np.hstack(parts)

    return encode


_SMALL = 64  # rows below which Python lookups beat Arrow's kernels (their call overhead)


def _numbers(table: Any, columns: Sequence[str]) -> Any:
    import pyarrow as pa

    matrix = np.empty((table.num_rows, len(columns)))
    for index, name in enumerate(columns):
        column = table.column(name)
        if column.type != pa.float64():
            column = column.cast(pa.float64())
        # Float64 to NumPy: missing values become NaN.
        matrix[:, index] = column.to_numpy()
    return matrix


class _Codes:
    """Each text value's index in a column's fitted categories, -1 for an unseen one."""

    def __init__(self, categories: Sequence[Any]) -> None:
        import pyarrow as pa

        names = [str(c) for c in categories]
        self.lookup = {name: index for index, name in enumerate(names)}
        self.value_set = pa.array(names, pa.string())

    def __call__(self, table: Any, column: str) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        values = table.column(column)
        if table.num_rows < _SMALL:
            get = self.lookup.get
            return np.fromiter(
                (get(MISSING_TEXT if v is None else str(v), -1) for v in values.to_pylist()),
                np.int64,
                table.num_rows,
            )
        filled = pc.fill_null(values.cast(pa.string()), MISSING_TEXT)
        codes = pc.index_in(filled, value_set=self.value_set)
        return np.asarray(pc.fill_null(codes, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _compile_block(part: Any, columns: list[str]) -> Callable[[Any], Any]:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        OneHotEncoder,
        OrdinalEncoder,
        StandardScaler,
    )

    identity = isinstance(part, FunctionTransformer) and part.func is None
    if identity or (isinstance(part, str) and part == "passthrough"):
        return lambda table: _numbers(table, columns)
    if isinstance(part, Pipeline):
        fill = None
        mean = scale = None
        for _, step in part.steps:
            if isinstance(step, SimpleImputer) and step.strategy in {"median", "mean"}:
                if fill is not None or mean is not None or scale is not None:
                    raise _Unsupported("imputer order")
                fill = np.asarray(step.statistics_, dtype=float)
            elif isinstance(step, StandardScaler):
                mean = None if step.mean_ is None else np.asarray(step.mean_, dtype=float)
                scale = None if step.scale_ is None else np.asarray(step.scale_, dtype=float)
            else:
                raise _Unsupported(type(step).__name__)

        def numeric(table: Any) -> Any:
            matrix = _numbers(table, columns)
            if fill is not None:
                matrix = np.where(np.isnan(matrix), fill, matrix)
            if mean is not None:
                matrix = matrix - mean
            if scale is not None:
                matrix = matrix / scale
            return matrix

        return numeric
    if isinstance(part, OneHotEncoder):
        if part.drop_idx_ is not None or getattr(part, "_infrequent_enabled", False):
            raise _Unsupported("one-hot drop or infrequent categories")
        if part.handle_unknown not in {"ignore", "infrequent_if_exist"}:
            raise _Unsupported("one-hot handle_unknown")
        categories = [list(c) for c in part.categories_]
        widths = np.cumsum([0, *[len(c) for c in categories]])
        coders = [_Codes(c) for c in categories]

        def one_hot(table: Any) -> Any:
            rows = table.num_rows
            matrix = np.zeros((rows, int(widths[-1])))
            index = np.arange(rows)
            for offset, column, coder in zip(widths, columns, coders, strict=False):
                codes = coder(table, column)
                known = codes >= 0
                matrix[index[known], offset + codes[known]] = 1.0
            return matrix

        return one_hot
    if isinstance(part, OrdinalEncoder):
        if part.handle_unknown != "use_encoded_value":
            raise _Unsupported("ordinal handle_unknown")
        unknown = float(part.unknown_value)
        coders = [_Codes(list(c)) for c in part.categories_]

        def ordinal(table: Any) -> Any:
            blocks = []
            for column, coder in zip(columns, coders, strict=True):
                codes = coder(table, column).astype(float)
                blocks.append(np.where(codes < 0, unknown, codes))
            return np.column_stack(blocks)

        return ordinal
    raise _Unsupported(type(part).__name__)


def _compile_estimator(model: Any, task: str) -> tuple[Callable[[Any], Any], str] | None:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    classifier = task in {"binary", "multiclass"}
    if isinstance(model, LogisticRegression) and classifier:
        return _linear_classifier(model, task), "linear"
    if type(model) in {LinearRegression, Ridge} and task == "regression":
        coef = np.asarray(model.coef_, dtype=float).ravel()
        intercept = (
            float(np.ravel(model.intercept_)[0])
            if np.ndim(model.intercept_)
            else float(model.intercept_)
        )
        return (lambda x: x @ coef + intercept), "linear"
    forests = (RandomForestClassifier, ExtraTreesClassifier, RandomForestRegressor)
    if isinstance(model, (*forests, ExtraTreesRegressor)):
        trees = [t.tree_ for t in model.estimators_]
    elif isinstance(model, DecisionTreeClassifier | DecisionTreeRegressor):
        trees = [model.tree_]
    else:
        return None
    if classifier != hasattr(model, "classes_"):
        return None
    return _FlatForest(trees, classifier).scorer(task), "forest"


def _linear_classifier(model: Any, task: str) -> Callable[[Any], Any]:
    coef = np.asarray(model.coef_, dtype=float)
    intercept = np.asarray(model.intercept_, dtype=float)
    if task == "binary":
        if coef.shape[0] != 1:
            raise _Unsupported("binary with several coefficient rows")
        weights, bias = coef[0], float(intercept[0])

        def binary(x: Any) -> Any:
            return 1.0 / (1.0 + np.exp(-(x @ weights + bias)))

        return binary

    def softmax(x: Any) -> Any:
        logits = x @ coef.T + intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    return softmax


class _FlatForest:
    """Every tree's nodes in one array, traversed for all trees and rows at once."""

    def __init__(self, trees: Sequence[Any], classifier: bool) -> None:
        offsets = np.cumsum([0, *[t.node_count for t in trees]])
        lefts, rights, features, thresholds, missing, values = [], [], [], [], [], []
        for offset, tree in zip(offsets, trees, strict=False):
            ids = np.arange(tree.node_count)
            leaf = tree.children_left < 0
            # A leaf points at itself, so rows that reached one stay while others descend.
            lefts.append(np.where(leaf, ids, tree.children_left) + offset)
            rights.append(np.where(leaf, ids, tree.children_right) + offset)
            features.append(np.where(leaf, 0, tree.feature))
            thresholds.append(tree.threshold)
            go_left = getattr(tree, "missing_go_to_left", None)
            missing.append(
                np.zeros(tree.node_count, bool) if go_left is None else go_left.astype(bool)
            )
            value = np.asarray(tree.value[:, 0, :], dtype=float)
            if classifier:
                totals = value.sum(axis=1, keepdims=True)
                value = value / np.where(totals == 0, 1.0, totals)
            values.append(value)
        self.roots = offsets[:-1].astype(np.int64)
        self.left = np.concatenate(lefts).astype(np.int64)
        self.right = np.concatenate(rights).astype(np.int64)
        self.feature = np.concatenate(features).astype(np.int64)
        self.threshold = np.concatenate(thresholds).astype(float)
        self.missing_left = np.concatenate(missing)
        self.value = np.concatenate(values)
        self.depth = max(int(t.max_depth) for t in trees)
        # children[2 * node + went_left]: one lookup per level instead of two and a where.
        self.children = np.stack([self.right, self.left], axis=1).ravel()
        self.internal = self.left != np.arange(len(self.left))

    def leaves(self, x: Any) -> Any:
        """The leaf each row reaches in each tree: an (n rows, n trees) array of node ids."""
        # scikit-learn compares float32 features with its thresholds; so must we.
        x32 = np.ascontiguousarray(x, dtype=np.float32).astype(float)
        rows, width = x32.shape
        trees = len(self.roots)
        flat = x32.ravel()
        any_missing = bool(np.isnan(flat).any())
        node = np.tile(self.roots, rows)
        # The (row, tree) pairs still descending: every few levels, those at a leaf drop out.
        active = np.arange(rows * trees)
        current = node
        offsets = np.repeat(np.arange(rows) * width, trees)
        for level in range(self.depth):
            value = flat[offsets + self.feature[current]]
            go_left = value <= self.threshold[current]
            if any_missing:
                go_left |= np.isnan(value) & self.missing_left[current]
            current = self.children[2 * current + go_left]
            node[active] = current
            if level % 3 == 2:
                descending = self.internal[current]
                if not descending.all():
                    active = active[descending]
                    if not active.size:
                        break
                    current = current[descending]
                    offsets = offsets[descending]
        return node.reshape(rows, trees)

    def scorer(self, task: str) -> Callable[[Any], Any]:
        def scores(x: Any) -> Any:
            mean = self.value[self.leaves(x)].mean(axis=1)
            if task == "binary":
                return mean[:, 1]
            if task == "multiclass":
                return mean
            return mean[:, 0]

        return scores
