"""Splits: seeded and recorded; every row kept once; fractions, time order and groups hold."""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import loopml
from loopml.cli.split import split as split_command
from loopml.errors import InputError
from loopml.features.splits import SPLITS, split_counts
from loopml.workspace import Workspace

ROWS = 2000
START = datetime(2024, 1, 1)
COLUMNS = ["id", "ts", "day", "label", "user", "amount"]


def _events(rows: int, seed: int = 0) -> list[list[Any]]:
    """Events with tied times, imbalanced labels and uneven groups, some of them empty."""
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        moment = START + timedelta(minutes=rng.randrange(3000))
        label = rng.choices(["a", "b", "c", ""], weights=[60, 30, 9, 1])[0]
        user = "" if rng.random() < 0.02 else f"u{int(rng.paretovariate(1.5)) % 120}"
        day = (START + timedelta(days=rng.randrange(40))).date()
        out.append([i, moment.isoformat(sep=" "), day, label, user, round(rng.random() * 100, 2)])
    return out


def _write_csv(path: Path, rows: list[list[Any]], columns: list[str] = COLUMNS) -> str:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("splits")


@pytest.fixture(scope="module")
def ws(root: Path) -> Iterator[Workspace]:
    """One embedded workspace with ``tx``: ROWS events; tests write splits of their own."""
    workspace = loopml.open(root / "ws")
    workspace.ingest("tx", _write_csv(root / "tx.csv", _events(ROWS)))
    yield workspace
    workspace.close()


_names = itertools.count(1)


def _name() -> str:
    return f"split_{next(_names)}"


def _frame(ws: Workspace, ref: Any) -> pd.DataFrame:
    return ws.data.read(ref).to_pandas()


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    return {label: int((frame["split"] == label).sum()) for label in SPLITS}


# --------------------------------------------------------------------------- every mode

MODES = [
    {"by": "random", "valid": 0.1},
    {"by": "stratified", "column": "label", "valid": 0.1},
    {"by": "time", "column": "ts", "valid": 0.1},
    {"by": "time", "column": "ts", "cutoff": "2024-01-02 12:00"},
    {"by": "group", "column": "user", "valid": 0.1},
]
MODE_IDS = ["random", "stratified", "time", "time-cutoff", "group"]


@pytest.mark.parametrize("options", MODES, ids=MODE_IDS)
def test_every_input_row_is_kept_once_in_input_order(ws: Workspace, options: dict) -> None:
    version = ws.features.split(_name(), "tx", **options)
    source = ws.data.read("tx@1")
    output = ws.data.read(version)
    assert output.column_names == [*source.column_names, "split"]
    assert output.drop_columns(["split"]).equals(source)
    assert set(output.column("split").to_pylist()) <= set(SPLITS)
    assert output.column("split").null_count == 0
    assert version.row_count == ROWS
    assert split_counts(version) == _counts(output.to_pandas())


@pytest.mark.parametrize("options", MODES, ids=MODE_IDS)
def test_the_same_seed_gives_the_same_version(ws: Workspace, options: dict) -> None:
    first = ws.features.split(_name(), "tx", seed=11, **options)
    second = ws.features.split(_name(), "tx@1", seed=11, **options)
    assert first.id == second.id
    assert [f.sha256 for f in first.files] == [f.sha256 for f in second.files]
    assert _frame(ws, first)["split"].tolist() == _frame(ws, second)["split"].tolist()


@pytest.mark.parametrize(
    "by, column", [("random", None), ("stratified", "label"), ("group", "user")]
)
def test_another_seed_gives_another_assignment(ws: Workspace, by: str, column: str | None) -> None:
    assignments = [
        _frame(ws, ws.features.split(_name(), "tx", by=by, column=column, seed=seed))["split"]
        for seed in (1, 2)
    ]
    changed = (assignments[0] != assignments[1]).sum()
    # Two independent 80/20 draws disagree on about 32% of the rows.
    assert changed > ROWS * 0.1


# --------------------------------------------------------------------------- random


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_fractions_hold_within_sampling_error(ws: Workspace, seed: int) -> None:
    test, valid = 0.2, 0.15
    counts = split_counts(ws.features.split(_name(), "tx", test=test, valid=valid, seed=seed))
    for label, share in (("test", test), ("valid", valid), ("train", 1 - test - valid)):
        sd = math.sqrt(ROWS * share * (1 - share))
        assert abs(counts[label] - ROWS * share) <= 4 * sd, (label, counts)


