"""Time-series features and point-in-time joins, checked against brute-force oracles.

The oracles compute every feature in plain Python from the rows strictly before each
event, so any leak from the present (ties) or the future shows up as a mismatch.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import loopml
from loopml.errors import InputError, NotFound
from loopml.features.timeseries import AGGREGATES, parse_window

START = datetime(2024, 1, 1)
WINDOWS = {"5s": 5, "30s": 30, "2m": 120}
LAGS = 2


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One workspace for the property tests; each example ingests a new version."""
    workspace = loopml.open(tmp_path_factory.mktemp("shared") / "ws")
    workspace.counter = itertools.count()  # type: ignore[attr-defined]
    yield workspace
    workspace.close()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Any]:
    workspace = loopml.open(tmp_path / "ws")
    yield workspace
    workspace.close()


def ingest_rows(workspace: Any, name: str, rows: list[dict[str, Any]], schema: pa.Schema) -> Any:
    """Write ``rows`` as Parquet with an exact schema and ingest them as ``name``."""
    folder = Path(workspace.settings.root) / "incoming"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}-{len(list(folder.iterdir()))}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return workspace.ingest(name, str(path))


EVENT_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("entity", pa.string()),
        ("ts", pa.timestamp("us")),
        ("amount", pa.float64()),
    ]
)


def oracle(rows: list[dict[str, Any]], windows: dict[str, int], lags: int) -> list[dict]:
    """Every rolling feature, from the same entity's rows strictly before each row."""
    expected = []
    for row in rows:
        out: dict[str, Any] = {}
        valid = row["entity"] is not None and row["ts"] is not None
        before = [
            (r["ts"], i, r["amount"])
            for i, r in enumerate(rows)
            if valid
            and r["entity"] == row["entity"]
            and r["ts"] is not None
            and r["ts"] < row["ts"]
        ]
        for text, seconds in windows.items():
            inside = [a for t, _, a in before if t >= row["ts"] - timedelta(seconds=seconds)]
            values = [a for a in inside if a is not None]
            out[f"amount_count_{text}"] = len(inside)
            out[f"amount_sum_{text}"] = math.fsum(values) if values else None
            out[f"amount_mean_{text}"] = statistics.fmean(values) if values else None
            out[f"amount_std_{text}"] = statistics.stdev(values) if len(values) > 1 else None
            out[f"amount_min_{text}"] = min(values) if values else None
            out[f"amount_max_{text}"] = max(values) if values else None
        ordered = sorted(before)
        for k in range(1, lags + 1):
            out[f"amount_lag_{k}"] = ordered[-k][2] if len(ordered) >= k else None
        out["ts_since_previous_s"] = (
            (row["ts"] - ordered[-1][0]).total_seconds() if ordered else None
        )
        expected.append(out)
    return expected


def assert_same(got: Any, want: Any, where: str) -> None:
    if want is None or got is None:
        assert got == want, where
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9), where
    else:
        assert got == want, where


