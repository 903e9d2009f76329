"""Row-level contract checks on Arrow batches, vectorised with pyarrow.compute.

Each row gets the reason of the first rule it breaks, or null when it passes; rules
run in contract order, then the unique key. Reasons are short and categorical
(``amount: above max 10000``) so they can be counted.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data.contract import ColumnRule, Contract


class SeenKeys:
    """The unique-key values seen so far, as sorted runs merged like an LSM tree.

    Holds 8 bytes per key; lookups are a binary search per run, and merging keeps
    the number of runs logarithmic in the number of keys.
    """

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def _contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for run in self.runs:
            position = np.searchsorted(run, keys)
            position[position == len(run)] = 0
            found |= run[position] == keys if len(run) else False
        return found

    def add_batch(self, keys: np.ndarray) -> np.ndarray:
        """Record ``keys`` and return a mask of those already seen (earlier or in this batch)."""
        duplicate = self._contains(keys)
        unique, first = np.unique(keys, return_index=True)
        repeated = np.ones(len(keys), dtype=bool)
        repeated[first] = False
        duplicate |= repeated
        new = unique[~self._contains(unique)]
        self.runs.append(new)
        # Merge runs of similar size so there are O(log n) of them.
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            last = self.runs.pop()
            self.runs[-1] = np.union1d(self.runs[-1], last)
        return duplicate


def key_hashes(batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
    """One 64-bit value per row for the key: the value itself for one integer column,
    else a hash of the values (collisions are about 1 in 2**64 per pair)."""
    if len(columns) == 1 and pa.types.is_integer(batch.schema.field(columns[0]).type):
        return batch.column(columns[0]).to_numpy(zero_copy_only=False).astype(np.int64)
    import pandas as pd

    frame = batch.select(columns).to_pandas()
    return pd.util.hash_pandas_object(frame, index=False).to_numpy().view(np.int64)


def _literal(value: object, type_: pa.DataType) -> pa.Scalar:
    if pa.types.is_timestamp(type_) or pa.types.is_date(type_):
        return pc.cast(pa.scalar(str(value)), type_)
    return pa.scalar(value).cast(type_) if not isinstance(value, float) else pa.scalar(value)


def _rule_masks(name: str, column: pa.Array, rule: ColumnRule) -> list[tuple[pa.Array, str]]:
    masks: list[tuple[pa.Array, str]] = []
    if not rule.nullable:
        masks.append((pc.is_null(column), f"{name}: null not allowed"))
    if rule.min is not None:
        masks.append((pc.less(column, _literal(rule.min, column.type)), f"{name}: below min {rule.min}"))
    if rule.max is not None:
        masks.append((pc.greater(column, _literal(rule.max, column.type)), f"{name}: above max {rule.max}"))
    if rule.allowed is not None:
        allowed = pa.array(rule.allowed).cast(column.type)
        masks.append((pc.invert(pc.is_in(column, value_set=allowed)), f"{name}: not an allowed value"))
    if rule.regex is not None:
        pattern = f"^(?:{rule.regex})$"
        masks.append((pc.invert(pc.match_substring_regex(column, pattern)),
                      f"{name}: does not match {rule.regex}"))
    return masks


def check_batch(batch: pa.RecordBatch, contract: Contract, seen: SeenKeys | None) -> pa.Array | None:
    """Return each row's first broken rule (null for rows that pass), or None if all pass."""
    reasons: pa.Array | None = None
    for name, rule in contract.columns.items():
        column = batch.column(name)
        for mask, reason in _rule_masks(name, column, rule):
            # Null values fail no rule but "null not allowed"; fill them as passing.
            mask = pc.fill_null(mask, False)
            if not pc.any(mask).as_py():
                continue
            text = pa.scalar(reason)
            reasons = pc.if_else(mask, text, pa.nulls(len(batch), pa.string())) if reasons is None \
                else pc.if_else(pc.and_(pc.is_null(reasons), mask), text, reasons)
    if contract.unique and seen is not None:
        for name in contract.unique:
            mask = pc.is_null(batch.column(name))
            if pc.any(mask).as_py():
                text = pa.scalar(f"{name}: null in the unique key")
                reasons = pc.if_else(mask, text, pa.nulls(len(batch), pa.string())) \
                    if reasons is None else pc.if_else(pc.is_null(reasons), pc.if_else(mask, text, reasons), reasons)
        failing = np.zeros(len(batch), dtype=bool) if reasons is None \
            else pc.is_valid(reasons).to_numpy(zero_copy_only=False)
        keys = key_hashes(batch.filter(pa.array(~failing)), contract.unique)
        # Rows already quarantined for another reason do not claim their key.
        duplicate = np.zeros(len(batch), dtype=bool)
        duplicate[~failing] = seen.add_batch(keys)
        if duplicate.any():
            text = pa.scalar(f"duplicate key ({', '.join(contract.unique)})")
            mask = pa.array(duplicate)
            reasons = pc.if_else(mask, text, pa.nulls(len(batch), pa.string())) if reasons is None \
                else pc.if_else(mask, text, reasons)
    return reasons
