"""The whole cycle on the fraud example, closed: what ``loopml demo`` runs.

1. Write a fraud project (spec, contract, SQL, generated transactions) and run its
   pipeline: ingest (contract, PII), features, a time split, LightGBM with a
   hyper-parameter search, evaluation with fairness across ``age_band``, the gates.
2. Promote version 1 to ``champion`` through the gates.
3. Serve ``fraud@champion`` on localhost (``loopml serve``, a real process) and send
   traffic from several keep-alive clients, without pause until the end.
4. Inject drift: the world changes (larger amounts, fraud moving to other merchants,
   channels and hours). The drifted transactions are scored live, and land as the
   next file of the source.
5. One pass of the closed loop: drift over the live window fires the drift alert; the
   retrain policy retrains on the latest data; the new version passes the gates and
   beats the champion on the same holdout; it is promoted, and the server hot-swaps.
6. The traffic stops once the new version answers; the summary counts the failed
   requests, and an HTML report is written.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml.errors import Conflict, StoreError
from loopml.examples.fraud import contract_path, generate_transactions
from loopml.features.splits import SPLIT_COLUMN
from loopml.workspace import Workspace

SPEC = """\
# The card-fraud workload, closed loop: what `loopml demo` runs.
name: card-fraud
owner: risk-ml@example.com
sources:
  transactions:
    path: data/transactions*.csv
    contract: contracts/transactions.yaml
    pii: {{customer_email: hash, card_number: mask}}
features:
  training_set:
    sql: features/training_set.sql
    inputs: [transactions]
split: {{input: training_set, by: time, column: ts, test: 0.2}}
train:
  name: fraud
  model: lightgbm
  target: is_fraud
  exclude: [tx_id, customer_id]
  search: {{trials: {trials}, space: {{num_leaves: [15, 63], learning_rate: [0.03, 0.3, log]}}}}
evaluate:
  sensitive: [age_band]
  gates:
    roc_auc: ">= 0.70"
    demographic_parity_difference: "<= 0.10"
    beat_champion_by: {{roc_auc: 0.0}}
deploy: {{alias: champion}}
monitor:
  # PSI 0.1 is "moderate" drift; a quarter of the inputs drifting calls it.
  drift: {{test: psi, threshold: 0.1, window: {window}, share: 0.25}}
  alerts: [{{on: drift, severity: warning, notify: [log], escalate_after: 30m}}]
  retrain: {{on: [drift, decay], auto_promote: true}}
"""

# Row-level features: what a caller can compute for one transaction at checkout.
FEATURES_SQL = """\
SELECT
    tx_id, ts, customer_id, amount, ln(1 + amount) AS amount_log,
    merchant_category, country, channel, device, age_band,
    hour(ts) AS hour_of_day, dayofweek(ts) AS day_of_week,
    is_fraud
