"""A model version's signature: the input columns and types it was trained on.

Training records each input column's Arrow type. Data scored later (an evaluation, a
batch) must carry every input column with a compatible type: numbers for a number
column, text for a text column. Extra columns are fine; they are not features.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopml.errors import InputError

_NUMERIC = ("int", "uint", "float", "double", "decimal", "bool", "halffloat")
_TEXT = ("string", "large_string", "utf8", "large_utf8", "dictionary")


def kind_of(arrow_type: str) -> str:
    """``number``, ``text`` or ``other`` for an Arrow type's name (``double``, ``string``)."""
    if arrow_type.startswith(_NUMERIC):
        return "number"
    if arrow_type.startswith(_TEXT):
        return "text"
    return "other"


def problems(signature: Mapping[str, Any], schema: Any) -> list[str]:
    """What keeps ``schema`` (a pyarrow Schema) from feeding a model of ``signature``.

    Returns one line per problem: a missing column, or a column whose type is of
    another kind than at training. Empty when the data fits.
    """
    found = {field.name: str(field.type) for field in schema}
    lines = []
    for column in signature.get("inputs", []):
        name, expected = column["name"], column["type"]
        if name not in found:
            lines.append(f"column {name!r} ({expected}) is missing")
        elif kind_of(found[name]) != kind_of(expected):
            lines.append(f"column {name!r} is {found[name]}; the model was trained on {expected}")
    return lines


def check(signature: Mapping[str, Any], schema: Any, where: str, model: str) -> None:
    """Raise when ``schema`` cannot feed the model.

    Raises:
        InputError: listing every missing or mistyped column.
    """
    found = problems(signature, schema)
    if found:
        raise InputError(
            f"{where} does not match {model}'s signature: {'; '.join(found)}",
            hint="score data with the columns and types the model was trained on "
            "(`loopml model show` lists them)",
        )
