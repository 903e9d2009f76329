"""A synthetic card-transactions dataset: the fraud example every loopml demo builds on.

The data is made to exercise the whole cycle (ingest, features, train, serve, monitor
drift, retrain), so it has what real transaction logs have:

* PII to protect: fake e-mail addresses on ``example.com``/``example.org`` and card
  numbers that pass the Luhn check.
* A sensitive attribute (``age_band``) that shapes behaviour, for fairness checks.
* Fraud that a model can learn (ROC AUC about 0.9 from amount, merchant category,
  foreign country, hour of day, channel and bursts of transactions by one customer
  within an hour), with a share of fraud that looks legitimate so that no model is
  perfect.
* Optional dirty rows (about 0.2%) that a contract must quarantine.
* Optional drift: larger amounts, another category mix and a new fraud pattern, so a
  model trained before the shift degrades and PSI fires on ``amount`` and
  ``merchant_category``.

Example::

    from pathlib import Path
    from loopml.examples.fraud import contract_path, generate_transactions

    summary = generate_transactions(Path("data/transactions.csv"), rows=100_000)
    later = generate_transactions(
        Path("data/transactions_drift.csv"), start="2026-03-02", drift=True, dirty=False
    )
    contract = contract_path()  # the data contract the ingest engine validates against
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from loopml.errors import InputError

COLUMNS = (
    "tx_id",
    "ts",
    "customer_id",
    "customer_email",
    "card_number",
    "amount",
    "merchant_category",
    "country",
    "channel",
    "device",
    "age_band",
    "is_fraud",
)
CATEGORIES = (
    "grocery",
    "restaurant",
    "fuel",
    "travel",
    "electronics",
    "online",
    "fashion",
    "pharmacy",
)
COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "IN", "NG")
CHANNELS = ("web", "app", "pos")
DEVICES = ("ios", "android", "desktop", "terminal")
AGE_BANDS = ("18-25", "26-35", "36-50", "51-65", "65+")
DIRTY_KINDS = (
    "bad_amount",
    "ragged",
    "bad_category",
    "missing_id",
    "duplicate_tx_id",
    "bad_timestamp",
)

_FRAUD_RATE = 0.015
_CUSTOMERS_PER_ROW = 1 / 20
# Share of fraud incidents that are single purchases looking like normal spend; this
# is what keeps a good model's ROC AUC near 0.9 rather than 1.
_CAREFUL_SHARE = 0.35
_MAX_AMOUNT = 50_000.0  # Stays inside the contract's max, so only injected rows break it.
_DIRTY_RATES = {
    "bad_amount": 0.0005,
    "ragged": 0.0003,
    "bad_category": 0.0003,
    "missing_id": 0.0002,
    "duplicate_tx_id": 0.0003,
    "bad_timestamp": 0.0003,
}
# Below this many rows, rates round to zero; above it every kind shows up at least once
# so small demos still have something to quarantine.
_MIN_ROWS_FOR_EVERY_KIND = 1_000

_FIRST_NAMES = (
    "maria", "james", "amara", "li", "sofia", "noah", "priya", "lucas", "emma", "omar",
    "hannah", "mateo", "chloe", "arjun", "lena", "tunde", "giulia", "pedro", "zoe", "felix",
    "ines", "kenji", "nadia", "oliver", "fatima", "liam", "elena", "samuel", "aisha", "jonas",
)  # fmt: skip
_LAST_NAMES = (
    "garcia", "smith", "okafor", "chen", "rossi", "muller", "sharma", "silva", "martin",
    "jansen", "dubois", "kumar", "brown", "schmidt", "fernandez", "adeyemi", "bianchi",
    "novak", "lopez", "taylor", "weber", "costa", "patel", "moreau", "devries", "nwosu",
)  # fmt: skip

_HOME_COUNTRY_MIX = (0.30, 0.15, 0.12, 0.10, 0.07, 0.07, 0.05, 0.06, 0.05, 0.03)
_AGE_MIX = (0.14, 0.24, 0.30, 0.20, 0.12)
# Fraudsters target the young and the old a little more often; gives fairness checks
# a real difference between groups to find.
_AGE_FRAUD_TARGETING = (1.2, 1.0, 0.9, 1.0, 1.6)

# Typical spend per category (median of the lognormal, in the card's currency).
_MEDIAN_AMOUNT = np.array([38.0, 27.0, 52.0, 210.0, 160.0, 42.0, 65.0, 22.0])
_CATEGORY_MIX = {
    "legit": (0.25, 0.18, 0.12, 0.04, 0.05, 0.16, 0.12, 0.08),
    "legit_drift": (0.17, 0.14, 0.08, 0.04, 0.13, 0.30, 0.08, 0.06),
    "fraud": (0.03, 0.03, 0.03, 0.17, 0.30, 0.30, 0.10, 0.04),
    "fraud_drift": (0.06, 0.04, 0.40, 0.02, 0.05, 0.08, 0.05, 0.30),
}
# Multipliers on the category mix per age band: the young shop online, the old at the
# pharmacy. Rows follow AGE_BANDS, columns CATEGORIES.
_AGE_CATEGORY_TILT = np.array(
    [
        [0.9, 1.1, 0.8, 1.0, 1.3, 1.6, 1.3, 0.6],
        [1.0, 1.2, 1.0, 1.1, 1.1, 1.3, 1.1, 0.8],
        [1.0, 1.0, 1.1, 1.0, 1.0, 1.0, 1.0, 1.0],
        [1.1, 0.9, 1.1, 1.0, 0.8, 0.8, 0.9, 1.3],
        [1.2, 0.8, 0.9, 0.9, 0.6, 0.5, 0.7, 1.8],
    ]
)
# P(web, app, pos) per merchant category for legitimate spend.
_LEGIT_CHANNEL_MIX = np.array(
    [
        [0.05, 0.05, 0.90],
        [0.03, 0.12, 0.85],
        [0.00, 0.05, 0.95],
        [0.55, 0.35, 0.10],
        [0.40, 0.20, 0.40],
        [0.50, 0.50, 0.00],
        [0.25, 0.20, 0.55],
        [0.05, 0.05, 0.90],
    ]
)
_FRAUD_CHANNEL_MIX = {"fraud": (0.70, 0.12, 0.18), "fraud_drift": (0.12, 0.70, 0.18)}
# Relative activity per hour of day (0-23).
_HOUR_PROFILE = {
    "legit": (
        0.6, 0.35, 0.2, 0.15, 0.15, 0.25, 0.6, 1.2, 2.0, 2.6, 3.0, 3.4,
        4.0, 3.8, 3.2, 3.0, 3.4, 4.0, 4.4, 4.2, 3.4, 2.6, 1.8, 1.1,
    ),
    "fraud": (
        5.0, 5.5, 6.0, 6.0, 5.5, 4.0, 2.5, 1.5, 1.0, 1.0, 1.0, 1.0,
        1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.5, 2.0, 3.0, 4.0,
    ),
    "fraud_drift": (
        0.3, 0.2, 0.2, 0.2, 0.2, 0.3, 0.6, 1.2, 2.5, 4.0, 5.0, 5.5,
        5.5, 5.5, 5.0, 4.5, 3.5, 2.5, 1.5, 1.0, 0.8, 0.6, 0.5, 0.4,
    ),
}  # fmt: skip
# Honest customers keep their habits when the world drifts; only fraudsters change hours.
_HOUR_PROFILE["legit_drift"] = _HOUR_PROFILE["legit"]


def contract_path() -> Path:
    """Return the path of the data contract for the fraud example.

    Returns:
        The ``fraud_contract.yaml`` file shipped inside the package.
    """
    return Path(__file__).parent / "fraud_contract.yaml"


def generate_transactions(
    path: Path,
    *,
    rows: int = 50_000,
    seed: int = 7,
    start: str = "2026-01-01",
    days: int = 60,
    dirty: bool = True,
    drift: bool = False,
    first_id: int = 1,
) -> dict:
    """Write a CSV of synthetic card transactions and summarise what was written.

    The same arguments always give the same bytes. Customers (ids, e-mails, cards, home
    country, age band) depend on ``seed`` and ``rows`` only, so a drifted file made with
    the same seed describes the same bank at a later time.

    Args:
        path: the CSV file to write; missing parent folders are created.
        rows: data rows to write, dirty rows included.
        seed: seed of the random generator.
        start: first day of the period, ``YYYY-MM-DD`` (or an ISO timestamp).
        days: length of the period in days.
        dirty: break about 0.2% of the rows, each in one way (see ``DIRTY_KINDS``); only
            legitimate transactions are broken, so the clean rows keep every fraud label.
        drift: shift the world: amounts about 1.6 times larger with a heavier tail, more
            online and electronics spend, and fraud that moves to fuel and pharmacy,
            the app channel and daytime.
        first_id: the first row's ``tx_id``; later files of one source start after the
            earlier ones' ids, so the ids stay unique across files.

    Returns:
        ``{"path": str, "rows": int, "fraud_rate": float, "dirty": {kind: count}}`` where
        ``rows`` counts every data row written and ``fraud_rate`` is the share of fraud
        among the rows that are not dirty.

    Raises:
        InputError: ``rows`` or ``days`` is below 1, ``start`` is not a date, or the file
            cannot be written.

    Example::

        summary = generate_transactions(Path("transactions.csv"), rows=20_000)
        summary["dirty"]["ragged"]  # 6
    """
    path = Path(path)
    if rows < 1:
        raise InputError(f"rows must be at least 1, got {rows}", hint="pass rows=50_000")
    if days < 1:
        raise InputError(f"days must be at least 1, got {days}", hint="pass days=60")
    try:
        start_epoch = int(np.datetime64(start, "s").astype(np.int64))
    except ValueError as exc:
        raise InputError(f"start {start!r} is not a date", hint="use the form YYYY-MM-DD") from exc

    # Independent streams, so customers stay the same whether or not the world drifts.
    customer_seed, transaction_seed, dirty_seed = np.random.SeedSequence(seed).spawn(3)
    n_customers = max(1, round(rows * _CUSTOMERS_PER_ROW))
    customers = _make_customers(np.random.default_rng(customer_seed), n_customers)
    tx = _make_transactions(
        np.random.default_rng(transaction_seed), customers, rows, days * 86_400, drift
    )
    table = _to_table(tx, customers, start_epoch, first_id)

    counts = dict.fromkeys(DIRTY_KINDS, 0)
    defects: dict[int, tuple[str, int, str]] = {}
    if dirty:
        defects, counts = _pick_defects(
            np.random.default_rng(dirty_seed), tx["is_fraud"], _cents(tx["amount"]), first_id
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_csv(path, table, defects)
    except OSError as exc:
        raise InputError(
            f"cannot write {path}: {exc.strerror}", hint="choose a writable folder"
        ) from exc

    clean_rows = rows - len(defects)
    return {
        "path": str(path),
        "rows": rows,
        "fraud_rate": round(float(tx["is_fraud"].sum()) / max(clean_rows, 1), 6),
        "dirty": counts,
    }


def _make_customers(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Draw customers: identity, cards, home country, age band, phone and activity."""
    first = rng.integers(0, len(_FIRST_NAMES), n)
    last = rng.integers(0, len(_LAST_NAMES), n)
    domain = rng.random(n) < 0.7
    customer_id = np.arange(100_001, 100_001 + n, dtype=np.int64)
    emails = [
        f"{_FIRST_NAMES[f]}.{_LAST_NAMES[g]}{c}@{'example.com' if d else 'example.org'}"
        for f, g, c, d in zip(
            first.tolist(), last.tolist(), customer_id.tolist(), domain, strict=True
        )
    ]
    n_cards = np.where(rng.random(n) < 0.3, 2, 1)
    card_offset = np.concatenate(([0], np.cumsum(n_cards)[:-1]))
    # Zipf-ish activity: a few customers spend daily, most a few times a period. The cap
    # keeps the busiest at a few a day, as a person (not a shop) would.
    activity = 1.0 / rng.permutation(np.arange(1, n + 1)) ** 0.6
    activity = np.minimum(activity / activity.mean(), 15.0)
    return {
        "id": customer_id,
        "email": np.array(emails, dtype=object),
        "cards": _luhn_card_numbers(rng, int(n_cards.sum())),
        "n_cards": n_cards,
        "card_offset": card_offset,
        "home": rng.choice(len(COUNTRIES), n, p=_normalised(_HOME_COUNTRY_MIX)),
        "age": rng.choice(len(AGE_BANDS), n, p=_normalised(_AGE_MIX)),
        "ios": rng.random(n) < 0.45,
        "activity": activity / activity.sum(),
    }


