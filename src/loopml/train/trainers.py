"""Trainers: fit a model of one flavor on a preprocessed matrix, score it, and save it.

==============================  ===========  ============================================
``model``                       flavor       what trains
==============================  ===========  ============================================
``auto`` (the default)          sklearn      HistGradientBoosting{Classifier,Regressor},
                                             IsolationForest for anomaly detection
``sklearn:PKG.MODULE.CLASS``    sklearn      any scikit-learn estimator or Pipeline class
``lightgbm``                    lightgbm     ``lightgbm.train`` (extra ``loopml[lightgbm]``)
``xgboost``                     xgboost      ``xgboost.train`` (extra ``loopml[xgboost]``)
``torch-mlp``                   torch-mlp    a tabular MLP (extra ``loopml[torch]``)
``python:MODULE:FUNCTION``      custom       your function; it returns a fitted estimator
==============================  ===========  ============================================

Every flavor fits on the matrix the preprocessing ColumnTransformer makes, with labels
encoded as 0..k-1. A search passes ``checkpoint(step, valid_scores)``, which a trainer
calls as it goes (boosting rounds, epochs, warm-started stages) so a poor trial is
pruned early; it raises to stop the fit.

A custom function is called as ``fn(X, y, *, task, params, seed, X_valid, y_valid)``
and returns a fitted scikit-learn-compatible estimator: ``predict_proba`` for
classification, ``predict`` for regression, ``decision_function`` for anomalies.
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from loopml.errors import InputError, LoopMLError, UserCodeError
from loopml.features.boundary import importing, load_function, user_code

Checkpoint = Callable[[int, Any], None]

FLAVORS = ("sklearn", "lightgbm", "xgboost", "torch-mlp", "custom")
TREE_FLAVORS = ("lightgbm", "xgboost")
# Stages of a warm-started scikit-learn fit, and checkpoints of a boosted one.
_STAGES = 4
_AUTO = {
    "binary": "sklearn.ensemble.HistGradientBoostingClassifier",
    "multiclass": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
    "anomaly": "sklearn.ensemble.IsolationForest",
}


@dataclass(frozen=True)
class TrainerSpec:
    """What to train, as plain data (it travels to trial workers).

    Attributes:
        model: ``auto``, ``sklearn:PATH``, ``lightgbm``, ``xgboost``, ``torch-mlp`` or
            ``python:MODULE:FUNCTION``.
        task: binary, multiclass, regression or anomaly.
        params: the estimator's parameters.
        seed: the random seed.
        n_classes: the number of classes (classification), else 0.
        device: ``cpu`` or ``cuda``.
        threads: the CPU threads one fit may use.
        code_path: folders to import user code from.
    """

    model: str
    task: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    n_classes: int = 0
    device: str = "cpu"
    threads: int = 1
    code_path: tuple[str, ...] = ()

    @property
    def flavor(self) -> str:
        return flavor_of(self.model)

    def with_params(self, params: dict[str, Any]) -> TrainerSpec:
        return TrainerSpec(**{**asdict(self), "params": {**self.params, **params}})


def flavor_of(model: str) -> str:
    """The flavor of a ``model`` string.

    Raises:
        InputError: the string names no trainer.
    """
    if model == "auto" or model.startswith("sklearn:"):
        return "sklearn"
    if model.startswith("python:"):
        return "custom"
    if model in {"lightgbm", "xgboost", "torch-mlp"}:
        return model
    raise InputError(
        f"unknown model {model!r}",
        hint="use auto, sklearn:PKG.MODULE.CLASS, lightgbm, xgboost, torch-mlp or "
        "python:MODULE:FUNCTION",
    )


def estimator_path(spec: TrainerSpec) -> str:
    """The import path of a scikit-learn flavor's estimator class."""
    return _AUTO[spec.task] if spec.model == "auto" else spec.model.removeprefix("sklearn:")


def handles_missing(spec: TrainerSpec) -> bool:
    """Whether the model splits on missing values itself (no imputation needed)."""
    if spec.flavor in TREE_FLAVORS:
        return True
    return spec.flavor == "sklearn" and "HistGradientBoosting" in estimator_path(spec)


