"""Regression tests for the review fixes: SQL quoting, typed contract values, YAML 1.2
booleans, PII in rejected rows, JSON Lines and TSV edge cases, reserved names, refs,
the PII key and gc's idea of a staging folder's age."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import multiprocessing
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import loopml
from loopml.data import Contract

from ._stored import assert_nowhere, keyed_hash

REDACTED = "[REDACTED]"  # as the redact policy is documented


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # The environment key would override the key file the tests below look at.
    monkeypatch.delenv("LOOPML_PII_KEY", raising=False)
    workspace = loopml.open(tmp_path / "ws")
    yield workspace
    workspace.close()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def write_contract(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def workspace_key(ws_root: Path) -> bytes:
    return bytes.fromhex((ws_root / "keys" / "pii.key").read_text().strip())


# --- 1. SQL safety --------------------------------------------------------------------------

INJECTION = (
    "2030-01-01' AS TIMESTAMP) OR (SELECT count(*) FROM read_text('/etc/hostname'))>0 "
    "OR event_time > CAST('2030-01-01"
)


def injection_contract() -> str:
    return (
        "columns:\n"
        "  id: {type: int}\n"
        f"  event_time: {{type: timestamp, max: {json.dumps(INJECTION)}}}\n"
    )


def test_injected_timestamp_bound_is_rejected_at_load(tmp_path: Path) -> None:
    path = write_contract(tmp_path / "c.yaml", injection_contract())
    with pytest.raises(loopml.SpecError) as info:
        Contract.load(path)
    message = str(info.value)
    assert "event_time" in message
    assert "max" in message
    assert "ISO timestamp" in message


def test_injected_timestamp_bound_fails_the_ingest_before_reading(ws, tmp_path: Path) -> None:
    path = write_contract(tmp_path / "c.yaml", injection_contract())
    data = write_lines(tmp_path / "d.csv", ["id,event_time", "1,2024-01-01 00:00:00"])
    with pytest.raises(loopml.SpecError, match="event_time"):
        ws.ingest("events", str(data), contract=path)
    assert ws.data.ls() == []


QUOTED_ROWS = [
    # id, we"ird (min 0), it's (allowed a, b)
    (1, 5, "a"),
    (2, -1, "b"),
    (3, 7, "c"),
    (4, 8, "b"),
    (5, 0, "it's"),
]
QUOTED_CONTRACT = """\
columns:
  id: {type: int}
  'we"ird': {type: int, min: 0}
  "it's": {type: string, allowed: [a, b, "it's"]}
