"""Time-series features: per-entity rolling windows, lags, recency and point-in-time joins.

Every feature of an event at time ``t`` is computed from rows of the same entity with a
time strictly before ``t``: a window ``w`` covers ``[t - w, t)``, so neither the event
itself nor any other event at the same instant (a tie) nor anything later leaks into it.

Both functions are DuckDB SQL over the input versions. They are deterministic (the same
input gives byte-identical output, so the same version id) and keep the input's row
order: each row is numbered as it is read (``row_number() OVER ()``, which DuckDB
guarantees to follow the file order), ties at one instant are ordered by that number,
and the result is written back in it. Floating-point sums therefore add the same
values in the same order on every run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from loopml.context import Context
from loopml.data._sql import identifier, literal
from loopml.data.versions import check_name
from loopml.data.writer import audits_failures
from loopml.errors import InputError
from loopml.features._relations import (
    TEMPORAL_TYPES,
    column_types,
    connection_with,
    resolve_inputs,
    write_query,
)
from loopml.records import DatasetVersion

AGGREGATES = ("count", "sum", "mean", "std", "min", "max")
"""The rolling aggregates, in the order their names are accepted."""

_UNITS_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_UNITS_US["w"] = 7 * _UNITS_US["d"]
_WINDOW = re.compile(r"(\d+)([smhdw])")
_MAX_WINDOW_US = 36_525 * _UNITS_US["d"]  # 100 years; keeps nanosecond keys inside int64.
MAX_LAGS = 1_000

_NUMERIC = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
}


def parse_window(text: str) -> int:
    """The length of a window such as ``30s``, ``15m``, ``1h``, ``24h``, ``7d`` or ``2w``.

    Args:
        text: a positive whole number followed by one unit: s, m, h, d or w.

    Returns:
        The length in microseconds.

    Raises:
        InputError: the text is not such a window, is zero, or is longer than 100 years.

    Example:
        >>> parse_window("24h")
        86400000000
    """
    match = _WINDOW.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if match is None:
        raise InputError(
            f"invalid window {text!r}",
            hint="write a whole number and a unit: s, m, h, d or w, as in 30s, 1h, 7d",
        )
    length = int(match.group(1)) * _UNITS_US[match.group(2)]
    if length <= 0:
        raise InputError(f"window {text!r} is empty", hint="a window must be longer than zero")
    if length > _MAX_WINDOW_US:
        raise InputError(f"window {text!r} is too long", hint="windows go up to 100 years")
    return length


@audits_failures("dataset.transform")
def rolling_features(
    ctx: Context,
    name: str,
    input_ref: str,
    *,
    entity: str,
    time: str,
    value: str,
    windows: str | Sequence[str],
    aggs: str | Sequence[str],
    lags: int = 0,
    time_since_previous: bool = True,
) -> DatasetVersion:
    """Per-entity rolling features of ``value`` over event time, as a version of ``name``.

    The output has one row per input row, in input order, with every input column and:

    * ``{value}_{agg}_{window}`` for each window and aggregate: over the same entity's
      events in ``[t - window, t)``. ``count`` counts events (0 when there are none);
      ``sum``, ``mean``, ``std`` (sample) and ``min``/``max`` skip NULL values and are
      NULL over no values (``std`` also over one). Counts are integers; sums, means
      and deviations are doubles; minima, maxima and lags keep the value's type.
    * ``{value}_lag_{k}`` for k in 1..``lags``: the value of the k-th latest earlier
      event (ties at one instant are ordered by input order).
    * ``{time}_since_previous_s``: seconds since the entity's latest earlier event, NULL
      for its first one.

    A row whose entity or time is NULL gets count 0 and NULL features, and does not
    count towards any other row's features.

    Args:
        ctx: the workspace context.
        name: the dataset to write a new version of.
        input_ref: the events, ``NAME[@VERSION]``.
        entity: the column naming the entity (a customer, a card).
        time: the event time column (a timestamp or a date).
        value: the numeric column to aggregate.
        windows: window lengths such as ``["1h", "24h", "7d"]`` (or ``"1h,24h,7d"``).
        aggs: aggregates out of count, sum, mean, std, min and max.
        lags: how many earlier values to add as columns.
        time_since_previous: add the seconds since the previous event.

    Raises:
        InputError: a bad window, aggregate or lag count; a column that is missing,
            of the wrong type, or whose output name is taken.
        NotFound: the input does not exist.

    Example:
        >>> rolling_features(ctx, "tx_history", "transactions", entity="customer_id",
        ...                  time="ts", value="amount", windows=["1h", "24h", "7d"],
        ...                  aggs=["count", "sum", "mean"])
    """
    step = f"rolling {name}"
    check_name(name)
    window_texts = _names(windows, "window", step)
    lengths = {text: parse_window(text) for text in window_texts}
    agg_names = _names(aggs, "aggregate", step)
    unknown = [a for a in agg_names if a not in AGGREGATES]
    if unknown:
        raise InputError(
            f"{step}: unknown aggregate {unknown[0]!r}", hint=f"use {', '.join(AGGREGATES)}"
        )
    if isinstance(lags, bool) or not isinstance(lags, int) or not 0 <= lags <= MAX_LAGS:
        raise InputError(f"{step}: lags must be a whole number from 0 to {MAX_LAGS}")

    (version,) = resolve_inputs(ctx, [input_ref])
    definition: dict[str, Any] = {
        "entity": entity,
        "time": time,
        "value": value,
        "windows": window_texts,
        "aggs": agg_names,
        "lags": lags,
        "time_since_previous": bool(time_since_previous),
    }
    with connection_with(ctx, [version]) as con:
        types = column_types(con, version.dataset)
        _require(types, version, step, entity, "entity")
        _require(types, version, step, time, "time")
        _require(types, version, step, value, "value")
        if not _is_temporal(types[time]):
            raise InputError(
                f"{step}: time column {time!r} of {version.ref} is {types[time]}, "
                "not a timestamp or date",
                hint="cast it when ingesting (a contract type: timestamp or date)",
            )
        if not _is_numeric(types[value]):
            raise InputError(
                f"{step}: value column {value!r} of {version.ref} is {types[value]}, not numeric",
                hint="choose a numeric column, or cast it with a SQL transform first",
            )
        features = [f"{value}_{agg}_{text}" for text in window_texts for agg in agg_names]
        features += [f"{value}_lag_{k}" for k in range(1, lags + 1)]
        if time_since_previous:
            features.append(f"{time}_since_previous_s")
        taken = [f for f in features if f in types]
        if taken:
            raise InputError(
                f"{step}: output column {taken[0]!r} is already a column of {version.ref}",
                hint="rename that column, or roll up a differently named value column",
            )
        sql = _rolling_sql(
            version.dataset,
            list(types),
            entity=entity,
            value=value,
            key=_time_key(time, types[time]),
            unit=_units_per_us(types[time]),
            windows=[(text, lengths[text]) for text in window_texts],
            aggs=agg_names,
            lags=lags,
            time_since=f"{time}_since_previous_s" if time_since_previous else None,
            value_has_nulls=version.profile.get(value, {}).get("nulls") != 0,
        )
        return write_query(
            ctx,
            name,
            con,
            sql,
            [version],
            kind="rolling",
            definition=definition,
            params={},
            step=step,
        )


def _rolling_sql(
    table: str,
    columns: list[str],
    *,
    entity: str,
    value: str,
    key: str,
    unit: int,
    windows: list[tuple[str, int]],
    aggs: list[str],
    lags: int,
    time_since: str | None,
    value_has_nulls: bool = True,
) -> str:
    """The rolling-feature query (see ``rolling_features`` for what it computes).

    ``key`` is the event time as an integer (microseconds, or nanoseconds for
    nanosecond timestamps: ``unit`` per microsecond). For each row, counted within its
    entity's events ordered by (key, row number):

    * ``pos`` is the row's position; ``before`` the number of events strictly earlier
      (so the row's tie group starts at ``before``); ``start_i`` the number of events
      earlier than ``t - w_i``. Window ``i`` is then positions ``[start_i, before)``,
      a ROWS frame; its count is ``before - start_i``.
    * Lag ``k`` is the event at position ``before - k``.

    ROWS frames over a total order, rather than RANGE frames over the time alone, fix
    the order in which tied events are aggregated, so results repeat bit for bit.
    """
    reserved = set(columns)
    ordinal, k, valid, pos, before, previous = (
        identifier(_fresh(base, reserved))
        for base in ("__ordinal", "__key", "__valid", "__pos", "__before", "__previous")
    )
    starts = [identifier(_fresh(f"__start_{i}", reserved)) for i in range(len(windows))]
    e, v = identifier(entity), identifier(value)
    # Rows with a NULL time sort after all others of their entity, so they are never
    # "before" a row with a time; they and the rows of the NULL entity are masked.
    by_time = f"PARTITION BY {e} ORDER BY {k} ASC NULLS LAST"
    by_row = f"PARTITION BY {e} ORDER BY {k} ASC NULLS LAST, {ordinal}"
    # A RANGE frame with a constant offset: events up to (t - offset), within the entity.
    counted = [
        f"count(*) OVER ({by_time} RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS {before}",
        f"max({k}) OVER ({by_time} RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) "
        f"AS {previous}",
        f"row_number() OVER ({by_row}) - 1 AS {pos}",
    ]
    for start, (_, length) in zip(starts, windows, strict=True):
        offset = literal(length * unit + 1)
        counted.append(
            f"count(*) OVER ({by_time} RANGE BETWEEN UNBOUNDED PRECEDING AND {offset} PRECEDING) "
            f"AS {start}"
        )
    outputs = [identifier(c) for c in columns]
    # Frame offsets are clamped so that rows with a NULL entity or time (whose
    # features are masked anyway) never give DuckDB a negative offset.
    frame_end = f"greatest({pos} - {before} + 1, 1)"
    as_double = f"CAST({v} AS DOUBLE)"
    functions = {
        "sum": f"sum({as_double})",
        "mean": f"avg({as_double})",
        "std": f"stddev_samp({as_double})",
        "min": f"min({v})",
        "max": f"max({v})",
    }
    for (text, _), start in zip(windows, starts, strict=True):
        frame = (
            f"OVER ({by_row} ROWS BETWEEN greatest({pos} - {start}, 0) PRECEDING "
            f"AND {frame_end} PRECEDING)"
        )
        for agg in aggs:
            alias = identifier(f"{value}_{agg}_{text}")
            if agg == "count":
                outputs.append(f"CASE WHEN {valid} THEN {before} - {start} ELSE 0 END AS {alias}")
            elif agg == "mean" and not value_has_nulls:
                # Every event in the window has a value, so the mean is the sum over the
                # count: DuckDB computes the sum once for both, not a second aggregate.
                outputs.append(
                    f"CASE WHEN {valid} AND {before} > {start} "
                    f"THEN {functions['sum']} {frame} / ({before} - {start}) END AS {alias}"
                )
            else:
                outputs.append(f"CASE WHEN {valid} THEN {functions[agg]} {frame} END AS {alias}")
    for lag in range(1, lags + 1):
        distance = f"greatest({pos} - {before}, 0) + {literal(lag)}"
        outputs.append(
            f"CASE WHEN {valid} AND {before} >= {literal(lag)} "
            f"THEN lag({v}, {distance}) OVER ({by_row}) END "
            f"AS {identifier(f'{value}_lag_{lag}')}"
        )
    if time_since is not None:
        seconds = literal(float(unit * 1_000_000))
        outputs.append(
            f"CASE WHEN {valid} THEN CAST({k} - {previous} AS DOUBLE) / {seconds} END "
            f"AS {identifier(time_since)}"
        )
    return (
        f"WITH numbered AS (SELECT *, row_number() OVER () AS {ordinal} "
        f"FROM {identifier(table)}), "
        f"keyed AS (SELECT *, {key} AS {k} FROM numbered), "
        f"flagged AS (SELECT *, ({e} IS NOT NULL AND {k} IS NOT NULL) AS {valid} FROM keyed), "
        f"counted AS (SELECT *, {', '.join(counted)} FROM flagged) "
        f"SELECT {', '.join(outputs)} FROM counted ORDER BY {ordinal}"
    )


@audits_failures("dataset.transform")
def point_in_time_join(
    ctx: Context,
    name: str,
    events_ref: str,
    features_ref: str,
    *,
    entity: str,
    time: str,
    feature_time: str | None = None,
    columns: Sequence[str] | None = None,
) -> DatasetVersion:
    """Join each event to its entity's latest feature row from strictly before it.

    For each event row, the feature row of the same entity with the greatest feature
    time strictly before the event time; a feature row at or after the event time is
    never used. When several feature rows share that entity and time, the last of them
    in the features' row order wins. Events without one get NULL features.

    The output has every event column, in order and in the events' row order, then the
    chosen feature columns; one whose name an event column already has gets the
    suffix ``_{features dataset}`` (and a number, if that is taken too).

    Args:
        ctx: the workspace context.
        name: the dataset to write a new version of.
        events_ref: the events (or labels), ``NAME[@VERSION]``.
        features_ref: the feature table, ``NAME[@VERSION]``.
        entity: the entity column, present in both.
        time: the events' time column.
        feature_time: the features' time column (default: ``time``).
        columns: the feature columns to add (default: all but entity and feature time).

    Raises:
        InputError: a missing column, a time column that is not a timestamp or date,
            entity columns of incompatible types, or no feature columns to add.
        NotFound: an input does not exist.

    Example:
        >>> point_in_time_join(ctx, "training_set", "labels", "tx_history",
        ...                    entity="customer_id", time="ts")
    """
    step = f"point-in-time join {name}"
    check_name(name)
    feature_time = feature_time or time
    if isinstance(columns, str):
        columns = [c for c in (part.strip() for part in columns.split(",")) if c]
    events, features = resolve_inputs(ctx, [events_ref, features_ref])
    with connection_with(ctx, [events, features]) as con:
        event_types = column_types(con, events.dataset)
        feature_types = column_types(con, features.dataset)
        _require(event_types, events, step, entity, "entity")
        _require(event_types, events, step, time, "time")
        _require(feature_types, features, step, entity, "entity")
        _require(feature_types, features, step, feature_time, "feature time")
        for types, version, column in (
            (event_types, events, time),
            (feature_types, features, feature_time),
        ):
            if not _is_temporal(types[column]):
                raise InputError(
                    f"{step}: time column {column!r} of {version.ref} is {types[column]}, "
                    "not a timestamp or date"
                )
        if not _comparable(event_types[entity], feature_types[entity]):
            raise InputError(
                f"{step}: entity column {entity!r} is {event_types[entity]} in {events.ref} "
                f"but {feature_types[entity]} in {features.ref}",
                hint="cast one of them with a SQL transform first",
            )
        chosen = _chosen_columns(columns, feature_types, features, step, entity, feature_time)
        renamed = _output_names(chosen, list(event_types), features.dataset)
        definition: dict[str, Any] = {
            "entity": entity,
            "time": time,
            "feature_time": feature_time,
            "columns": chosen,
            "names": renamed,
        }
        nanoseconds = "TIMESTAMP_NS" in (event_types[time], feature_types[feature_time])
        sql = _asof_sql(
            events.dataset,
            features.dataset,
            list(event_types),
            list(feature_types),
            list(zip(chosen, renamed, strict=True)),
            entity=entity,
            event_key=_time_key(time, event_types[time], nanoseconds),
            feature_key=_time_key(feature_time, feature_types[feature_time], nanoseconds),
        )
        return write_query(
            ctx,
            name,
            con,
            sql,
            [events, features],
            kind="point_in_time_join",
            definition=definition,
            params={},
            step=step,
        )


def _asof_sql(
    events: str,
    features: str,
    event_columns: list[str],
    feature_columns: list[str],
    chosen: list[tuple[str, str]],
    *,
    entity: str,
    event_key: str,
    feature_key: str,
) -> str:
    """The point-in-time join: an ASOF LEFT JOIN on entity and strictly earlier time."""
    reserved = set(event_columns) | set(feature_columns) | {out for _, out in chosen}
    feature_entity = identifier(entity)
    ordinal, key, f_ordinal, f_entity, f_key = (
        identifier(_fresh(base, reserved))
        for base in ("__ordinal", "__key", "__feature_ordinal", "__entity", "__feature_key")
    )
    picked = [f"{identifier(column)} AS {identifier(out)}" for column, out in chosen]
    outputs = [f"e.{identifier(c)}" for c in event_columns]
    outputs += [f"f.{identifier(out)}" for _, out in chosen]
    return (
        f"WITH event_rows AS (SELECT *, row_number() OVER () AS {ordinal}, {event_key} AS {key} "
        f"FROM {identifier(events)}), "
        f"feature_rows AS (SELECT *, row_number() OVER () AS {f_ordinal}, "
        f"{feature_key} AS {f_key} FROM {identifier(features)}), "
        # One row per (entity, time), the last in the features' order, so the match is
        # the same on every run.
        f"latest AS (SELECT {feature_entity} AS {f_entity}, {f_key}, {', '.join(picked)} "
        f"FROM feature_rows WHERE {feature_entity} IS NOT NULL AND {f_key} IS NOT NULL "
        f"QUALIFY row_number() OVER (PARTITION BY {feature_entity}, {f_key} "
        f"ORDER BY {f_ordinal} DESC) = 1) "
        f"SELECT {', '.join(outputs)} FROM event_rows e ASOF LEFT JOIN latest f "
        f"ON e.{identifier(entity)} = f.{f_entity} AND e.{key} > f.{f_key} "
        f"ORDER BY e.{ordinal}"
    )


def _names(items: str | Sequence[str], what: str, step: str) -> list[str]:
    """A list of window or aggregate names from a list or comma-separated text."""
    if isinstance(items, str):
        items = items.split(",")
    names = [str(item).strip().lower() for item in items]
    if not names or any(not n for n in names):
        raise InputError(
            f"{step}: {'no' if not names else 'an empty'} {what}",
            hint=f"give one or more, separated by commas, such as "
            f"{'1h,24h,7d' if what == 'window' else 'count,sum,mean'}",
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{step}: {what} {repeated[0]!r} is given twice")
    return names


def _require(
    types: dict[str, str], version: DatasetVersion, step: str, column: str, role: str
) -> None:
    if column not in types:
        raise InputError(
            f"{step}: {role} column {column!r} is not a column of {version.ref}",
            hint=f"its columns are {', '.join(types)}",
        )


def _is_numeric(kind: str) -> bool:
    return kind in _NUMERIC or kind.startswith("DECIMAL")


def _is_temporal(kind: str) -> bool:
    return kind in TEMPORAL_TYPES


def _comparable(a: str, b: str) -> bool:
    return a == b or (_is_numeric(a) and _is_numeric(b)) or (_is_temporal(a) and _is_temporal(b))


def _units_per_us(kind: str) -> int:
    return 1_000 if kind == "TIMESTAMP_NS" else 1


def _time_key(column: str, kind: str, nanoseconds: bool | None = None) -> str:
    """The time as an integer: microseconds since the epoch (nanoseconds when needed)."""
    if nanoseconds is None:
        nanoseconds = kind == "TIMESTAMP_NS"
    if nanoseconds:
        return f"epoch_ns({identifier(column)})"
    return f"epoch_us({identifier(column)})"


def _chosen_columns(
    columns: Sequence[str] | None,
    types: dict[str, str],
    version: DatasetVersion,
    step: str,
    entity: str,
    feature_time: str,
) -> list[str]:
    if columns is None:
        chosen = [c for c in types if c not in {entity, feature_time}]
    else:
        chosen = list(columns)
        for column in chosen:
            _require(types, version, step, column, "feature")
        repeated = sorted({c for c in chosen if chosen.count(c) > 1})
        if repeated:
            raise InputError(f"{step}: feature column {repeated[0]!r} is given twice")
    if not chosen:
        raise InputError(
            f"{step}: no feature columns to add from {version.ref}",
            hint="it has no columns besides the entity and time; name some with columns=",
        )
    return chosen


def _output_names(chosen: list[str], event_columns: list[str], suffix: str) -> list[str]:
    """Feature column names, with ``_{suffix}`` (then a number) where a name is taken."""
    taken = set(event_columns) | set(chosen)
    names = []
    for column in chosen:
        if column in event_columns:
            column = _fresh(f"{column}_{suffix}", taken, separator="_")
        names.append(column)
    return names


def _fresh(base: str, taken: set[str], separator: str = "") -> str:
    """``base``, or ``base`` with a number appended, not in ``taken``; adds it to ``taken``."""
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}{separator}{number}"
    taken.add(name)
    return name
