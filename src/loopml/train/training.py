"""Training: data → preprocessing → (search) → refit → holdout metrics → a model version.

Every training is a tracked run. Validation happens inside the run, so a training that
fails for any reason (an unknown estimator, a missing target, a search space that does
not parse, a training function that raises) is recorded as failed with its error, and
the error reaches the caller unchanged.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loopml.context import Context
from loopml.data.api import DataAPI
from loopml.data.versions import check_name, resolve
from loopml.errors import InputError, StoreError
from loopml.features.splits import SPLIT_COLUMN
from loopml.records import ModelVersion, Run
from loopml.registry import reference
from loopml.registry import versions as registry
from loopml.registry.predictor import as_frame
from loopml.train import gpu, inputs, preprocess, tracking, trainers
from loopml.train.metrics import DEFAULT_METRIC, metric, score_all
from loopml.train.search import SearchResult, TrialOutcome, run_search

ProgressFn = Callable[[str, Mapping[str, Any]], None]

# The library whose version a flavor's runs record.
_FLAVOR_PACKAGES = {"lightgbm": ("lightgbm",), "xgboost": ("xgboost",), "torch-mlp": ("torch",)}
# The reference profile reads at most this many training rows (a seeded sample): a
# share of 0.1 is then known to about 0.002, far below the drift monitoring flags.
_PROFILE_ROWS = 20_000
# scikit-learn estimators that split on thresholds: ordinal codes serve them as well as
# one-hot columns, at a fraction of the width.
_TREE_WORDS = ("Tree", "Forest", "Boosting", "IsolationForest")


@dataclass(frozen=True)
class TrainResult:
    """What a training made: its run, the model version, holdout metrics, the search."""

    run: Run
    version: ModelVersion
    search: Mapping[str, Any] | None = None

    @property
    def metrics(self) -> Mapping[str, float]:
        return self.version.metrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run.id,
            "model": self.version.model,
            "model_version": self.version.number,
            "version_id": self.version.id,
            "flavor": self.version.flavor,
            "task": self.version.task,
            "metrics": dict(self.version.metrics),
            "params": dict(self.version.params),
            "data": list(self.version.inputs),
            "search": dict(self.search) if self.search else None,
            "resources": dict(self.run.resources),
            "cost": self.run.cost,
        }


def train(
    ctx: Context,
    name: str,
    data: str,
    target: str | None = None,
    *,
    model: str = "auto",
    task: str | None = None,
    params: Mapping[str, Any] | None = None,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    space: Mapping[str, Any] | None = None,
    trials: int | None = None,
    parallel: int | None = None,
    executor: str = "local",
    address: str | None = None,
    metric_name: str | None = None,
    seed: int = 0,
    cpus: float | None = None,
    gpus: float = 0,
    gpu_fallback: bool = False,
    onnx: bool = False,
    tags: Mapping[str, Any] | None = None,
    code_folder: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train model ``name`` on dataset version ``data`` and register its next version.

    Args:
        ctx: the workspace context.
        name: the model's name; each successful training makes its next version.
        data: the dataset version (``tx``, ``tx@3``); its ``test`` split is the holdout.
        target: the column to predict (None for unsupervised anomaly detection).
        model: ``auto``, ``sklearn:PATH``, ``lightgbm``, ``xgboost``, ``torch-mlp`` or
            ``python:MODULE:FUNCTION`` (see ``loopml.train.trainers``).
        task: binary, multiclass, regression or anomaly; inferred from the target.
        params: the estimator's parameters.
        features: the feature columns (default: every usable column).
        exclude: columns that are not features.
        space: a search space; with it, ``trials`` trials search it (default 20).
        trials: the number of trials.
        parallel: trials at once (default: the CPUs, at most the trials).
        executor: ``local`` (processes) or ``ray``.
        address: the Ray cluster for ``ray``.
        metric_name: what a search optimises (default per task: roc_auc, log_loss, rmse).
        seed: the seed for the split, the sampler and the estimator.
        cpus: CPU threads a fit may use (default: all).
        gpus: GPUs to train on (LightGBM, XGBoost, PyTorch).
        gpu_fallback: train on the CPU when no GPU can be used, instead of failing.
        onnx: also export the model to ONNX where the converter supports it.
        tags: labels for the run.
        code_folder: the project folder whose git sha the run records; user code
            (``python:``) is imported from it too.
        progress: called with ("search", {trials}), ("trial", {...}), ("fit", {...}).

    Raises:
        InputError: bad arguments or data (the run is recorded as failed).
        UserCodeError: a custom training function raised.
        NotFound: the dataset does not exist.

    Example:
        >>> result = ws.train("fraud", data="tx_split", target="is_fraud",
        ...                   model="lightgbm", space={"num_leaves": [15, 255]}, trials=20)
        >>> result.version.ref, result.metrics["roc_auc"]
        ('fraud@1', 0.97)
    """
    check_name(name, "model")
    trainers.flavor_of(model)
    folder = Path(code_folder or Path.cwd()).absolute()
    settings = {
        "data": data,
        "target": target,
        "model": model,
        "task": task,
        "params": dict(params or {}),
        "features": list(features) if features is not None else None,
        "exclude": list(exclude),
        "space": dict(space) if space else None,
        "trials": trials,
        "metric": metric_name,
        "seed": seed,
        "gpus": gpus,
        "executor": executor,
    }
    run = tracking.start(
        ctx,
        name,
        kind="train",
        params=settings,
        tags=tags,
        code_folder=folder,
        packages=_FLAVOR_PACKAGES.get(trainers.flavor_of(model), ()),
    )
    scratch = ctx.settings.root / "tmp" / f"search-{run.id}"
    try:
        version, search = _train(
            ctx,
            run,
            name,
            settings,
            parallel,
            address,
            cpus,
            gpu_fallback,
            onnx,
            folder,
            scratch,
            progress,
        )
    except BaseException as exc:
        run.end("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    run.set_tags({"model_version": version.ref})
    run.artifacts.update({k: dict(v) for k, v in version.artifacts.items()})
    ended = run.end("finished")
    return TrainResult(ended, version, search)


def _train(
    ctx: Context,
    run: tracking.ActiveRun,
    name: str,
    settings: dict[str, Any],
    parallel: int | None,
    address: str | None,
    cpus: float | None,
    gpu_fallback: bool,
    onnx: bool,
    folder: Path,
    scratch: Path,
    progress: ProgressFn | None,
) -> tuple[ModelVersion, dict[str, Any] | None]:
    notify = progress or (lambda event, info: None)
    flavor = trainers.flavor_of(settings["model"])
    with ctx.read() as conn:
        version = resolve(conn, settings["data"])
    table = DataAPI(ctx).read(version)
    data = inputs.load(version, table, settings["target"], settings["task"], settings["seed"])
    run.add_input(
        version.ref,
        id=version.id,
        split=data.split,
        rows=len(data.table),
        rows_without_target=data.rows_without_target,
    )
    tree = (
        flavor in trainers.TREE_FLAVORS
        or (flavor == "sklearn" and any(w in settings["model"] for w in _TREE_WORDS))
        or (flavor == "sklearn" and settings["model"] == "auto")
    )
    excluded = [c for c in (settings["target"], SPLIT_COLUMN, *settings["exclude"]) if c]
    plan = preprocess.plan_features(
        version.schema,
        version.profile,
        len(data.table),
        exclude=excluded,
        include=settings["features"],
        tree=tree,
    )
    device, gpu_note = gpu.device_for(settings["gpus"], flavor, fallback=gpu_fallback)
    if gpu_note:
        run.set_tag("gpu_fallback", gpu_note)
    threads = max(1, int(cpus or os.cpu_count() or 1))
    spec = trainers.TrainerSpec(
        model=settings["model"],
        task=data.task,
        params=settings["params"],
        seed=settings["seed"],
        n_classes=len(data.classes),
        device=device,
        threads=threads,
        code_path=(str(folder),),
    )
    trainers.check(spec)
    search_metric = settings["metric"] or DEFAULT_METRIC[data.task]
    metric(search_metric, data.task)
    space = settings["space"]
    if space is not None and data.task == "anomaly" and settings["target"] is None:
        raise InputError("a search needs labels to score anomaly detectors", hint="pass --target")
    run.log_params({"task": data.task, "features": plan.to_dict(), "device": device})

    fit_index, test_index = data.fit_index, data.test_index
    transformer, x_fit, x_test = _preprocess(
        data, plan, scale=not tree, impute=not trainers.handles_missing(spec)
    )

    search: dict[str, Any] | None = None
    if space is not None:
        trials = 20 if settings["trials"] is None else int(settings["trials"])
        workers = max(1, min(parallel or os.cpu_count() or 1, trials))
        trial_spec = trainers.TrainerSpec(
            **{**spec.__dict__, "threads": max(1, threads // workers)}
        )
        search_train, search_valid = inputs.search_rows(data, settings["seed"])
        notify(
            "search",
            {
                "trials": trials,
                "parallel": workers,
                "metric": search_metric,
                "greater_is_better": metric(search_metric, data.task).greater_is_better,
            },
        )

        def on_trial(outcome: TrialOutcome) -> None:
            _record_trial(ctx, run, name, outcome, search_metric)
            notify(
                "trial", {"number": outcome.number, "state": outcome.state, "value": outcome.value}
            )

        result: SearchResult = run_search(
            trial_spec,
            {
                "x": x_fit[search_train[fit_index]],
                "y": data.y[search_train],
                "x_valid": x_fit[search_valid[fit_index]],
                "y_valid": data.y[search_valid],
            },
            space,
            trials=trials,
            metric_name=search_metric,
            folder=scratch,
            parallel=workers,
            executor=settings["executor"],
            address=address,
            seed=settings["seed"],
            on_trial=on_trial,
        )
        spec = spec.with_params(result.best_params)
        states = [t.state for t in result.trials]
        search = {
            "metric": search_metric,
            "best_params": result.best_params,
            "best_value": result.best_value,
            "trials": len(result.trials),
            "finished": states.count("finished"),
            "pruned": states.count("pruned"),
            "failed": states.count("failed"),
        }
        run.log_params({"best_params": result.best_params})
        run.log_metric(f"search_best_{search_metric}", result.best_value)

    notify("fit", {"rows": len(fit_index), "flavor": flavor})
    started = time.perf_counter()
    y_fit = None if data.y is None else data.y[fit_index]
    try:
        fitted = trainers.fit(spec, x_fit, y_fit)
    except InputError as exc:
        if device != "cuda" or not gpu_fallback:
            raise
        # The GPU was visible but unusable (a LightGBM build without GPU support, say).
        run.set_tag("gpu_fallback", f"the GPU fit failed ({exc.message}); trained on the CPU")
        device = "cpu"
        spec = trainers.TrainerSpec(**{**spec.__dict__, "device": "cpu"})
        fitted = trainers.fit(spec, x_fit, y_fit)
    if device == "cuda":
        run.meter.add_gpu(time.perf_counter() - started)
    # Scoring the holdout gets the cores to itself: beside Python threads, the native
    # threads of a tree ensemble's predict spin and wait, and it takes twice as long.
    holdout_scores = trainers.scores(spec, fitted, x_test)
    # Serialising the model (Python, mostly) and profiling the inputs overlap the metrics.
    with ThreadPoolExecutor(2) as pool:
        saving = pool.submit(_artifacts, ctx, spec, fitted, transformer, data, plan)
        profiling = pool.submit(_input_profile, data, plan)
        labelled = data.y is not None
        y_test = data.y[test_index] if labelled else holdout_scores * 0
        metrics = score_all(data.task, y_test, holdout_scores, len(data.classes), labelled=labelled)
        run.log_metrics(metrics)
        artifacts, meta = saving.result()
        inputs_profile = profiling.result()
    # What monitoring compares live traffic with: the training inputs, and the scores
    # on the holdout (rows the model never saw, as live rows are).
    meta["reference_profile"] = {
        **inputs_profile,
        "prediction": reference.prediction_profile(holdout_scores, data.task),
    }
    if onnx:
        from loopml.train import onnx_export

        exported, note = onnx_export.export(
            spec,
            fitted,
            transformer,
            plan,
            as_frame(
                _few_rows(data.table, test_index[:256]),
                plan.columns,
                [*plan.one_hot, *plan.ordinal],
            ),
        )
        if exported is not None:
            artifacts.append(registry.store_artifact(ctx, "onnx", exported, "onnx"))
        meta["onnx"] = note
    signature = {
        "inputs": [
            {"name": c, "type": str(data.table.schema.field(c).type), "nullable": True}
            for c in plan.columns
        ],
        "output": _output_signature(data.task, data.classes),
    }
    estimator_params = _estimator_params(spec, fitted)
    registered = registry.register(
        ctx,
        name,
        flavor=flavor,
        task=data.task,
        run_id=run.id,
        artifacts=artifacts,
        signature=signature,
        metrics=metrics,
        params=estimator_params,
        inputs=run.inputs,
        meta=meta,
    )
    return registered, search


def _few_rows(table: Any, rows: Any) -> Any:
    """``table.take(rows)`` for a few rows lying close together (a sample's first rows).

    Arrow's ``take`` joins each column's pieces (a table read from several row groups)
    before it picks rows: 5 ms for a thousand rows of a 200k-row table in two pieces.
    Taking from the slice the rows lie in joins only that slice, often none at all.
    """
    import numpy as np

    rows = np.asarray(rows)
    if len(rows) == 0:
        return table.slice(0, 0)
    low = int(rows.min())
    return table.slice(low, int(rows.max()) + 1 - low).take(rows - low)


def _preprocess(
    data: inputs.TrainingData, plan: preprocess.FeaturePlan, *, scale: bool, impute: bool
) -> tuple[Any, Any, Any]:
    """The fitted ColumnTransformer, and the matrices it makes of the training split's
    rows and of the holdout's (the table holds them in that order)."""
    text = [*plan.one_hot, *plan.ordinal]
    fit_index, test_index = data.fit_index, data.test_index
    categories = preprocess.categories_of(data.table, text, fit_index)
    transformer = preprocess.build(plan, scale=scale, impute=impute, categories=categories)
    if not preprocess.stateless_but_categories(plan, scale=scale, impute=impute):
        fit_frame = as_frame(data.table.take(fit_index), plan.columns, text)
        transformer.fit(fit_frame)
        return (
            transformer,
            transformer.transform(fit_frame),
            transformer.transform(as_frame(data.table.take(test_index), plan.columns, text)),
        )
    # Nothing to learn but the categories, which it is given: a few rows fit the very
    # same transformer, and Arrow encodes every row. The transformer, which serving
    # runs, must agree with that encoding on sample rows of each split.
    transformer.fit(as_frame(_few_rows(data.table, fit_index[:1000]), plan.columns, text))
    matrices = preprocess.encode(data.table, plan, categories, [fit_index, test_index])
    for matrix, rows in zip(matrices, (fit_index, test_index), strict=True):
        sample = as_frame(_few_rows(data.table, rows[:500]), plan.columns, text)
        if not np.array_equal(matrix[:500], transformer.transform(sample), equal_nan=True):
            raise StoreError(
                "the Arrow encoding of the features disagrees with the saved preprocessing",
                hint="this is a loopml bug; please report it with the data's schema",
            )
    return transformer, matrices[0], matrices[1]


def _input_profile(data: inputs.TrainingData, plan: preprocess.FeaturePlan) -> dict[str, Any]:
    """The reference profile of the inputs, from (a seeded sample of) the training split."""
    import pyarrow as pa

    rows = data.fit_index
    if len(rows) > _PROFILE_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(rows, _PROFILE_ROWS, replace=False))
    sample = data.table.take(rows)
    columns: dict[str, Any] = {
        c: sample[c].cast(pa.float64()).to_numpy(zero_copy_only=False) for c in plan.numeric
    }
    columns.update({c: sample[c] for c in (*plan.one_hot, *plan.ordinal)})
    features = reference.features_profile(columns, plan.numeric, [*plan.one_hot, *plan.ordinal])
    return {"bins": reference.BINS, "features": features, "rows": len(rows)}


def _record_trial(
    ctx: Context, run: tracking.ActiveRun, name: str, outcome: TrialOutcome, metric_name: str
) -> None:
    ended = outcome.ended_at.timestamp()
    points = [(f"valid_{metric_name}", step, value, ended) for step, value in outcome.intermediate]
    # A pruned trial's value is only its last checkpoint's; it has no final score.
    if outcome.value is not None and outcome.state == "finished":
        points.append((metric_name, 0, outcome.value, ended))
    tracking.record_finished(
        ctx,
        name,
        kind="trial",
        parent_id=run.id,
        status=outcome.state,
        started_at=outcome.started_at,
        ended_at=outcome.ended_at,
        params=outcome.params,
        metrics=points,
        resources=outcome.resources,
        tags={"trial": str(outcome.number)},
        error=outcome.error,
    )


def _artifacts(
    ctx: Context,
    spec: trainers.TrainerSpec,
    fitted: Any,
    transformer: Any,
    data: inputs.TrainingData,
    plan: preprocess.FeaturePlan,
) -> tuple[list[registry.Artifact], dict[str, Any]]:
    meta: dict[str, Any] = {
        "classes": data.classes,
        "features": plan.to_dict(),
        "model": spec.model,
    }
    flavor = spec.flavor
    if flavor in {"sklearn", "custom"}:
        from sklearn.pipeline import Pipeline

        pipeline = Pipeline([("preprocess", transformer), ("model", fitted)])
        if flavor == "sklearn":
            meta["estimator"] = trainers.estimator_path(spec)
        return [registry.store_artifact(ctx, "model", pipeline, "skops")], meta
    stored = [registry.store_artifact(ctx, "preprocess", transformer, "skops")]
    if flavor == "torch-mlp":
        from loopml.registry import torch_mlp

        meta["arch"] = fitted.arch
        stored.append(
            registry.store_artifact(ctx, "model", torch_mlp.state_arrays(fitted.module), "npz")
        )
    else:
        stored.append(registry.store_artifact(ctx, "model", fitted, flavor))
    return stored, meta


def _output_signature(task: str, classes: list[Any]) -> dict[str, Any]:
    if task == "binary":
        return {"task": task, "classes": classes, "score": f"P({_positive_class(classes)})"}
    if task == "multiclass":
        return {"task": task, "classes": classes, "score": "class probabilities"}
    if task == "anomaly":
        return {"task": task, "score": "anomaly score (higher is stranger); flag 1 = anomaly"}
    return {"task": task, "score": "predicted value", "type": "double"}


def _positive_class(classes: list[Any]) -> str:
    """The positive class of a binary model: the second in sorted order."""
    return str(classes[1]) if len(classes) > 1 else "1"


def _estimator_params(spec: trainers.TrainerSpec, fitted: Any) -> dict[str, Any]:
    if spec.flavor in {"sklearn", "custom"} and hasattr(fitted, "get_params"):
        plain = {}
        for key, value in fitted.get_params(deep=False).items():
            if value is None or isinstance(value, bool | int | float | str):
                plain[key] = value
            else:
                plain[key] = repr(value)
        return plain
    return dict(spec.params)
