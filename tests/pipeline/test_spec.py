"""The workload spec: validation that names the field and its line, and the DAG it compiles to.

Every bad spec here is refused before anything runs: no pipeline run is recorded and
no dataset version is committed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loopml
from loopml.examples.project import SPEC as FRAUD_SPEC
from loopml.pipeline.dag import compile_spec
from loopml.pipeline.spec import load_spec, parse_memory, parse_off_peak
from loopml.workspace import Workspace

Write = Callable[[str, str], Path]
RowsCsv = Callable[[Path, Sequence[Mapping[str, Any]]], Path]

GOOD_SOURCE = """\
name: tiny
sources:
  tx:
    path: tx.csv
"""


def line_of(text: str, prefix: str) -> int:
    """The 1-based number of the first line of ``text`` that starts with ``prefix``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(prefix):
            return number
    raise AssertionError(f"{prefix!r} is not in the spec")


def assert_nothing_ran(ws: Workspace) -> None:
    """No pipeline run was recorded and no dataset exists."""
    assert ws.pipelines.runs() == []
    assert ws.data.ls() == []


@pytest.fixture
def tx_csv(project: Path, rows_csv: RowsCsv) -> Path:
    return rows_csv(project / "tx.csv", [{"id": i, "amount": i * 1.5} for i in range(1, 6)])


# --------------------------------------------------------------------------- unknown fields


def test_unknown_top_level_field_names_it_and_its_line(ws: Workspace, write: Write) -> None:
    text = GOOD_SOURCE + "featurs:\n  doubled:\n    sql: SELECT 1\n    inputs: [tx]\n"
    spec = write("loopml.yaml", text)

    with pytest.raises(loopml.SpecError) as caught:
        ws.pipelines.run(spec)

    line = line_of(text, "featurs:")
    assert f":{line}: featurs:" in caught.value.message
    assert_nothing_ran(ws)


def test_unknown_nested_field_names_its_path_and_line(ws: Workspace, write: Write) -> None:
    text = "name: tiny\nowner: me\nsources:\n  tx:\n    format: csv\n    pth: tx.csv\n"
    spec = write("loopml.yaml", text)

    with pytest.raises(loopml.SpecError) as caught:
        ws.pipelines.run(spec)

    line = line_of(text, "pth:")
    assert f":{line}: sources.tx.pth:" in caught.value.message
    assert_nothing_ran(ws)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.from_regex(r"[a-z][a-z_]{2,12}", fullmatch=True).filter(
        lambda k: (
            k
            not in {
                "name",
                "owner",
                "resources",
                "sources",
                "features",
                "split",
                "train",
                "evaluate",
                "deploy",
                "monitor",
                "schedule",
            }
        )
    ),
    blank_lines=st.integers(min_value=0, max_value=5),
)
def test_any_unknown_key_is_named_with_its_line(tmp_path: Path, key: str, blank_lines: int) -> None:
    text = GOOD_SOURCE + "\n" * blank_lines + f"{key}: 1\n"
    path = tmp_path / "loopml.yaml"
    path.write_text(text)

    with pytest.raises(loopml.SpecError) as caught:
        load_spec(path)

    assert f":{line_of(text, key + ':')}: {key}:" in caught.value.message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = GOOD_SOURCE + "features:\n  broken: [unclosed\n"
    path = tmp_path / "loopml.yaml"
    path.write_text(text)

    with pytest.raises(loopml.SpecError) as caught:
        load_spec(path)

    assert "not valid YAML" in caught.value.message
    number = int(re.search(r"loopml\.yaml:(\d+):", caught.value.message).group(1))  # type: ignore[union-attr]
    assert number >= line_of(text, "broken:")


def test_a_missing_spec_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(loopml.NotFound) as caught:
        load_spec(tmp_path)

    assert str(tmp_path / "loopml.yaml") in caught.value.message


def test_a_feature_with_two_kinds_is_named(write: Write) -> None:
    text = (
        GOOD_SOURCE + "features:\n  both:\n    sql: SELECT 1\n    python: m:f\n    inputs: [tx]\n"
    )
    spec = write("loopml.yaml", text)

    with pytest.raises(loopml.SpecError) as caught:
        load_spec(spec)

    assert f":{line_of(text, 'both:')}: features.both:" in caught.value.message


# --------------------------------------------------------------------------- the fraud example


