"""SQL and Python transforms: results, definitions, lineage, and failures that commit nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import loopml
from loopml.errors import InputError, NotFound, UserCodeError

LOOPML = str(Path(sys.executable).with_name("loopml"))


@pytest.fixture
def ws(tmp_path: Path):
    workspace = loopml.open(tmp_path / "ws")
    rows = [(i, f"c{i % 7}", float(i) * 1.5) for i in range(1, 501)]
    csv = tmp_path / "tx.csv"
    csv.write_text("tx_id,customer,amount\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    workspace.ingest("tx", str(csv))
    customers = tmp_path / "customers.csv"
    customers.write_text("customer,segment\n" + "".join(f"c{i},s{i % 2}\n" for i in range(7)))
    workspace.ingest("customers", str(customers))
    yield workspace
    workspace.close()


def _expected_totals() -> dict[str, float]:
    totals: dict[str, float] = {}
    for i in range(1, 501):
        totals[f"c{i % 7}"] = totals.get(f"c{i % 7}", 0.0) + float(i) * 1.5
    return totals


def test_sql_transform_joins_inputs_named_after_their_datasets(ws) -> None:
    version = ws.features.sql(
        "by_segment",
        "SELECT c.segment, sum(t.amount) AS total FROM tx t JOIN customers c USING (customer) "
        "GROUP BY 1 ORDER BY 1",
        inputs=["tx", "customers@1"],
    )
    totals = _expected_totals()
    expected = {
        "s0": sum(v for k, v in totals.items() if int(k[1:]) % 2 == 0),
        "s1": sum(v for k, v in totals.items() if int(k[1:]) % 2 == 1),
    }
    got = dict(zip(*ws.data.read(version).to_pydict().values(), strict=True))
    assert got == pytest.approx(expected)
    assert version.number == 1 and version.row_count == 2
    recorded = version.meta["transform"]
    assert recorded["kind"] == "sql" and "GROUP BY" in recorded["definition"]
    assert [i["ref"] for i in recorded["inputs"]] == ["tx@1", "customers@1"]
    assert recorded["inputs"][0]["id"] == ws.data.get("tx@1").id


def test_same_transform_of_same_inputs_gives_the_same_id(ws) -> None:
    sql = "SELECT customer, count(*) AS n FROM tx GROUP BY 1 ORDER BY 1"
    first = ws.features.sql("counts", sql, inputs=["tx"])
    second = ws.features.sql("counts", sql, inputs=["tx"])
    assert (first.number, second.number) == (1, 2)
    assert first.id == second.id


def test_lineage_runs_both_ways(ws) -> None:
    derived = ws.features.sql("counts", "SELECT customer, count(*) n FROM tx GROUP BY 1", ["tx"])
    again = ws.features.sql("top", "SELECT * FROM counts ORDER BY n DESC LIMIT 3", ["counts"])
    upstream = ws.lineage(again.ref)
    sources = {(e.source, e.target) for e in upstream}
    assert ("dataset:counts@1", "dataset:top@1") in sources
    assert ("dataset:tx@1", "dataset:counts@1") in sources
    assert any(e.source.startswith("source:") and e.target == "dataset:tx@1" for e in upstream)
    downstream = ws.lineage("tx@1", "downstream")
    assert {e.target for e in downstream} == {f"dataset:{derived.ref}", f"dataset:{again.ref}"}


def _arrow_fn(tx: pa.Table) -> pa.Table:
    return tx.filter(pa.compute.greater(tx["amount"], 600.0)).select(["tx_id"])


def _pandas_fn(df: pd.DataFrame, *, factor: float) -> pd.DataFrame:
    return pd.DataFrame({"tx_id": df["tx_id"], "scaled": df["amount"] * factor})


def test_python_transform_takes_arrow_or_pandas(ws) -> None:
    arrow = ws.features.python("big", _arrow_fn, ["tx"])
    assert ws.data.read(arrow).column("tx_id").to_pylist() == [
        i for i in range(1, 501) if i * 1.5 > 600
    ]
    scaled = ws.features.python("scaled", _pandas_fn, ["tx"], params={"factor": 2.0})
    table = ws.data.read(scaled).to_pydict()
    assert table["scaled"][:3] == [3.0, 6.0, 9.0]
    assert scaled.meta["transform"]["params"] == {"factor": 2.0}


def _raises(tx: pa.Table) -> pa.Table:
    raise ZeroDivisionError("boom")


def _returns_text(tx: pa.Table) -> str:
    return "not a table"


@pytest.mark.parametrize(
    ("function", "words"),
    [
        (_raises, ["transform broken", "ZeroDivisionError", "boom"]),
        (_returns_text, ["returned str"]),
    ],
)
def test_user_code_errors_name_the_step_and_commit_nothing(ws, function, words) -> None:
    with pytest.raises(UserCodeError) as caught:
        ws.features.python("broken", function, ["tx"])
    for word in words:
        assert word in str(caught.value)
    assert "broken" not in {d.name for d, _, _ in ws.data.ls()}
    events = ws.audit.ls(action="dataset.transform")
    assert [(e.target, e.outcome) for e in events] == [("dataset:broken", "failed")]
    assert words[-1] in events[0].details["error"]
    assert ws.fsck().ok


def test_bad_sql_and_missing_inputs_are_input_errors(ws) -> None:
    with pytest.raises(InputError) as caught:
        ws.features.sql("x", "SELECT * FROM nope", ["tx"])
    assert "transform x" in str(caught.value) and "tx" in str(caught.value)
    with pytest.raises(NotFound):
        ws.features.sql("x", "SELECT 1", ["absent"])
    with pytest.raises(InputError):
        ws.features.sql("x", "SELECT 1", [])
    with pytest.raises(InputError):
        ws.features.sql("x", "SELECT 1", ["tx@1", "tx@1"])
    with pytest.raises(InputError) as caught:
        ws.features.python("x", "no_such_module_here:fn", ["tx"])
    assert "no_such_module_here" in str(caught.value)
    assert "x" not in {d.name for d, _, _ in ws.data.ls()}


def test_cli_transform_and_lineage(ws, tmp_path: Path) -> None:
    sql = tmp_path / "q.sql"
    sql.write_text("SELECT customer, count(*) AS n FROM tx GROUP BY 1 ORDER BY 1")
    module = tmp_path / "mymod.py"
    module.write_text(
        textwrap.dedent("""
        import pyarrow as pa

        def top(counts: pa.Table) -> pa.Table:
            return counts.sort_by([("n", "descending")]).slice(0, 2)
    """)
    )
    root = str(ws.settings.root)
    out = subprocess.run(
        [LOOPML, "-w", root, "transform", "counts", "--sql", str(sql), "--input", "tx", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    assert (data["dataset"], data["version"], data["rows"], data["inputs"]) == (
        "counts",
        1,
        7,
        ["tx@1"],
    )
    assert isinstance(data["seconds"], float)
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [
            LOOPML,
            "-w",
            root,
            "transform",
            "top",
            "--fn",
            "mymod:top",
            "--input",
            "counts",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert json.loads(out.stdout)["rows"] == 2
    out = subprocess.run(
        [LOOPML, "-w", root, "lineage", "top", "--upstream", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    edges = json.loads(out.stdout)["edges"]
    assert {"dataset:counts@1", "dataset:tx@1"} <= {e["source"] for e in edges}
    bad = subprocess.run(
        [LOOPML, "-w", root, "transform", "x", "--input", "tx"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    broken = subprocess.run(
        [LOOPML, "-w", root, "transform", "x", "--sql", str(sql), "--input", "nope"],
        capture_output=True,
        text=True,
    )
    assert broken.returncode == 2
    assert broken.stderr.startswith("error:") and "nope" in broken.stderr


def test_sql_cannot_read_files_outside_its_inputs(ws, tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("token\nhunter2\n")
    for sql in (
        f"SELECT * FROM read_csv('{outside}')",
        f"SELECT * FROM tx, read_text('{outside}')",
        "SET enable_external_access = true",
    ):
        with pytest.raises(InputError) as caught:
            ws.features.sql("leak", sql, ["tx"])
        assert "transform leak" in str(caught.value)
    assert "leak" not in {d.name for d, _, _ in ws.data.ls()}