"""


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_column_names_with_quotes_ingest_and_their_rules_apply(
    ws, tmp_path: Path, make_csv, fmt: str
) -> None:
    columns = ["id", 'we"ird', "it's"]
    if fmt == "csv":
        path = make_csv(QUOTED_ROWS, columns=columns)
    else:
        path = tmp_path / "d.parquet"
        pq.write_table(
            pa.table({name: [row[i] for row in QUOTED_ROWS] for i, name in enumerate(columns)}),
            path,
        )
    contract = write_contract(tmp_path / "c.yaml", QUOTED_CONTRACT)

    result = ws.ingest("quoted", str(path), contract=contract)

    allowed = {"a", "b", "it's"}
    below_min = [r for r in QUOTED_ROWS if r[1] < 0]
    not_allowed = [r for r in QUOTED_ROWS if r[1] >= 0 and r[2] not in allowed]
    accepted = [r for r in QUOTED_ROWS if r[1] >= 0 and r[2] in allowed]
    assert result.rows_read == len(QUOTED_ROWS)
    assert result.rows_accepted == len(accepted)
    assert ws.data.schema(result.version).names == columns
    rows = ws.data.read(result.version).to_pylist()
    assert sorted(tuple(r[c] for c in columns) for r in rows) == sorted(accepted)
    reasons = result.quarantine_reasons
    assert sum(n for r, n in reasons.items() if r.startswith('we"ird')) == len(below_min)
    assert sum(n for r, n in reasons.items() if r.startswith("it's")) == len(not_allowed)


# --- 2. contract values are typed at load ---------------------------------------------------

BAD_VALUES = {
    "allowed-text-on-int": ("qty", "{type: int, allowed: [x]}"),
    "min-text-on-float": ("price", "{type: float, min: abc}"),
    "inf-min-on-float": ("price", "{type: float, min: .inf}"),
    "nan-max-on-float": ("price", "{type: float, max: .nan}"),
    "inf-max-on-int": ("qty", "{type: int, max: .inf}"),
    "nan-min-on-int": ("qty", "{type: int, min: .nan}"),
    "lookahead-regex": ("code", "{type: string, regex: '(?!x)a'}"),
    "backreference-regex": ("code", "{type: string, regex: '(a)\\1'}"),
}


@pytest.mark.parametrize("column, rule", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_untyped_contract_values_are_spec_errors_naming_the_column(
    tmp_path: Path, column: str, rule: str
) -> None:
    text = f"columns:\n  id: {{type: int}}\n  {column}: {rule}\n"
    path = write_contract(tmp_path / "c.yaml", text)
    with pytest.raises(loopml.SpecError) as info:
        Contract.load(path)
    assert f"columns.{column}" in str(info.value)


@pytest.mark.parametrize(
    "column, rule",
    [BAD_VALUES["inf-max-on-int"], BAD_VALUES["nan-max-on-float"]],
    ids=["inf-max-on-int", "nan-max-on-float"],
)
def test_non_finite_bounds_fail_the_ingest_as_spec_errors(
    ws, tmp_path: Path, column: str, rule: str
) -> None:
    contract = write_contract(
        tmp_path / "c.yaml", f"columns:\n  id: {{type: int}}\n  {column}: {rule}\n"
    )
    data = write_lines(tmp_path / "d.csv", [f"id,{column}", "1,2", "2,3"])
    with pytest.raises(loopml.SpecError, match=column):
        ws.ingest("bounded", str(data), contract=contract)
    assert ws.data.ls() == []


def test_unquoted_yaml_date_bound_on_a_timestamp_column_is_enforced(ws, tmp_path: Path) -> None:
    stamps = [
        dt.datetime(2023, 12, 31, 23, 59, 59),
        dt.datetime(2024, 1, 1, 0, 0, 0),
        dt.datetime(2024, 6, 1, 12, 30, 0),
        dt.datetime(2022, 3, 4, 5, 6, 7),
    ]
    contract = write_contract(
        tmp_path / "c.yaml",
        "columns:\n  id: {type: int}\n  seen: {type: timestamp, min: 2024-01-01}\n",
    )
    data = write_lines(
        tmp_path / "d.csv",
        ["id,seen"] + [f"{i},{s:%Y-%m-%d %H:%M:%S}" for i, s in enumerate(stamps, start=1)],
    )

    result = ws.ingest("seen", str(data), contract=contract)

    bound = dt.datetime(2024, 1, 1)
    expected = [(i, s) for i, s in enumerate(stamps, start=1) if s >= bound]
    rows = ws.data.read(result.version).to_pylist()
    assert sorted((r["id"], r["seen"]) for r in rows) == expected
    assert result.rows_quarantined == len(stamps) - len(expected)
    quarantined = ws.data.quarantine(result.version).to_pylist()
    assert sorted(q["row"] for q in quarantined) == [
        i for i, s in enumerate(stamps, start=1) if s < bound
    ]


# --- 3. YAML 1.2 booleans -------------------------------------------------------------------


def test_yaml_11_boolean_words_stay_strings(ws, tmp_path: Path) -> None:
    text = "columns:\n  id: {type: int}\n  no: {type: string, allowed: [NO, yes, on]}\n"
    contract = Contract.parse_yaml(text)
    assert list(contract.columns) == ["id", "no"]
    assert contract.columns["no"].allowed == ["NO", "yes", "on"]

    values = ["NO", "yes", "on", "off", "false", "NO", "Yes"]
    data = write_lines(
        tmp_path / "d.csv", ["id,no"] + [f"{i},{v}" for i, v in enumerate(values, start=1)]
    )
    path = write_contract(tmp_path / "c.yaml", text)

    result = ws.ingest("countries", str(data), contract=path)

    allowed = {"NO", "yes", "on"}
    expected = [(i, v) for i, v in enumerate(values, start=1) if v in allowed]
    rows = ws.data.read(result.version).to_pylist()
    assert sorted((r["id"], r["no"]) for r in rows) == expected
    assert pa.types.is_string(ws.data.schema(result.version).field("no").type)
    assert result.rows_quarantined == len(values) - len(expected)


def test_true_and_false_still_parse_as_booleans(ws, tmp_path: Path) -> None:
    assert Contract.parse_yaml("columns:\n  b: {type: bool, allowed: [true, false]}\n").columns[
        "b"
    ].allowed == [True, False]

    flags = [True, False, True, True, False]
    data = write_lines(
        tmp_path / "d.csv",
        ["id,b"] + [f"{i},{str(f).lower()}" for i, f in enumerate(flags, start=1)],
    )
    path = write_contract(
        tmp_path / "c.yaml", "columns:\n  id: {type: int}\n  b: {type: bool, allowed: [true]}\n"
    )
    result = ws.ingest("flags", str(data), contract=path)
    rows = ws.data.read(result.version).to_pylist()
    assert sorted(r["id"] for r in rows) == [i for i, f in enumerate(flags, start=1) if f]
    assert all(r["b"] is True for r in rows)


def test_yes_is_not_a_boolean_any_more(tmp_path: Path) -> None:
    # Under YAML 1.2 'yes' is a string, so it is no value of a bool column.
    with pytest.raises(loopml.SpecError, match="flag"):
        Contract.parse_yaml("columns:\n  flag: {type: bool, allowed: [yes]}\n")


# --- 4. PII in rejected rows ----------------------------------------------------------------

RAGGED_EMAIL = "zed.ragged@example.org"
RAGGED_PHONE = "+1 415 555 0199"
RAGGED_NOTE = "call me about the loan"


def ragged_people(path: Path) -> Path:
    return write_lines(
        path,
        [
            "id,note,contact,tel",
            "1,hello,ann@example.com,+44 20 7946 0000",
            f"2,{RAGGED_NOTE},{RAGGED_EMAIL},{RAGGED_PHONE},surplus",
            "3,hi,bob@example.com,+44 20 7946 0001",
        ],
    )


def ingest_ragged(ws, tmp_path: Path, how: str):
    data = ragged_people(tmp_path / "people.csv")
    if how == "cli-policy":
        return ws.ingest("people", str(data), pii=["note=redact"])
    contract = write_contract(
        tmp_path / "c.yaml",
        "columns:\n"
        "  id: {type: int}\n"
        "  note: {type: string, pii: redact}\n"
        "  contact: {type: string}\n"
        "  tel: {type: string}\n",
    )
    return ws.ingest("people", str(data), contract=contract)


@pytest.mark.parametrize("how", ["cli-policy", "contract-policy"])
def test_ragged_row_values_are_stored_nowhere(ws, tmp_path: Path, how: str) -> None:
    result = ingest_ragged(ws, tmp_path, how)
    assert result.rows_accepted == 2
    assert result.rows_quarantined == 1
    assert_nowhere(tmp_path / "ws", [RAGGED_EMAIL, RAGGED_PHONE, RAGGED_NOTE])


@pytest.mark.parametrize("how", ["cli-policy", "contract-policy"])
def test_ragged_row_record_is_redacted_in_the_quarantine(ws, tmp_path: Path, how: str) -> None:
    result = ingest_ragged(ws, tmp_path, how)
    (entry,) = ws.data.quarantine(result.version).to_pylist()
    assert entry["row"] == 2
    record = json.loads(entry["record"])
    raw_fields = ["2", RAGGED_NOTE, RAGGED_EMAIL, RAGGED_PHONE, "surplus"]
    assert len(record) == len(raw_fields)
    assert list(record.values()) == [REDACTED] * len(raw_fields)
    for value in raw_fields[1:]:
        assert value not in (entry["detail"] or "")


BAD_TYPE_EMAIL = "bad.type@example.com"
BAD_TYPE_AMOUNT = "lots"


def test_mistyped_row_gets_its_columns_policies(ws, tmp_path: Path) -> None:
    emails = ["ann@example.com", BAD_TYPE_EMAIL, "cy@example.com"]
    amounts = ["1.5", BAD_TYPE_AMOUNT, "2.25"]
    data = write_lines(
        tmp_path / "e.csv",
        ["id,email,amount"]
        + [f"{i},{e},{a}" for i, (e, a) in enumerate(zip(emails, amounts, strict=True), 1)],
    )
    contract = write_contract(
        tmp_path / "c.yaml",
        "columns:\n"
        "  id: {type: int}\n"
        "  email: {type: string, pii: hash}\n"
        "  amount: {type: float}\n",
    )

    result = ws.ingest("emails", str(data), contract=contract)

    key = workspace_key(tmp_path / "ws")
    (entry,) = ws.data.quarantine(result.version).to_pylist()
    assert entry["row"] == emails.index(BAD_TYPE_EMAIL) + 1
    record = json.loads(entry["record"])
    assert record["email"] == keyed_hash(key, BAD_TYPE_EMAIL)
    detail = entry["detail"] or ""
    assert BAD_TYPE_AMOUNT not in detail
    assert BAD_TYPE_EMAIL not in detail
    accepted = ws.data.read(result.version).column("email").to_pylist()
    assert sorted(accepted) == sorted(keyed_hash(key, e) for e in emails if e != BAD_TYPE_EMAIL)
    assert_nowhere(tmp_path / "ws", [BAD_TYPE_EMAIL])


# --- 5. mask ---------------------------------------------------------------------------------


def test_mask_hides_short_values_whole_and_keeps_the_last_four_of_longer(
    ws, tmp_path: Path
) -> None:
    values = ["a", "ab", "abc", "abcd", "abcde", "secret-code-WXYZ"]
    expected = ["*", "**", "***", "****", "*bcde", "************WXYZ"]
    data = write_lines(
        tmp_path / "m.csv", ["id,code"] + [f"{i},{v}" for i, v in enumerate(values, start=1)]
    )
    contract = write_contract(
        tmp_path / "c.yaml", "columns:\n  id: {type: int}\n  code: {type: string, pii: mask}\n"
    )

    result = ws.ingest("codes", str(data), contract=contract)

    rows = sorted(ws.data.read(result.version).to_pylist(), key=lambda r: r["id"])
    assert [r["code"] for r in rows] == expected


# --- 6. JSON Lines ---------------------------------------------------------------------------


def test_jsonl_extra_columns_are_kept_with_inferred_types(ws, tmp_path: Path) -> None:
    records = [{"id": i, "score": i + 0.5, "tag": f"t{i}", "ok": i % 2 == 0} for i in range(1, 7)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    contract = write_contract(
        tmp_path / "c.yaml", "columns:\n  id: {type: int}\nallow_extra_columns: true\n"
    )

    result = ws.ingest("extra", str(data), contract=contract)

    assert result.rows_accepted == len(records)
    assert result.rows_quarantined == 0
    schema = ws.data.schema(result.version)
    assert set(schema.names) == {"id", "score", "tag", "ok"}
    assert pa.types.is_integer(schema.field("id").type)
    assert pa.types.is_floating(schema.field("score").type)
    assert pa.types.is_string(schema.field("tag").type)
    assert pa.types.is_boolean(schema.field("ok").type)
    rows = sorted(ws.data.read(result.version).to_pylist(), key=lambda r: r["id"])
    assert rows == records


def test_jsonl_mixed_types_in_the_first_block_quarantine_the_odd_line(ws, tmp_path: Path) -> None:
    lines = ['{"a": 1}', '{"a": "x"}', '{"a": 3}']
    data = write_lines(tmp_path / "m.jsonl", lines)

    result = ws.ingest("mixed", str(data))

    assert result.rows_read == len(lines)
    assert result.rows_accepted == 2
    assert result.rows_quarantined == 1
    assert ws.data.read(result.version).column("a").to_pylist() == [1, 3]
    (entry,) = ws.data.quarantine(result.version).to_pylist()
    assert entry["row"] == 2


def test_jsonl_mixed_types_starting_with_a_string_do_not_crash(ws, tmp_path: Path) -> None:
    lines = ['{"a": "x"}', '{"a": 1}', '{"a": "y"}']
    data = write_lines(tmp_path / "m.jsonl", lines)

    result = ws.ingest("mixed", str(data))

    assert result.rows_read == len(lines)
    assert result.rows_accepted + result.rows_quarantined == len(lines)
    assert {"x", "y"} <= set(ws.data.read(result.version).column("a").to_pylist())


def test_json_suffix_is_refused_with_a_json_lines_hint(ws, tmp_path: Path) -> None:
    records = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    data = tmp_path / "d.json"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))

    with pytest.raises(loopml.InputError) as info:
        ws.ingest("things", str(data))
    assert "JSON Lines" in str(info.value)
    assert ws.data.ls() == []

    result = ws.ingest("things", str(data), format="jsonl")
    assert sorted(ws.data.read(result.version).to_pylist(), key=lambda r: r["id"]) == records


# --- 7. delimiters ---------------------------------------------------------------------------

DELIMITED = [(1, "a,b", 1.5), (2, "c", 2.5), (3, "d,e,f", 3.5)]


@pytest.mark.parametrize("suffix", [".tsv", ".tsv.gz"])
def test_tsv_files_are_tab_separated_by_default(ws, tmp_path: Path, suffix: str) -> None:
    text = "id\tname\tamount\n" + "".join(f"{i}\t{n}\t{a}\n" for i, n, a in DELIMITED)
    path = tmp_path / f"d{suffix}"
    if suffix.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)

    result = ws.ingest("tabbed", str(path))

    assert ws.data.schema(result.version).names == ["id", "name", "amount"]
    rows = ws.data.read(result.version).to_pylist()
    assert sorted((r["id"], r["name"], r["amount"]) for r in rows) == DELIMITED
    assert result.rows_quarantined == 0


def test_semicolon_delimiter_option(ws, tmp_path: Path, make_csv) -> None:
    path = make_csv(DELIMITED, columns=["id", "name", "amount"], delimiter=";")

    result = ws.ingest("semi", str(path), delimiter=";")

    assert ws.data.schema(result.version).names == ["id", "name", "amount"]
    rows = ws.data.read(result.version).to_pylist()
    assert sorted((r["id"], r["name"], r["amount"]) for r in rows) == DELIMITED


# --- 8. reserved names -----------------------------------------------------------------------


@pytest.mark.parametrize("column", ["__loopml_file", "__loopml_x"])
@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_reserved_column_names_are_refused(ws, tmp_path: Path, column: str, fmt: str) -> None:
    table = pa.table({"id": [1, 2], column: [10, 20]})
    path = tmp_path / f"d.{fmt}"
    if fmt == "csv":
        write_lines(path, [f"id,{column}", "1,10", "2,20"])
    elif fmt == "parquet":
        pq.write_table(table, path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))

    with pytest.raises(loopml.InputError, match=column):
        ws.ingest("reserved", str(path))
    assert ws.data.ls() == []


# --- 9. refs and metadata URLs ---------------------------------------------------------------


@pytest.mark.parametrize("version", ["²", "١٢", "①"])
def test_non_ascii_digit_versions_are_input_errors(ws, tmp_path: Path, version: str) -> None:
    data = write_lines(tmp_path / "d.csv", ["id", "1", "2"])
    ws.ingest("ds", str(data))

    with pytest.raises(loopml.InputError) as info:
        ws.data.get(f"ds@{version}")
    assert not isinstance(info.value, ValueError)


def test_metadata_url_with_a_bad_port_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(loopml.StoreError):
        loopml.open(tmp_path / "ws", metadata_url="postgresql+psycopg://u@127.0.0.1:notaport/db")


# --- 10. the PII key -------------------------------------------------------------------------

RACE_EMAILS = ["a@example.com", "b@example.com", "a@example.com", "c@example.com"]


def _ingest_hashed(root: str, source: str, name: str, barrier, results) -> None:
    """Child process: open the workspace, wait for the other, ingest with a hash policy."""
    os.environ.pop("LOOPML_PII_KEY", None)
    with loopml.open(root) as workspace:
        barrier.wait(timeout=30)
        result = workspace.ingest(name, source, pii=["email=hash"])
        results.put((name, workspace.data.read(result.version).column("email").to_pylist()))


def test_racing_processes_create_one_pii_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LOOPML_PII_KEY", raising=False)
    root = tmp_path / "ws"
    loopml.open(root).close()  # the database exists; only the key is raced for
    data = write_lines(
        tmp_path / "e.csv", ["id,email"] + [f"{i},{e}" for i, e in enumerate(RACE_EMAILS)]
    )

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    children = [
        context.Process(target=_ingest_hashed, args=(str(root), str(data), name, barrier, results))
        for name in ("emails_a", "emails_b")
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=90)
    assert [child.exitcode for child in children] == [0, 0]
    hashed = dict(results.get(timeout=5) for _ in children)

    key = workspace_key(root)
    expected = [keyed_hash(key, e) for e in RACE_EMAILS]
    assert hashed == {"emails_a": expected, "emails_b": expected}
    assert [p.name for p in (root / "keys").iterdir()] == ["pii.key"]


@pytest.mark.parametrize("content", ["", "ab" * 16, "00"], ids=["empty", "16-bytes", "1-byte"])
def test_empty_or_short_key_file_fails_hashing_with_a_store_error(
    ws, tmp_path: Path, content: str
) -> None:
    key_file = tmp_path / "ws" / "keys" / "pii.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(content)
    data = write_lines(tmp_path / "e.csv", ["id,email", "1,a@example.com"])

    with pytest.raises(loopml.StoreError):
        ws.ingest("emails", str(data), pii=["email=hash"])
    assert ws.data.ls() == []
    assert key_file.read_text() == content


# --- 11. gc ages -----------------------------------------------------------------------------


def test_gc_ages_a_staging_folder_by_its_newest_file(ws, tmp_path: Path) -> None:
    staging = Path(ws.settings.artifacts_url) / "staging"
    long_ago = time.time() - 7200

    fresh = staging / "fresh-writer"
    fresh.mkdir(parents=True)
    (fresh / "part-00000.parquet").write_bytes(b"being written")
    os.utime(fresh, (long_ago, long_ago))

    stale = staging / "crashed-writer"
    stale.mkdir()
    (stale / "part-00000.parquet").write_bytes(b"left behind")
    os.utime(stale / "part-00000.parquet", (long_ago, long_ago))
    os.utime(stale, (long_ago, long_ago))

    report = ws.gc(older_than=60)
    assert report.staging_removed == 1
    assert fresh.exists()
    assert not stale.exists()

    report = ws.gc(older_than=0)
    assert report.staging_removed == 1
    assert not fresh.exists()


@pytest.mark.parametrize("workspace_factory", ["sqlite-s3"], indirect=True)
def test_s3_workspace_counts_and_removes_local_staging(workspace_factory) -> None:
    workspace = workspace_factory()
    leftover = workspace_factory.root / "cache" / "staging" / "crashed-upload"
    leftover.mkdir(parents=True)
    (leftover / "part-00000.parquet").write_bytes(b"never uploaded")

    assert workspace.fsck().staging == 1

    report = workspace.gc(older_than=0)
    assert report.staging_removed == 1
    assert not leftover.exists()
    assert workspace.fsck().staging == 0
