"""The fraud example as a project folder: ``loopml init --example fraud DIR``.

It writes a ``loopml.yaml`` for the whole workload, its data contract, the SQL that
builds the training set, and generated transactions, so that ``loopml run`` in the
folder works straight away.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from loopml.errors import Conflict
from loopml.examples.fraud import contract_path, generate_transactions

SPEC = """\
# The card-fraud workload: loopml run executes the sources, features, split and training;
# the train step also evaluates and declares the gates; `loopml watch` acts on deploy and monitor.
name: card-fraud
owner: risk-ml@example.com
sources:
  transactions:
    path: data/transactions.csv
    contract: contracts/transactions.yaml
    pii: {customer_email: hash, card_number: mask}
features:
  tx_history:
    rolling: {input: transactions, entity: customer_id, time: ts, value: amount,
              windows: [1h, 24h, 7d], aggs: [count, sum, mean]}
  training_set:
    sql: features/training_set.sql
    inputs: [tx_history]
split: {input: training_set, by: time, column: ts, test: 0.2}
train:
  model: lightgbm
  target: is_fraud
  search: {trials: 8, space: {num_leaves: [15, 255], learning_rate: [0.01, 0.3, log]}}
  resources: {cpus: 2, memory: 4GiB, gpus: 0}
  heavy: true
evaluate:
  sensitive: [age_band]
  gates:
    roc_auc: ">= 0.90"
    demographic_parity_difference: "<= 0.10"
    beat_champion_by: {roc_auc: 0.0}
deploy: {alias: champion, workers: 2, canary: 10%, slo: {p99_ms: 20}}
monitor:
  drift: {test: psi, threshold: 0.2, window: 10000}
  alerts: [{on: drift, severity: warning, notify: [log], escalate_after: 30m}]
  retrain: {on: [drift, decay], auto_promote: true}
schedule: {cron: "0 2 * * *", off_peak: "00:00-06:00"}
"""

TRAINING_SET_SQL = """\
-- One row per transaction: its own fields plus the customer's history before it.
SELECT
    tx_id, ts, customer_id, amount, merchant_category, country, channel, device, age_band,
    amount_count_1h, amount_sum_1h, amount_mean_1h,
    amount_count_24h, amount_sum_24h, amount_mean_24h,
    amount_count_7d, amount_sum_7d, amount_mean_7d,
    amount / NULLIF(amount_mean_7d, 0) AS amount_vs_week,
    is_fraud
FROM tx_history
ORDER BY ts, tx_id
"""


def write_fraud_project(folder: Path, *, rows: int = 50_000, seed: int = 7) -> dict[str, Any]:
    """Write the fraud example project into ``folder`` and return what was written.

    Raises:
        Conflict: ``folder`` already holds a ``loopml.yaml``.
    """
    folder = Path(folder)
    if (folder / "loopml.yaml").exists():
        raise Conflict(f"{folder / 'loopml.yaml'} already exists", hint="choose an empty folder")
    (folder / "contracts").mkdir(parents=True, exist_ok=True)
    (folder / "features").mkdir(exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    shutil.copyfile(contract_path(), folder / "contracts" / "transactions.yaml")
    (folder / "features" / "training_set.sql").write_text(TRAINING_SET_SQL)
    generated = generate_transactions(folder / "data" / "transactions.csv", rows=rows, seed=seed)
    (folder / "loopml.yaml").write_text(SPEC)
    return {
        "folder": str(folder.absolute()),
        "spec": str(folder / "loopml.yaml"),
        "data": generated,
    }
