"""Contracts: parsing errors name the field and its line; every row read is either accepted
or quarantined with the rule it broke and its source row number."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loopml
from loopml.data import Contract


@pytest.fixture
def ws(tmp_path: Path):
    workspace = loopml.open(tmp_path / "ws")
    yield workspace
    workspace.close()


def line_of(text: str, fragment: str) -> int:
    """The 1-based line of the first line of ``text`` that contains ``fragment``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in the YAML")


def spec_error(text: str) -> str:
    with pytest.raises(loopml.SpecError) as info:
        Contract.parse_yaml(text, source="c.yaml")
    return str(info.value)


# --- parsing ------------------------------------------------------------------------------


def test_valid_contract_parses() -> None:
    contract = Contract.parse_yaml(
        "columns:\n"
        "  id: {type: int, nullable: false}\n"
        "  amount: {type: float, min: 0, max: 10}\n"
        "  cat: {type: string, allowed: [a, b]}\n"
        "  email: {type: string, regex: '[^@]+@[^@]+', pii: hash}\n"
        "unique: [id]\n"
        "max_quarantine_fraction: 0.25\n"
    )
    assert list(contract.columns) == ["id", "amount", "cat", "email"]
    assert contract.columns["id"].nullable is False
    assert contract.columns["amount"].max == 10
    assert contract.columns["cat"].allowed == ["a", "b"]
    assert contract.unique == ["id"]
    assert contract.max_quarantine_fraction == 0.25
    assert contract.pii == {"email": "hash"}


def test_bad_type_names_the_field_and_line() -> None:
    text = "columns:\n  id: {type: int}\n  amount:\n    nullable: true\n    type: money\n"
    message = spec_error(text)
    assert "columns.amount.type" in message
    assert f"c.yaml:{line_of(text, 'type: money')}" in message


def test_unknown_column_key_is_rejected_with_its_line() -> None:
    text = "columns:\n  id: {type: int}\n  amount:\n    type: float\n    colour: red\n"
    message = spec_error(text)
    assert "columns.amount.colour" in message
    assert f"c.yaml:{line_of(text, 'colour')}" in message


def test_unknown_top_level_key_is_rejected_with_its_line() -> None:
    text = "columns:\n  id: {type: int}\nretention_days: 30\n"
    message = spec_error(text)
    assert "retention_days" in message
    assert f"c.yaml:{line_of(text, 'retention_days')}" in message


def test_bad_regex_is_rejected_with_its_line() -> None:
    text = "columns:\n  id: {type: int}\n  code: {type: string, regex: '([A-Z'}\n"
    message = spec_error(text)
    assert "columns.code.regex" in message
    assert f"c.yaml:{line_of(text, 'regex')}" in message


def test_unique_key_column_missing_names_unique_and_its_line() -> None:
    text = "columns:\n  id: {type: int}\n  name: {type: string}\nunique: [tx_id]\n"
    message = spec_error(text)
    assert "tx_id" in message
    assert "unique" in message
    assert f"c.yaml:{line_of(text, 'unique')}" in message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("columns:\n  id: {type: int, nullable: maybe}\n", "columns.id.nullable"),
        ("columns:\n  id: {type: int, pii: scramble}\n", "columns.id.pii"),
        ("columns:\n  id: {type: int}\nmax_quarantine_fraction: 1.5\n", "max_quarantine_fraction"),
        ("columns:\n  id: {type: int}\n  s: {type: string, min: 3}\n", "columns.s"),
        ("columns:\n  id: {type: int, regex: '[0-9]+'}\n", "columns.id"),
        ("columns:\n  id: {type: int, min: 5, max: 1}\n", "columns.id"),
    ],
)
def test_invalid_values_name_the_field(text: str, field: str) -> None:
    assert field in spec_error(text)


def test_yaml_syntax_error_names_the_line() -> None:
    text = "columns:\n  id: {type: int}\n  amount: {type: float\n"
    message = spec_error(text)
    assert "c.yaml" in message
    assert "line 3" in message or "c.yaml:3" in message


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "columns: {}\n", "unique: [id]\n"])
def test_contract_without_columns_is_rejected(text: str) -> None:
    spec_error(text)


def test_missing_contract_file_is_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(loopml.NotFound, match=r"nope\.yaml"):
        Contract.load(path)


def test_ingest_with_bad_contract_commits_nothing(ws, tmp_path: Path) -> None:
    data = tmp_path / "a.csv"
    data.write_text("id\n1\n")
    contract = tmp_path / "c.yaml"
    contract.write_text("columns:\n  id: {type: integer}\n")
    with pytest.raises(loopml.SpecError, match=r"columns\.id\.type"):
        ws.ingest("things", str(data), contract=str(contract))
    assert ws.data.ls() == []


