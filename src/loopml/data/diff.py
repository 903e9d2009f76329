"""Differences between two dataset versions: schema, row counts and column profiles."""

from __future__ import annotations

from typing import Any

from loopml.data.versions import schema_changes
from loopml.records import DatasetVersion

_COMPARED = ("count", "nulls", "distinct", "min", "max", "mean", "std")


def diff_versions(a: DatasetVersion, b: DatasetVersion) -> dict[str, Any]:
    """What changed from ``a`` to ``b``: schema changes, rows, and per-column statistics.

    Numeric statistics carry their change (``delta``) and relative change (``ratio``)
    so a reader sees at a glance which columns moved.
    """
    columns: dict[str, Any] = {}
    for name in [c.name for c in b.schema if c.name in {x.name for x in a.schema}]:
        before, after = a.profile.get(name, {}), b.profile.get(name, {})
        changed = {}
        for key in _COMPARED:
            old, new = before.get(key), after.get(key)
            if old == new:
                continue
            entry: dict[str, Any] = {"a": old, "b": new}
            if isinstance(old, int | float) and isinstance(new, int | float):
                entry["delta"] = new - old
                if old:
                    entry["ratio"] = new / old
            changed[key] = entry
        old_top = {str(v) for v, _ in before.get("top", [])}
        new_top = {str(v) for v, _ in after.get("top", [])}
        if old_top != new_top:
            changed["top"] = {
                "added": sorted(new_top - old_top),
                "removed": sorted(old_top - new_top),
            }
        if changed:
            columns[name] = changed
    return {
        "a": a.ref,
        "b": b.ref,
        "same_content": a.id == b.id,
        "schema": schema_changes(a.schema, b.schema),
        "rows": {"a": a.row_count, "b": b.row_count, "delta": b.row_count - a.row_count},
        "columns": columns,
    }