def check(spec: TrainerSpec) -> None:
    """Fail early on what would fail later: a missing extra, an unknown class, a bad task.

    Raises:
        InputError: the trainer cannot run this spec.
    """
    flavor = spec.flavor
    if flavor == "sklearn":
        estimator = _estimator_class(estimator_path(spec))
        _check_estimator_params(estimator, spec.params, spec.model)
    elif flavor in {"lightgbm", "xgboost", "torch-mlp"}:
        if spec.task == "anomaly":
            raise InputError(
                f"{spec.model} does not do anomaly detection",
                hint="use auto or sklearn:sklearn.ensemble.IsolationForest",
            )
        module = "torch" if flavor == "torch-mlp" else flavor
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise InputError(
                f"--model {spec.model} needs {module}",
                hint=f"pip install 'loopml[{module}]'",
            ) from exc
    elif flavor == "custom":
        _custom_function(spec)


def fit(
    spec: TrainerSpec,
    x: Any,
    y: Any,
    x_valid: Any = None,
    y_valid: Any = None,
    checkpoint: Checkpoint | None = None,
) -> Any:
    """Fit ``spec``'s model on matrix ``x`` and encoded labels ``y``.

    Raises:
        InputError: bad parameters for the estimator.
        UserCodeError: a custom function raised or returned something unusable.
    """
    _add_code_path(spec)
    if spec.threads >= (os.cpu_count() or 1):
        # The pools' default already: no need to find them (16 ms on a first call).
        return _FIT[spec.flavor](spec, x, y, x_valid, y_valid, checkpoint)
    from threadpoolctl import threadpool_limits

    # OpenMP and BLAS pools default to every core; trials running side by side would
    # oversubscribe the machine many times over (LightGBM slows down 20x so).
    with threadpool_limits(limits=spec.threads):
        return _FIT[spec.flavor](spec, x, y, x_valid, y_valid, checkpoint)


def scores(spec: TrainerSpec, model: Any, x: Any) -> Any:
    """The fitted model's scores on matrix ``x`` (see ``loopml.registry.predictor``)."""
    flavor = spec.flavor
    if flavor == "lightgbm":
        return model.predict(x)
    if flavor == "xgboost":
        import xgboost

        return model.predict(xgboost.DMatrix(x))
    if flavor == "torch-mlp":
        from loopml.train import mlp

        return mlp.scores(model, x)
    return sklearn_scores(model, spec.task, x)


def sklearn_scores(model: Any, task: str, x: Any) -> Any:
    """Scores of a scikit-learn estimator for ``task``."""
    if task == "binary":
        return model.predict_proba(x)[:, 1]
    if task == "multiclass":
        return model.predict_proba(x)
    if task == "anomaly":
        return -model.decision_function(x)
    return model.predict(x)


# ---------------------------------------------------------------------- scikit-learn


def _estimator_class(path: str) -> type:
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise InputError(
            f"sklearn:{path} is not an import path", hint="for example sklearn:sklearn.svm.SVC"
        )
    with importing(module_name):
        module = importlib.import_module(module_name)
    found = getattr(module, class_name, None)
    if not isinstance(found, type):
        names = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(class_name, names, n=1)
        hint = f"did you mean sklearn:{module_name}.{close[0]}?" if close else "check the name"
        raise InputError(f"{module_name} has no estimator class {class_name!r}", hint=hint)
    if not hasattr(found, "fit") or not hasattr(found, "get_params"):
        raise InputError(f"{path} is not a scikit-learn estimator (it has no fit/get_params)")
    return found


def _check_estimator_params(estimator: type, params: dict[str, Any], model: str) -> None:
    try:
        valid = set(estimator().get_params(deep=False))
    except TypeError as exc:
        raise InputError(
            f"{model} cannot be built from parameters alone: {exc}",
            hint="a Pipeline or a meta-estimator needs objects; build it in a function "
            "and pass --model python:MODULE:FUNCTION",
        ) from exc
    unknown = sorted(set(params) - valid)
    if unknown:
        close = {u: difflib.get_close_matches(u, valid, n=1) for u in unknown}
        hints = [f"{u} (did you mean {c[0]}?)" if c else u for u, c in close.items()]
        raise InputError(
            f"{model} has no parameter {', '.join(hints)}",
            hint=f"its parameters are {', '.join(sorted(valid))}",
        )