_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
_TYPES = st.sampled_from(["int", "float", "string", "bool", "timestamp", "date"])
_RULE_KEYS = {"type", "nullable", "min", "max", "allowed", "regex", "pii"}


@settings(max_examples=60, deadline=None)
@given(
    columns=st.dictionaries(_NAMES, _TYPES, min_size=1, max_size=6),
    bogus=st.from_regex(r"[a-z]{3,10}", fullmatch=True).filter(lambda k: k not in _RULE_KEYS),
    data=st.data(),
)
def test_property_unknown_key_is_reported_at_its_line(columns, bogus, data) -> None:
    target = data.draw(st.sampled_from(sorted(columns)))
    lines = ["columns:"]
    bogus_line = 0
    for name, type_name in columns.items():
        lines += [f"  {name}:", f"    type: {type_name}"]
        if name == target:
            lines.append(f"    {bogus}: 1")
            bogus_line = len(lines)
    text = "\n".join(lines) + "\n"

    message = spec_error(text)

    assert f"columns.{target}.{bogus}" in message
    assert f"c.yaml:{bogus_line}:" in message


@settings(max_examples=60, deadline=None)
@given(columns=st.dictionaries(_NAMES, _TYPES, min_size=1, max_size=6))
def test_property_valid_contracts_keep_their_types(columns) -> None:
    text = "columns:\n" + "".join(f"  {n}: {{type: {t}}}\n" for n, t in columns.items())
    contract = Contract.parse_yaml(text)
    assert {name: rule.type for name, rule in contract.columns.items()} == columns


# --- row checks: property test --------------------------------------------------------------

CONTRACT = """\
columns:
  id: {type: int, nullable: false}
  amount: {type: float, min: 0, max: 100}
  cat: {type: string, allowed: [a, b, c]}
  code: {type: string, regex: '[A-Z]{3}'}
  note: {type: string}
unique: [id]
"""

# What each injected fault must produce: words its quarantine reason must contain.
EXPECTED_REASON_WORDS = {
    "below_min": ("amount", "min"),
    "above_max": ("amount", "max"),
    "not_allowed": ("cat", "allowed"),
    "regex": ("code", "[A-Z]{3}"),
    "null_id": ("id", "null"),
    "duplicate": ("duplicate", "id"),
    "too_many_fields": ("ragged",),
    "too_few_fields": ("ragged",),
    "wrong_type": ("amount", "float"),
    "latin1": ("UTF-8",),
}
FAULTS = sorted(EXPECTED_REASON_WORDS)


def _clean_row(rng: random.Random, row_number: int) -> dict:
    return {
        "id": row_number,
        "amount": rng.randint(0, 400) / 4,  # 0 .. 100, exact in binary and in text
        "cat": rng.choice("abc"),
        "code": "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(3)),
        "note": "".join(rng.choice("xyzw") for _ in range(rng.randint(1, 6))),
    }


def _line(row: dict) -> bytes:
    return ",".join("" if v is None else str(v) for v in row.values()).encode()


def build_csv(faults: list[str], seed: int) -> tuple[bytes, dict[int, str], list[dict]]:
    """CSV bytes with ``faults[i]`` injected at data row i + 1; return the bytes, the
    expected {row number: fault} and the rows that must be accepted."""
    rng = random.Random(seed)
    lines = [b"id,amount,cat,code,note"]
    expected: dict[int, str] = {}
    accepted: list[dict] = []
    for number, fault in enumerate(faults, start=1):
        row = _clean_row(rng, number)
        if fault == "duplicate":
            if not accepted:
                fault = "clean"  # nothing accepted yet to collide with
            else:
                row["id"] = rng.choice(accepted)["id"]
        if fault == "below_min":
            row["amount"] = -rng.randint(1, 400) / 4
        elif fault == "above_max":
            row["amount"] = 100 + rng.randint(1, 400) / 4
        elif fault == "not_allowed":
            row["cat"] = rng.choice(["d", "zz", "A", "ab"])
        elif fault == "regex":
            row["code"] = rng.choice(["abc", "AB", "ABCD", "A1C"])
        elif fault == "null_id":
            row["id"] = None
        elif fault == "wrong_type":
            row["amount"] = rng.choice(["abc", "1.2.3", "ten"])
        line = _line(row)
        if fault == "too_many_fields":
            line += b",extra"
        elif fault == "too_few_fields":
            line = line.rsplit(b",", 1)[0]
        elif fault == "latin1":
            line += "é".encode("latin-1")  # a lone 0xE9 byte: not UTF-8
        lines.append(line)
        if fault == "clean":
            accepted.append(row)
        else:
            expected[number] = fault
    return b"\n".join(lines) + b"\n", expected, accepted