def test_every_section_of_the_fraud_example_parses(write: Write, project: Path) -> None:
    spec, root = load_spec(write("loopml.yaml", FRAUD_SPEC))

    assert root == project.absolute()
    assert spec.name == "card-fraud"
    assert spec.owner == "risk-ml@example.com"
    source = spec.sources["transactions"]
    assert (source.path, source.contract) == (
        "data/transactions.csv",
        "contracts/transactions.yaml",
    )
    assert source.pii == {"customer_email": "hash", "card_number": "mask"}
    rolling = spec.features["tx_history"].rolling
    assert rolling is not None
    assert (rolling.input, rolling.entity, rolling.time, rolling.value) == (
        "transactions",
        "customer_id",
        "ts",
        "amount",
    )
    assert rolling.windows == ["1h", "24h", "7d"]
    assert rolling.aggs == ["count", "sum", "mean"]
    training = spec.features["training_set"]
    assert (training.kind, training.sql, training.inputs) == (
        "sql",
        "features/training_set.sql",
        ["tx_history"],
    )
    assert spec.split is not None
    assert (spec.split.input, spec.split.by, spec.split.column, spec.split.test) == (
        "training_set",
        "time",
        "ts",
        0.2,
    )
    train = spec.train
    assert train is not None
    assert (train.model, train.target, train.heavy) == ("lightgbm", "is_fraud", True)
    assert train.resources.cpus == 2
    assert train.resources.memory == 4 * 2**30
    assert train.search is not None and train.search.trials == 8
    assert train.search.space["learning_rate"] == [0.01, 0.3, "log"]
    assert spec.evaluate is not None
    assert spec.evaluate.sensitive == ["age_band"]
    assert set(spec.evaluate.gates) == {
        "roc_auc",
        "demographic_parity_difference",
        "beat_champion_by",
    }
    assert spec.deploy is not None
    assert (spec.deploy.alias, spec.deploy.workers, spec.deploy.canary) == ("champion", 2, "10%")
    assert spec.deploy.slo == {"p99_ms": 20}
    monitor = spec.monitor
    assert monitor is not None
    assert (monitor.drift.test, monitor.drift.threshold, monitor.drift.window) == (
        "psi",
        0.2,
        10000,
    )
    assert [(a["on"], a["severity"], a["escalate_after"]) for a in monitor.alerts] == [
        ("drift", "warning", "30m")
    ]
    assert monitor.retrain is not None
    assert (monitor.retrain.on, monitor.retrain.auto_promote) == (["drift", "decay"], True)
    assert spec.schedule is not None
    assert (spec.schedule.cron, spec.schedule.off_peak) == ("0 2 * * *", "00:00-06:00")


def test_the_fraud_example_compiles_to_five_steps_in_dependency_order(write: Write) -> None:
    spec, _ = load_spec(write("loopml.yaml", FRAUD_SPEC))

    steps = compile_spec(spec)

    assert [(s.name, s.kind) for s in steps] == [
        ("transactions", "ingest"),
        ("tx_history", "rolling"),
        ("training_set", "sql"),
        ("training_set_split", "split"),
        ("train", "train"),
    ]
    assert {s.name: s.needs for s in steps} == {
        "transactions": (),
        "tx_history": ("transactions",),
        "training_set": ("tx_history",),
        "training_set_split": ("training_set",),
        "train": ("training_set_split",),
    }
    train = steps[-1]
    # The model is named after the workload; the step trains on the split's output.
    assert (train.params["name"], train.params["model"], train.reads) == (
        "card-fraud",
        "lightgbm",
        ("training_set_split",),
    )


# --------------------------------------------------------------------------- the DAG


def test_a_cycle_names_both_steps_and_nothing_runs(
    ws: Workspace, write: Write, tx_csv: Path
) -> None:
    text = GOOD_SOURCE + (
        "features:\n"
        "  alpha_step:\n"
        "    sql: SELECT * FROM beta_step\n"
        "    inputs: [beta_step]\n"
        "  beta_step:\n"
        "    sql: SELECT * FROM alpha_step\n"
        "    inputs: [alpha_step]\n"
    )
    spec = write("loopml.yaml", text)

    with pytest.raises(loopml.SpecError) as caught:
        ws.pipelines.run(spec)

    assert "cycle" in caught.value.message
    assert "alpha_step" in caught.value.message
    assert "beta_step" in caught.value.message
    assert_nothing_ran(ws)


def test_a_step_reading_its_own_output_is_refused(write: Write) -> None:
    text = GOOD_SOURCE + "features:\n  loop_step:\n    sql: SELECT 1\n    inputs: [loop_step]\n"
    spec, _ = load_spec(write("loopml.yaml", text))

    with pytest.raises(loopml.SpecError) as caught:
        compile_spec(spec)

    assert "loop_step" in caught.value.message


MISSING_INPUT = GOOD_SOURCE + (
    "features:\n"
    "  enriched:\n"
    "    sql: SELECT tx.*, g.label FROM tx JOIN ghost_dataset g USING (id)\n"
    "    inputs: [tx, ghost_dataset]\n"
)


def test_a_missing_input_names_step_and_dataset_and_nothing_is_committed(
    ws: Workspace,
    write: Write,
    tx_csv: Path,
) -> None:
    spec = write("loopml.yaml", MISSING_INPUT)

    with pytest.raises(loopml.SpecError) as caught:
        ws.pipelines.run(spec)

    assert "enriched" in caught.value.message
    assert "ghost_dataset" in caught.value.message
    # The source step would have run first; the check comes before any step.
    assert_nothing_ran(ws)