def _luhn_card_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return ``n`` 16-digit card numbers (Visa or Mastercard prefixes) that pass Luhn."""
    digits = rng.integers(0, 10, (n, 16), dtype=np.int64)
    visa = rng.random(n) < 0.6
    digits[:, 0] = np.where(visa, 4, 5)
    digits[:, 1] = np.where(visa, digits[:, 1], rng.integers(1, 6, n))
    # With the check digit last, the payload digits at even positions are the doubled ones.
    payload = digits[:, :15].copy()
    doubled = payload[:, ::2] * 2
    payload[:, ::2] = np.where(doubled > 9, doubled - 9, doubled)
    digits[:, 15] = (10 - payload.sum(axis=1) % 10) % 10
    return (digits + ord("0")).astype(np.uint8).view("S16").ravel().astype(str)


def _make_transactions(
    rng: np.random.Generator,
    customers: dict[str, np.ndarray],
    rows: int,
    period_s: int,
    drift: bool,
) -> dict[str, np.ndarray]:
    """Draw legitimate spend and fraud incidents, merged and sorted by time."""
    legit_kind, fraud_kind = ("legit_drift", "fraud_drift") if drift else ("legit", "fraud")
    n_fraud = min(rows, round(rows * _FRAUD_RATE))
    n_legit = rows - n_fraud

    cust = rng.choice(len(customers["id"]), n_legit, p=customers["activity"])
    legit = _draw_legit(rng, customers, cust, legit_kind, period_s, drift)
    fraud = _draw_fraud(rng, customers, n_fraud, fraud_kind, period_s, drift)

    merged = {key: np.concatenate([legit[key], fraud[key]]) for key in legit}
    merged["is_fraud"] = np.concatenate(
        [np.zeros(n_legit, dtype=np.int8), np.ones(n_fraud, dtype=np.int8)]
    )
    order = np.argsort(merged["offset"], kind="stable")
    return {key: value[order] for key, value in merged.items()}


def _draw_legit(
    rng: np.random.Generator,
    customers: dict[str, np.ndarray],
    cust: np.ndarray,
    kind: str,
    period_s: int,
    drift: bool,
) -> dict[str, np.ndarray]:
    """Draw honest spend: one transaction per entry of ``cust``, shaped by age band."""
    n = len(cust)
    age = customers["age"][cust]
    category = np.empty(n, dtype=np.int64)
    for band in range(len(AGE_BANDS)):
        in_band = np.flatnonzero(age == band)
        mix = np.asarray(_CATEGORY_MIX[kind]) * _AGE_CATEGORY_TILT[band]
        category[in_band] = rng.choice(len(CATEGORIES), len(in_band), p=mix / mix.sum())
    channel = _channel_for_category(rng, category)
    # Travel is where honest customers pay abroad.
    foreign = rng.random(n) < np.where(category == CATEGORIES.index("travel"), 0.5, 0.03)
    sigma = 0.95 if drift else 0.75
    scale = 1.6 if drift else 1.0
    amount = rng.lognormal(np.log(_MEDIAN_AMOUNT[category] * scale), sigma)
    return {
        "offset": _offsets(rng, n, kind, period_s),
        "customer": cust,
        "card": _card_of(customers, cust, rng.random(n) < 0.25),
        "amount": amount,
        "category": category,
        "country": _country(rng, customers["home"][cust], foreign),
        "channel": channel,
        "device": _device(rng, channel, customers["ios"][cust], desktop_share=0.6),
    }


def _draw_fraud(
    rng: np.random.Generator,
    customers: dict[str, np.ndarray],
    n: int,
    kind: str,
    period_s: int,
    drift: bool,
) -> dict[str, np.ndarray]:
    """Draw fraud as incidents: one stolen card used a few times within the hour."""
    # After the shift fraudsters space out their attempts, so bursts say less.
    sizes = 1 + rng.poisson(0.8 if drift else 1.8, max(n, 1))
    careful = rng.random(len(sizes)) < _CAREFUL_SHARE
    sizes[careful] = 1
    ends = np.cumsum(sizes)
    n_incidents = int(np.searchsorted(ends, n)) + 1 if n else 0
    sizes = sizes[:n_incidents]
    careful = careful[:n_incidents]
    if n_incidents:
        sizes[-1] -= int(ends[n_incidents - 1]) - n

    targeting = np.asarray(_AGE_FRAUD_TARGETING)[customers["age"]]
    victim = rng.choice(len(customers["id"]), n_incidents, p=targeting / targeting.sum())
    second_card = rng.random(n_incidents) < 0.5
    incident_card = _card_of(customers, victim, second_card)
    home = customers["home"][victim]
    foreign = rng.random(n_incidents) < np.where(careful, 0.03, 0.15 if drift else 0.5)
    incident_country = _country(rng, home, foreign)
    incident_start = _offsets(rng, n_incidents, kind, period_s)
    careful_start = _offsets(rng, n_incidents, "legit", period_s)
    incident_start = np.where(careful, careful_start, incident_start)

    incident = np.repeat(np.arange(n_incidents), sizes)
    is_careful = careful[incident]
    # Later transactions of an incident follow the first within 45 minutes.
    later = np.ones(n, dtype=bool)
    later[np.cumsum(sizes) - sizes] = False
    offset = incident_start[incident] + np.where(later, rng.integers(30, 2_700, n), 0)

    category = rng.choice(len(CATEGORIES), n, p=_normalised(_CATEGORY_MIX[kind]))
    honest_category = rng.choice(
        len(CATEGORIES), n, p=_normalised(_CATEGORY_MIX["legit_drift" if drift else "legit"])
    )
    category = np.where(is_careful, honest_category, category)
    channel = rng.choice(len(CHANNELS), n, p=_normalised(_FRAUD_CHANNEL_MIX[kind]))
    channel = np.where(is_careful, _channel_for_category(rng, category), channel)
    scale = 1.6 if drift else 1.0
    uplift = np.where(is_careful, 1.0, 1.5 if drift else 3.0)
    sigma = np.where(is_careful, 0.75, 0.8 if drift else 1.0)
    amount = rng.lognormal(np.log(_MEDIAN_AMOUNT[category] * scale * uplift), sigma)
    cust = victim[incident]
    return {
        "offset": np.minimum(offset, period_s - 1),
        "customer": cust,
        "card": incident_card[incident],
        "amount": amount,
        "category": category,
        "country": incident_country[incident],
        "channel": channel,
        "device": _device(rng, channel, customers["ios"][cust], desktop_share=0.85),
    }


def _offsets(rng: np.random.Generator, n: int, kind: str, period_s: int) -> np.ndarray:
    """Seconds since the start of the period, following the hour-of-day profile."""
    days = max(1, period_s // 86_400)
    hour = rng.choice(24, n, p=_normalised(_HOUR_PROFILE[kind]))
    offset = rng.integers(0, days, n) * 86_400 + hour * 3_600 + rng.integers(0, 3_600, n)
    return np.minimum(offset, period_s - 1)


def _channel_for_category(rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
    """Draw the channel of honest spend given its merchant category."""
    cumulative = np.cumsum(_LEGIT_CHANNEL_MIX, axis=1)[category]
    return (rng.random(len(category))[:, None] > cumulative[:, :-1]).sum(axis=1)


def _card_of(customers: dict[str, np.ndarray], cust: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Global index of the card used: the customer's second card only if they have one."""
    has_two = customers["n_cards"][cust] == 2
    return customers["card_offset"][cust] + (second & has_two)