def check_quarantine(ws, result, expected: dict[int, str], accepted: list[dict]) -> None:
    assert result.rows_read == result.rows_accepted + result.rows_quarantined
    assert result.rows_read == len(expected) + len(accepted)
    assert result.rows_quarantined == len(expected)
    quarantined = ws.data.quarantine(result.version).to_pylist()
    by_row = {row["row"]: row for row in quarantined}
    assert len(by_row) == len(quarantined), "each source row is quarantined once"
    assert sorted(by_row) == sorted(expected)
    for number, fault in expected.items():
        reason = by_row[number]["reason"]
        for word in EXPECTED_REASON_WORDS[fault]:
            assert word in reason, f"row {number} ({fault}): {reason!r} lacks {word!r}"
    assert sum(result.quarantine_reasons.values()) == len(expected)
    stored = ws.data.read(result.version).to_pylist()
    assert sorted(stored, key=lambda r: r["id"]) == sorted(accepted, key=lambda r: r["id"])


def test_property_each_faulty_row_is_quarantined_with_its_rule_and_row(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CONTRACT)
    data_file = tmp_path / "data.csv"
    ws = loopml.open(tmp_path / "ws")  # one workspace; each example is a new version

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        faults=st.lists(
            st.sampled_from(FAULTS) | st.just("clean") | st.just("clean"), min_size=1, max_size=30
        ),
        seed=st.integers(0, 2**16),
    )
    def check(faults: list[str], seed: int) -> None:
        data, expected, accepted = build_csv(faults, seed)
        data_file.write_bytes(data)
        result = ws.ingest("rows", str(data_file), contract=str(tmp_path / "c.yaml"))
        check_quarantine(ws, result, expected, accepted)

    try:
        check()
    finally:
        ws.close()


def test_every_fault_kind_at_once_keeps_row_numbers(ws, tmp_path: Path) -> None:
    faults = ["clean", *FAULTS, "clean", *reversed(FAULTS), "clean"]
    (tmp_path / "c.yaml").write_text(CONTRACT)
    data, expected, accepted = build_csv(faults, seed=3)
    (tmp_path / "data.csv").write_bytes(data)
    result = ws.ingest("rows", str(tmp_path / "data.csv"), contract=str(tmp_path / "c.yaml"))
    check_quarantine(ws, result, expected, accepted)
    records = {r["row"]: r for r in ws.data.quarantine(result.version).to_pylist()}
    first_ragged = faults.index("too_many_fields") + 1
    assert records[first_ragged]["record"].endswith(",extra")


def test_quoted_newlines_do_not_shift_row_numbers(ws, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "columns:\n  id: {type: int}\n  amount: {type: float, min: 0}\n  note: {type: string}\n"
    )
    (tmp_path / "data.csv").write_bytes(
        b'id,amount,note\n1,1,"two\nlines"\n2,-5,x\n3,zz,y\n4,1,"a\nb\nc"\n5,1,x,extra\n6,-1,z\n'
    )
    result = ws.ingest("rows", str(tmp_path / "data.csv"), contract=str(tmp_path / "c.yaml"))
    rows = {r["row"]: r["reason"] for r in ws.data.quarantine(result.version).to_pylist()}
    assert sorted(rows) == [2, 3, 5, 6]
    assert "min" in rows[2] and "min" in rows[6]
    assert "ragged" in rows[5]
    assert ws.data.read(result.version).column("id").to_pylist() == [1, 4]