event_rows = st.lists(
    st.fixed_dictionaries(
        {
            "entity": st.sampled_from(["a", "b", "c", None]) | st.sampled_from(["a", "b"]),
            # A small range of whole seconds: many ties, and events exactly on window edges.
            "ts": st.integers(0, 240).map(lambda s: START + timedelta(seconds=s)) | st.none(),
            "amount": st.integers(-50, 50).map(float) | st.floats(-1e3, 1e3) | st.none(),
        }
    ),
    # At least one row: an empty Parquet file ingests without its schema (see
    # test_empty_input_gives_an_empty_output for empty inputs).
    min_size=1,
    max_size=40,
).map(lambda rows: [{"row": i, **r} for i, r in enumerate(rows)])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=event_rows)
def test_rolling_matches_a_brute_force_oracle(shared: Any, rows: list[dict[str, Any]]) -> None:
    name = f"events{next(shared.counter)}"
    ingest_rows(shared, name, rows, EVENT_SCHEMA)
    version = shared.features.rolling(
        f"{name}-features",
        name,
        entity="entity",
        time="ts",
        value="amount",
        windows=list(WINDOWS),
        aggs=list(AGGREGATES),
        lags=LAGS,
    )
    got = shared.data.read(version).to_pylist()
    assert [r["row"] for r in got] == [r["row"] for r in rows]  # input order, all rows
    for row, out, want in zip(rows, got, oracle(rows, WINDOWS, LAGS), strict=True):
        assert {k: out[k] for k in row} == row  # input columns unchanged
        for key, value in want.items():
            assert_same(out[key], value, f"row {row['row']} {key}")


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=event_rows)
def test_rolling_matches_the_oracle_when_no_value_is_null(
    shared: Any, rows: list[dict[str, Any]]
) -> None:
    # With no NULL values, the mean is computed as sum / count: check that path too.
    rows = [{**r, "amount": r["amount"] if r["amount"] is not None else 0.5} for r in rows]
    name = f"events{next(shared.counter)}"
    ingest_rows(shared, name, rows, EVENT_SCHEMA)
    assert shared.data.get(name).profile["amount"]["nulls"] == 0
    version = shared.features.rolling(
        f"{name}-features",
        name,
        entity="entity",
        time="ts",
        value="amount",
        windows=list(WINDOWS),
        aggs=["mean", "count"],
    )
    got = shared.data.read(version).to_pylist()
    for row, out, want in zip(rows, got, oracle(rows, WINDOWS, 0), strict=True):
        for key in [f"amount_{agg}_{text}" for text in WINDOWS for agg in ("mean", "count")]:
            assert_same(out[key], want[key], f"row {row['row']} {key}")


def test_output_columns_in_order_with_types(ws: Any) -> None:
    rows = [{"row": 0, "entity": "a", "ts": START, "amount": 1.0}]
    ingest_rows(ws, "tx", rows, EVENT_SCHEMA)
    version = ws.features.rolling(
        "f", "tx", entity="entity", time="ts", value="amount", windows="1h,7d", aggs="count,sum"
    )
    schema = ws.data.schema(version)
    assert schema.names == [
        "row",
        "entity",
        "ts",
        "amount",
        "amount_count_1h",
        "amount_sum_1h",
        "amount_count_7d",
        "amount_sum_7d",
        "ts_since_previous_s",
    ]
    assert schema.field("amount_count_1h").type == pa.int64()
    assert schema.field("ts_since_previous_s").type == pa.float64()
    no_recency = ws.features.rolling(
        "g",
        "tx",
        entity="entity",
        time="ts",
        value="amount",
        windows=["1h"],
        aggs=["max"],
        time_since_previous=False,
    )
    assert ws.data.schema(no_recency).names[-1] == "amount_max_1h"


def test_ties_never_see_each_other(ws: Any) -> None:
    moment = START + timedelta(hours=1)
    rows = [{"row": i, "entity": "a", "ts": moment, "amount": float(i + 1)} for i in range(5)] + [
        {"row": 5, "entity": "a", "ts": moment + timedelta(microseconds=1), "amount": 9.0}
    ]
    ingest_rows(ws, "tx", rows, EVENT_SCHEMA)
    version = ws.features.rolling(
        "f",
        "tx",
        entity="entity",
        time="ts",
        value="amount",
        windows=["1h"],
        aggs=["count", "sum", "max"],
        lags=2,
    )
    got = ws.data.read(version).to_pylist()
    for out in got[:5]:
        assert out["amount_count_1h"] == 0
        assert out["amount_sum_1h"] is None and out["amount_lag_1"] is None
        assert out["ts_since_previous_s"] is None
    last = got[5]
    assert (last["amount_count_1h"], last["amount_sum_1h"], last["amount_max_1h"]) == (5, 15, 5)
    # Ties are ordered by input order: the last tied row is the latest.
    assert (last["amount_lag_1"], last["amount_lag_2"]) == (5.0, 4.0)
    assert last["ts_since_previous_s"] == pytest.approx(1e-6)


