"""Splits: seeded, recorded train/valid/test assignments of a dataset version's rows.

A split writes a new version of a dataset that holds every input row, in input order,
plus a ``split`` column: ``"train"``, ``"valid"`` or ``"test"``. The version records the
split's parameters and its input version in ``meta["transform"]`` and in lineage, and
its rows per split in its profile (read them with ``split_counts``), so a model trained
on it knows exactly which rows it trained on.

Four ways to split (``by``):

``random``
    Each row on its own, by a seeded draw from its position: about ``test`` of the
    rows are test and ``valid`` valid, within sampling error.
``stratified``
    Within each class of ``column`` (the label; an empty label is a class too), rows are
    ranked by their draws and cut by count: ``round(test * n)`` rows of each class of
    ``n`` are test and ``round((test + valid) * n)`` test or valid.
``time``
    By ``column``, a date or timestamp. With ``cutoff``, rows at or after it are test
    and the latest ``valid`` fraction of the rows before it are valid (``test`` is
    unused). Without one, the latest ``test`` fraction of the rows are test and the
    ``valid`` fraction before them valid. No test row is earlier than a valid or train
    row; rows whose time equals a boundary all go to the later split.
``group``
    All rows of a group of ``column`` land in one split, by a seeded draw from the
    group's value; groups are taken in draw order until their rows fill the test and
    then the valid fraction, so the fractions hold by rows to within about one group.

The draws are MD5 of ``"seed:position"`` (or ``"seed:value"`` for groups). DuckDB's own
``hash()`` is faster but changes between DuckDB releases; MD5 does not, so a seed gives
the same assignment, and the same version id, on every machine and release.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from loopml.context import Context
from loopml.data._sql import identifier, literal, string
from loopml.data.writer import audits_failures
from loopml.errors import InputError, StoreError
from loopml.features._relations import (
    TEMPORAL_TYPES,
    column_types,
    connection_with,
    resolve_inputs,
    write_query,
)
from loopml.records import DatasetVersion

SPLIT_COLUMN = "split"
SPLITS = ("train", "valid", "test")
METHODS = ("random", "stratified", "time", "group")

# Working columns of the generated SQL; none of them reaches the output.
_POSITION = "__loopml_position"
_DRAW = "__loopml_draw"
_RANK = "__loopml_rank"
_CLASS_ROWS = "__loopml_class_rows"
_WORKING = (_POSITION, _DRAW, _RANK, _CLASS_ROWS)
# Each draw keeps 52 bits of the MD5, so it is an exact double in [0, 1).
_DRAW_HEX_DIGITS = 13
_DRAW_SCALE = 1 << 52


@audits_failures("dataset.transform")
def split(
    ctx: Context,
    name: str,
    input_ref: str,
    *,
    by: str = "random",
    test: float = 0.2,
    valid: float = 0.0,
    seed: int = 0,
    column: str | None = None,
    cutoff: str | date | datetime | None = None,
) -> DatasetVersion:
    """Split the rows of ``input_ref`` into train, valid and test, as a new version of ``name``.

    The output holds every input row, in input order, plus a ``split`` column. The same
    input, parameters and seed always give the same assignment and the same version id.

    Args:
        ctx: the workspace context.
        name: the dataset the split is written to, as a new version.
        input_ref: the version to split, ``NAME`` or ``NAME@VERSION``.
        by: ``random``, ``stratified``, ``time`` or ``group`` (see the module docstring).
        test: the fraction of rows for test, in [0, 1).
        valid: the fraction of rows for validation, in [0, 1); ``test + valid < 1``.
        seed: the seed of the draws (random, stratified and group splits).
        column: the label (stratified), the date or timestamp (time) or the group id
            (group); required by those and refused by a random split.
        cutoff: for a time split, the time from which rows are test: ISO 8601 text
            (``2024-03-01``, ``2024-03-01T12:00:00+02:00``), a date or a datetime. Naive
            times compare as written; with a UTC offset, against naive columns in UTC.

    Returns:
        The new version; ``split_counts(version)`` gives its rows per split.

    Raises:
        InputError: an unknown ``by``, a fraction out of range, a missing, unknown or
            (for time) non-temporal column, an empty time, a cutoff that does not parse,
            or an input that already has a ``split`` column.
        NotFound: the input does not exist.

    Example:
        >>> version = split(ctx, "tx_split", "tx@3", by="time", column="ts", test=0.2)
        >>> split_counts(version)
        {'train': 80000, 'valid': 0, 'test': 20000}
    """
    step = f"split {name}"
    _check_options(step, by, test, valid, seed, column, cutoff)
    seed, fractions = int(seed), (float(test), float(valid))
    moment = _parse_cutoff(step, cutoff) if cutoff is not None else None
    definition = {
        "by": by,
        "test": fractions[0],
        "valid": fractions[1],
        "seed": seed,
        "column": column,
        "cutoff": moment.isoformat() if moment is not None else None,
    }
    inputs = resolve_inputs(ctx, [input_ref])
    source = inputs[0]
    with connection_with(ctx, inputs) as con:
        table = identifier(source.dataset)
        types = column_types(con, source.dataset)
        _check_columns(step, source, types, by, column)
        if by == "random":
            sql = _random_sql(table, seed, fractions)
        elif by == "stratified":
            sql = _stratified_sql(table, seed, fractions, str(column))
        elif by == "group":
            sql = _group_sql(table, seed, fractions, str(column))
        else:
            sql = _time_sql(con, step, table, fractions, str(column), types[str(column)], moment)
        return write_query(
            ctx,
            name,
            con,
            sql,
            inputs,
            kind="split",
            definition=definition,
            params={},
            step=step,
        )


def split_counts(version: DatasetVersion) -> dict[str, int]:
    """The rows per split of a version made by ``split``, as recorded in its profile.

    Raises:
        InputError: the version was not made by a split.
        StoreError: its profile does not account for every row.

    Example:
        >>> split_counts(ws.data.get("tx_split"))
        {'train': 7994, 'valid': 0, 'test': 2006}
    """
    transform = version.meta.get("transform") or {}
    if transform.get("kind") != "split":
        raise InputError(f"{version.ref} was not made by a split", hint="`loopml split` makes one")
    counts = dict.fromkeys(SPLITS, 0)
    for value, count in version.profile.get(SPLIT_COLUMN, {}).get("top", []):
        counts[str(value)] = int(count)
    if sum(counts.values()) != version.row_count:
        raise StoreError(
            f"{version.ref}: the profile counts {sum(counts.values()):,} rows per split "
            f"of {version.row_count:,}"
        )
    return counts


# --------------------------------------------------------------------------- checks


def _check_options(
    step: str,
    by: str,
    test: float,
    valid: float,
    seed: int,
    column: str | None,
    cutoff: object,
) -> None:
    if by not in METHODS:
        raise InputError(
            f"{step}: unknown split by={by!r}", hint=f"use one of {', '.join(METHODS)}"
        )
    for label, value in (("test", test), ("valid", valid)):
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or not 0 <= value < 1
        ):
            raise InputError(
                f"{step}: {label}={value!r} is not a fraction",
                hint=f"give {label} as a number from 0 up to, not including, 1",
            )
    if test + valid >= 1:
        raise InputError(
            f"{step}: test + valid = {test + valid:g} leaves no rows to train on",
            hint="keep test + valid below 1",
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InputError(f"{step}: seed={seed!r} is not an integer")
    if by == "random" and column is not None:
        raise InputError(
            f"{step}: a random split takes no column (column={column!r})",
            hint="stratified, time and group splits take one",
        )
    if by != "random" and not column:
        raise InputError(
            f"{step}: a {by} split needs a column",
            hint={
                "stratified": "name the label column to stratify on",
                "time": "name the date or timestamp column",
                "group": "name the group id column",
            }[by],
        )
    if cutoff is not None and by != "time":
        raise InputError(
            f"{step}: cutoff is for a time split, not a {by} split",
            hint="pass by='time' with a date or timestamp column",
        )


def _parse_cutoff(step: str, cutoff: object) -> datetime:
    if isinstance(cutoff, datetime):
        return cutoff
    if isinstance(cutoff, date):
        return datetime(cutoff.year, cutoff.month, cutoff.day)
    if isinstance(cutoff, str):
        try:
            return datetime.fromisoformat(cutoff.strip())
        except ValueError:
            pass
    raise InputError(
        f"{step}: cutoff {cutoff!r} is not a date or time",
        hint="give ISO 8601, such as 2024-03-01 or 2024-03-01T12:00:00",
    )


def _check_columns(
    step: str,
    source: DatasetVersion,
    types: dict[str, str],
    by: str,
    column: str | None,
) -> None:
    if SPLIT_COLUMN in types:
        raise InputError(
            f"{step}: {source.ref} already has a column {SPLIT_COLUMN!r}",
            hint="drop or rename it with a SQL transform first",
        )
    taken = [name for name in _WORKING if name in types]
    if taken:
        raise InputError(f"{step}: {source.ref} has a column named {taken[0]!r}, which loopml uses")
    if column is None:
        return
    if column not in types:
        raise InputError(
            f"{step}: column {column!r} is not in {source.ref}",
            hint=f"its columns are {', '.join(types)}",
        )
    if by == "time" and types[column] not in TEMPORAL_TYPES:
        raise InputError(
            f"{step}: column {column!r} is {types[column]}, not a date or timestamp",
            hint="a time split orders rows by a DATE or TIMESTAMP column",
        )


# --------------------------------------------------------------------------- SQL


def _fraction(value: float) -> str:
    return f"CAST({literal(value)} AS DOUBLE)"


def _draw(seed: int, text: str) -> str:
    """A seeded draw in [0, 1) from the SQL string expression ``text``."""
    digest = f"md5({string(f'{seed}:')} || {text})"
    return (
        f"(CAST(CAST('0x' || substr({digest}, 1, {_DRAW_HEX_DIGITS}) AS BIGINT) AS DOUBLE)"
        f" / CAST({_DRAW_SCALE} AS DOUBLE))"
    )


def _numbered(table: str, seed: int) -> str:
    """The input with its position (1, 2... in input order) and that position's draw.

    Only SELECT and ``row_number() OVER ()`` are involved, which DuckDB guarantees keep
    the input order.
    """
    position = identifier(_POSITION)
    return (
        f"SELECT *, {_draw(seed, f'CAST({position} AS VARCHAR)')} AS {identifier(_DRAW)} "
        f"FROM (SELECT *, row_number() OVER () AS {position} FROM {table})"
    )


def _case(thresholds: Sequence[tuple[str, str]]) -> str:
    """``'test'`` when the first condition holds, ``'valid'`` for the second, else train."""
    if not thresholds:
        return "'train'"
    branches = " ".join(f"WHEN {condition} THEN {string(label)}" for condition, label in thresholds)
    return f"CASE {branches} ELSE 'train' END"


def _random_sql(table: str, seed: int, fractions: tuple[float, float]) -> str:
    test, valid = fractions
    draw = identifier(_DRAW)
    choice = _case(
        [
            (f"{draw} < {_fraction(test)}", "test"),
            (f"{draw} < {_fraction(test)} + {_fraction(valid)}", "valid"),
        ]
    )
    # No ORDER BY: the query keeps the input order without one, so rows stream through.
    return (
        f"SELECT * EXCLUDE ({identifier(_POSITION)}, {draw}), "
        f"{choice} AS {identifier(SPLIT_COLUMN)} FROM ({_numbered(table, seed)})"
    )


def _stratified_sql(table: str, seed: int, fractions: tuple[float, float], column: str) -> str:
    test, valid = fractions
    position, draw = identifier(_POSITION), identifier(_DRAW)
    rank, rows = identifier(_RANK), identifier(_CLASS_ROWS)
    label = identifier(column)
    held_out = f"{_fraction(test)} + {_fraction(valid)}"
    choice = _case(
        [
            (f"{rank} <= floor({_fraction(test)} * {rows} + 0.5)", "test"),
            (f"{rank} <= floor(({held_out}) * {rows} + 0.5)", "valid"),
        ]
    )
    return (
        f"SELECT * EXCLUDE ({position}, {draw}, {rank}, {rows}), "
        f"{choice} AS {identifier(SPLIT_COLUMN)} FROM ("
        f"SELECT *, row_number() OVER (PARTITION BY {label} ORDER BY {draw}, {position}) "
        f"AS {rank}, count(*) OVER (PARTITION BY {label}) AS {rows} "
        f"FROM ({_numbered(table, seed)})) ORDER BY {position}"
    )


def _group_sql(table: str, seed: int, fractions: tuple[float, float], column: str) -> str:
    test, valid = fractions
    position = identifier(_POSITION)
    group = identifier(column)
    # The group's value as text, with an empty group distinct from the text 'null'.
    text = f"coalesce('v' || CAST({group} AS VARCHAR), 'null')"
    # Groups in draw order fill test, then valid, then train; a group goes where the
    # middle of its rows falls, so the fractions hold by rows to within half a group.
    choice = _case(
        [
            (f"middle < {_fraction(test)} * total", "test"),
            (f"middle < ({_fraction(test)} + {_fraction(valid)}) * total", "valid"),
        ]
    )
    groups, placed, assigned = "__loopml_groups", "__loopml_placed", "__loopml_assigned"
    return (
        f"WITH {groups} AS ("
        f"SELECT {group} AS group_key, count(*) AS group_rows, {text} AS group_text, "
        f"{_draw(seed, text)} AS group_draw FROM {table} GROUP BY {group}), "
        f"{placed} AS ("
        "SELECT group_key, sum(group_rows) OVER (ORDER BY group_draw, group_text "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - group_rows / 2 AS middle, "
        f"sum(group_rows) OVER () AS total FROM {groups}), "
        f"{assigned} AS (SELECT group_key, {choice} AS choice FROM {placed}) "
        f"SELECT numbered.* EXCLUDE ({position}), {assigned}.choice AS {identifier(SPLIT_COLUMN)} "
        f"FROM (SELECT *, row_number() OVER () AS {position} FROM {table}) AS numbered "
        f"JOIN {assigned} ON numbered.{group} IS NOT DISTINCT FROM {assigned}.group_key "
        f"ORDER BY numbered.{position}"
    )


def _time_sql(
    con: Any,
    step: str,
    table: str,
    fractions: tuple[float, float],
    column: str,
    column_type: str,
    cutoff: datetime | None,
) -> str:
    """Where the test and valid rows begin in time, then one streaming pass over the rows.

    Boundaries found from the data are held in DuckDB variables, so the final query
    reads one table and keeps the input order without sorting the rows.
    """
    test, valid = fractions
    time = identifier(column)
    bound = _cutoff_sql(cutoff, column_type) if cutoff is not None else None
    if bound is None:
        rows, present = con.execute(f"SELECT count(*), count({time}) FROM {table}").fetchall()[0]
        before = rows
    else:
        rows, present, before = con.execute(
            f"SELECT count(*), count({time}), count(*) FILTER (WHERE {time} < {bound}) FROM {table}"
        ).fetchall()[0]
    if present < rows:
        raise InputError(
            f"{step}: column {column!r} is empty in {rows - present:,} row(s), "
            "so they have no place in time",
            hint="fill or drop them with a transform first",
        )
    thresholds: list[tuple[str, str]] = []
    if bound is None:
        test_rows = _rounded(test * rows)
        held_out = _rounded((test + valid) * rows)
        if test_rows:
            start = _nth_time(con, table, time, rows - test_rows, "loopml_test_from", None)
            thresholds.append((f"{time} >= {start}", "test"))
        if held_out > test_rows:
            start = _nth_time(con, table, time, rows - held_out, "loopml_valid_from", None)
            thresholds.append((f"{time} >= {start}", "valid"))
    else:
        thresholds.append((f"{time} >= {bound}", "test"))
        valid_rows = _rounded(valid * before)
        if valid_rows:
            start = _nth_time(
                con, table, time, before - valid_rows, "loopml_valid_from", f"{time} < {bound}"
            )
            thresholds.append((f"{time} >= {start}", "valid"))
    return f"SELECT *, {_case(thresholds)} AS {identifier(SPLIT_COLUMN)} FROM {table}"


def _rounded(value: float) -> int:
    """Half up, as the stratified SQL rounds: ``floor(x + 0.5)``."""
    return math.floor(value + 0.5)


def _nth_time(
    con: Any, table: str, time: str, offset: int, variable: str, where: str | None
) -> str:
    """Store the time of the row at ``offset`` (0-based, in time order) in a variable."""
    condition = f" WHERE {where}" if where else ""
    con.execute(
        f"SET VARIABLE {variable} = (SELECT {time} FROM {table}{condition} "
        f"ORDER BY {time} LIMIT 1 OFFSET {literal(offset)})"
    ).fetchall()
    return f"getvariable({string(variable)})"


def _cutoff_sql(cutoff: datetime, column_type: str) -> str:
    """The cutoff as a SQL time comparable with a column of ``column_type``."""
    if column_type == "TIMESTAMP WITH TIME ZONE":
        aware = cutoff if cutoff.tzinfo is not None else cutoff.replace(tzinfo=UTC)
        return f"CAST({string(aware.isoformat())} AS TIMESTAMPTZ)"
    if cutoff.tzinfo is not None:
        cutoff = cutoff.astimezone(UTC).replace(tzinfo=None)
    return literal(cutoff.isoformat(), "timestamp")
