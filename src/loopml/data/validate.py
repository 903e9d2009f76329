"""Row-level contract checks on Arrow batches, vectorised with pyarrow.compute.

Each row gets the reason of the first rule it breaks, or null when it passes; rules
run in contract order, then the unique key. Reasons are short and categorical
(``amount: above max 10000``) so they can be counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data import _arrow, _duckdb
from loopml.data._sql import identifier, literal
from loopml.data.contract import Contract


class SeenKeys:
    """The unique-key values seen so far, as sorted runs merged like an LSM tree.

    Holds 8 bytes per key; lookups are a binary search per run, and merging keeps
    the number of runs logarithmic in the number of keys. Keys that arrive in
    increasing order (the usual case for ids) skip the searches entirely.
    """

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []
        self._max: int | None = None

    def _contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        if self._max is None or not len(keys) or keys.min() > self._max:
            return found
        for run in self.runs:
            position = np.searchsorted(run, keys)
            np.minimum(position, len(run) - 1, out=position)
            found |= run[position] == keys
        return found

    def add_batch(self, keys: np.ndarray) -> np.ndarray:
        """Record ``keys`` and return a mask of those already seen (earlier or in this batch)."""
        if not len(keys):
            return np.zeros(0, dtype=bool)
        prior = self._contains(keys)
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        repeat_ordered = np.zeros(len(keys), dtype=bool)
        repeat_ordered[1:] = ordered[1:] == ordered[:-1]
        duplicate = prior.copy()
        duplicate[order[repeat_ordered]] = True
        new = ordered[~repeat_ordered & ~prior[order]]
        if len(new):
            self.runs.append(new)
            self._max = int(new[-1]) if self._max is None else max(self._max, int(new[-1]))
        # Merge runs of similar size so there are O(log n) of them.
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            last = self.runs.pop()
            merged = np.concatenate([self.runs[-1], last])
            merged.sort(kind="stable")
            self.runs[-1] = merged
        return duplicate


def bool_mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean array (nulls as False) as a numpy mask.

    Reads the bitmaps directly: pyarrow's own conversion imports pandas, whose import
    alone costs 0.13 CPU-s.
    """
    return _arrow.mask(values)


def key_hashes(batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
    """One 64-bit value per row for the key: the value itself for one integer column,
    else a hash of the values (collisions are about 1 in 2**64 per pair)."""
    if len(columns) == 1 and pa.types.is_integer(batch.schema.field(columns[0]).type):
        column = batch.column(columns[0])
        if not column.null_count:
            return _arrow.numbers(column).astype(np.int64)
        return column.to_numpy(zero_copy_only=False).astype(np.int64)
    import pandas as pd

    frame = batch.select(columns).to_pandas()
    return pd.util.hash_pandas_object(frame, index=False).to_numpy().view(np.int64)


def rules_sql(contract: Contract, prefix: list[str] | None = None) -> str | None:
    """One SQL expression giving each row's first broken rule, or NULL when it passes.

    ``prefix`` holds ``WHEN ... THEN ...`` cases a source checks first (such as values
    that did not parse).

    DuckDB evaluates it in parallel inside the scan (CSV) or over each Arrow batch
    (other sources), so the rules have exactly one implementation. A NULL value
    fails no rule except ``nullable: false``, as in SQL.
    """
    cases: list[str] = list(prefix or [])
    for name, rule in contract.columns.items():
        column = identifier(name)
        checks: list[tuple[str, str]] = []
        if not rule.nullable:
            checks.append((f"{column} IS NULL", f"{name}: null not allowed"))
        if rule.min is not None:
            checks.append(
                (f"{column} < {literal(rule.min, rule.type)}", f"{name}: below min {rule.min}")
            )
        if rule.max is not None:
            checks.append(
                (f"{column} > {literal(rule.max, rule.type)}", f"{name}: above max {rule.max}")
            )
        if rule.allowed is not None:
            values = ", ".join(literal(v, rule.type) for v in rule.allowed)
            checks.append((f"{column} NOT IN ({values})", f"{name}: not an allowed value"))
        if rule.regex is not None:
            pattern = literal(rule.regex, "string")
            checks.append(
                (
                    f"NOT regexp_full_match({column}, {pattern})",
                    f"{name}: does not match {rule.regex}",
                )
            )
        cases += [
            f"WHEN {condition} THEN {literal(reason, 'string')}" for condition, reason in checks
        ]
    for name in contract.unique:
        reason = literal(f"{name}: null in the unique key", "string")
        cases.append(f"WHEN {identifier(name)} IS NULL THEN {reason}")
    if not cases:
        return None
    return "CASE " + " ".join(cases) + " END"


def check_batch(
    batch: pa.RecordBatch,
    contract: Contract,
    seen: SeenKeys | None,
    reasons: pa.Array | None = None,
    *,
    connection: Any = None,
) -> pa.Array | None:
    """Return each row's first broken rule (null for rows that pass), or None if all pass.

    Args:
        batch: the rows, typed as the contract says.
        contract: the rules.
        seen: the unique keys seen so far in this ingest; updated.
        reasons: the rules' verdicts when the source already computed ``rules_sql``.
        connection: a DuckDB connection to evaluate the rules with, when ``reasons`` is None.
    """
    if reasons is None and (expression := rules_sql(contract)) is not None:
        con = connection or _duckdb.connect()
        con.register("loopml_batch", pa.Table.from_batches([batch]))
        try:
            reasons = con.sql(f"SELECT {expression} FROM loopml_batch").to_arrow_table().column(0)
        finally:
            con.unregister("loopml_batch")
        reasons = reasons.combine_chunks()
    if reasons is not None and reasons.null_count == len(reasons):
        reasons = None
    if contract.unique and seen is not None:
        failing = (
            np.zeros(len(batch), dtype=bool) if reasons is None else bool_mask(pc.is_valid(reasons))
        )
        key_columns = batch.select(contract.unique)
        keys = key_hashes(
            key_columns.filter(_arrow.booleans(~failing)) if failing.any() else key_columns,
            contract.unique,
        )
        # Rows already quarantined for another reason do not claim their key.
        duplicate = np.zeros(len(batch), dtype=bool)
        duplicate[~failing] = seen.add_batch(keys)
        if duplicate.any():
            text = _arrow.string(f"duplicate key ({', '.join(contract.unique)})")
            mask = _arrow.booleans(duplicate)
            reasons = (
                pc.if_else(mask, text, pa.nulls(len(batch), pa.string()))
                if reasons is None
                else pc.if_else(mask, text, reasons)
            )
    return reasons