def _country(rng: np.random.Generator, home: np.ndarray, foreign: np.ndarray) -> np.ndarray:
    # Adding 1..len-1 modulo len picks any country but home, uniformly.
    away = (home + rng.integers(1, len(COUNTRIES), len(home))) % len(COUNTRIES)
    return np.where(foreign, away, home)


def _device(
    rng: np.random.Generator, channel: np.ndarray, ios: np.ndarray, desktop_share: float
) -> np.ndarray:
    """Apps run on the customer's phone, web on a desktop or the phone, pos on a terminal."""
    phone = np.where(ios, DEVICES.index("ios"), DEVICES.index("android"))
    desktop = rng.random(len(channel)) < desktop_share
    web_device = np.where(desktop, DEVICES.index("desktop"), phone)
    return np.select(
        [channel == CHANNELS.index("web"), channel == CHANNELS.index("app")],
        [web_device, phone],
        default=DEVICES.index("terminal"),
    )


def _to_table(
    tx: dict[str, np.ndarray], customers: dict[str, np.ndarray], start_epoch: int, first_id: int
) -> pa.Table:
    """Build the Arrow table in column order, formatting values the way the CSV shows them."""
    n = len(tx["offset"])
    cents = _cents(tx["amount"])
    # decimal128 makes the CSV writer print exactly two decimals ("12.50", not "12.5").
    words = np.zeros((n, 2), dtype=np.int64)
    words[:, 0] = cents
    amount = pa.Array.from_buffers(pa.decimal128(12, 2), n, [None, pa.py_buffer(words)])
    cust = tx["customer"]

    def lookup(values: tuple[str, ...] | np.ndarray, index: np.ndarray) -> pa.Array:
        return pc.take(pa.array(values, type=pa.string()), pa.array(index))

    columns = [
        pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
        pa.array(start_epoch + tx["offset"].astype(np.int64), type=pa.timestamp("s")),
        pa.array(customers["id"][cust]),
        lookup(customers["email"], cust),
        lookup(customers["cards"], tx["card"]),
        amount,
        lookup(CATEGORIES, tx["category"]),
        lookup(COUNTRIES, tx["country"]),
        lookup(CHANNELS, tx["channel"]),
        lookup(DEVICES, tx["device"]),
        lookup(AGE_BANDS, customers["age"][cust]),
        pa.array(tx["is_fraud"]),
    ]
    return pa.table(columns, names=list(COLUMNS))