def test_zero_fractions_put_every_row_in_train(ws: Workspace) -> None:
    counts = split_counts(ws.features.split(_name(), "tx", test=0, valid=0.0))
    assert counts == {"train": ROWS, "valid": 0, "test": 0}


# --------------------------------------------------------------------------- stratified


def _assert_stratified(frame: pd.DataFrame, column: str, test: float, valid: float) -> None:
    for label, group in frame.groupby(column, dropna=False):
        rows = len(group)
        counts = _counts(group)
        # round(test * n) test rows, round((test + valid) * n) held out: each within 1/2.
        assert abs(counts["test"] - test * rows) <= 0.5 + 1e-9, (label, counts)
        held_out = counts["test"] + counts["valid"]
        assert abs(held_out - (test + valid) * rows) <= 0.5 + 1e-9, (label, counts)


def test_stratified_fractions_are_exact_within_each_class(ws: Workspace) -> None:
    version = ws.features.split(
        _name(), "tx", by="stratified", column="label", test=0.25, valid=0.1, seed=5
    )
    frame = _frame(ws, version)
    assert frame["label"].isna().any(), "the empty label is a class of its own"
    _assert_stratified(frame, "label", 0.25, 0.1)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    labels=st.lists(st.sampled_from(["x", "y", "z", ""]), min_size=1, max_size=40),
    test=st.floats(0, 0.6),
    valid=st.floats(0, 0.35),
    seed=st.integers(-(2**40), 2**40),
)
def test_stratified_holds_for_any_labels_and_fractions(
    ws: Workspace, tmp_path_factory: pytest.TempPathFactory, labels, test, valid, seed
) -> None:
    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    name = _name()
    ws.ingest(name, _write_csv(path, [[i, v] for i, v in enumerate(labels)], ["id", "label"]))
    version = ws.features.split(
        f"{name}_split", name, by="stratified", column="label", test=test, valid=valid, seed=seed
    )
    frame = _frame(ws, version)
    assert frame["id"].tolist() == list(range(len(labels)))
    _assert_stratified(frame, "label", test, valid)


# --------------------------------------------------------------------------- time


def _assert_ordered_in_time(frame: pd.DataFrame, column: str) -> None:
    """No later split holds a time earlier than an earlier split; no time in two splits."""
    times = {label: set(frame.loc[frame["split"] == label, column]) for label in SPLITS}
    order = [label for label in ("train", "valid", "test") if times[label]]
    for earlier, later in itertools.pairwise(order):
        assert max(times[earlier]) < min(times[later]), (earlier, later)


@pytest.mark.parametrize("column", ["ts", "day"])
def test_time_fraction_puts_the_latest_rows_in_test(ws: Workspace, column: str) -> None:
    version = ws.features.split(_name(), "tx", by="time", column=column, test=0.2, valid=0.1)
    frame = _frame(ws, version)
    _assert_ordered_in_time(frame, column)
    counts = _counts(frame)
    # Rows tied with the first test row go to test too, so test may hold a few more.
    assert counts["test"] >= round(0.2 * ROWS)
    assert counts["test"] + counts["valid"] >= round(0.3 * ROWS)
    assert counts["train"] > 0 and counts["valid"] > 0
    assert (
        frame["split"].tolist()
        == _frame(ws, "tx")[column].pipe(_reference_time_split, 0.2, 0.1).tolist()
    )


def _reference_time_split(times: pd.Series, test: float, valid: float) -> pd.Series:
    """The time split worked out in pandas: boundaries at sorted ranks, ties go later."""
    ordered = times.sort_values(kind="stable").reset_index(drop=True)
    rows = len(times)
    test_rows = math.floor(test * rows + 0.5)
    held_out = math.floor((test + valid) * rows + 0.5)
    result = pd.Series("train", index=times.index)
    if held_out > test_rows:
        result[times >= ordered[rows - held_out]] = "valid"
    if test_rows:
        result[times >= ordered[rows - test_rows]] = "test"
    return result


def test_time_cutoff_makes_rows_from_it_test_and_valid_the_latest_before(ws: Workspace) -> None:
    cutoff = datetime(2024, 1, 2, 12, 0)
    version = ws.features.split(
        _name(), "tx", by="time", column="ts", cutoff="2024-01-02T12:00:00", valid=0.25
    )
    frame = _frame(ws, version)
    assert (frame["split"] == "test").tolist() == (frame["ts"] >= cutoff).tolist()
    before = frame[frame["ts"] < cutoff]
    assert len(before) and len(before) < ROWS
    expected_valid = _reference_time_split(before["ts"], 0.25, 0.0).eq("test")
    assert (before["split"] == "valid").tolist() == expected_valid.tolist()
    _assert_ordered_in_time(frame, "ts")
    assert version.meta["transform"]["definition"]["cutoff"] == "2024-01-02T12:00:00"


