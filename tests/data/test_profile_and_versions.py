"""Profiles agree with NumPy/pandas; references resolve; content ids, diffs and exports."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import loopml

N = 3000
CATEGORY_COUNTS = {f"cat{i:02d}": 300 - 20 * i for i in range(13)}  # distinct counts


@pytest.fixture
def ws(tmp_path: Path):
    workspace = loopml.open(tmp_path / "ws")
    yield workspace
    workspace.close()


def make_frame(seed: int = 42) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    categories = np.repeat(list(CATEGORY_COUNTS), list(CATEGORY_COUNTS.values()))
    n = len(categories)
    rng.shuffle(categories)
    x = rng.normal(50.0, 12.0, n)
    x[rng.random(n) < 0.07] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "n": rng.integers(-500, 500, n),
            "cat": categories,
            "flag": rng.random(n) < 0.3,
        }
    )


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # NaN in the frame stands for a missing value: store it as null.
    x = pa.array(frame["x"].to_numpy(), pa.float64(), mask=frame["x"].isna().to_numpy())
    table = table.set_column(table.schema.get_field_index("x"), "x", x)
    pq.write_table(table, path)


def test_profile_matches_numpy_and_pandas(ws, tmp_path: Path) -> None:
    frame = make_frame()
    write_parquet(frame, tmp_path / "data.parquet")

    profile = ws.ingest("measures", str(tmp_path / "data.parquet")).version.profile

    for column in ("x", "n"):
        values = frame[column].dropna().to_numpy(dtype=float)
        stats = profile[column]
        assert stats["count"] == len(frame)
        assert stats["nulls"] == int(frame[column].isna().sum())
        assert stats["min"] == pytest.approx(values.min())
        assert stats["max"] == pytest.approx(values.max())
        assert stats["mean"] == pytest.approx(values.mean(), rel=1e-9)
        assert stats["std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
        spread = values.max() - values.min()
        assert stats["quantiles"], "numeric columns carry quantiles"
        for q, value in stats["quantiles"].items():
            assert abs(value - np.quantile(values, float(q))) <= 0.03 * spread, q
        distinct = len(np.unique(values))
        assert abs(stats["distinct"] - distinct) <= 0.05 * distinct

    assert profile["x"]["nulls"] > 0

    cat = profile["cat"]
    counts = frame["cat"].value_counts()
    assert cat["count"] == len(frame) and cat["nulls"] == 0
    assert cat["top"] == [[value, int(count)] for value, count in counts.head(10).items()]
    assert cat["min"] == min(CATEGORY_COUNTS) and cat["max"] == max(CATEGORY_COUNTS)
    assert cat["distinct"] == len(CATEGORY_COUNTS)

    flag = profile["flag"]
    assert flag["mean"] == pytest.approx(frame["flag"].mean())
    assert dict((v, c) for v, c in flag["top"]) == {
        bool(v): int(c) for v, c in frame["flag"].value_counts().items()
    }


def test_profile_of_accepted_rows_only(ws, tmp_path: Path) -> None:
    amounts = [5.0, -1.0, 7.0, 9.0, -3.0, 11.0]
    (tmp_path / "a.csv").write_text(
        "id,amount\n" + "".join(f"{i},{a}\n" for i, a in enumerate(amounts))
    )
    (tmp_path / "c.yaml").write_text(
        "columns:\n  id: {type: int}\n  amount: {type: float, min: 0}\n"
    )

    profile = ws.ingest(
        "a", str(tmp_path / "a.csv"), contract=str(tmp_path / "c.yaml")
    ).version.profile

    kept = np.array([a for a in amounts if a >= 0])
    assert profile["amount"]["count"] == len(kept)
    assert profile["amount"]["min"] == kept.min()
    assert profile["amount"]["mean"] == pytest.approx(kept.mean())


# --- references -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory):
    """One workspace holding three versions of ``things``, shared by read-only tests."""
    root = tmp_path_factory.mktemp("refs")
    workspace = loopml.open(root / "ws")
    ids = []
    for number in range(1, 4):
        path = root / f"v{number}.csv"
        path.write_text("id,value\n" + "".join(f"{i},{i * number}\n" for i in range(number + 2)))
        ids.append(workspace.ingest("things", str(path)).version.id)
    yield workspace, ids
    workspace.close()


def test_ref_by_number(refs) -> None:
    ws, ids = refs
    for number, version_id in enumerate(ids, start=1):
        version = ws.data.get(f"things@{number}")
        assert version.number == number
        assert version.id == version_id
        assert version.row_count == number + 2


def test_ref_by_hash_prefix(refs) -> None:
    ws, ids = refs
    assert len(set(ids)) == 3
    for number, version_id in enumerate(ids, start=1):
        assert ws.data.get(f"things@{version_id[:12]}").number == number
        assert ws.data.get(f"things@{version_id}").number == number


def test_bare_name_and_latest_mean_the_newest(refs) -> None:
    ws, ids = refs
    assert ws.data.get("things").number == 3
    assert ws.data.get("things@latest").number == 3
    assert ws.data.get("things").id == ids[-1]


@pytest.mark.parametrize(
    "ref", ["things@4", "things@99", "things@0", "things@deadbeef", "nothing", "nothing@1"]
)
def test_unknown_version_is_not_found(refs, ref: str) -> None:
    ws, _ = refs
    with pytest.raises(loopml.NotFound):
        ws.data.get(ref)


@pytest.mark.parametrize(
    "ref", ["", "things@", "@1", "bad name", "things/x@1", "-things", "th!ngs@2"]
)
def test_malformed_ref_is_an_input_error(refs, ref: str) -> None:
    ws, _ = refs
    with pytest.raises(loopml.InputError):
        ws.data.get(ref)


def test_versions_lists_newest_first(refs) -> None:
    ws, _ = refs
    assert [v.number for v in ws.data.versions("things")] == [3, 2, 1]
    with pytest.raises(loopml.NotFound):
        ws.data.versions("nothing")


def test_ls_lists_each_dataset_with_its_latest(ws, tmp_path: Path) -> None:
    for number in range(1, 4):
        (tmp_path / "t.csv").write_text("id\n" + "1\n" * number)
        ws.ingest("things", str(tmp_path / "t.csv"))
    (tmp_path / "o.csv").write_text("id\n1\n")
    ws.ingest("another", str(tmp_path / "o.csv"))
    listed = {dataset.name: (latest.number, count) for dataset, latest, count in ws.data.ls()}
    assert listed == {"things": (3, 3), "another": (1, 1)}


# --- content ids -----------------------------------------------------------------------------


def test_identical_content_yields_the_same_id(ws, tmp_path: Path) -> None:
    text = "id,name\n1,a\n2,b\n3,c\n"
    (tmp_path / "one.csv").write_text(text)
    (tmp_path / "copy.csv").write_text(text)
    (tmp_path / "other.csv").write_text(text.replace("c", "d"))

    first = ws.ingest("things", str(tmp_path / "one.csv")).version
    again = ws.ingest("things", str(tmp_path / "copy.csv")).version
    other = ws.ingest("things", str(tmp_path / "other.csv")).version
    elsewhere = ws.ingest("elsewhere", str(tmp_path / "one.csv")).version

    assert (first.number, again.number, other.number) == (1, 2, 3)
    assert first.id == again.id == elsewhere.id
    assert other.id != first.id
    # A hash prefix shared by two versions with the same content resolves to the newest.
    assert ws.data.get(f"things@{first.id[:10]}").number == 2


# --- diff ------------------------------------------------------------------------------------


def test_diff_reports_schema_and_statistic_changes(ws, tmp_path: Path) -> None:
    before = pd.DataFrame({"id": range(100), "x": np.linspace(0, 10, 100), "old": ["a"] * 100})
    after = pd.DataFrame({"id": range(120), "x": np.linspace(5, 25, 120), "new": [1.5] * 120})
    before.to_csv(tmp_path / "v1.csv", index=False)
    after.to_csv(tmp_path / "v2.csv", index=False)
    ws.ingest("things", str(tmp_path / "v1.csv"))
    ws.ingest("things", str(tmp_path / "v2.csv"))

    diff = ws.data.diff("things@1", "things@2")

    assert diff["same_content"] is False
    assert diff["schema"]["added"] == ["new"]
    assert diff["schema"]["removed"] == ["old"]
    assert diff["rows"] == {"a": 100, "b": 120, "delta": 20}
    mean = diff["columns"]["x"]["mean"]
    assert mean["a"] == pytest.approx(before["x"].mean())
    assert mean["b"] == pytest.approx(after["x"].mean())
    assert mean["delta"] == pytest.approx(after["x"].mean() - before["x"].mean())
    assert diff["columns"]["x"]["max"]["b"] == pytest.approx(after["x"].max())
    assert diff["columns"]["id"]["count"]["delta"] == 20


def test_diff_of_a_version_with_itself_is_empty(ws, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,name\n1,a\n2,b\n")
    ws.ingest("things", str(tmp_path / "a.csv"))
    diff = ws.data.diff("things@1", "things")
    assert diff["same_content"] is True
    assert diff["schema"] == {}
    assert diff["columns"] == {}
    assert diff["rows"]["delta"] == 0


def test_diff_of_unknown_version_is_not_found(ws, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n")
    ws.ingest("things", str(tmp_path / "a.csv"))
    with pytest.raises(loopml.NotFound):
        ws.data.diff("things@1", "things@2")


# --- export -----------------------------------------------------------------------------------

SOURCE_ROWS = [
    {"id": i, "name": f"n{i}", "amount": (i - 4) * 2.5, "flag": i % 2 == 0} for i in range(1, 16)
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """A workspace with one version whose accepted rows are known from its input."""
    root = tmp_path_factory.mktemp("export")
    (root / "c.yaml").write_text(
        "columns:\n  id: {type: int}\n  name: {type: string}\n"
        "  amount: {type: float, min: 0}\n  flag: {type: bool}\n"
    )
    lines = ["id,name,amount,flag"] + [
        f"{r['id']},{r['name']},{r['amount']},{str(r['flag']).lower()}" for r in SOURCE_ROWS
    ]
    (root / "a.csv").write_text("\n".join(lines) + "\n")
    workspace = loopml.open(root / "ws")
    result = workspace.ingest("things", str(root / "a.csv"), contract=str(root / "c.yaml"))
    accepted = [r for r in SOURCE_ROWS if r["amount"] >= 0]
    assert result.rows_accepted == len(accepted)
    yield workspace, result.version, accepted
    workspace.close()


def test_export_parquet_round_trips(tmp_path: Path, exported) -> None:
    ws, version, accepted = exported
    target = tmp_path / "out.parquet"
    assert ws.data.export(version.ref, target) == len(accepted)
    table = pq.read_table(target)
    assert table.to_pylist() == accepted
    assert table.schema == ws.data.schema(version)


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz"])
def test_export_csv_round_trips(tmp_path: Path, exported, name: str) -> None:
    ws, version, accepted = exported
    target = tmp_path / name
    assert ws.data.export(version.ref, target) == len(accepted)
    raw = target.read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    table = pacsv.read_csv(io.BytesIO(raw))
    assert table.column_names == ["id", "name", "amount", "flag"]
    assert table.to_pylist() == accepted
    assert not list(tmp_path.glob(".*partial"))


def test_export_to_unknown_extension_is_an_input_error(tmp_path: Path, exported) -> None:
    ws, version, _ = exported
    with pytest.raises(loopml.InputError):
        ws.data.export(version.ref, tmp_path / "out.xlsx")
    assert not (tmp_path / "out.xlsx").exists()


def test_export_into_missing_folder_is_an_input_error(tmp_path: Path, exported) -> None:
    ws, version, _ = exported
    with pytest.raises(loopml.InputError):
        ws.data.export(version.ref, tmp_path / "no" / "such" / "out.csv")
