"""Fixes from review: errors that name their step, parallel Python steps, the scheduler,
helper-module edits, and spec fields checked when the spec loads."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopml.errors import SpecError
from loopml.pipeline.spec import load_spec


def _spec(project: Path, body: str) -> Path:
    (project / "tx.csv").write_text("id,v\n1,1\n2,2\n3,3\n")
    path = project / "loopml.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_missing_contract_fails_its_step_not_the_runner(ws, project: Path) -> None:
    spec = _spec(
        project,
        """\
        name: p
        sources:
          tx: {path: tx.csv, contract: contracts/missing.yaml}
        features:
          after: {sql: "SELECT * FROM tx", inputs: [tx]}
    """,
    )
    result = ws.pipelines.run(spec)
    steps = {s.name: s for s in result.steps}
    assert result.status == "failed"
    assert steps["tx"].status == "failed" and "missing.yaml" in (steps["tx"].error or "")
    assert steps["after"].status == "skipped"
    assert ws.pipelines.show(result.id)["status"] == "failed"


def test_parallel_python_steps_from_sibling_modules_both_run(
    ws, project: Path, module_name: str
) -> None:
    for suffix in ("a", "b"):
        (project / f"{module_name}_{suffix}.py").write_text(
            textwrap.dedent(f"""
            import time
            import pyarrow as pa

            def make(tx: pa.Table) -> pa.Table:
                time.sleep(0.5)
                return tx.append_column("tag", pa.array(["{suffix}"] * tx.num_rows))
        """)
        )
    spec = _spec(
        project,
        f"""\
        name: p
        sources:
          tx: {{path: tx.csv}}
        features:
          fa: {{python: "{module_name}_a:make", inputs: [tx], resources: {{cpus: 0.5}}}}
          fb: {{python: "{module_name}_b:make", inputs: [tx], resources: {{cpus: 0.5}}}}
    """,
    )
    result = ws.pipelines.run(spec)
    assert result.status == "succeeded", [(s.name, s.error) for s in result.steps]
    assert set(ws.data.read("fa").column("tag").to_pylist()) == {"a"}
    assert set(ws.data.read("fb").column("tag").to_pylist()) == {"b"}


def test_editing_a_helper_module_reruns_the_step(ws, project: Path, module_name: str) -> None:
    helper = project / f"{module_name}_helper.py"
    helper.write_text("FACTOR = 2\n")
    (project / f"{module_name}.py").write_text(
        textwrap.dedent(f"""
        import importlib
        import pyarrow as pa
        import pyarrow.compute as pc

        def scale(tx: pa.Table) -> pa.Table:
            helper = importlib.import_module("{module_name}_helper")
            importlib.reload(helper)
            return pa.table({{"v": pc.multiply(tx["v"], helper.FACTOR)}})
    """)
    )
    spec = _spec(
        project,
        f"""\
        name: p
        sources:
          tx: {{path: tx.csv}}
        features:
          scaled: {{python: "{module_name}:scale", inputs: [tx]}}
    """,
    )
    first = ws.pipelines.run(spec)
    assert ws.data.read("scaled").column("v").to_pylist() == [2, 4, 6]
    again = ws.pipelines.run(spec)
    assert {s.name: s.status for s in again.steps}["scaled"] == "cached"
    helper.write_text("FACTOR = 3\n")
    third = ws.pipelines.run(spec)
    assert {s.name: s.status for s in third.steps} == {"tx": "cached", "scaled": "succeeded"}
    assert ws.data.read("scaled").column("v").to_pylist() == [3, 6, 9]
    assert first.status == again.status == third.status == "succeeded"


def test_one_broken_scheduled_pipeline_does_not_stop_the_others(ws, tmp_path: Path) -> None:
    folders = {}
    for name, reads in (("a-broken", "nowhere"), ("b-good", "tx")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "tx.csv").write_text("id,v\n1,1\n")
        (folder / "loopml.yaml").write_text(
            textwrap.dedent(f"""\
            name: {name}
            sources:
              tx: {{path: tx.csv}}
            features:
              out: {{sql: "SELECT * FROM {reads}", inputs: [{reads}]}}
            schedule: {{cron: "0 2 * * *"}}
        """)
        )
        folders[name] = folder
    # The good one is registered after its input exists; the broken one reads a dataset
    # nobody makes, which fails when its run starts.
    for folder in folders.values():
        ws.pipelines.schedule(folder / "loopml.yaml")
    later = datetime(2099, 1, 1, 3, 0, tzinfo=UTC)
    results = ws.pipelines.run_due(now=later)
    assert [(r.pipeline, r.status) for r in results] == [("b-good", "succeeded")]
    entries = {e.pipeline: e for e in ws.pipelines.schedules()}
    assert entries["a-broken"].last_run_at is not None and entries["a-broken"].last_run_id is None
    failed = [e for e in ws.audit.ls(action="schedule.fire") if e.outcome == "failed"]
    assert [e.target for e in failed] == ["pipeline:a-broken"]
    assert "nowhere" in failed[0].details["error"]


@pytest.mark.parametrize(
    ("feature", "field"),
    [
        (
            "rolling: {input: tx, entity: id, time: ts, value: v, windows: [1x], aggs: [sum]}",
            "features.f.rolling.windows",
        ),
        (
            "rolling: {input: tx, entity: id, time: ts, value: v, windows: [1h], aggs: [sum], "
            "lags: 5000}",
            "features.f.rolling.lags",
        ),
    ],
)
def test_feature_fields_are_checked_when_the_spec_loads(
    project: Path, feature: str, field: str
) -> None:
    path = _spec(
        project, f"name: p\nsources:\n  tx: {{path: tx.csv}}\nfeatures:\n  f:\n    {feature}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert field in str(caught.value) and "loopml.yaml:" in str(caught.value)


def test_an_unquoted_cutoff_date_is_accepted(project: Path) -> None:
    path = _spec(
        project,
        """\
        name: p
        sources:
          tx: {path: tx.csv}
        split: {input: tx, by: time, column: ts, cutoff: 2024-03-01}
    """,
    )
    spec, _ = load_spec(path)
    assert spec.split is not None and spec.split.cutoff == "2024-03-01"