def _sklearn_estimator(spec: TrainerSpec) -> Any:
    estimator_class = _estimator_class(estimator_path(spec))
    _check_estimator_params(estimator_class, spec.params, spec.model)
    try:
        estimator = estimator_class(**spec.params)
        defaults = estimator.get_params()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{spec.model} cannot take {spec.params}: {exc}") from exc
    extra: dict[str, Any] = {}
    if "random_state" in defaults and "random_state" not in spec.params:
        extra["random_state"] = spec.seed
    # Linear models ignore n_jobs now and warn about it; ensembles and neighbours use it.
    linear = ".linear_model." in estimator_path(spec)
    if "n_jobs" in defaults and "n_jobs" not in spec.params and not linear:
        extra["n_jobs"] = spec.threads
    return estimator.set_params(**extra)


def _fit_sklearn(
    spec: TrainerSpec, x: Any, y: Any, x_valid: Any, y_valid: Any, checkpoint: Checkpoint | None
) -> Any:
    estimator = _sklearn_estimator(spec)
    _check_methods(estimator, spec.task, spec.model)
    target = None if spec.task == "anomaly" else y
    stage_param = _stage_param(estimator)
    try:
        if checkpoint is None or x_valid is None or stage_param is None:
            estimator.fit(x, target)
            if checkpoint is not None and x_valid is not None:
                checkpoint(1, sklearn_scores(estimator, spec.task, x_valid))
            return estimator
        total = int(estimator.get_params()[stage_param])
        warm = estimator.get_params()["warm_start"]
        estimator.set_params(warm_start=True)
        for stage in range(1, _STAGES + 1):
            estimator.set_params(**{stage_param: max(1, math.ceil(total * stage / _STAGES))})
            estimator.fit(x, target)
            checkpoint(stage, sklearn_scores(estimator, spec.task, x_valid))
        estimator.set_params(warm_start=warm)
        return estimator
    except (LoopMLError, _pruned_type()):
        raise
    except (ValueError, TypeError) as exc:
        raise InputError(f"{spec.model} cannot fit with {spec.params}: {exc}") from exc


def _stage_param(estimator: Any) -> str | None:
    """The parameter a warm start grows by adding members, if the estimator has one.

    Ensembles add trees (``n_estimators``) and HistGradientBoosting adds iterations
    (``max_iter``). Iterative solvers (linear models, MLPs) also take ``max_iter`` and
    ``warm_start``, but each refit runs ``max_iter`` more steps: staging them would
    train a different model than the refit, so they are fitted once.
    """
    params = estimator.get_params()
    if "warm_start" not in params:
        return None
    if "n_estimators" in params:
        return "n_estimators"
    if "max_iter" in params and "HistGradientBoosting" in type(estimator).__name__:
        return "max_iter"
    return None


def _check_methods(estimator: Any, task: str, model: str) -> None:
    needed = {
        "binary": "predict_proba",
        "multiclass": "predict_proba",
        "anomaly": "decision_function",
    }.get(task, "predict")
    if not hasattr(estimator, needed):
        raise InputError(
            f"{model} has no {needed}, which a {task} task needs",
            hint="pick an estimator for this task, or pass --task",
        )


def _pruned_type() -> type[BaseException]:
    try:
        from optuna import TrialPruned

        return TrialPruned
    except ModuleNotFoundError:  # optuna is a dependency; keep fits working without it
        return LoopMLError


# ---------------------------------------------------------------------- boosters


