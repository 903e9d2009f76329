"""A model version's signature: the input columns and types it was trained on.

Training records each input column's Arrow type. Data scored later (an evaluation, a
batch) must carry every input column with a usable type: a number for a number
column, a time for a time column. Text (category) features are read as text whatever
their type, and a column of nulls fits anything. Extra columns are fine; they are
not features.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import pyarrow as pa

from loopml.errors import InputError
from loopml.records import ModelVersion

_NUMBERS = ("int", "uint", "float", "double", "halffloat", "bool", "decimal")
_TIMES = ("timestamp", "date", "time", "duration")


def text_features(version: ModelVersion) -> set[str]:
    """The version's category features (one-hot or ordinal encoded)."""
    features = version.meta.get("features") or {}
    return {*features.get("one_hot", []), *features.get("ordinal", [])}


def _is_number(given: pa.DataType) -> bool:
    if pa.types.is_dictionary(given):
        given = given.value_type
    return bool(
        pa.types.is_integer(given)
        or pa.types.is_floating(given)
        or pa.types.is_boolean(given)
        or pa.types.is_decimal(given)
    )


def problems(
    signature: Mapping[str, Any], schema: pa.Schema, text: Collection[str] = ()
) -> list[str]:
    """What keeps ``schema`` from feeding a model of ``signature``, one line each: a
    missing column, or one of the wrong kind. Empty when the data fits.

    Args:
        text: the category features, which take any type.
    """
    lines = []
    for column in signature.get("inputs", []):
        name, expected = column["name"], str(column.get("type", ""))
        if name not in schema.names:
            lines.append(f"column {name!r} ({expected}) is missing")
            continue
        given = schema.field(name).type
        if name in text or pa.types.is_null(given):
            continue
        if expected.startswith(_NUMBERS) and not _is_number(given):
            lines.append(f"column {name!r} is {given}, not a number ({expected})")
        elif expected.startswith(_TIMES) and not pa.types.is_temporal(given):
            lines.append(f"column {name!r} is {given}, not a time ({expected})")
    return lines


def check(version: ModelVersion, schema: pa.Schema, where: str) -> None:
    """Raise when ``schema`` cannot feed ``version``.

    Raises:
        InputError: listing every missing or mistyped column.
    """
    found = problems(version.signature, schema, text_features(version))
    if found:
        raise InputError(
            f"{where} does not match {version.ref}'s signature: {'; '.join(found)}",
            hint="score data with the columns and types the model was trained on "
            "(`loopml model show`)",
        )
