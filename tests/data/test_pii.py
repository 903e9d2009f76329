"""PII: policies apply to accepted and quarantined rows alike, hashing is keyed with the
workspace key, and likely-PII columns without a policy are flagged."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import loopml
from loopml.data import pii

from ._stored import assert_nowhere, keyed_hash

REDACTED = "[REDACTED]"  # as the policy is documented


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("LOOPML_PII_KEY", raising=False)
    workspace = loopml.open(tmp_path / "ws")
    yield workspace
    workspace.close()


def workspace_key(ws_root: Path) -> bytes:
    return bytes.fromhex((ws_root / "keys" / "pii.key").read_text().strip())


def masked(value: str) -> str:
    """Keep the last 4 characters, except that values of 4 or fewer are masked whole."""
    if len(value) <= 4:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]


CONTRACT = """\
columns:
  id: {type: int}
  email: {type: string, pii: hash}
  phone: {type: string, pii: mask}
  full_name: {type: string, pii: redact}
  ssn: {type: string, pii: drop}
  amount: {type: float, min: 0}
"""

PEOPLE = [
    # id, email, phone, full name, ssn, amount
    (1, "alice.smith@example.com", "+44 20 7946 0958", "Alice Smith", "078-05-1120", 10.0),
    (2, "bob.jones@example.org", "+1 415 555 0142", "Bob Jones", "219-09-9999", -5.0),
    (3, "alice.smith@example.com", "+44 20 7946 0958", "Alice Smith", "078-05-1120", 7.5),
    (4, "carol.white@example.net", "+33 1 70 36 39 50", "Carol White", "457-55-5462", 3.0),
    (5, "dan.brown@example.com", "+49 30 901820", "Dan Brown", "323-45-6789", -1.0),
]


def write_people(path: Path, extra_lines: list[str] = ()) -> None:
    lines = ["id,email,phone,full_name,ssn,amount"]
    lines += [",".join(str(v) for v in person) for person in PEOPLE]
    lines += list(extra_lines)
    path.write_text("\n".join(lines) + "\n")


def test_policies_apply_to_accepted_rows(ws, tmp_path: Path) -> None:
    write_people(tmp_path / "people.csv")
    (tmp_path / "c.yaml").write_text(CONTRACT)

    result = ws.ingest("people", str(tmp_path / "people.csv"), contract=str(tmp_path / "c.yaml"))

    key = workspace_key(tmp_path / "ws")
    accepted = [p for p in PEOPLE if p[5] >= 0]
    rows = ws.data.read(result.version).to_pylist()
    assert [r["id"] for r in rows] == [p[0] for p in accepted]
    for row, person in zip(rows, accepted, strict=True):
        assert set(row) == {"id", "email", "phone", "full_name", "amount"}  # ssn dropped
        assert row["email"] == keyed_hash(key, person[1])
        assert row["phone"] == masked(person[2])
        assert row["phone"][-4:] == person[2][-4:]
        assert row["full_name"] == REDACTED
    assert "ssn" not in ws.data.schema(result.version).names
    assert dict(result.version.pii) == {
        "email": "hash",
        "phone": "mask",
        "full_name": "redact",
        "ssn": "drop",
    }


def test_policies_apply_to_quarantined_records(ws, tmp_path: Path) -> None:
    write_people(tmp_path / "people.csv")
    (tmp_path / "c.yaml").write_text(CONTRACT)

    result = ws.ingest("people", str(tmp_path / "people.csv"), contract=str(tmp_path / "c.yaml"))

    key = workspace_key(tmp_path / "ws")
    rejected = {p[0]: p for p in PEOPLE if p[5] < 0}
    quarantined = ws.data.quarantine(result.version).to_pylist()
    assert len(quarantined) == len(rejected)
    for entry in quarantined:
        record = json.loads(entry["record"])
        person = rejected[record["id"]]
        assert entry["row"] == PEOPLE.index(person) + 1
        assert record["email"] == keyed_hash(key, person[1])
        assert record["phone"] == masked(person[2])
        assert record["full_name"] == REDACTED
        assert "ssn" not in record


def test_raw_emails_are_stored_nowhere(ws, tmp_path: Path) -> None:
    # A ragged row and a row of the wrong type are rejected by the reader itself.
    leaking = "eve.leak@example.com"
    untyped = "frank.cast@example.com"
    write_people(
        tmp_path / "people.csv",
        [
            f"6,{leaking},+44 20 7946 0000,Eve Leak,111-22-3333,1.0,surplus",
            f"7,{untyped},+44 20 7946 0001,Frank Cast,111-22-4444,lots",
        ],
    )
    (tmp_path / "c.yaml").write_text(CONTRACT)

    result = ws.ingest("people", str(tmp_path / "people.csv"), contract=str(tmp_path / "c.yaml"))

    assert result.rows_quarantined == 4
    emails = sorted({p[1] for p in PEOPLE} | {leaking, untyped})
    assert_nowhere(tmp_path / "ws", emails)


def test_reader_rejected_rows_do_not_leak_policy_columns(ws, tmp_path: Path) -> None:
    # Phones, names and SSNs under a policy must not survive in a ragged or mistyped
    # row's quarantine record (or its detail) either.
    (tmp_path / "c.yaml").write_text(CONTRACT)
    write_people(
        tmp_path / "people.csv",
        [
            "6,eve@example.com,+44 20 7946 0000,Eve Leak,111-22-3333,1.0,surplus",
            "7,frank@example.com,+44 20 7946 0001,Frank Cast,111-22-4444,lots",
        ],
    )

    ws.ingest("people", str(tmp_path / "people.csv"), contract=str(tmp_path / "c.yaml"))

    assert_nowhere(
        tmp_path / "ws",
        [
            "7946 0000",
            "Eve Leak",
            "111-22-3333",
            "7946 0001",
            "Frank Cast",
            "111-22-4444",
        ],
    )


def test_mistyped_policy_column_value_does_not_leak_in_detail(ws, tmp_path: Path) -> None:
    card = "4111 1111 1111 1111"  # not an int, so the reader rejects the row
    (tmp_path / "c.yaml").write_text(
        "columns:\n  id: {type: int}\n  card: {type: int, pii: mask}\n"
    )
    (tmp_path / "cards.csv").write_text(f"id,card\n1,4111111111111111\n2,{card}\n")

    result = ws.ingest("cards", str(tmp_path / "cards.csv"), contract=str(tmp_path / "c.yaml"))

    assert result.rows_quarantined == 1
    assert_nowhere(tmp_path / "ws", [card, "4111111111111111"])


def test_hash_is_keyed_with_the_workspace_key(ws, tmp_path: Path) -> None:
    emails = ["a@example.com", "b@example.com", "a@example.com", "c@example.com"]
    (tmp_path / "e.csv").write_text(
        "id,email\n" + "".join(f"{i},{e}\n" for i, e in enumerate(emails))
    )

    result = ws.ingest("emails", str(tmp_path / "e.csv"), pii=["email=hash"])

    key_file = tmp_path / "ws" / "keys" / "pii.key"
    key = bytes.fromhex(key_file.read_text().strip())
    assert len(key) >= 16
    hashed = ws.data.read(result.version).column("email").to_pylist()
    assert hashed == [keyed_hash(key, e) for e in emails]
    assert hashed[0] == hashed[2]
    assert len(set(hashed)) == len(set(emails))
    # Keyed: a plain, unkeyed SHA-256 would be guessable from the value alone.
    assert hashed[0] != hashlib.sha256(emails[0].encode()).hexdigest()


def test_hash_is_stable_across_ingests_and_differs_across_workspaces(ws, tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("id,email\n1,a@example.com\n")
    first = ws.ingest("emails", str(tmp_path / "e.csv"), pii={"email": "hash"})
    second = ws.ingest("emails", str(tmp_path / "e.csv"), pii={"email": "hash"})
    one = ws.data.read(first.version).column("email").to_pylist()
    assert one == ws.data.read(second.version).column("email").to_pylist()

    with loopml.open(tmp_path / "other-ws") as other:
        third = other.ingest("emails", str(tmp_path / "e.csv"), pii={"email": "hash"})
        assert other.data.read(third.version).column("email").to_pylist() != one


def test_cli_style_policy_overrides_the_contract(ws, tmp_path: Path) -> None:
    write_people(tmp_path / "people.csv")
    (tmp_path / "c.yaml").write_text(CONTRACT)
    result = ws.ingest(
        "people",
        str(tmp_path / "people.csv"),
        contract=str(tmp_path / "c.yaml"),
        pii=["email=redact"],
    )
    assert set(ws.data.read(result.version).column("email").to_pylist()) == {REDACTED}


@pytest.mark.parametrize(
    "policies", [["email=bogus"], {"email": "bogus"}, ["email"], ["=hash"], ["email="]]
)
def test_bad_policy_is_an_input_error(ws, tmp_path: Path, policies) -> None:
    (tmp_path / "e.csv").write_text("id,email\n1,a@example.com\n")
    with pytest.raises(loopml.InputError):
        ws.ingest("emails", str(tmp_path / "e.csv"), pii=policies)
    assert ws.data.ls() == []


def test_policy_for_a_missing_column_is_an_input_error(ws, tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("id,email\n1,a@example.com\n")
    with pytest.raises(loopml.InputError, match="phone"):
        ws.ingest("emails", str(tmp_path / "e.csv"), pii=["phone=mask"])
    assert ws.data.ls() == []


# --- detection ----------------------------------------------------------------------------


def luhn_check_digit(body: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(body)):
        digit = int(ch)
        if i % 2 == 0:  # doubled: every second digit from the right, check digit excluded
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


def iban(country: str, bban: str) -> str:
    """A valid IBAN: check digits from ISO 13616's mod-97 rule."""
    moved = bban + country + "00"
    number = int("".join(str(int(ch, 36)) for ch in moved))
    return f"{country}{98 - number % 97:02d}{bban}"


