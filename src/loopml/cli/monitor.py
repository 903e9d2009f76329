"""``loopml monitor``: drift of a model version over its prediction log or a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli._common import JsonOption, WorkspaceOption, age, emit, open_workspace


def monitor(
    model: Annotated[
        str, typer.Argument(help="The model version: NAME, NAME@ALIAS or NAME@VERSION.")
    ],
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="The latest logged rows: a count (10000) or a duration (30m, 24h, 7d) "
            "[default: the spec's, else 10000].",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", "-d", help="Check dataset version NAME[@V] instead of the prediction log."
        ),
    ] = None,
    test: Annotated[
        str | None,
        typer.Option("--test", help="psi, ks, chi2 or js [default: the spec's, else psi]."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="The test's threshold: a statistic for psi and js, a p-value for ks and "
            "chi2 [default: the spec's, else 0.2, 0.05, 0.05, 0.1].",
        ),
    ] = None,
    drift_share: Annotated[
        float | None,
        typer.Option(
            "--drift-share",
            help="The share of drifted columns that makes the verdict drifted "
            "[default: the spec's, else 0.5].",
        ),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec", help="A workload spec (loopml.yaml) whose monitor.drift sets the defaults."
        ),
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="List the model's stored checks instead.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", help="With --history: the latest N checks.")
    ] = 50,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure a model's drift against its reference profile, and store it as a time series.

    Each input column gets PSI and KS (numbers) or chi-square and Jensen-Shannon (text)
    and a drifted flag by the chosen test; the model's scores likewise. The window has
    drifted when at least --drift-share of the columns drifted, or the scores did.
    """
    from loopml.monitor.drift import DRIFT_SHARE
    from loopml.monitor.monitoring import results_of

    with open_workspace(workspace) as ws:
        if history:
            results = ws.monitor.history(model, limit=limit)
            rows = list(results_of(results))
            emit(as_json, {"model": model.partition("@")[0], "results": rows}, _history(rows))
            return
        if spec is not None:
            from loopml.pipeline.spec import load_spec

            loaded, _ = load_spec(spec)
            if loaded.monitor is not None:
                drift = loaded.monitor.drift
                test = test or drift.test
                if threshold is None and test == drift.test:
                    threshold = drift.threshold
                window = window or str(drift.window)
                if drift_share is None:
                    drift_share = getattr(drift, "share", None)
        result = ws.monitor.drift(
            model,
            window=window,
            data=data,
            test=test or "psi",
            threshold=threshold,
            drift_share=DRIFT_SHARE if drift_share is None else drift_share,
        )
        emit(as_json, result.to_dict(), _render(result.to_dict()))


def _render(data: dict[str, Any]) -> Any:
    def draw(out: Any) -> None:
        from rich.table import Table

        from loopml.monitor.drift import P_VALUE_TESTS

        rule = "p-value <" if data["test"] in P_VALUE_TESTS else ">="
        table = Table(
            title=f"{data['model']}@{data['version']} on {data['source']}: "
            f"{data['test']} {rule} {data['threshold']:g} drifts"
        )
        for heading in ("column", "rows", "missing", "psi", "p-value", "js", "drifted"):
            table.add_column(heading)
        lines = [*data["features"], *([data["prediction"]] if data["prediction"] else [])]
        for line in lines:
            stats = line["statistics"]
            p_value = stats.get("ks_p", stats.get("chi2_p"))
            table.add_row(
                line["name"],
                f"{line['rows']:,}",
                f"{line['missing']:.1%}",
                f"{stats['psi']:.4f}",
                f"{p_value:.3g}",
                f"{stats['js']:.4f}",
                f"yes ({line['test']})" if line["drifted"] else "no",
            )
        out.print(table)
        share = f"{len(data['drifted_features'])}/{len(data['features'])} columns drifted"
        predicted = data["prediction"]
        scores = ""
        if predicted is not None:
            scores = ", scores drifted" if predicted["drifted"] else ", scores stable"
        verdict = "DRIFTED" if data["drifted"] else "no drift"
        out.print(f"{verdict}: {share}{scores} over {data['rows']:,} rows")
        out.print(f"stored as {data['id']}")

    return draw


def _history(rows: list[dict[str, Any]]) -> Any:
    def draw(out: Any) -> None:
        from datetime import datetime

        from rich.table import Table

        if not rows:
            out.print("no drift check stored yet; run `loopml monitor MODEL`")
            return
        table = Table()
        for heading in ("checked", "version", "source", "rows", "test", "drifted columns"):
            table.add_column(heading)
        table.add_column("verdict")
        for row in rows:
            table.add_row(
                age(datetime.fromisoformat(row["created_at"])),
                str(row["version"]),
                row["source"],
                f"{row['rows']:,}",
                str(row["test"]),
                ", ".join(row["drifted_features"]) or "-",
                "DRIFTED" if row["flagged"] else "no drift",
            )
        out.print(table)

    return draw