def test_a_cutoff_may_be_a_date_a_datetime_or_carry_an_offset(ws: Workspace) -> None:
    ids = {
        ws.features.split(_name(), "tx", by="time", column="ts", cutoff=cutoff).id
        for cutoff in (
            "2024-01-02",
            date(2024, 1, 2),
            datetime(2024, 1, 2),
            "2024-01-02T02:00:00+02:00",  # compared in UTC against naive timestamps
        )
    }
    assert len(ids) == 1
    on_days = ws.features.split(_name(), "tx", by="time", column="day", cutoff="2024-01-20")
    frame = _frame(ws, on_days)
    assert (frame["split"] == "test").tolist() == (frame["day"] >= date(2024, 1, 20)).tolist()


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    minutes=st.lists(st.integers(0, 30), min_size=1, max_size=40),
    test=st.floats(0, 0.6),
    valid=st.floats(0, 0.35),
)
def test_time_order_holds_for_any_times_and_fractions(
    ws: Workspace, tmp_path_factory: pytest.TempPathFactory, minutes, test, valid
) -> None:
    path = tmp_path_factory.mktemp("times") / "times.csv"
    rows = [[i, (START + timedelta(minutes=m)).isoformat(sep=" ")] for i, m in enumerate(minutes)]
    name = _name()
    ws.ingest(name, _write_csv(path, rows, ["id", "ts"]))
    version = ws.features.split(
        f"{name}_split", name, by="time", column="ts", test=test, valid=valid
    )
    frame = _frame(ws, version)
    assert frame["id"].tolist() == list(range(len(minutes)))
    _assert_ordered_in_time(frame, "ts")
    assert frame["split"].tolist() == _reference_time_split(frame["ts"], test, valid).tolist()


def test_a_time_split_refuses_empty_times(ws: Workspace, tmp_path: Path) -> None:
    ws.ingest(
        "gappy", _write_csv(tmp_path / "gappy.csv", [[1, "2024-01-01"], [2, ""]], ["id", "ts"])
    )
    with pytest.raises(InputError, match=r"'ts' is empty in 1 row"):
        ws.features.split(_name(), "gappy", by="time", column="ts")


# --------------------------------------------------------------------------- group


@pytest.mark.parametrize("seed", [0, 3])
def test_no_group_spans_two_splits(ws: Workspace, seed: int) -> None:
    version = ws.features.split(
        _name(), "tx", by="group", column="user", test=0.2, valid=0.1, seed=seed
    )
    frame = _frame(ws, version)
    assert frame["user"].isna().any(), "rows without a group form a group of their own"
    per_group = frame.groupby("user", dropna=False)["split"].nunique()
    assert (per_group == 1).all()
    # Groups fill each split by rows, to within half of the largest group either way.
    largest = frame.groupby("user", dropna=False).size().max()
    counts = _counts(frame)
    assert abs(counts["test"] - 0.2 * ROWS) <= largest / 2 + 1
    assert abs(counts["test"] + counts["valid"] - 0.3 * ROWS) <= largest / 2 + 1


def test_equal_groups_fill_the_splits_exactly_by_rows(ws: Workspace, tmp_path: Path) -> None:
    rows = [[i, f"g{i % 10}"] for i in range(200)]
    ws.ingest("teams", _write_csv(tmp_path / "teams.csv", rows, ["id", "team"]))
    version = ws.features.split(_name(), "teams", by="group", column="team", test=0.2, valid=0.1)
    # Ten groups of 20 rows: the first two in draw order fill test, the third valid.
    assert split_counts(version) == {"train": 140, "valid": 20, "test": 40}


# --------------------------------------------------------------------------- records


def test_the_split_is_recorded_with_its_parameters_and_lineage(ws: Workspace) -> None:
    name = _name()
    version = ws.features.split(
        name, "tx@1", by="stratified", column="label", test=0.3, valid=0.1, seed=9
    )
    recorded = version.meta["transform"]
    assert recorded["kind"] == "split"
    assert recorded["definition"] == {
        "by": "stratified",
        "test": 0.3,
        "valid": 0.1,
        "seed": 9,
        "column": "label",
        "cutoff": None,
    }
    assert recorded["inputs"] == [{"ref": "tx@1", "id": ws.data.get("tx@1").id}]
    edges = ws.lineage(version.ref)
    assert any(e.source == "dataset:tx@1" and e.target == f"dataset:{version.ref}" for e in edges)
    assert version.schema[-1].name == "split" and version.schema[-1].type == "string"
    stored = ws.data.get(version.ref)
    assert split_counts(stored) == _counts(_frame(ws, stored))