def test_empty_input_gives_an_empty_output(ws: Any) -> None:
    ingest_rows(ws, "tx", [{"row": 0, "entity": "a", "ts": START, "amount": 1.0}], EVENT_SCHEMA)
    ws.features.sql("none", "SELECT * FROM tx WHERE false", ["tx"])
    version = ws.features.rolling(
        "f", "none", entity="entity", time="ts", value="amount", windows=["1h"], aggs=["sum"]
    )
    assert version.row_count == 0
    assert ws.data.schema(version).names[-2:] == ["amount_sum_1h", "ts_since_previous_s"]


def test_window_covers_from_t_minus_w_up_to_but_not_including_t(ws: Any) -> None:
    times = [0, 3600, 3600 + 1, 7200]  # seconds: the last is exactly 1h after the second
    rows = [
        {"row": i, "entity": "a", "ts": START + timedelta(seconds=s), "amount": 1.0}
        for i, s in enumerate(times)
    ]
    ingest_rows(ws, "tx", rows, EVENT_SCHEMA)
    version = ws.features.rolling(
        "f", "tx", entity="entity", time="ts", value="amount", windows=["1h"], aggs=["count"]
    )
    counts = ws.data.read(version).column("amount_count_1h").to_pylist()
    # [t - 1h, t): 0s counts for 3600s but not for 3601s; 3600s counts for 7200s.
    assert counts == [0, 1, 1, 2]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=event_rows, future=event_rows)
def test_future_rows_never_change_past_features(
    shared: Any, rows: list[dict[str, Any]], future: list[dict[str, Any]]
) -> None:
    horizon = START + timedelta(seconds=241)
    later = [
        {**r, "row": len(rows) + i, "ts": horizon + (r["ts"] - START if r["ts"] else timedelta())}
        for i, r in enumerate(future)
    ]
    name = f"events{next(shared.counter)}"
    options = {
        "entity": "entity",
        "time": "ts",
        "value": "amount",
        "windows": list(WINDOWS),
        "aggs": list(AGGREGATES),
        "lags": LAGS,
    }
    ingest_rows(shared, name, rows, EVENT_SCHEMA)
    past = shared.data.read(shared.features.rolling(f"{name}-f", name, **options)).to_pylist()
    ingest_rows(shared, name, rows + later, EVENT_SCHEMA)
    both = shared.data.read(shared.features.rolling(f"{name}-f", name, **options)).to_pylist()
    assert len(both) == len(rows) + len(later)
    for before, after in zip(past, both, strict=False):
        for key, value in before.items():
            assert_same(after[key], value, f"row {before['row']} {key}")


def test_same_input_gives_the_same_version_id(ws: Any) -> None:
    # Many ties, float values whose sums depend on the order of addition.
    rows = [
        {
            "row": i,
            "entity": f"e{i % 3}",
            "ts": START + timedelta(seconds=(i * 7) % 11),
            "amount": 0.1 * ((i * 37) % 101) + 1e-7 * i,
        }
        for i in range(3000)
    ]
    ingest_rows(ws, "tx", rows, EVENT_SCHEMA)
    options = {
        "entity": "entity",
        "time": "ts",
        "value": "amount",
        "windows": ["5s", "1m"],
        "aggs": list(AGGREGATES),
        "lags": 3,
    }
    first = ws.features.rolling("f", "tx", **options)
    second = ws.features.rolling("f", "tx", **options)
    assert (first.number, second.number) == (1, 2)
    assert first.id == second.id
    assert first.files == second.files