def test_an_input_the_workspace_already_has_is_not_missing(
    ws: Workspace, write: Write, tx_csv: Path, rows_csv: RowsCsv, project: Path
) -> None:
    labels = rows_csv(project / "labels.csv", [{"id": i, "label": i % 2} for i in range(1, 6)])
    ws.ingest("ghost_dataset", str(labels))
    spec = write("loopml.yaml", MISSING_INPUT)

    result = ws.pipelines.run(spec)

    assert result.status == "succeeded"
    table = ws.data.read("enriched").sort_by("id")
    assert table.column("label").to_pylist() == [i % 2 for i in range(1, 6)]


def test_a_split_without_input_names_the_field(write: Write) -> None:
    spec, _ = load_spec(write("loopml.yaml", GOOD_SOURCE + "split: {by: random}\n"))

    with pytest.raises(loopml.SpecError) as caught:
        compile_spec(spec)

    assert "split.input" in caught.value.message


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ('{cron: "61 * * * *"}', "schedule.cron"),
        ('{cron: "every night"}', "schedule.cron"),
        ('{cron: "0 2 * * *", off_peak: "25:00-06:00"}', "schedule.off_peak"),
        ('{cron: "0 2 * * *", off_peak: "night"}', "schedule.off_peak"),
        ('{cron: "0 2 * * *", off_peak: "01:75-06:00"}', "schedule.off_peak"),
    ],
)
def test_bad_schedules_name_the_field_and_line(write: Write, schedule: str, field: str) -> None:
    text = GOOD_SOURCE + f"schedule: {schedule}\n"
    spec = write("loopml.yaml", text)

    with pytest.raises(loopml.SpecError) as caught:
        load_spec(spec)

    assert f":{line_of(text, 'schedule:')}: {field}:" in caught.value.message


def test_a_bad_train_schedule_names_its_nested_field(write: Write) -> None:
    text = GOOD_SOURCE + "train:\n  target: y\n  schedule:\n    cron: '* * *'\n"
    spec = write("loopml.yaml", text)

    with pytest.raises(loopml.SpecError) as caught:
        load_spec(spec)

    assert f":{line_of(text, 'cron:')}: train.schedule.cron:" in caught.value.message


def test_a_good_schedule_is_kept(write: Write) -> None:
    spec, _ = load_spec(
        write(
            "loopml.yaml", GOOD_SOURCE + 'schedule: {cron: "30 1 * * 1-5", off_peak: 22:00-06:00}\n'
        )
    )

    assert spec.schedule is not None
    assert spec.schedule.cron == "30 1 * * 1-5"
    assert parse_off_peak(spec.schedule.off_peak or "") == (22 * 60, 6 * 60)


@given(
    h1=st.integers(0, 23),
    m1=st.integers(0, 59),
    h2=st.integers(0, 24),
    m2=st.integers(0, 59),
)
def test_parse_window_reads_minutes_after_midnight(h1: int, m1: int, h2: int, m2: int) -> None:
    assert parse_off_peak(f"{h1:02d}:{m1:02d}-{h2}:{m2:02d}") == (h1 * 60 + m1, h2 * 60 + m2)


@given(
    amount=st.integers(0, 10**6),
    unit=st.sampled_from(["", "B", "KB", "MB", "GB", "KiB", "MiB", "GiB", "gib", "mb"]),
)
def test_parse_memory_multiplies_by_the_unit(amount: int, unit: str) -> None:
    factors = {"": 1, "b": 1, "kb": 1000, "mb": 10**6, "gb": 10**9}
    factors |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3}

    assert parse_memory(f"{amount}{unit}") == amount * factors[unit.lower()]


# --------------------------------------------------------------------------- resources


@pytest.mark.parametrize(
    ("resources", "kind"),
    [("{cpus: 4096}", "cpus"), ("{gpus: 512}", "gpus"), ("{memory: 4096TiB}", "memory")],
)
def test_a_step_bigger_than_the_executor_is_named(
    ws: Workspace, write: Write, tx_csv: Path, resources: str, kind: str
) -> None:
    text = GOOD_SOURCE + (
        "features:\n"
        "  small_step:\n    sql: SELECT * FROM tx\n    inputs: [tx]\n"
        f"  huge_step:\n    sql: SELECT * FROM tx\n    inputs: [tx]\n    resources: {resources}\n"
    )
    spec = write("loopml.yaml", text)

    with pytest.raises(loopml.SpecError) as caught:
        ws.pipelines.run(spec)

    assert "huge_step" in caught.value.message
    assert "small_step" not in caught.value.message
    assert kind in caught.value.message
    assert_nothing_ran(ws)


def test_a_bad_memory_size_names_the_field(write: Write) -> None:
    text = GOOD_SOURCE + "    resources: {memory: lots}\n"
    spec = write("loopml.yaml", text)

    with pytest.raises(loopml.SpecError) as caught:
        load_spec(spec)

    assert "sources.tx.resources.memory" in caught.value.message


def test_an_unknown_executor_is_refused(ws: Workspace, write: Write, tx_csv: Path) -> None:
    spec = write("loopml.yaml", GOOD_SOURCE)

    with pytest.raises(loopml.SpecError) as caught:
        ws.pipelines.run(spec, executor="spark")

    assert "spark" in caught.value.message
    assert_nothing_ran(ws)