def _cents(amount: np.ndarray) -> np.ndarray:
    return np.round(np.clip(amount, 0.01, _MAX_AMOUNT) * 100).astype(np.int64)


def _pick_defects(
    rng: np.random.Generator, is_fraud: np.ndarray, cents: np.ndarray, first_id: int = 1
) -> tuple[dict[int, tuple[str, int, str]], dict[str, int]]:
    """Choose which rows to break and how; only legitimate rows, so labels stay intact.

    Returns:
        ``{row: (kind, column, text)}``, where ``text`` replaces the field at ``column``
        (or is appended as an extra field when ``column`` is -1), and the count per kind.
    """
    rows = len(is_fraud)
    counts = {}
    for kind in DIRTY_KINDS:
        count = round(rows * _DIRTY_RATES[kind])
        counts[kind] = max(1, count) if rows >= _MIN_ROWS_FOR_EVERY_KIND else count
    # Row 0 stays clean so every duplicate has an earlier id to copy.
    candidates = np.flatnonzero(is_fraud[1:] == 0) + 1
    total = min(sum(counts.values()), len(candidates))
    chosen = rng.choice(candidates, total, replace=False).tolist()
    broken = set(chosen)
    defects: dict[int, tuple[str, int, str]] = {}
    for kind in DIRTY_KINDS:
        counts[kind] = min(counts[kind], len(chosen))
        for _ in range(counts[kind]):
            row = chosen.pop()
            defects[row] = _defect(rng, kind, row, int(cents[row]), broken, first_id)
    return defects, counts