def test_jsonl_bad_lines_are_quarantined_with_row_numbers(ws, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "columns:\n  id: {type: int}\n  amount: {type: float, min: 0}\n  note: {type: string}\n"
    )
    lines = [
        b'{"id": 1, "amount": 1, "note": "ok"}',
        b'{"id": 2, "amount": "lots", "note": "wrong type"}',
        b'{"id": 3, "amount": -1, "note": "below min"}',
        b'{"id": 4, "amount": 1, "note": "caf\xe9"}',
        b"this is not json",
        b'["an", "array"]',
        b'{"id": 7, "amount": 2, "note": "ok"}',
    ]
    (tmp_path / "data.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    result = ws.ingest("rows", str(tmp_path / "data.jsonl"), contract=str(tmp_path / "c.yaml"))

    assert result.rows_read == len(lines) == result.rows_accepted + result.rows_quarantined
    rows = {r["row"]: r["reason"] for r in ws.data.quarantine(result.version).to_pylist()}
    assert sorted(rows) == [2, 3, 4, 5, 6]
    assert "type" in rows[2]
    assert "amount" in rows[3] and "min" in rows[3]
    assert "UTF-8" in rows[4]
    assert "JSON" in rows[5]
    assert "object" in rows[6]
    assert ws.data.read(result.version).column("id").to_pylist() == [1, 7]


def test_parquet_values_that_do_not_cast_are_quarantined(ws, tmp_path: Path) -> None:
    values = ["1", "2", "three", "4", "", "x6", "7"]
    pq.write_table(
        pa.table({"id": values, "name": [f"n{i}" for i in range(len(values))]}),
        tmp_path / "data.parquet",
    )
    (tmp_path / "c.yaml").write_text("columns:\n  id: {type: int}\n  name: {type: string}\n")
    expected_bad = [number for number, v in enumerate(values, start=1) if not v.isdigit()]

    result = ws.ingest("rows", str(tmp_path / "data.parquet"), contract=str(tmp_path / "c.yaml"))

    rows = {r["row"]: r["reason"] for r in ws.data.quarantine(result.version).to_pylist()}
    assert sorted(rows) == expected_bad
    assert all("id" in reason and "int" in reason for reason in rows.values())
    good = [int(v) for v in values if v.isdigit()]
    assert ws.data.read(result.version).column("id").to_pylist() == good
    assert result.rows_read == len(values) == result.rows_accepted + result.rows_quarantined


INTEGRAL = [1, 2, 40]
NOT_INTEGRAL = [6.5, 7.9, -0.25]


def _write_mixed_numbers(path: Path) -> None:
    values = [*INTEGRAL, *NOT_INTEGRAL]
    if path.suffix == ".csv":
        path.write_text("id\n" + "".join(f"{v}\n" for v in values))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"id": v}) + "\n" for v in values))
    elif path.stem == "strings":
        pq.write_table(pa.table({"id": [str(v) for v in values]}), path)
    else:
        pq.write_table(pa.table({"id": pa.array(values, pa.float64())}), path)


