"""Column profiles: count, nulls, distinct estimate, min/max/mean/std, quantiles, top values.

Computed by DuckDB in parallel over Parquet files (quantiles from a sample), so
profiling costs a fraction of the ingest. Monitoring compares these profiles later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from loopml.data import _duckdb
from loopml.data._sql import identifier, string_list

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_K = 10
MAX_TOP_DISTINCT = 10_000
QUANTILE_SAMPLE = 100_000


def _kind(type_: pa.DataType) -> str:
    if pa.types.is_boolean(type_):
        return "bool"
    if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return "numeric"
    if pa.types.is_temporal(type_):
        return "temporal"
    return "categorical"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def profile_files(paths: Sequence[str], schema: pa.Schema) -> dict[str, dict[str, Any]]:
    """Profile every column of the Parquet files at ``paths``.

    Returns:
        column name -> statistics (``kind``, ``count``, ``nulls``, ``distinct``, and for
        numbers ``min max mean std quantiles``; for the rest ``min max`` when ordered and
        ``top`` as [value, count] pairs).
    """
    profile: dict[str, dict[str, Any]] = {
        field.name: {"kind": _kind(field.type)} for field in schema
    }
    if not paths or not len(schema):
        return profile
    con = _duckdb.connect()
    files = string_list(paths)
    table = f"read_parquet({files})"
    selects = ["count(*)"]
    layout: list[tuple[str, str]] = []
    quantile_selects: list[str] = []
    quantile_columns: list[str] = []
    for field in schema:
        column = identifier(field.name)
        kind = profile[field.name]["kind"]
        selects += [f"count({column})", f"approx_count_distinct({column})"]
        layout += [(field.name, "count"), (field.name, "distinct")]
        if kind == "numeric":
            numeric = f"CAST({column} AS DOUBLE)"
            quantiles = ", ".join(str(q) for q in QUANTILES)
            native = column if pa.types.is_integer(field.type) else numeric
            selects += [
                f"min({native})",
                f"max({native})",
                f"avg({numeric})",
                f"stddev_samp({numeric})",
            ]
            layout += [(field.name, k) for k in ("min", "max", "mean", "std")]
            quantile_selects.append(f"quantile_cont({numeric}, [{quantiles}])")
            quantile_columns.append(field.name)
        elif kind in {"temporal", "categorical"} and not pa.types.is_nested(field.type):
            selects += [f"min({column})", f"max({column})"]
            layout += [(field.name, "min"), (field.name, "max")]
        elif kind == "bool":
            selects.append(f"avg(CAST({column} AS DOUBLE))")
            layout.append((field.name, "mean"))
    row = con.execute(f"SELECT {', '.join(selects)} FROM {table}").fetchone()
    total = row[0]
    for (name, key), value in zip(layout, row[1:], strict=True):
        profile[name][key] = _clean(value)
    if quantile_selects:
        # Quantiles of a sample of about QUANTILE_SAMPLE rows: exact quantiles of every
        # row cost more than the rest of the profile together, for ~0.5% rank error.
        sample = table
        if total > 2 * QUANTILE_SAMPLE:
            percent = 100.0 * QUANTILE_SAMPLE / total
            sample = f"(SELECT * FROM {table} USING SAMPLE {percent:.4f}% (system, 7))"
        values = con.execute(f"SELECT {', '.join(quantile_selects)} FROM {sample}").fetchone()
        for name, quantiles in zip(quantile_columns, values, strict=True):
            profile[name]["quantiles"] = {
                str(q): _clean(v) for q, v in zip(QUANTILES, quantiles or [], strict=False)
            }
    for field in schema:
        stats = profile[field.name]
        stats["nulls"] = total - stats["count"]
        stats["count"] = total
        # Top values describe categories; for near-unique columns (ids, emails) they
        # would cost a full group-by and say nothing.
        if (
            stats["kind"] in {"categorical", "bool"}
            and (stats["distinct"] or 0) <= MAX_TOP_DISTINCT
        ):
            column = identifier(field.name)
            top = con.execute(
                f"SELECT {column}, count(*) AS n FROM {table} WHERE {column} IS NOT NULL "
                f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP_K}"
            ).fetchall()
            stats["top"] = [[_clean(value), count] for value, count in top]
    con.close()
    return profile
