"""Training data: a dataset version's rows, its target, task, classes and split.

The holdout is the version's ``test`` split when it was made by ``loopml split``; its
``valid`` rows, when it has any, score the trials of a search. A version without a
split column is split here, seeded and recorded in the run: 20% of the rows are the
holdout (stratified by class for classification), and a search scores its trials on
20% of the remaining rows.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from loopml.errors import InputError
from loopml.features.splits import SPLIT_COLUMN
from loopml.records import DatasetVersion
from loopml.train.metrics import TASKS

HOLDOUT = 0.2
# An integer target with at most this many distinct values is a class label.
MAX_INTEGER_CLASSES = 10
MAX_CLASSES = 200


@dataclass
class TrainingData:
    """A version's rows, ready to train on.

    Attributes:
        table: the rows with a target (an Arrow table).
        task: binary, multiclass, regression or anomaly.
        y: the target, encoded 0..k-1 for classification (None without a target).
        classes: the class labels, in code order.
        train, valid, test: boolean row masks; ``valid`` may be empty.
        split: how the rows were split, for the run's record.
        rows_without_target: rows dropped because their target is missing.
    """

    table: Any
    task: str
    y: Any
    classes: list[Any]
    train: Any
    valid: Any
    test: Any
    split: dict[str, Any] = field(default_factory=dict)
    rows_without_target: int = 0

    @property
    def fit_index(self) -> Any:
        """The full training split's row numbers: train rows, then valid rows."""
        import numpy as np

        return np.concatenate([np.flatnonzero(self.train), np.flatnonzero(self.valid)])

    @property
    def test_index(self) -> Any:
        """The holdout's row numbers."""
        import numpy as np

        return np.flatnonzero(self.test)


def load(
    version: DatasetVersion,
    table: Any,
    target: str | None,
    task: str | None,
    seed: int,
) -> TrainingData:
    """Check the target, infer the task, encode labels and split the rows.

    Raises:
        InputError: a missing or unusable target, an unknown task, too few rows.
    """
    import pyarrow.compute as pc

    names = table.schema.names
    if task is not None and task not in TASKS:
        raise InputError(f"unknown task {task!r}", hint=f"use one of {', '.join(TASKS)}")
    if target is None and task != "anomaly":
        raise InputError(
            "--target is missing", hint="name the column to predict, or --task anomaly"
        )
    if target is not None and target not in names:
        close = difflib.get_close_matches(target, names, n=1)
        raise InputError(
            f"target column {target!r} is not in {version.ref}",
            hint=f"did you mean {close[0]!r}?" if close else f"its columns are {', '.join(names)}",
        )
    if target == SPLIT_COLUMN:
        raise InputError("the split column cannot be the target")
    dropped = 0
    if target is not None:
        present = pc.is_valid(table[target])
        dropped = len(table) - int(pc.sum(present).as_py() or 0)
        if dropped:
            table = table.filter(present)
    if len(table) < 10:
        raise InputError(
            f"{version.ref} has {len(table)} rows with a target; training needs at least 10"
        )
    raw = None if target is None else table[target].to_numpy(zero_copy_only=False)
    field_type = None if target is None else str(table.schema.field(target).type)
    task = task or infer_task(field_type, raw)
    train, valid, test, split = _split(table, raw, task, seed)
    y: Any = None
    classes: list[Any] = []
    if raw is not None:
        y, classes = _encode(raw, task, train | valid, target or "")
    return TrainingData(table, task, y, classes, train, valid, test, split, dropped)


def infer_task(field_type: str | None, values: Any) -> str:
    """binary, multiclass or regression from the target's type and values."""
    import numpy as np

    if field_type is None or values is None:
        return "anomaly"
    distinct = len(np.unique(values.astype(str) if values.dtype == object else values))
    if field_type == "bool":
        return "binary"
    if field_type.startswith(("string", "large_string", "dictionary")):
        return "binary" if distinct <= 2 else "multiclass"
    if field_type.startswith(("int", "uint")):
        if distinct <= 2:
            return "binary"
        return "multiclass" if distinct <= MAX_INTEGER_CLASSES else "regression"
    if distinct <= 2 and set(np.unique(values).tolist()) <= {0.0, 1.0}:
        return "binary"
    return "regression"


