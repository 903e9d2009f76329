"""PII: column policies applied at ingest, and detection of likely PII left without one.

Policies:
    drop    remove the column.
    hash    keyed HMAC-SHA256 with the workspace's PII key (joinable, not reversible).
    mask    keep the last 4 characters, replace the rest with ``*`` (values of 4 or
            fewer characters are masked whole).
    redact  replace every non-null value with ``[REDACTED]``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import InputError

POLICIES = ("drop", "hash", "mask", "redact")
BatchT = TypeVar("BatchT", pa.RecordBatch, pa.Table)
REDACTED = "[REDACTED]"

_NAME_HINTS = re.compile(
    r"e_?mail|phone|mobile|msisdn|card|pan$|iban|ssn|social_security|passport|"
    r"first_?name|last_?name|full_?name|address|postcode|zip_?code|birth|dob$",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{7,18}[0-9]$")
_CARD = re.compile(r"^[0-9][0-9 -]{11,21}[0-9]$")
_IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9 ]{11,32}$")


def parse_policies(items: list[str] | dict[str, str] | None) -> dict[str, str]:
    """Parse ``COL=POLICY`` items (or a mapping) into column -> policy.

    Raises:
        InputError: an item is not ``COL=POLICY`` or names an unknown policy.
    """
    if not items:
        return {}
    pairs = items.items() if isinstance(items, dict) else [_split(item) for item in items]
    policies: dict[str, str] = {}
    for column, policy in pairs:
        if policy not in POLICIES:
            raise InputError(
                f"unknown PII policy {policy!r} for column {column!r}",
                hint=f"use one of: {', '.join(POLICIES)}",
            )
        policies[column] = policy
    return policies


def _split(item: str) -> tuple[str, str]:
    column, sep, policy = item.partition("=")
    if not sep or not column or not policy:
        raise InputError(f"--pii {item!r} is not COL=POLICY", hint="for example --pii email=hash")
    return column.strip(), policy.strip()


def _map_unique(column: pa.Array, function: Callable[[str], str | None]) -> pa.Array:
    """Apply a Python function to each distinct value only (values repeat a lot)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    strings = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    distinct = pc.unique(strings)
    mapped = pa.array(
        [None if v is None else function(v) for v in distinct.to_pylist()], pa.string()
    )
    return pc.take(mapped, pc.index_in(strings, value_set=distinct))


def apply_policies(batch: BatchT, policies: dict[str, str], key: bytes) -> BatchT:
    """Return ``batch`` (a RecordBatch or a Table) with each policy applied to its column."""
    if not policies:
        return batch
    names, arrays = [], []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        policy = policies.get(name)
        if policy == "drop":
            continue
        if policy in {"hash", "mask"}:
            column = _map_unique(column, functools.partial(apply_to_value, policy=policy, key=key))
        elif policy == "redact":
            column = pc.if_else(
                pc.is_valid(column), pa.scalar(REDACTED), pa.nulls(len(column), pa.string())
            )
        names.append(name)
        arrays.append(column)
    return type(batch).from_arrays(arrays, names=names)


def apply_to_value(value: str, policy: str, key: bytes) -> str | None:
    """One value under ``policy``; ``drop`` gives None (the caller removes the field)."""
    if policy == "hash":
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
    if policy == "mask":
        # Keep the last 4 characters, but never a whole value: short ones are all masked.
        keep = 4 if len(value) > 4 else 0
        return "*" * (len(value) - keep) + value[len(value) - keep :]
    if policy == "redact":
        return REDACTED
    return None


def scrub_record(
    record: dict[str, object], policies: dict[str, str], key: bytes
) -> dict[str, object]:
    """A raw record (field name -> text) with every column's policy applied."""
    result: dict[str, object] = {}
    for name, value in record.items():
        policy = policies.get(name)
        if policy == "drop":
            continue
        if policy and value is not None:
            value = apply_to_value(str(value), policy, key)
        result[name] = value
    return result


def output_schema(schema: pa.Schema, policies: dict[str, str]) -> pa.Schema:
    """The schema after the policies: dropped columns gone, rewritten ones as strings."""
    fields = []
    for field in schema:
        policy = policies.get(field.name)
        if policy == "drop":
            continue
        fields.append(field.with_type(pa.string()) if policy else field)
    return pa.schema(fields)


def luhn_ok(number: str) -> bool:
    """Whether a string of digits passes the Luhn checksum that card numbers carry."""
    digits = [int(ch) for ch in number if ch.isdigit()]
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """Whether a string is a well-formed IBAN (ISO 13616 mod-97 check)."""
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not _IBAN.match(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _looks_like(value: str) -> str | None:
    value = value.strip()
    if _EMAIL.match(value):
        return "email"
    if _CARD.match(value) and luhn_ok(value):
        return "card number"
    if _IBAN.match(value.replace(" ", "").upper()) and iban_ok(value):
        return "IBAN"
    # E.164 numbers have at most 15 digits; longer runs are ids or card-like numbers.
    if _PHONE.match(value) and 9 <= sum(ch.isdigit() for ch in value) <= 15:
        return "phone number"
    return None


def detect(batch: pa.RecordBatch, policies: dict[str, str], sample: int = 200) -> dict[str, str]:
    """Columns that look like PII but have no policy, with what they look like.

    A column is flagged by its name, or when most sampled values look like emails,
    phone numbers, Luhn-valid card numbers or IBANs.
    """
    found: dict[str, str] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name in policies:
            continue
        kind = None
        if (
            pa.types.is_string(column.type)
            or pa.types.is_large_string(column.type)
            or pa.types.is_integer(column.type)
        ):
            values = [str(v) for v in column.drop_null().slice(0, sample).to_pylist()]
            kinds = [_looks_like(v) for v in values]
            if pa.types.is_integer(column.type):  # long ids are not phone numbers
                kinds = [k if k == "card number" else None for k in kinds]
            hits = [k for k in kinds if k]
            if values and len(hits) >= max(1, len(values) // 2):
                kind = max(set(hits), key=hits.count)
        if kind is None and _NAME_HINTS.search(name):
            kind = "name suggests PII"
        if kind:
            found[name] = kind
    return found