def test_records_its_transform_and_lineage(ws: Any) -> None:
    rows = [{"row": 0, "entity": "a", "ts": START, "amount": 1.0}]
    ingest_rows(ws, "tx", rows, EVENT_SCHEMA)
    ingest_rows(ws, "tx", rows * 2, EVENT_SCHEMA)
    tx = ws.data.get("tx@2")
    version = ws.features.rolling(
        "history",
        "tx@2",
        entity="entity",
        time="ts",
        value="amount",
        windows=["1h", "24h"],
        aggs=["count", "mean"],
        lags=1,
    )
    recorded = version.meta["transform"]
    assert recorded["kind"] == "rolling"
    assert recorded["definition"] == {
        "entity": "entity",
        "time": "ts",
        "value": "amount",
        "windows": ["1h", "24h"],
        "aggs": ["count", "mean"],
        "lags": 1,
        "time_since_previous": True,
    }
    assert recorded["inputs"] == [{"ref": "tx@2", "id": tx.id}]
    edges = ws.lineage("history@1")
    assert ("dataset:tx@2", "dataset:history@1") in {(e.source, e.target) for e in edges}
    assert all(e.source != "dataset:tx@1" for e in edges)


def test_date_time_column_and_integer_values(ws: Any) -> None:
    schema = pa.schema([("shop", pa.int32()), ("day", pa.date32()), ("units", pa.int64())])
    days = [date(2024, 1, d) for d in (1, 2, 2, 5, 9)]
    rows = [{"shop": 1, "day": d, "units": i + 1} for i, d in enumerate(days)]
    ingest_rows(ws, "sales", rows, schema)
    version = ws.features.rolling(
        "f",
        "sales",
        entity="shop",
        time="day",
        value="units",
        windows=["3d"],
        aggs=["count", "sum", "min"],
        lags=1,
    )
    got = ws.data.read(version)
    assert got.column("units_count_3d").to_pylist() == [0, 1, 1, 2, 0]
    assert got.column("units_sum_3d").to_pylist() == [None, 1.0, 1.0, 5.0, None]
    assert got.column("units_min_3d").type == pa.int64()
    assert got.column("units_lag_1").to_pylist() == [None, 1, 1, 3, 4]
    assert got.column("day_since_previous_s").to_pylist() == [
        None,
        86400.0,
        86400.0,
        259200.0,
        345600.0,
    ]


@pytest.mark.parametrize(
    "text, microseconds",
    [
        ("30s", 30_000_000),
        ("15m", 900_000_000),
        ("1h", 3_600_000_000),
        ("24h", 86_400_000_000),
        ("7d", 604_800_000_000),
        ("2w", 1_209_600_000_000),
        (" 1H ", 3_600_000_000),
    ],
)
def test_parse_window(text: str, microseconds: int) -> None:
    assert parse_window(text) == microseconds