def _rounds(params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    params = dict(params)
    rounds = 100
    for key in ("n_estimators", "num_boost_round", "num_iterations", "num_rounds"):
        if key in params:
            rounds = int(params.pop(key))
    return params, rounds


def _every(rounds: int) -> int:
    return max(1, rounds // 5)


def _fit_lightgbm(
    spec: TrainerSpec, x: Any, y: Any, x_valid: Any, y_valid: Any, checkpoint: Checkpoint | None
) -> Any:
    import lightgbm

    params, rounds = _rounds(spec.params)
    objective = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}
    base: dict[str, Any] = {
        "objective": objective[spec.task],
        "verbosity": -1,
        "seed": spec.seed,
        "num_threads": spec.threads,
        "deterministic": True,
    }
    if spec.task == "multiclass":
        base["num_class"] = spec.n_classes
    if spec.device == "cuda":
        base["device_type"] = "gpu"
    every = _every(rounds)
    callbacks = []
    if checkpoint is not None and x_valid is not None:

        def report(env: Any) -> None:
            done = env.iteration + 1
            if done % every == 0 or done == rounds:
                checkpoint(
                    done,
                    env.model.predict(x_valid, num_iteration=done, num_threads=spec.threads),
                )

        callbacks.append(report)
    try:
        return lightgbm.train(
            {**base, **params},
            lightgbm.Dataset(x, label=y, free_raw_data=True),
            num_boost_round=rounds,
            callbacks=callbacks,
        )
    except lightgbm.basic.LightGBMError as exc:
        raise InputError(f"lightgbm cannot train with {spec.params}: {exc}") from exc


def _fit_xgboost(
    spec: TrainerSpec, x: Any, y: Any, x_valid: Any, y_valid: Any, checkpoint: Checkpoint | None
) -> Any:
    import xgboost

    params, rounds = _rounds(spec.params)
    objective = {
        "binary": "binary:logistic",
        "multiclass": "multi:softprob",
        "regression": "reg:squarederror",
    }
    base: dict[str, Any] = {
        "objective": objective[spec.task],
        "seed": spec.seed,
        "nthread": spec.threads,
        "device": spec.device,
        "verbosity": 0,
    }
    if spec.task == "multiclass":
        base["num_class"] = spec.n_classes
    every = _every(rounds)
    callbacks = []
    if checkpoint is not None and x_valid is not None:
        report = checkpoint
        valid = xgboost.DMatrix(x_valid)

        class Report(xgboost.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                done = epoch + 1
                if done % every == 0 or done == rounds:
                    report(done, model.predict(valid, iteration_range=(0, done)))
                return False

        callbacks.append(Report())
    try:
        return xgboost.train(
            {**base, **params},
            xgboost.DMatrix(x, label=y),
            num_boost_round=rounds,
            callbacks=callbacks,
        )
    except xgboost.core.XGBoostError as exc:
        raise InputError(f"xgboost cannot train with {spec.params}: {exc}") from exc


def _fit_torch(
    spec: TrainerSpec, x: Any, y: Any, x_valid: Any, y_valid: Any, checkpoint: Checkpoint | None
) -> Any:
    from loopml.train import mlp

    return mlp.fit(spec, x, y, x_valid, y_valid, checkpoint)


# ---------------------------------------------------------------------- custom


def _custom_function(spec: TrainerSpec) -> Callable[..., Any]:
    _add_code_path(spec)
    return load_function(spec.model.removeprefix("python:"))


def _fit_custom(
    spec: TrainerSpec, x: Any, y: Any, x_valid: Any, y_valid: Any, checkpoint: Checkpoint | None
) -> Any:
    function = _custom_function(spec)
    name = spec.model.removeprefix("python:")
    with user_code(f"training function {name}"):
        model = function(
            x,
            None if spec.task == "anomaly" else y,
            task=spec.task,
            params=dict(spec.params),
            seed=spec.seed,
            X_valid=x_valid,
            y_valid=y_valid,
        )
    try:
        _check_methods(model, spec.task, name)
    except InputError as exc:
        raise UserCodeError(
            f"training function {name} returned a {type(model).__name__}: {exc.message}",
            hint="return a fitted scikit-learn-compatible estimator",
        ) from exc
    if checkpoint is not None and x_valid is not None:
        checkpoint(1, sklearn_scores(model, spec.task, x_valid))
    return model


def _add_code_path(spec: TrainerSpec) -> None:
    for folder in spec.code_path:
        if folder not in sys.path:
            sys.path.insert(0, folder)


_FIT: dict[str, Callable[..., Any]] = {
    "sklearn": _fit_sklearn,
    "lightgbm": _fit_lightgbm,
    "xgboost": _fit_xgboost,
    "torch-mlp": _fit_torch,
    "custom": _fit_custom,
}
