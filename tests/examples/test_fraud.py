"""Tests for the synthetic fraud dataset: shape, dirt, PII, learnability and drift."""

from __future__ import annotations

import csv
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from loopml.errors import InputError
from loopml.examples.fraud import (
    AGE_BANDS,
    CATEGORIES,
    CHANNELS,
    COLUMNS,
    COUNTRIES,
    DEVICES,
    contract_path,
    generate_transactions,
)

ROWS = 20_000


def _luhn_ok(number: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        return next(reader), list(reader)


def _problem(fields: list[str], seen_ids: set[str]) -> str | None:
    """Classify a row the way a contract would, returning the kind of dirt or None."""
    if len(fields) != len(COLUMNS):
        return "ragged"
    row = dict(zip(COLUMNS, fields, strict=True))
    if row["tx_id"] == "":
        return "missing_id"
    try:
        if float(row["amount"]) < 0:
            return "bad_amount"
    except ValueError:
        return "bad_amount"
    if row["merchant_category"] not in CATEGORIES:
        return "bad_category"
    try:
        datetime.strptime(row["ts"], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return "bad_timestamp"
    if row["tx_id"] in seen_ids:
        return "duplicate_tx_id"
    seen_ids.add(row["tx_id"])
    return None


def _clean_rows(rows: list[list[str]]) -> list[list[str]]:
    seen: set[str] = set()
    return [fields for fields in rows if _problem(fields, seen) is None]


def _clean_columns(rows: list[list[str]]) -> dict[str, np.ndarray]:
    clean = _clean_rows(rows)
    columns = {name: np.array([fields[i] for fields in clean]) for i, name in enumerate(COLUMNS)}
    columns["amount"] = columns["amount"].astype(float)
    columns["is_fraud"] = columns["is_fraud"].astype(int)
    return columns


def _auc(label: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula."""
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="stable")] = np.arange(1, len(score) + 1)
    positives = int(label.sum())
    negatives = len(label) - positives
    return (ranks[label == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)


def _category_share(columns: dict[str, np.ndarray]) -> np.ndarray:
    counts = Counter(columns["merchant_category"].tolist())
    return np.array([counts[name] for name in CATEGORIES]) / len(columns["merchant_category"])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[str], list[list[str]]]:
    path = tmp_path_factory.mktemp("fraud") / "base.csv"
    summary = generate_transactions(path, rows=ROWS)
    header, rows = _read(path)
    return summary, header, rows


@pytest.fixture(scope="module")
def clean(base: tuple[dict, list[str], list[list[str]]]) -> dict[str, np.ndarray]:
    return _clean_columns(base[2])


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    path = tmp_path_factory.mktemp("fraud") / "drift.csv"
    generate_transactions(path, rows=ROWS, start="2026-03-02", drift=True, dirty=False)
    return _clean_columns(_read(path)[1])


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    generate_transactions(first, rows=5_000, seed=3)
    generate_transactions(second, rows=5_000, seed=3)
    generate_transactions(other, rows=5_000, seed=4)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_header_and_row_count(base: tuple[dict, list[str], list[list[str]]]) -> None:
    summary, header, rows = base
    assert tuple(header) == COLUMNS
    assert len(rows) == summary["rows"] == ROWS


def test_dirty_counts_in_summary_match_the_file(
    base: tuple[dict, list[str], list[list[str]]],
) -> None:
    summary, _, rows = base
    seen: set[str] = set()
    found = Counter(_problem(fields, seen) for fields in rows)
    del found[None]
    assert dict(found) == summary["dirty"]
    assert all(count >= 1 for count in summary["dirty"].values())
    assert 0.001 <= sum(found.values()) / ROWS <= 0.003


def test_dirty_amounts_are_really_malformed(
    base: tuple[dict, list[str], list[list[str]]],
) -> None:
    _, _, rows = base
    amounts = [fields[5] for fields in rows if len(fields) == len(COLUMNS)]
    assert any(amount.startswith("-") for amount in amounts)
    assert any(not re.fullmatch(r"-?[0-9.]+", amount) for amount in amounts)


def test_fraud_rate_is_about_one_and_a_half_percent(
    base: tuple[dict, list[str], list[list[str]]], clean: dict[str, np.ndarray]
) -> None:
    summary, _, _ = base
    columns = clean
    assert 0.01 <= summary["fraud_rate"] <= 0.02
    assert summary["fraud_rate"] == pytest.approx(columns["is_fraud"].mean(), abs=1e-6)
    assert set(columns["is_fraud"].tolist()) == {0, 1}


def test_clean_rows_have_valid_values_and_pii(
    base: tuple[dict, list[str], list[list[str]]], clean: dict[str, np.ndarray]
) -> None:
    _, _, rows = base
    columns = clean
    assert all(len(card) == 16 and _luhn_ok(card) for card in columns["card_number"])
    assert all(
        re.fullmatch(r"[a-z]+\.[a-z]+[0-9]+@example\.(com|org)", email)
        for email in columns["customer_email"]
    )
    assert (columns["amount"] > 0).all()
    assert all(re.fullmatch(r"[0-9]+\.[0-9]{2}", fields[5]) for fields in _clean_rows(rows))
    assert set(columns["country"]) <= set(COUNTRIES)
    assert set(columns["channel"]) == set(CHANNELS)
    assert set(columns["device"]) == set(DEVICES)
    assert set(columns["age_band"]) == set(AGE_BANDS)
    customers = len(set(columns["customer_id"]))
    assert ROWS / 40 <= customers <= ROWS / 15
    cards_per_customer = Counter(
        customer
        for customer, _ in set(zip(columns["customer_id"], columns["card_number"], strict=True))
    )
    assert max(cards_per_customer.values()) <= 2


def test_timestamps_increase_within_the_period(clean: dict[str, np.ndarray]) -> None:
    stamps = clean["ts"]
    assert (stamps[1:] >= stamps[:-1]).all()
    assert stamps[0] >= "2026-01-01 00:00:00"
    assert stamps[-1] < "2026-03-02 00:00:00"


def test_tx_id_is_unique_except_injected_duplicates(
    base: tuple[dict, list[str], list[list[str]]], clean: dict[str, np.ndarray]
) -> None:
    summary, _, rows = base
    ids = [fields[0] for fields in rows if fields[0] != ""]
    repeats = sum(count - 1 for count in Counter(ids).values())
    assert repeats == summary["dirty"]["duplicate_tx_id"]
    clean_ids = clean["tx_id"]
    assert len(set(clean_ids)) == len(clean_ids)


def test_fraud_is_learnable_from_simple_signals(clean: dict[str, np.ndarray]) -> None:
    columns = clean
    fraud, amount = columns["is_fraud"], columns["amount"]
    top_decile = amount > np.quantile(amount, 0.9)
    assert fraud[top_decile].mean() >= 3 * fraud.mean()
    assert _auc(fraud, np.log(amount)) >= 0.75
    hour = np.array([int(stamp[11:13]) for stamp in columns["ts"]])
    night = (hour <= 5) | (hour >= 23)
    assert fraud[night].mean() >= 2 * fraud.mean()
    web = columns["channel"] == "web"
    assert fraud[web].mean() >= 2 * fraud.mean()


def test_drift_shifts_amounts_categories_and_the_fraud_pattern(
    clean: dict[str, np.ndarray], drifted: dict[str, np.ndarray]
) -> None:
    before = clean
    assert drifted["amount"].mean() > 1.3 * before["amount"].mean()
    share_before, share_after = _category_share(before), _category_share(drifted)
    psi = np.sum((share_after - share_before) * np.log(share_after / share_before))
    assert psi > 0.1
    assert share_after[CATEGORIES.index("online")] > share_before[CATEGORIES.index("online")]

    def fraud_share_in_fuel_and_pharmacy(columns: dict[str, np.ndarray]) -> float:
        in_fraud = columns["merchant_category"][columns["is_fraud"] == 1]
        return float(np.isin(in_fraud, ["fuel", "pharmacy"]).mean())

    assert fraud_share_in_fuel_and_pharmacy(drifted) > 3 * fraud_share_in_fuel_and_pharmacy(before)


def test_contract_describes_the_generated_columns() -> None:
    contract = yaml.safe_load(contract_path().read_text())
    assert tuple(contract["columns"]) == COLUMNS
    assert contract["columns"]["merchant_category"]["allowed"] == list(CATEGORIES)
    assert contract["columns"]["age_band"]["allowed"] == list(AGE_BANDS)
    assert contract["unique"] == ["tx_id"]


@pytest.mark.parametrize("arguments", [{"rows": 0}, {"days": 0}, {"start": "someday"}])
def test_bad_arguments_raise_input_error(tmp_path: Path, arguments: dict) -> None:
    with pytest.raises(InputError):
        generate_transactions(tmp_path / "x.csv", **arguments)