@pytest.mark.parametrize("name", ["data.csv", "data.jsonl", "strings.parquet", "floats.parquet"])
def test_fractional_values_in_an_int_column_are_quarantined_not_rounded(
    ws, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    _write_mixed_numbers(path)
    (tmp_path / "c.yaml").write_text("columns:\n  id: {type: int}\n")

    result = ws.ingest("numbers", str(path), contract=str(tmp_path / "c.yaml"))

    assert ws.data.read(result.version).column("id").to_pylist() == INTEGRAL
    rows = sorted(r["row"] for r in ws.data.quarantine(result.version).to_pylist())
    assert rows == list(range(len(INTEGRAL) + 1, len(INTEGRAL) + len(NOT_INTEGRAL) + 1))


# --- the quarantine threshold -------------------------------------------------------------


def _threshold_files(tmp_path: Path, bad: int, total: int, limit: float) -> tuple[Path, Path]:
    contract = tmp_path / "c.yaml"
    contract.write_text(
        f"columns:\n  id: {{type: int}}\n  amount: {{type: float, min: 0}}\n"
        f"max_quarantine_fraction: {limit}\n"
    )
    data = tmp_path / "data.csv"
    amounts = [-1 if i < bad else i for i in range(total)]
    data.write_text("id,amount\n" + "".join(f"{i},{a}\n" for i, a in enumerate(amounts)))
    return data, contract


def _objects(ws_root: Path) -> set[str]:
    return {p.name for p in (ws_root / "store" / "objects").rglob("*") if p.is_file()}


def test_threshold_exceeded_fails_and_commits_nothing(ws, tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    first.write_text("id,amount\n1,1\n")
    ws.ingest("payments", str(first))
    before_ls = ws.data.ls()
    before_objects = _objects(tmp_path / "ws")

    data, contract = _threshold_files(tmp_path, bad=3, total=10, limit=0.2)
    with pytest.raises(loopml.ContractViolation) as info:
        ws.ingest("payments", str(data), contract=str(contract))

    assert "3" in str(info.value) and "10" in str(info.value)
    assert ws.data.ls() == before_ls
    assert [v.number for v in ws.data.versions("payments")] == [1]
    assert _objects(tmp_path / "ws") == before_objects
    assert list((tmp_path / "ws" / "store" / "staging").glob("*")) == []
    with pytest.raises(loopml.NotFound):
        ws.data.get("payments@2")


def test_threshold_on_a_new_dataset_leaves_no_dataset(ws, tmp_path: Path) -> None:
    data, contract = _threshold_files(tmp_path, bad=5, total=10, limit=0.1)
    with pytest.raises(loopml.ContractViolation):
        ws.ingest("payments", str(data), contract=str(contract))
    assert ws.data.ls() == []
    with pytest.raises(loopml.NotFound):
        ws.data.get("payments")


def test_threshold_reached_but_not_passed_commits(ws, tmp_path: Path) -> None:
    data, contract = _threshold_files(tmp_path, bad=2, total=10, limit=0.2)
    result = ws.ingest("payments", str(data), contract=str(contract))
    assert (result.rows_accepted, result.rows_quarantined) == (8, 2)
    assert ws.data.get("payments").number == 1


# --- schema changes -------------------------------------------------------------------------


def test_schema_changes_against_the_previous_version(ws, tmp_path: Path) -> None:
    (tmp_path / "v1.csv").write_text("id,code,old\n1,7,x\n2,8,y\n")
    (tmp_path / "v1.yaml").write_text(
        "columns:\n  id: {type: int}\n  code: {type: int}\n  old: {type: string}\n"
    )
    (tmp_path / "v2.csv").write_text("id,code,new\n1,7,true\n2,A8,false\n")
    (tmp_path / "v2.yaml").write_text(
        "columns:\n  id: {type: int}\n  code: {type: string}\n  new: {type: bool}\n"
    )

    first = ws.ingest("things", str(tmp_path / "v1.csv"), contract=str(tmp_path / "v1.yaml"))
    second = ws.ingest("things", str(tmp_path / "v2.csv"), contract=str(tmp_path / "v2.yaml"))

    assert first.schema_changes == {}
    old_type = str(ws.data.schema("things@1").field("code").type)
    new_type = str(ws.data.schema("things@2").field("code").type)
    assert old_type != new_type
    expected = {"added": ["new"], "removed": ["old"], "retyped": {"code": [old_type, new_type]}}
    assert second.schema_changes == expected
    assert dict(ws.data.get("things@2").schema_changes) == expected


def test_unchanged_schema_reports_no_changes(ws, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,name\n1,a\n")
    (tmp_path / "b.csv").write_text("id,name\n2,b\n3,c\n")
    ws.ingest("things", str(tmp_path / "a.csv"))
    assert ws.ingest("things", str(tmp_path / "b.csv")).schema_changes == {}


def test_quarantined_record_holds_the_row_values(ws, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "columns:\n  id: {type: int}\n  amount: {type: float, min: 0}\n"
    )
    (tmp_path / "a.csv").write_text("id,amount\n1,5\n2,-3.5\n")
    result = ws.ingest("things", str(tmp_path / "a.csv"), contract=str(tmp_path / "c.yaml"))
    (row,) = ws.data.quarantine(result.version).to_pylist()
    assert row["row"] == 2
    assert json.loads(row["record"]) == {"id": 2, "amount": -3.5}
    assert Path(row["file"]).name == "a.csv"


def test_row_numbers_count_within_each_file_of_a_folder(ws, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "columns:\n  id: {type: int}\n  amount: {type: float, min: 0}\nunique: [id]\n"
    )
    folder = tmp_path / "parts"
    folder.mkdir()
    files = {
        "a.csv": ["1,1", "2,-1", "3,x", "4,4"],
        "b.csv": ["5,1", "1,2", "7,-3", "8,1,9", "9,9"],
    }
    # (file, data row) of each line that breaks something, read off the lines above:
    # a negative amount, a non-number, a repeat of id 1 (accepted in a.csv), a ragged row.
    expected = {("a.csv", 2), ("a.csv", 3), ("b.csv", 2), ("b.csv", 3), ("b.csv", 4)}
    for name, lines in files.items():
        (folder / name).write_text("id,amount\n" + "\n".join(lines) + "\n")

    result = ws.ingest("parts", str(folder), contract=str(tmp_path / "c.yaml"))

    rows = ws.data.quarantine(result.version).to_pylist()
    assert {(Path(r["file"]).name, r["row"]) for r in rows} == expected
    assert result.rows_read == sum(len(lines) for lines in files.values())
    assert sorted(ws.data.read(result.version).column("id").to_pylist()) == [1, 4, 5, 9]
