"""Request bodies checked against a signature: every problem is a 4xx naming its field."""

from __future__ import annotations

import json
import math

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.serve.inputs import ARROW, JSON, InputSchema, RequestError, as_table

SIGNATURE = {
    "inputs": [
        {"name": "x1", "type": "double", "nullable": True},
        {"name": "n", "type": "int64", "nullable": False},
        {"name": "cat", "type": "string", "nullable": True},
        {"name": "flag", "type": "bool", "nullable": True},
    ]
}
SCHEMA = InputSchema(SIGNATURE)


def arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def refused(body: bytes, content_type: str = JSON) -> RequestError:
    with pytest.raises(RequestError) as caught:
        as_table(SCHEMA.parse(body, content_type))
    return caught.value


def test_records_columns_and_arrow_give_the_same_table() -> None:
    records = [
        {"x1": 1.5, "n": 2, "cat": "a", "flag": True},
        {"x1": None, "n": 3, "cat": None, "flag": None},
    ]
    from_records = as_table(SCHEMA.parse(orjson.dumps({"records": records}), "application/json"))
    columns = {k: [r[k] for r in records] for k in records[0]}
    from_columns = as_table(
        SCHEMA.parse(orjson.dumps({"columns": columns}), "application/json; charset=utf-8")
    )
    # Arrow may come as float32/int32 and in any column order; it is cast to the signature.
    table = pa.table(
        {
            "flag": pa.array([True, None]),
            "cat": pa.array(["a", None]),
            "n": pa.array([2, 3], pa.int32()),
            "x1": pa.array([1.5, None], pa.float32()),
        }
    )
    from_arrow = SCHEMA.parse(arrow_bytes(table), ARROW)
    assert from_records.equals(from_columns) and from_records.equals(from_arrow)
    assert from_records.schema.names == ["x1", "n", "cat", "flag"]
    assert from_records.column("x1").to_pylist() == [1.5, None]


@pytest.mark.parametrize(
    ("body", "fields", "words"),
    [
        ({"records": [{"x1": 1.0, "cat": "a", "flag": True}]}, ["n"], "missing column(s) n"),
        (
            {"records": [{"x1": 1.0, "n": 1, "cat": "a", "flag": True, "zip": 1}]},
            ["zip"],
            "unknown column(s) zip",
        ),
        ({"records": [{"x1": "high", "n": 1, "cat": "a", "flag": True}]}, ["x1"], "must be number"),
        ({"records": [{"x1": True, "n": 1, "cat": "a", "flag": True}]}, ["x1"], "boolean"),
        ({"records": [{"x1": 1.0, "n": 1.5, "cat": "a", "flag": True}]}, ["n"], "integer"),
        ({"records": [{"x1": 1.0, "n": None, "cat": "a", "flag": True}]}, ["n"], "missing"),
        ({"records": [{"x1": 1.0, "n": 1, "cat": 7, "flag": True}]}, ["cat"], "must be text"),
        ({"records": [{"x1": 1.0, "n": 1, "cat": "a", "flag": 1}]}, ["flag"], "boolean"),
        ({"records": [{"x1": 1.0, "n": 2**70, "cat": "a", "flag": True}]}, ["n"], "out of range"),
        ({"columns": {"x1": [1.0], "n": [1, 2], "cat": ["a"], "flag": [True]}}, None, "lengths"),
        ({"records": {"x1": 1}}, ["records"], "list of objects"),
        ({"rows": []}, [], "records"),
        ([1, 2], [], "records"),
    ],
)
def test_bad_json_names_the_field(body: object, fields: list[str] | None, words: str) -> None:
    error = refused(json.dumps(body).encode())
    assert error.status == 422
    assert words in error.message
    if fields is not None:
        assert error.fields == fields


def test_malformed_json_nan_and_content_types() -> None:
    assert refused(b'{"records": [').status == 422
    # JSON has no NaN; a body that writes one is malformed, not a number.
    nan = refused(b'{"records": [{"x1": NaN, "n": 1, "cat": "a", "flag": true}]}')
    assert nan.status == 422 and "malformed JSON" in nan.message
    pickle = refused(b"\x80\x04K\x01.", "application/python-pickle")
    assert pickle.status == 415 and "application/json" in pickle.message
    assert refused(b"{}", "").status == 415


def test_arrow_nan_where_the_signature_forbids_it_and_wrong_types() -> None:
    good = {"x1": [math.nan], "n": [1], "cat": ["a"], "flag": [True]}
    # NaN in a nullable number is a missing value, fine.
    assert SCHEMA.parse(arrow_bytes(pa.table(good)), ARROW).num_rows == 1
    strict = InputSchema({"inputs": [{"name": "x1", "type": "double", "nullable": False}]})
    with pytest.raises(RequestError, match="may not hold missing values or NaN") as caught:
        strict.parse(arrow_bytes(pa.table({"x1": [1.0, math.nan]})), ARROW)
    assert caught.value.fields == ["x1"]
    text_as_number = refused(arrow_bytes(pa.table({**good, "x1": ["1.0"]})), ARROW)
    assert text_as_number.fields == ["x1"] and "must be number" in text_as_number.message
    assert refused(b"not an arrow stream", ARROW).status == 422
    infinite = refused(arrow_bytes(pa.table({**good, "x1": [math.inf]})), ARROW)
    assert infinite.fields == ["x1"] and "infinity" in infinite.message
    extra = refused(arrow_bytes(pa.table({**good, "extra": [1]})), ARROW)
    assert extra.fields == ["extra"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["x1", "n", "cat", "flag", "zz"]), children, max_size=5)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()),
        st.builds(lambda v: json.dumps({"records": v}).encode(), st.lists(json_values, max_size=3)),
        st.builds(lambda v: json.dumps({"columns": v}).encode(), json_values),
        st.binary(max_size=40),
    )
)
def test_any_body_is_a_table_or_a_4xx(body: bytes) -> None:
    for content_type in (JSON, ARROW):
        try:
            # Checked rows always make a table: the checks leave Arrow nothing to refuse.
            table = as_table(SCHEMA.parse(body, content_type))
        except RequestError as error:
            assert 400 <= error.status < 500
        else:
            assert table.schema.names == ["x1", "n", "cat", "flag"]