@given(st.integers(1, 5_000), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_parse_window_scales_by_unit(number: int, unit: str) -> None:
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_window(f"{number}{unit}") == number * seconds * 1_000_000


@pytest.mark.parametrize("text", ["5x", "", "h", "0h", "-1h", "1.5h", "1 h", "1hh", "999999w"])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_window(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    "options, names",
    [
        ({"entity": "customer"}, ["entity column 'customer'", "tx@1"]),
        ({"time": "when"}, ["time column 'when'"]),
        ({"value": "price"}, ["value column 'price'"]),
        ({"windows": ["1h", "5x"]}, ["'5x'"]),
        ({"windows": []}, ["no window"]),
        ({"windows": "1h,1h"}, ["'1h' is given twice"]),
        ({"aggs": ["count", "median"]}, ["unknown aggregate 'median'"]),
        ({"time": "amount"}, ["time column 'amount'", "not a timestamp or date"]),
        ({"value": "entity"}, ["value column 'entity'", "not numeric"]),
        ({"lags": -1}, ["lags"]),
    ],
)
def test_bad_arguments_are_input_errors_naming_the_thing(
    ws: Any, options: dict[str, Any], names: list[str]
) -> None:
    ingest_rows(ws, "tx", [{"row": 0, "entity": "a", "ts": START, "amount": 1.0}], EVENT_SCHEMA)
    arguments = {
        "entity": "entity",
        "time": "ts",
        "value": "amount",
        "windows": ["1h"],
        "aggs": ["count"],
    } | options
    with pytest.raises(InputError) as caught:
        ws.features.rolling("f", "tx", **arguments)
    for name in names:
        assert name in str(caught.value)
    assert ws.data.ls() and [d.name for d, _, _ in ws.data.ls()] == ["tx"]  # nothing committed


def test_missing_input_and_taken_output_names(ws: Any) -> None:
    with pytest.raises(NotFound):
        ws.features.rolling(
            "f", "nope", entity="e", time="t", value="v", windows=["1h"], aggs=["count"]
        )
    schema = EVENT_SCHEMA.append(pa.field("amount_count_1h", pa.int64()))
    rows = [{"row": 0, "entity": "a", "ts": START, "amount": 1.0, "amount_count_1h": 3}]
    ingest_rows(ws, "tx", rows, schema)
    with pytest.raises(InputError, match="'amount_count_1h' is already a column"):
        ws.features.rolling(
            "f", "tx", entity="entity", time="ts", value="amount", windows=["1h"], aggs=["count"]
        )


FEATURE_SCHEMA = pa.schema(
    [
        ("entity", pa.string()),
        ("ts", pa.timestamp("us")),
        ("score", pa.float64()),
        ("tag", pa.int64()),
    ]
)


def pit_oracle(events: list[dict], features: list[dict]) -> list[dict]:
    """For each event: the same entity's feature row with the latest time before it.

    Among feature rows tied at that time, the last in row order wins.
    """
    expected = []
    for event in events:
        best = None
        for row in features:
            if (
                event["entity"] is not None
                and event["ts"] is not None
                and row["entity"] == event["entity"]
                and row["ts"] is not None
                and row["ts"] < event["ts"]
                and (best is None or row["ts"] >= best["ts"])
            ):
                best = row
        expected.append(
            {
                "score": best["score"] if best else None,
                "tag": best["tag"] if best else None,
                "ts_features": best["ts"] if best else None,
            }
        )
    return expected


feature_rows = st.lists(
    st.fixed_dictionaries(
        {
            "entity": st.sampled_from(["a", "b", "c", None]),
            "ts": st.integers(0, 60).map(lambda s: START + timedelta(seconds=s)) | st.none(),
            "score": st.floats(-10, 10) | st.none(),
        }
    ),
    min_size=1,
    max_size=30,
).map(lambda rows: [{**r, "tag": i} for i, r in enumerate(rows)])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=event_rows, features=feature_rows)
def test_point_in_time_join_never_uses_a_row_at_or_after_the_event(
    shared: Any, events: list[dict], features: list[dict]
) -> None:
    # Events over the same minute as the features, so exact hits and ties are common.
    events = [
        {**e, "ts": START + timedelta(seconds=(e["ts"] - START).seconds % 62) if e["ts"] else None}
        for e in events
    ]
    n = next(shared.counter)
    ingest_rows(shared, f"labels{n}", events, EVENT_SCHEMA)
    ingest_rows(shared, f"feats{n}", features, FEATURE_SCHEMA)
    version = shared.features.point_in_time_join(
        f"train{n}",
        f"labels{n}",
        f"feats{n}",
        entity="entity",
        time="ts",
        columns=["score", "tag", "ts"],
    )
    got = shared.data.read(version).to_pylist()
    assert [r["row"] for r in got] == [e["row"] for e in events]
    for event, out, want in zip(events, got, pit_oracle(events, features), strict=True):
        assert {k: out[k] for k in event} == event
        renamed = {"score": out["score"], "tag": out["tag"], "ts_features": out[f"ts_feats{n}"]}
        assert renamed == want, f"event {event}"
        if out[f"ts_feats{n}"] is not None:
            assert out[f"ts_feats{n}"] < event["ts"]