def detection_rows(n: int = 60) -> list[dict]:
    rng = random.Random(11)
    rows = []
    for i in range(n):
        body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
        check = luhn_check_digit(body)
        rows.append(
            {
                "f_contact": f"user{i}@example.com",
                "f_tel": f"+1 415 555 {i:04d}",
                "f_pay": body + str(check),
                "f_acct": iban("GB", "WEST" + "".join(rng.choice("0123456789") for _ in range(14))),
                "f_bad16": body + str((check + 1) % 10),
                "f_id": i + 1,
                "f_bigid": 3_000_000_000 + i,
                "f_text": f"order {i} shipped",
            }
        )
    return rows


def test_iban_helper_matches_a_published_example() -> None:
    # The ISO 13616 example IBAN, so the generator above is trustworthy.
    assert iban("GB", "WEST12345698765432") == "GB82WEST12345698765432"


def test_detection_flags_email_phone_card_and_iban(ws, tmp_path: Path) -> None:
    rows = detection_rows()
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = ws.ingest("mixed", str(tmp_path / "d.jsonl"))
    flagged = set(result.pii_warnings)
    assert {"f_contact", "f_tel", "f_pay", "f_acct"} <= flagged
    assert {"f_id", "f_bigid", "f_text"}.isdisjoint(flagged)
    assert set(result.version.pii_warnings) == flagged


