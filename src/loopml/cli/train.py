"""``loopml train`` and ``loopml runs ...``: train a model, and look at tracked runs."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from loopml.cli._common import (
    JsonOption,
    WorkspaceOption,
    age,
    console,
    emit,
    open_workspace,
    yaml_value,
)
from loopml.errors import SpecError

runs_app = typer.Typer(
    help="Tracked runs: trainings, their trials, your own runs.", no_args_is_help=True
)


def _pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(
                f"{what} {item!r} is not KEY=VALUE", hint=f"for example {what} max_depth=6"
            )
        result[key] = yaml_value(value, f"{what} {key}")
    return result


def train(
    name: Annotated[
        str, typer.Argument(help="The model's name; each training makes its next version.")
    ],
    data: Annotated[str, typer.Option("--data", "-d", help="Dataset version: NAME or NAME@V.")],
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="The column to predict.")
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="auto, sklearn:PKG.MODULE.CLASS, lightgbm, xgboost, torch-mlp, "
            "or python:MODULE:FUNCTION.",
        ),
    ] = "auto",
    task: Annotated[
        str | None,
        typer.Option(
            "--task", help="binary, multiclass, regression or anomaly (default: inferred)."
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Estimator parameter KEY=VALUE (repeat)."),
    ] = None,
    space: Annotated[
        str | None,
        typer.Option(
            "--space",
            help="Search space as YAML/JSON, or @FILE: '{num_leaves: [15, 255], "
            "learning_rate: [0.01, 0.3, log]}'.",
        ),
    ] = None,
    trials: Annotated[
        int | None, typer.Option("--trials", help="Trials of the search (default 20 with --space).")
    ] = None,
    parallel: Annotated[
        int | None, typer.Option("--parallel", help="Trials at once (default: the CPUs).")
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", "-e", help="Trials run on: local or ray.")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster on this machine for the trials: auto (default: start one).",
        ),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="What the search optimises (default per task).")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the split, the sampler and the model.")
    ] = 0,
    features: Annotated[
        str | None,
        typer.Option("--features", help="Comma-separated feature columns (default: all usable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-x", help="A column that is not a feature (repeat)."),
    ] = None,
    cpus: Annotated[
        float | None, typer.Option("--cpus", help="CPU threads per fit (default: all).")
    ] = None,
    gpus: Annotated[
        float, typer.Option("--gpus", help="GPUs to train on (LightGBM, XGBoost, torch-mlp).")
    ] = 0,
    gpu_fallback: Annotated[
        bool, typer.Option("--gpu-fallback", help="Train on the CPU when no GPU can be used.")
    ] = False,
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Also export to ONNX where supported.")
    ] = False,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Run tag KEY=VALUE (repeat).")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train model NAME on a dataset version and register its next version.

    Metrics are measured on the holdout (the data's test split, or a seeded 20%).
    With --space, an Optuna search runs --trials trials in parallel (each one a child
    run) and the best configuration is refit on the full training split.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    space_value = yaml_value(space, "--space") if space is not None else None
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty() or as_json,
    )
    state: dict[str, Any] = {"task": None, "best": None, "greater": True}

    def on_progress(event: str, info: Any) -> None:
        if event == "search":
            state["greater"] = info["greater_is_better"]
            state["task"] = progress.add_task(
                f"search ({info['metric']}, {info['parallel']} at once)",
                total=info["trials"],
                best="",
            )
        elif event == "trial" and state["task"] is not None:
            value = info["value"]
            if value is not None and info["state"] == "finished":
                pick = max if state["greater"] else min
                state["best"] = value if state["best"] is None else pick(state["best"], value)
            best = f"best {state['best']:.4f}" if state["best"] is not None else ""
            progress.update(state["task"], advance=1, best=best)
        elif event == "fit":
            progress.add_task(
                f"fitting {info['flavor']} on {info['rows']:,} rows", total=None, best=""
            )

    with open_workspace(workspace) as ws, progress:
        result = ws.train(
            name,
            data,
            target,
            model=model,
            task=task,
            params=_pairs(param, "--param"),
            features=[c.strip() for c in features.split(",") if c.strip()] if features else None,
            exclude=exclude or (),
            space=space_value,
            trials=trials,
            parallel=parallel,
            executor=executor,
            address=address,
            metric_name=metric,
            seed=seed,
            cpus=cpus,
            gpus=gpus,
            gpu_fallback=gpu_fallback,
            onnx=onnx,
            tags=_pairs(tag, "--tag"),
            progress=on_progress,
        )
    out = result.to_dict()

    def render(con) -> None:  # type: ignore[no-untyped-def]
        con.print(
            f"{out['model']}@{out['model_version']} ({out['flavor']}, {out['task']}) "
            f"from run {out['run_id']}"
        )
        for key, value in out["metrics"].items():
            con.print(f"  {key:<18} {value:.4f}")
        if out["search"]:
            s = out["search"]
            con.print(
                f"  search: {s['trials']} trials ({s['finished']} finished, {s['pruned']} pruned, "
                f"{s['failed']} failed); best {s['metric']} {s['best_value']:.4f} "
                f"with {s['best_params']}"
            )
        res = out["resources"]
        cost = f", cost {out['cost']:.4f}" if out["cost"] is not None else ""
        con.print(
            f"  {res.get('wall_seconds', 0):.2f}s wall, {res.get('cpu_seconds', 0):.2f} CPU-s, "
            f"peak {res.get('peak_rss_bytes', 0) / 2**20:,.0f} MiB{cost}"
        )

    emit(as_json, out, render)


def _run_dict(run: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(run)


@runs_app.command("ls")
def runs_ls(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only this model's (experiment's) runs.")
    ] = None,
    trials_of: Annotated[
        str | None, typer.Option("--trials-of", help="The trials (child runs) of this search run.")
    ] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Include trials.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Runs to show, newest first.")] = 20,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """List tracked runs, newest first."""
    with open_workspace(workspace) as ws:
        parent = ws.runs.get(trials_of).id if trials_of else None
        found = ws.runs.ls(model, parent_id=parent, include_trials=all_runs, limit=limit)
    rows = [_run_dict(r) for r in found]

    def render(out) -> None:  # type: ignore[no-untyped-def]
        from rich.table import Table

        table = Table("run", "model", "kind", "status", "started", "wall s", "metrics")
        for run in found:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in list(run.metrics.items())[:3])
            table.add_row(
                run.id[:12],
                run.experiment,
                run.kind,
                run.status,
                age(run.started_at),
                f"{run.resources.get('wall_seconds', 0):.2f}" if run.resources else "",
                shown,
            )
        out.print(table if found else "no runs yet; `loopml train` starts one")

    emit(as_json, {"runs": rows}, render)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="The run's id (or a unique prefix).")],
    history: Annotated[bool, typer.Option("--history", help="Every logged metric value.")] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a run: params, metrics, inputs, environment, code, resources and cost."""
    with open_workspace(workspace) as ws:
        run = ws.runs.get(run_id)
        trials = ws.runs.ls(parent_id=run.id, limit=10_000)
        values = ws.runs.metrics(run.id) if history else []
    data = _run_dict(run)
    data["trials"] = len(trials)
    if history:
        data["history"] = [{"key": k, "step": s, "value": v, "time": t} for k, s, v, t in values]

    def render(out) -> None:  # type: ignore[no-untyped-def]
        out.print(f"run {run.id} ({run.kind}) of {run.experiment}: {run.status}")
        out.print(f"  owner {run.owner}, started {age(run.started_at)}")
        if run.error:
            out.print(f"  error: {run.error}")
        for section in ("params", "metrics", "tags", "resources"):
            for key, value in (data[section] or {}).items():
                out.print(
                    f"  {section[:-1] if section != 'resources' else 'resource'} {key}: {value}"
                )
        for item in run.inputs:
            out.print(f"  input {item.get('dataset')}: {item.get('split')}")
        if run.cost is not None:
            out.print(f"  cost {run.cost}")
        if run.code:
            out.print(
                f"  code {run.code.get('git_sha')}{' (dirty)' if run.code.get('dirty') else ''}"
            )
        out.print(f"  python {run.environment.get('python')}, trials {len(trials)}")
        for row in data.get("history", []):
            out.print(f"  {row['key']}[{row['step']}] = {row['value']}")

    emit(as_json, data, render)


@runs_app.command("compare")
def runs_compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids (or prefixes).")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare runs side by side: params (marking the ones that differ) and metrics."""
    if len(run_ids) < 2:
        raise typer.BadParameter("give at least two runs to compare")
    with open_workspace(workspace) as ws:
        data = ws.runs.compare(run_ids)

    def render(out) -> None:  # type: ignore[no-untyped-def]
        from rich.table import Table

        table = Table("", *[r[:12] for r in data["runs"]])
        for key, values in data["params"].items():
            mark = " *" if key in data["differing_params"] else ""
            table.add_row(f"param {key}{mark}", *[_short(v) for v in values])
        for key, values in data["metrics"].items():
            table.add_row(f"metric {key}", *["" if v is None else f"{v:.4g}" for v in values])
        out.print(table)

    emit(as_json, data, render)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