def test_split_counts_refuses_a_version_no_split_made(ws: Workspace) -> None:
    with pytest.raises(InputError, match=r"tx@1 was not made by a split"):
        split_counts(ws.data.get("tx@1"))


def test_an_empty_input_gives_an_empty_split(ws: Workspace, tmp_path: Path) -> None:
    ws.ingest("nothing", _write_csv(tmp_path / "nothing.csv", [], ["id", "label"]))
    version = ws.features.split(_name(), "nothing", by="stratified", column="label")
    assert version.row_count == 0
    assert split_counts(version) == {"train": 0, "valid": 0, "test": 0}


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "options, message",
    [
        ({"by": "shuffle"}, r"unknown split by='shuffle'.*random, stratified, time, group"),
        ({"test": 1.0}, r"test=1\.0 is not a fraction"),
        ({"valid": -0.1}, r"valid=-0\.1 is not a fraction"),
        ({"test": float("nan")}, r"test=nan is not a fraction"),
        ({"test": True}, r"test=True is not a fraction"),
        ({"test": 0.6, "valid": 0.4}, r"test \+ valid = 1 leaves no rows to train on"),
        ({"seed": 1.5}, r"seed=1\.5 is not an integer"),
        ({"by": "stratified"}, r"a stratified split needs a column"),
        ({"by": "time"}, r"a time split needs a column.*date or timestamp"),
        ({"by": "group", "column": ""}, r"a group split needs a column"),
        ({"column": "label"}, r"a random split takes no column \(column='label'\)"),
        ({"by": "stratified", "column": "nope"}, r"column 'nope' is not in tx@1.*id, ts"),
        ({"by": "time", "column": "label"}, r"column 'label' is VARCHAR, not a date or timestamp"),
        ({"by": "time", "column": "ts", "cutoff": "soon"}, r"cutoff 'soon' is not a date or time"),
        ({"by": "time", "column": "ts", "cutoff": 20240101}, r"cutoff 20240101 is not a date"),
        ({"by": "group", "column": "user", "cutoff": "2024-01-01"}, r"cutoff is for a time split"),
    ],
)
def test_bad_arguments_are_input_errors_naming_the_argument(
    ws: Workspace, options: dict, message: str
) -> None:
    name = _name()
    with pytest.raises(InputError, match=message):
        ws.features.split(name, "tx", **options)
    assert name not in {d.name for d, _, _ in ws.data.ls()}


def test_an_input_with_a_split_column_is_refused(ws: Workspace) -> None:
    first = ws.features.split(_name(), "tx")
    with pytest.raises(InputError, match=r"already has a column 'split'"):
        ws.features.split(_name(), first.ref)


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Only here so ``split`` is a subcommand, as in the real app."""

    app.command("split")(split_command)
    return app


def test_the_cli_prints_the_version_and_its_counts_as_json(
    ws: Workspace, root: Path, cli: typer.Typer
) -> None:
    location = str(root / "ws")
    name = _name()
    args = ["split", name, "--input", "tx@1", "--by", "time", "--column", "ts"]
    result = CliRunner().invoke(cli, [*args, "--valid", "0.1", "-w", location, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["dataset"] == name and data["version"] == 1 and data["input"] == "tx@1"
    assert data["rows"] == ROWS and sum(data["counts"].values()) == ROWS
    assert data["counts"] == split_counts(ws.data.get(f"{name}@1"))
    assert data["id"] == ws.data.get(f"{name}@1").id and data["seconds"] >= 0

    text = CliRunner().invoke(cli, ["split", _name(), "-i", "tx", "--seed", "3", "-w", location])
    assert text.exit_code == 0, text.output
    assert "split random: train" in text.output and "test" in text.output


def test_the_cli_passes_mistakes_on_as_input_errors(
    ws: Workspace, root: Path, cli: typer.Typer
) -> None:
    args = ["split", _name(), "-i", "tx", "--by", "time", "-c", "ts", "--cutoff", "later"]
    result = CliRunner().invoke(cli, [*args, "-w", str(root / "ws")])
    assert isinstance(result.exception, InputError)
    assert "cutoff 'later'" in str(result.exception)
