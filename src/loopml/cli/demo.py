"""``loopml demo``: the fraud example end to end, on an embedded workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOption, emit, invocation, open_workspace


def demo(
    rows: Annotated[int, typer.Option("--rows", help="Transactions to generate.")] = 200_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the generated data.")] = 7,
    trials: Annotated[
        int, typer.Option("--trials", help="Trials of the hyper-parameter search (0: none).")
    ] = 6,
    workspace: Annotated[
        str | None,
        typer.Option("--workspace", "-w", help="Workspace to create [default: ./demo-workspace]."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Generate card transactions, ingest them with a contract and PII policies, split them
    by time, train a fraud model with a hyper-parameter search, and report."""
    from loopml.examples import fraud

    # Not LOOPML_WORKSPACE: the demo writes generated data, never into a real workspace
    # by accident.
    location = workspace or invocation.workspace_flag or "demo-workspace"
    with open_workspace(location) as ws:
        data_dir = Path(ws.settings.root) / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        csv_path = data_dir / "transactions.csv"
        generated = fraud.generate_transactions(csv_path, rows=rows, seed=seed)
        result = ws.ingest("transactions", str(csv_path), contract=fraud.contract_path())
        ws.features.split("transactions_split", "transactions", by="time", column="ts", test=0.2)
        trained = ws.train(
            "fraud",
            "transactions_split",
            "is_fraud",
            exclude=["customer_id"],
            space={"max_depth": [3, 10], "learning_rate": [0.03, 0.3, "log"]} if trials else None,
            trials=trials or None,
        )
        fsck = ws.fsck()
        chain = ws.audit.verify()
        version = result.version
    summary = {
        "workspace": str(Path(location).absolute()),
        "generated": generated,
        "ingest": result.to_dict(),
        "fraud_rate": (version.profile.get("is_fraud", {}) or {}).get("mean"),
        "train": trained.to_dict(),
        "fsck_ok": fsck.ok,
        "audit_ok": chain.ok,
    }

    def render(out) -> None:  # type: ignore[no-untyped-def]
        ing = summary["ingest"]
        out.print("loopml demo: card-fraud transactions")
        out.print(
            f"1. generated {generated['rows']:,} transactions with "
            f"{sum(generated['dirty'].values())} dirty rows → {csv_path}"
        )
        out.print(
            f"2. ingested {ing['ref']} ({ing['id'][:12]}) in {ing['seconds']:.2f}s: "
            f"{ing['rows_accepted']:,} accepted + {ing['rows_quarantined']:,} quarantined "
            f"= {ing['rows_read']:,} read"
        )
        for reason, count in sorted(ing["quarantine_reasons"].items(), key=lambda kv: -kv[1]):
            out.print(f"     quarantined {count:>5}  {reason}")
        out.print(
            "3. PII policies applied: "
            + ", ".join(f"{c}={p}" for c, p in ing["pii_applied"].items())
        )
        if ing["pii_warnings"]:
            out.print("   likely PII without a policy: " + ", ".join(ing["pii_warnings"]))
        rate = summary["fraud_rate"]
        out.print(f"4. fraud rate in the accepted rows: {rate:.2%}" if rate is not None else "")
        tr = summary["train"]
        search = tr["search"]
        searched = f" after {search['trials']} trials ({search['pruned']} pruned)" if search else ""
        out.print(
            f"5. trained {tr['model']}@{tr['model_version']} ({tr['flavor']}){searched} "
            f"in {tr['resources']['wall_seconds']:.1f}s: holdout roc_auc "
            f"{tr['metrics']['roc_auc']:.3f}, "
            f"average_precision {tr['metrics']['average_precision']:.3f}"
        )
        out.print(
            f"6. fsck: {'ok' if fsck.ok else 'FAILED'}; audit chain: "
            f"{'intact' if chain.ok else 'BROKEN'} ({chain.checked} events)"
        )
        out.print(
            f"next: loopml -w {location} data show transactions; loopml -w {location} runs ls"
        )

    emit(as_json, summary, render)
    if not (fsck.ok and chain.ok):
        raise typer.Exit(4)