FROM {source}
ORDER BY ts, tx_id
"""

CLIENTS = 4
ROWS_PER_REQUEST = 8


@dataclass
class Traffic:
    """Clients posting rows to the server until told to stop, counting every outcome."""

    url: str
    records: list[dict[str, Any]]
    sent: int = 0
    failed: int = 0
    versions: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _cursor: int = 0

    def switch(self, records: list[dict[str, Any]]) -> None:
        """Send these rows from now on."""
        with self._lock:
            self.records, self._cursor = records, 0

    def _next(self) -> list[dict[str, Any]]:
        with self._lock:
            start = self._cursor
            self._cursor = (start + ROWS_PER_REQUEST) % max(len(self.records), 1)
            return self.records[start : start + ROWS_PER_REQUEST] or self.records[:1]

    def _client(self) -> None:
        import httpx

        with httpx.Client(timeout=30.0) as client:
            while not self._stop.is_set():
                try:
                    reply = client.post(self.url, json={"records": self._next()})
                    ok = reply.status_code == 200
                    version = reply.json().get("version") if ok else None
                    problem = None if ok else f"HTTP {reply.status_code}"
                except Exception as exc:  # any failure counts, never a silent thread death
                    ok, version, problem = False, None, type(exc).__name__
                with self._lock:
                    self.sent += 1
                    if ok:
                        self.versions[int(version)] += 1
                    else:
                        self.failed += 1
                        self.errors[str(problem)] += 1

    def start(self, clients: int = CLIENTS) -> None:
        for index in range(clients):
            thread = threading.Thread(target=self._client, name=f"demo-client-{index}")
            thread.start()
            self._threads.append(thread)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Until ``count`` more requests were answered (or the timeout)."""
        target = self.sent + count
        deadline = time.monotonic() + timeout
        while self.sent < target and time.monotonic() < deadline:
            time.sleep(0.05)

    def wait_for_version(self, number: int, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.versions.get(number, 0) >= 20:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def write_project(folder: Path, *, rows: int, seed: int, trials: int, window: int) -> None:
    """The demo's project folder: spec, contract, SQL, and the first transactions."""
    (folder / "contracts").mkdir(parents=True, exist_ok=True)
    (folder / "features").mkdir(exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    shutil.copyfile(contract_path(), folder / "contracts" / "transactions.yaml")
    (folder / "features" / "training_set.sql").write_text(
        FEATURES_SQL.format(source="transactions")
    )
    (folder / "loopml.yaml").write_text(SPEC.format(trials=trials, window=window))
    generate_transactions(
        folder / "data" / "transactions_1.csv", rows=rows, seed=seed, start="2026-01-01"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_server(ws: Workspace, log_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``loopml serve fraud@champion`` as its own process; waits until it is ready."""
    import httpx

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "loopml",
        "-w",
        str(ws.settings.root),
        "serve",
        "fraud@champion",
        "--port",
        str(port),
        "--poll-interval",
        "0.5",
        "--log-level",
        "warning",
    ]
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StoreError(f"the model server exited at start; see {log_file}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise StoreError(f"the model server did not become ready in 120 s; see {log_file}")


def _records(ws: Workspace, ref: str, columns: list[str], limit: int) -> list[dict[str, Any]]:
    import pyarrow.compute as pc

    table = ws.data.read(ref)
    if SPLIT_COLUMN in table.schema.names:
        table = table.filter(pc.equal(table[SPLIT_COLUMN], "test"))
    return list(table.select(columns).slice(0, limit).to_pylist())


def run_demo(
    ws: Workspace,
    *,
    rows: int = 40_000,
    drift_rows: int = 20_000,
    seed: int = 7,
    trials: int = 4,
    window: int = 2_000,
    report: Path | None = None,
    step: Callable[[str], None] = lambda text: None,
) -> dict[str, Any]:
    """Run the closed loop in ``ws`` (see the module docstring); return the summary."""
    from loopml.pipeline.loop import tick
    from loopml.pipeline.spec import load_spec

    started = time.perf_counter()
    root = Path(ws.settings.root)
    project = root / "project"
    if project.exists():
        raise Conflict(
            f"{root} already holds a demo run",
            hint="run the demo in a new workspace, or delete this one first",
        )
    write_project(project, rows=rows, seed=seed, trials=trials, window=window)
    summary: dict[str, Any] = {"workspace": str(root), "project": str(project), "steps": []}

    def note(text: str, **facts: Any) -> None:
        summary["steps"].append({"step": text, **facts})
        step(text)

    first = ws.pipelines.run(project / "loopml.yaml")
    if first.status != "succeeded":
        failed = {s.name: s.error for s in first.steps if s.error}
        raise StoreError(f"the demo's pipeline failed: {failed}")
    ingested = ws.data.get("transactions")
    version = ws.models.get("fraud")
    (evaluation,) = ws.evaluations.ls("fraud", version.number)[:1]
    values = evaluation.summary["values"]
    note(
        f"pipeline: ingested {ingested.ref} ({ingested.row_count:,} rows accepted), built "
        f"features, split by time, trained {version.ref} ({version.flavor}, {trials} trials): "
        f"holdout roc_auc {values['roc_auc']:.3f}; fairness across age_band: demographic "
        f"parity difference {values.get('demographic_parity_difference')}",
        model=version.ref,
        roc_auc=values["roc_auc"],
    )
    promoted = ws.promote("fraud", version.number)
    passed = sum(g.passed for g in promoted.gates)
    note(
        f"promoted {version.ref} to champion: {passed}/{len(promoted.gates)} gates passed",
        gates=[g.to_dict() for g in promoted.gates],
    )

    columns = [c["name"] for c in version.signature["inputs"]]
    normal = _records(ws, "training_set_split", columns, 4_000)
    process, base = _start_server(ws, root / "server.log")
    traffic = Traffic(f"{base}/predict", normal)
    try:
        traffic.start()
        traffic.wait_for(200)
        note(
            f"serving fraud@champion at {base}; {CLIENTS} keep-alive clients send traffic",
            url=base,
        )

        # The world drifts: later transactions, larger amounts, fraud elsewhere.
        live_csv = root / "live" / "transactions_drift.csv"
        generate_transactions(
            live_csv,
            rows=drift_rows,
            seed=seed + 1,
            start="2026-03-02",
            drift=True,
            first_id=rows + 1,
        )
        ws.ingest("live_transactions", str(live_csv), contract=str(contract_path()))
        ws.features.sql(
            "live_features", FEATURES_SQL.format(source="live_transactions"), ["live_transactions"]
        )
        drifted = _records(ws, "live_features", columns, drift_rows)
        traffic.switch(drifted)
        traffic.wait_for(2 * window // ROWS_PER_REQUEST + 50)
        shutil.copyfile(live_csv, project / "data" / "transactions_2.csv")
        note(
            f"drift injected: {drift_rows:,} later transactions with larger amounts and a "
            "changed fraud pattern are scored live, and land in the source data"
        )
        time.sleep(4.0)  # the prediction log flushes every 2 s; let the newest rows land

        spec, spec_root = load_spec(project / "loopml.yaml")
        loop = tick(ws.ctx, spec, spec_root, window=window)
        drift = loop.drift
        drifted_columns = drift.statistics.get("drifted_features", []) if drift else []
        note(
            f"monitor: drift {'FLAGGED' if drift and drift.flagged else 'not flagged'} over "
            f"{drift.rows if drift else 0} live rows (psi; drifted: "
            f"{', '.join(map(str, drifted_columns)) or 'none'}); "
            f"alerts fired: {len(loop.alerts)}",
            drifted=drifted_columns,
            alerts=[a.to_dict() for a in loop.alerts],
        )
        retrained = loop.retrain
        outcome = retrained.to_dict() if retrained else None
        candidate = (outcome or {}).get("details", {}).get("candidate")
        note(
            f"retrain: {outcome['status'] if outcome else 'not started'}"
            + (f" ({candidate})" if candidate else "")
            + "".join(
                f"; {g['message']}" for g in (outcome or {}).get("details", {}).get("gates", [])
            ),
            retrain=outcome,
        )
        swapped = False
        if outcome and outcome["status"] == "promoted":
            number = int(str(candidate).split("@")[1])
            swapped = traffic.wait_for_version(number)
            note(
                f"hot swap: the server answers with {candidate} "
                f"({'swapped' if swapped else 'NOT swapped'} with no restart)"
            )
    finally:
        traffic.stop()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    summary.update(
        requests=traffic.sent,
        failed_requests=traffic.failed,
        errors=dict(traffic.errors),
        versions_served={str(k): v for k, v in sorted(traffic.versions.items())},
        promoted=bool(outcome and outcome["status"] == "promoted"),
        swapped=swapped,
    )
    champion = ws.models.get("fraud@champion")
    newest = ws.evaluations.ls("fraud", champion.number)
    if report is not None and newest:
        gates = ws.evaluations.check(champion.ref)
        summary["report"] = str(ws.evaluations.write_report(newest[0], report, gates))
    fsck, chain = ws.fsck(), ws.audit.verify()
    summary.update(
        champion=champion.ref,
        fsck_ok=fsck.ok,
        audit_ok=chain.ok,
        audit_events=chain.checked,
        seconds=round(time.perf_counter() - started, 1),
    )
    return summary