def _split(table: Any, raw: Any, task: str, seed: int) -> tuple[Any, Any, Any, dict[str, Any]]:
    import numpy as np

    rows = len(table)
    if SPLIT_COLUMN in table.schema.names:
        labels = table[SPLIT_COLUMN].to_numpy(zero_copy_only=False).astype(str)
        train, valid, test = (labels == "train"), (labels == "valid"), (labels == "test")
        if not test.any():
            raise InputError(
                "the data's split has no test rows to measure the model on",
                hint="split it again with test > 0 (`loopml split`)",
            )
        if not train.any():
            raise InputError("the data's split has no train rows")
        counts = {"train": int(train.sum()), "valid": int(valid.sum()), "test": int(test.sum())}
        split: dict[str, Any] = {"by": "column", "column": SPLIT_COLUMN, "rows": counts}
        # Rows labelled otherwise (an out-of-time set, say) are left out of training.
        split["rows_left_out"] = int(len(labels) - sum(counts.values()))
        return train, valid, test, split
    from sklearn.model_selection import train_test_split

    index = np.arange(rows)
    stratify = None
    if task in {"binary", "multiclass"} and raw is not None:
        labels = raw.astype(str) if raw.dtype == object else raw
        _values, per_class = np.unique(labels, return_counts=True)
        # Each class needs two rows, and the holdout a row of each class.
        if per_class.min() >= 2 and math.ceil(rows * HOLDOUT) >= len(per_class):
            stratify = labels
    _, test_index = train_test_split(index, test_size=HOLDOUT, random_state=seed, stratify=stratify)
    test = np.zeros(rows, dtype=bool)
    test[test_index] = True
    train = ~test
    valid = np.zeros(rows, dtype=bool)
    split = {
        "by": "stratified" if stratify is not None else "random",
        "test": HOLDOUT,
        "seed": seed,
        "rows": {"train": int(train.sum()), "valid": 0, "test": int(test.sum())},
    }
    return train, valid, test, split


def search_rows(data: TrainingData, seed: int) -> tuple[Any, Any]:
    """The rows a search fits trials on and the rows it scores them on."""
    import numpy as np

    if data.valid.any():
        return data.train, data.valid
    index = np.flatnonzero(data.train)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(index, size=max(1, int(len(index) * HOLDOUT)), replace=False)
    valid = np.zeros(len(data.train), dtype=bool)
    valid[chosen] = True
    return data.train & ~valid, valid


def _encode(raw: Any, task: str, fit_rows: Any, target: str) -> tuple[Any, list[Any]]:
    import numpy as np

    if task == "regression":
        try:
            return raw.astype(np.float64), []
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"target {target!r} is not numeric, so it cannot be a regression target",
                hint="use --task binary or multiclass",
            ) from exc
    if task == "anomaly":
        # Labels, when given, only score the detector; 1 marks an anomaly.
        return (raw.astype(np.float64) > 0).astype(np.int64), [0, 1]
    values = raw.astype(str) if raw.dtype == object else raw
    classes = np.unique(values[fit_rows])
    if len(classes) < 2:
        raise InputError(f"target {target!r} has one class in the training rows; nothing to learn")
    if task == "binary" and len(classes) != 2:
        raise InputError(
            f"target {target!r} has {len(classes)} classes, not 2", hint="use --task multiclass"
        )
    if len(classes) > MAX_CLASSES:
        raise InputError(
            f"target {target!r} has {len(classes)} classes; is it a regression target?",
            hint="use --task regression",
        )
    codes = np.searchsorted(classes, values)
    codes = np.clip(codes, 0, len(classes) - 1)
    unseen = classes[codes] != values
    if unseen.any():
        strange = sorted({str(v) for v in values[unseen]})[:5]
        raise InputError(
            f"the holdout has classes the training rows lack: {', '.join(strange)}",
            hint="split so every class is in the training rows (a stratified split)",
        )
    return codes.astype(np.int64), [_plain(c) for c in classes.tolist()]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