def _defect(
    rng: np.random.Generator, kind: str, row: int, cents: int, broken: set[int], first_id: int
) -> tuple[str, int, str]:
    """Return ``(kind, column, text)`` for one row broken the way upstream systems break them."""
    amount = f"{cents // 100}.{cents % 100:02d}"
    if kind == "bad_amount":
        text = [f'"{amount.replace(".", ",")}"', "n/a", f"-{amount}"][rng.integers(3)]
        return kind, COLUMNS.index("amount"), text
    if kind == "ragged":
        return kind, -1, ["manual-review", "EUR", "see-note"][rng.integers(3)]
    if kind == "bad_category":
        return (
            kind,
            COLUMNS.index("merchant_category"),
            ["crypto", "Grocery", "gambling"][rng.integers(3)],
        )
    if kind == "missing_id":
        return kind, COLUMNS.index("tx_id"), ""
    if kind == "duplicate_tx_id":
        # A replayed message: the id of a clean row a little earlier in the file.
        earlier = max(0, row - int(rng.integers(1, 200)))
        while earlier in broken:
            earlier -= 1
        return kind, COLUMNS.index("tx_id"), str(earlier + first_id)  # row's id
    bad = ["not-a-date", "2026-13-01 09:00:00", "31/01/2026 14:05"][rng.integers(3)]
    return kind, COLUMNS.index("ts"), bad


def _write_csv(path: Path, table: pa.Table, defects: dict[int, tuple[str, int, str]]) -> None:
    """Write the table with Arrow, then splice in the broken rows as raw text."""
    sink = pa.BufferOutputStream()
    # No field needs quotes (no commas, quotes or newlines), so none get them.
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    body = sink.getvalue()
    view = memoryview(body)
    line_ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == ord("\n"))
    with path.open("wb") as out:
        out.write((",".join(COLUMNS) + "\n").encode())
        position = 0
        for row in sorted(defects):
            _, column, text = defects[row]
            line_start = int(line_ends[row - 1]) + 1 if row else 0
            line_end = int(line_ends[row]) + 1
            fields = bytes(view[line_start : line_end - 1]).decode().split(",")
            if column < 0:
                fields.append(text)
            else:
                fields[column] = text
            out.write(view[position:line_start])
            out.write((",".join(fields) + "\n").encode())
            position = line_end
        out.write(view[position:])


def _normalised(weights: tuple[float, ...]) -> np.ndarray:
    array = np.asarray(weights, dtype=np.float64)
    return array / array.sum()