def test_point_in_time_join_defaults_renames_and_repeats(ws: Any) -> None:
    events = [
        {"row": 0, "entity": "a", "ts": START + timedelta(seconds=10), "amount": 5.0},
        {"row": 1, "entity": "a", "ts": START + timedelta(seconds=5), "amount": 6.0},
    ]
    features = [
        {"entity": "a", "ts": START + timedelta(seconds=5), "score": 1.0, "tag": 1},
        {"entity": "a", "ts": START + timedelta(seconds=4), "score": 2.0, "tag": 2},
        {"entity": "a", "ts": START + timedelta(seconds=4), "score": 3.0, "tag": 3},
    ]
    ingest_rows(ws, "labels", events, EVENT_SCHEMA)
    ingest_rows(
        ws,
        "feats",
        [{**f, "amount": f["score"]} for f in features],
        FEATURE_SCHEMA.append(pa.field("amount", pa.float64())),
    )
    first = ws.features.point_in_time_join("train", "labels", "feats", entity="entity", time="ts")
    got = ws.data.read(first)
    assert got.schema.names == ["row", "entity", "ts", "amount", "score", "tag", "amount_feats"]
    assert got.column("tag").to_pylist() == [1, 3]  # ts 5 < 10; at ts 5 only ts 4 (last: 3)
    second = ws.features.point_in_time_join("train", "labels", "feats", entity="entity", time="ts")
    assert second.id == first.id
    recorded = first.meta["transform"]
    assert recorded["kind"] == "point_in_time_join"
    assert recorded["definition"]["columns"] == ["score", "tag", "amount"]
    assert [i["ref"] for i in recorded["inputs"]] == ["labels@1", "feats@1"]
    upstream = {e.source for e in ws.lineage("train@1")}
    assert {"dataset:labels@1", "dataset:feats@1"} <= upstream


def test_point_in_time_join_errors_name_the_column(ws: Any) -> None:
    ingest_rows(ws, "labels", [{"row": 0, "entity": "a", "ts": START, "amount": 1.0}], EVENT_SCHEMA)
    ingest_rows(ws, "feats", [{"entity": "a", "ts": START, "score": 1.0, "tag": 1}], FEATURE_SCHEMA)
    with pytest.raises(InputError, match="feature time column 'as_of'"):
        ws.features.point_in_time_join(
            "t", "labels", "feats", entity="entity", time="ts", feature_time="as_of"
        )
    with pytest.raises(InputError, match="feature column 'nope' is not a column of feats@1"):
        ws.features.point_in_time_join(
            "t", "labels", "feats", entity="entity", time="ts", columns=["score", "nope"]
        )
    with pytest.raises(InputError, match="time column 'amount'"):
        ws.features.point_in_time_join("t", "labels", "feats", entity="entity", time="amount")


def test_cli_rolling_and_pit_join(ws: Any) -> None:
    from loopml.cli.features import app

    rows = [
        {"row": i, "entity": "ab"[i % 2], "ts": START + timedelta(minutes=i), "amount": float(i)}
        for i in range(10)
    ]
    ingest_rows(ws, "tx", rows, EVENT_SCHEMA)
    root = str(ws.settings.root)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "rolling",
            "history",
            "--input",
            "tx",
            "--entity",
            "entity",
            "--time",
            "ts",
            "--value",
            "amount",
            "--windows",
            "1h,24h,7d",
            "--aggs",
            "count,sum,mean",
            "--lags",
            "1",
            "--no-time-since",
            "-w",
            root,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["dataset"], data["version"], data["rows"]) == ("history", 1, 10)
    assert data["seconds"] >= 0
    names = ws.data.schema("history@1").names
    assert names[-1] == "amount_lag_1" and "ts_since_previous_s" not in names

    result = runner.invoke(
        app,
        [
            "pit-join",
            "train",
            "--events",
            "tx",
            "--features",
            "history",
            "--entity",
            "entity",
            "--time",
            "ts",
            "--columns",
            "amount_count_1h, amount_sum_1h",
            "-w",
            root,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "train@1" in result.stdout and "10 rows" in result.stdout
    assert ws.data.schema("train@1").names[-2:] == ["amount_count_1h", "amount_sum_1h"]

    result = runner.invoke(
        app,
        [
            "rolling",
            "x",
            "-i",
            "tx",
            "--entity",
            "entity",
            "--time",
            "ts",
            "--value",
            "amount",
            "--windows",
            "5x",
            "-w",
            root,
        ],
    )
    assert isinstance(result.exception, InputError) and "'5x'" in str(result.exception)
