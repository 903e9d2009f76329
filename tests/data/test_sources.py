"""Sources: every supported input shape ingests with the right rows and types, and every
unusable input fails with an InputError that names the file."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import loopml

ROWS = [{"id": i, "name": f"name-{i}", "amount": i * 1.5, "flag": i % 3 == 0} for i in range(1, 13)]


def csv_text(rows: list[dict]) -> str:
    header = ",".join(rows[0])
    body = "".join(",".join(_csv_value(v) for v in row.values()) + "\n" for row in rows)
    return header + "\n" + body


def _csv_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def jsonl_text(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def ws(tmp_path: Path):
    workspace = loopml.open(tmp_path / "ws")
    yield workspace
    workspace.close()


def by_id(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: row["id"])


def assert_standard_types(schema: pa.Schema) -> None:
    assert pa.types.is_integer(schema.field("id").type)
    assert pa.types.is_string(schema.field("name").type)
    assert pa.types.is_floating(schema.field("amount").type)
    assert pa.types.is_boolean(schema.field("flag").type)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".jsonl", ".jsonl.gz"])
def test_text_formats_ingest_rows_and_types(ws, tmp_path: Path, suffix: str) -> None:
    text = jsonl_text(ROWS) if ".jsonl" in suffix else csv_text(ROWS)
    path = tmp_path / f"input{suffix}"
    if suffix.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)

    result = ws.ingest("things", str(path))

    assert result.rows_read == len(ROWS)
    assert result.rows_accepted == len(ROWS)
    assert result.rows_quarantined == 0
    assert_standard_types(ws.data.schema(result.version))
    assert by_id(ws.data.read(result.version).to_pylist()) == ROWS
    assert result.version.row_count == len(ROWS)


def test_parquet_file_keeps_its_types(ws, tmp_path: Path) -> None:
    start = dt.datetime(2024, 1, 1)
    table = pa.table(
        {
            "id": pa.array([r["id"] for r in ROWS], pa.int32()),
            "name": [r["name"] for r in ROWS],
            "amount": [r["amount"] for r in ROWS],
            "flag": [r["flag"] for r in ROWS],
            "ts": pa.array([start + dt.timedelta(hours=r["id"]) for r in ROWS], pa.timestamp("us")),
        }
    )
    path = tmp_path / "input.parquet"
    pq.write_table(table, path)

    result = ws.ingest("things", str(path))

    assert result.rows_read == result.rows_accepted == table.num_rows
    assert ws.data.schema(result.version) == table.schema
    assert ws.data.read(result.version).to_pylist() == table.to_pylist()


def test_folder_ingests_every_file_in_it(ws, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.csv").write_text(csv_text(ROWS[:5]))
    (folder / "b.csv").write_text(csv_text(ROWS[5:9]))
    (folder / "nested" / "c.csv").write_text(csv_text(ROWS[9:]))

    result = ws.ingest("things", str(folder))

    assert result.rows_read == result.rows_accepted == len(ROWS)
    assert_standard_types(ws.data.schema(result.version))
    assert by_id(ws.data.read(result.version).to_pylist()) == ROWS


def test_glob_ingests_only_the_matching_files(ws, tmp_path: Path) -> None:
    (tmp_path / "part-1.csv").write_text(csv_text(ROWS[:4]))
    (tmp_path / "part-2.csv").write_text(csv_text(ROWS[4:10]))
    (tmp_path / "other.csv").write_text(csv_text(ROWS[10:]))

    result = ws.ingest("things", str(tmp_path / "part-*.csv"))

    assert result.rows_read == result.rows_accepted == 10
    assert by_id(ws.data.read(result.version).to_pylist()) == ROWS[:10]


def test_sql_query_ingests_the_query_rows(ws, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    query = "SELECT id, name, amount FROM payments WHERE amount >= 6 ORDER BY id"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE payments (id INTEGER, name TEXT, amount REAL)")
        conn.executemany(
            "INSERT INTO payments VALUES (?, ?, ?)",
            [(r["id"], r["name"], r["amount"]) for r in ROWS],
        )
    expected = [
        {"id": r["id"], "name": r["name"], "amount": r["amount"]} for r in ROWS if r["amount"] >= 6
    ]

    result = ws.ingest("payments", f"sqlite:///{db}", query=query)

    assert result.rows_read == result.rows_accepted == len(expected)
    schema = ws.data.schema(result.version)
    assert pa.types.is_integer(schema.field("id").type)
    assert pa.types.is_string(schema.field("name").type)
    assert pa.types.is_floating(schema.field("amount").type)
    assert ws.data.read(result.version).to_pylist() == expected


def test_sql_query_that_fails_is_an_input_error(ws, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE payments (id INTEGER)")
    with pytest.raises(loopml.InputError, match="no_such_column"):
        ws.ingest("payments", f"sqlite:///{db}", query="SELECT no_such_column FROM payments")
    assert ws.data.ls() == []


def test_query_without_from_is_an_input_error(ws) -> None:
    with pytest.raises(loopml.InputError):
        ws.ingest("payments", None, query="SELECT 1")


# --- inputs that cannot be used -----------------------------------------------------------


def assert_fails_naming(ws, source: str, named: Path, error: type = loopml.InputError) -> None:
    with pytest.raises(error) as info:
        ws.ingest("things", source)
    assert named.name in str(info.value), f"{named.name!r} not in {str(info.value)!r}"
    assert ws.data.ls() == [], "a failed ingest must commit nothing"


def test_unknown_format(ws, tmp_path: Path) -> None:
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a spreadsheet")
    assert_fails_naming(ws, str(path), path)


def test_unknown_declared_format(ws, tmp_path: Path) -> None:
    path = tmp_path / "input.csv"
    path.write_text(csv_text(ROWS))
    with pytest.raises(loopml.InputError, match="xml"):
        ws.ingest("things", str(path), format="xml")


def test_missing_file(ws, tmp_path: Path) -> None:
    path = tmp_path / "does-not-exist.csv"
    assert_fails_naming(ws, str(path), path, loopml.NotFound)


def test_glob_matching_nothing(ws, tmp_path: Path) -> None:
    pattern = tmp_path / "nothing-*.csv"
    assert_fails_naming(ws, str(pattern), pattern, loopml.NotFound)


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl", "empty.parquet"])
def test_empty_file(ws, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert_fails_naming(ws, str(path), path)


def test_header_that_is_not_utf8(ws, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("montant,catégorie\n1,a\n".encode("latin-1"))
    assert_fails_naming(ws, str(path), path)


def test_csv_glob_with_mismatched_headers(ws, tmp_path: Path) -> None:
    (tmp_path / "part-1.csv").write_text("id,name\n1,a\n")
    odd = tmp_path / "part-2.csv"
    odd.write_text("id,title\n2,b\n")
    assert_fails_naming(ws, str(tmp_path / "part-*.csv"), odd)


def test_parquet_glob_with_mismatched_columns(ws, tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1], "name": ["a"]}), tmp_path / "part-1.parquet")
    odd = tmp_path / "part-2.parquet"
    pq.write_table(pa.table({"id": [2], "title": ["b"]}), odd)
    assert_fails_naming(ws, str(tmp_path / "part-*.parquet"), odd)


def test_jsonl_folder_with_mismatched_fields(ws, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "part-1.jsonl").write_text('{"id": 1, "name": "a"}\n')
    odd = folder / "part-2.jsonl"
    odd.write_text('{"id": 2, "title": "b"}\n')
    assert_fails_naming(ws, str(folder), odd)


def test_folder_mixing_formats(ws, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.csv").write_text(csv_text(ROWS))
    (folder / "b.jsonl").write_text(jsonl_text(ROWS))
    with pytest.raises(loopml.InputError, match="csv"):
        ws.ingest("things", str(folder))
    assert ws.data.ls() == []