def test_detection_ignores_luhn_invalid_digit_strings(ws, tmp_path: Path) -> None:
    rows = detection_rows()
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = ws.ingest("mixed", str(tmp_path / "d.jsonl"))
    assert "f_bad16" not in result.pii_warnings, result.pii_warnings


def test_detection_ignores_luhn_invalid_16_digit_numbers(ws, tmp_path: Path) -> None:
    rows = detection_rows()
    (tmp_path / "d.csv").write_text(
        "f_bad16,f_id\n" + "".join(f"{r['f_bad16']},{r['f_id']}\n" for r in rows)
    )
    result = ws.ingest("numbers", str(tmp_path / "d.csv"))
    assert set(result.pii_warnings).isdisjoint({"f_bad16", "f_id"})


def test_columns_with_a_policy_are_not_flagged(ws, tmp_path: Path) -> None:
    rows = detection_rows()
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = ws.ingest(
        "mixed",
        str(tmp_path / "d.jsonl"),
        pii=["f_contact=hash", "f_tel=mask", "f_pay=redact", "f_acct=drop"],
    )
    assert {"f_contact", "f_tel", "f_pay", "f_acct"}.isdisjoint(result.pii_warnings)


def test_luhn_and_iban_checks_agree_with_independent_generators() -> None:
    rng = random.Random(5)
    for _ in range(200):
        body = "".join(rng.choice("0123456789") for _ in range(rng.randint(11, 18)))
        check = luhn_check_digit(body)
        assert pii.luhn_ok(body + str(check))
        assert not pii.luhn_ok(body + str((check + 1) % 10))
        bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(16))
        good = iban("DE", bban)
        assert pii.iban_ok(good)
        wrong = good[:2] + f"{(int(good[2:4]) + 1) % 100:02d}" + good[4:]
        assert not pii.iban_ok(wrong)


# --- policies as properties ---------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=30)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), _TEXT), min_size=1, max_size=20),
    key=st.binary(min_size=16, max_size=32),
)
def test_property_policies_on_batches(values, key) -> None:
    batch = pa.RecordBatch.from_pydict(
        {"v": pa.array(values, pa.string()), "keep": pa.array(range(len(values)))}
    )

    hashed = pii.apply_policies(batch, {"v": "hash"}, key).column("v").to_pylist()
    masked_ = pii.apply_policies(batch, {"v": "mask"}, key).column("v").to_pylist()
    redacted = pii.apply_policies(batch, {"v": "redact"}, key).column("v").to_pylist()
    dropped = pii.apply_policies(batch, {"v": "drop"}, key)

    for value, h, m, r in zip(values, hashed, masked_, redacted, strict=True):
        if value is None:
            assert h is None and m is None and r is None
            continue
        assert h == keyed_hash(key, value)
        assert m == masked(value)
        assert len(m) == len(value)
        assert r == REDACTED
    assert dropped.schema.names == ["keep"]
    assert dropped.column("keep").to_pylist() == list(range(len(values)))


@settings(max_examples=100, deadline=None)
@given(
    column=st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
    policy=st.text(min_size=1, max_size=10).filter(lambda p: "=" not in p),
)
def test_property_policy_parsing(column, policy) -> None:
    item = f"{column}={policy}"
    if policy.strip() in pii.POLICIES:
        assert pii.parse_policies([item]) == {column: policy.strip()}
    else:
        with pytest.raises(loopml.InputError):
            pii.parse_policies([item])


def test_key_file_is_private(ws, tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("id,email\n1,a@example.com\n")
    ws.ingest("emails", str(tmp_path / "e.csv"), pii=["email=hash"])
    key_file = tmp_path / "ws" / "keys" / "pii.key"
    assert key_file.exists()
    if os.name == "posix":
        assert key_file.stat().st_mode & 0o077 == 0
