"""Hyper-parameter search with Optuna: a space, parallel trials, pruning and a seed.

A space maps each parameter to a range or a list of choices::

    num_leaves: [15, 255]                  # integers from 15 to 255
    learning_rate: [0.01, 0.3, log]        # floats on a log scale
    max_depth: {low: 2, high: 12, step: 2}
    criterion: [gini, entropy]             # choices: any other list
    min_child_samples: [5, 10, 20]         # choices too (a range has two numbers)
    hidden: {choices: [[64], [64, 32]]}

Trials run in this process (``parallel=1``), in worker processes (``local``) or as Ray
tasks (``ray``). Workers share one Optuna journal file, so the sampler sees every
finished trial and the median pruner compares a trial's checkpoints with the others'.
The preprocessed matrices are written once as ``.npy`` files and memory-mapped by every
worker. The caller records each finished trial as a child run as it comes in.

With ``parallel=1`` a seed repeats the search exactly; with more workers each worker's
sampler is seeded (``seed + worker``), but which trial sees which results depends on
timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from loopml.errors import InputError, LoopMLError, SpecError, StoreError, UserCodeError
from loopml.train import trainers
from loopml.train.metrics import Metric, metric
from loopml.train.resources import ResourceMeter

_STUDY = "search"


@dataclass(frozen=True)
class Dimension:
    """One parameter's range: ``int`` or ``float`` between low and high, or ``choices``."""

    name: str
    kind: str
    low: float = 0
    high: float = 0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()


def parse_space(space: Mapping[str, Any]) -> list[Dimension]:
    """Parse a search space (see the module docstring).

    Raises:
        SpecError: naming the parameter whose range does not parse.
    """
    if not isinstance(space, Mapping) or not space:
        raise SpecError("the search space is empty", hint="give it as {param: [low, high]}")
    return [_dimension(str(name), value) for name, value in space.items()]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dimension(name: str, value: Any) -> Dimension:
    where = f"search space {name}"
    if isinstance(value, Mapping):
        if "choices" in value:
            choices = value["choices"]
            if not isinstance(choices, list) or not choices or set(value) != {"choices"}:
                raise SpecError(f"{where}: choices must be a non-empty list, alone")
            return Dimension(name, "categorical", choices=tuple(_hashable(c) for c in choices))
        unknown = set(value) - {"low", "high", "log", "step", "type"}
        if unknown:
            raise SpecError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
        if "low" not in value or "high" not in value:
            raise SpecError(f"{where}: needs low and high", hint="{low: 1, high: 10}")
        low, high = value["low"], value["high"]
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise SpecError(f"{where}: log must be true or false")
        kind = value.get("type") or (
            "int"
            if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
            else "float"
        )
        return _range(where, name, kind, low, high, log, value.get("step"))
    is_range = (
        (len(value) == 2 or (len(value) == 3 and isinstance(value[2], str)))
        if isinstance(value, list)
        else False
    )
    if is_range and all(_is_number(v) for v in value[:2]):
        low, high = value[0], value[1]
        log = False
        if len(value) == 3:
            if value[2] not in {"log", "linear"}:
                raise SpecError(
                    f"{where}: the third item must be log or linear, not {value[2]!r}",
                    hint="[0.01, 0.3, log]",
                )
            log = value[2] == "log"
        kind = "int" if all(isinstance(v, int) for v in (low, high)) and not log else "float"
        if log and all(isinstance(v, int) for v in (low, high)):
            kind = "int"
        return _range(where, name, kind, low, high, log, None)
    if isinstance(value, list) and value:
        return Dimension(name, "categorical", choices=tuple(_hashable(c) for c in value))
    raise SpecError(
        f"{where}: {value!r} is not a range or choices",
        hint="use [low, high], [low, high, log], {low:, high:, step:} or [a, b, c]",
    )


def _range(
    where: str, name: str, kind: str, low: Any, high: Any, log: bool, step: Any
) -> Dimension:
    if kind not in {"int", "float"}:
        raise SpecError(f"{where}: type must be int or float, not {kind!r}")
    if not (_is_number(low) and _is_number(high)):
        raise SpecError(f"{where}: low and high must be numbers")
    if low >= high:
        raise SpecError(f"{where}: low {low} must be below high {high}")
    if log and low <= 0:
        raise SpecError(f"{where}: a log range needs low > 0")
    if step is not None and (not _is_number(step) or step <= 0 or log):
        raise SpecError(f"{where}: step must be a positive number, and not with log")
    return Dimension(name, kind, float(low), float(high), log, float(step) if step else None)


def _hashable(value: Any) -> Any:
    # Optuna's choices must be hashable-ish plain values; lists become tuples.
    return tuple(value) if isinstance(value, list) else value


def suggest(trial: Any, dimensions: Sequence[Dimension]) -> dict[str, Any]:
    """One trial's parameters."""
    params: dict[str, Any] = {}
    for d in dimensions:
        if d.kind == "categorical":
            choice = trial.suggest_categorical(d.name, list(d.choices))
            params[d.name] = list(choice) if isinstance(choice, tuple) else choice
        elif d.kind == "int":
            params[d.name] = trial.suggest_int(
                d.name, int(d.low), int(d.high), step=int(d.step or 1), log=d.log
            )
        else:
            params[d.name] = trial.suggest_float(d.name, d.low, d.high, step=d.step, log=d.log)
    return params


# ---------------------------------------------------------------------- trials


@dataclass
class TrialOutcome:
    """One finished trial, as the caller records it."""

    number: int
    params: dict[str, Any]
    state: str
    value: float | None
    intermediate: list[tuple[int, float]]
    started_at: datetime
    ended_at: datetime
    resources: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class SearchResult:
    """The best trial's parameters and value, and every trial."""

    best_params: dict[str, Any]
    best_value: float
    trials: list[TrialOutcome]


@dataclass(frozen=True)
class _Job:
    """What a worker needs, as plain data."""

    folder: str
    spec: dict[str, Any]
    dimensions: list[dict[str, Any]]
    metric: str
    trials: int
    seed: int
    startup: int


def run_search(
    spec: trainers.TrainerSpec,
    data: Mapping[str, Any],
    space: Mapping[str, Any],
    *,
    trials: int,
    metric_name: str,
    folder: Path,
    parallel: int = 1,
    executor: str = "local",
    address: str | None = None,
    seed: int = 0,
    on_trial: Callable[[TrialOutcome], None] | None = None,
) -> SearchResult:
    """Search ``space`` for ``spec``'s best parameters on the validation rows.

    Args:
        spec: the trainer; each trial adds its parameters to ``spec.params``.
        data: ``x``, ``y``, ``x_valid``, ``y_valid`` arrays.
        space: the search space.
        trials: how many trials in all.
        metric_name: the metric scored on the validation rows.
        folder: a private folder for the journal and the matrices.
        parallel: how many trials run at once.
        executor: ``local`` (processes) or ``ray``.
        address: the Ray cluster, for ``ray``.
        seed: the samplers' seed.
        on_trial: called with each trial as it finishes.

    Raises:
        SpecError: the space does not parse.
        InputError: a bad trials, parallel or executor value, or every trial failed.
    """
    dimensions = parse_space(space)
    scorer = metric(metric_name, spec.task)
    if trials < 1:
        raise InputError(f"--trials {trials}: at least 1")
    if executor not in {"local", "ray"}:
        raise InputError(f"unknown executor {executor!r}", hint="use local or ray")
    if executor == "ray" and address and address.startswith("ray://"):
        raise InputError(
            f"a search cannot run on the remote Ray cluster {address}: its trials share a "
            "journal and the training matrices through this machine's disk",
            hint="run it on this machine's cluster (omit --address, or --address auto)",
        )
    parallel = max(1, min(parallel, trials))
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("x", "y", "x_valid", "y_valid"):
        _save_array(folder / f"{key}.npy", data[key])
    shares = [trials // parallel + (1 if i < trials % parallel else 0) for i in range(parallel)]
    jobs = [
        _Job(
            str(folder),
            asdict(spec),
            [asdict(d) for d in dimensions],
            scorer.name,
            share,
            seed + index,
            max(3, parallel),
        )
        for index, share in enumerate(shares)
    ]
    seen: set[int] = set()
    outcomes: list[TrialOutcome] = []

    def collect() -> None:
        for outcome in _finished_trials(folder, seen):
            outcomes.append(outcome)
            if on_trial is not None:
                on_trial(outcome)

    if parallel == 1 and executor == "local":
        _work(jobs[0], on_each=collect)
    elif executor == "local":
        _run_processes(jobs, collect)
    else:
        _run_ray(jobs, collect, address, spec.threads)
    collect()
    outcomes.sort(key=lambda o: o.number)
    done = [o for o in outcomes if o.state == "finished" and o.value is not None]
    if not done:
        first = next((o.error for o in outcomes if o.error), "no trial finished")
        raise InputError(
            f"every one of the {len(outcomes)} trials failed or was pruned; first error: {first}",
            hint="check the search space and the model's parameters",
        )
    pick = max if scorer.greater_is_better else min
    best = pick(done, key=lambda o: o.value or 0.0)
    return SearchResult(best.params, float(best.value or 0.0), outcomes)


def _save_array(path: Path, array: Any) -> None:
    import numpy as np

    np.save(path, np.asarray(array), allow_pickle=False)


def _run_processes(jobs: list[_Job], collect: Callable[[], None]) -> None:
    # Fresh interpreters (`python -m loopml.train.search JOB`), not forks of this process
    # with its DuckDB, Arrow and OpenMP threads (forking those can deadlock), and not
    # multiprocessing's spawn, which re-runs the caller's unguarded script in each child.
    workers = []
    try:
        for index, job in enumerate(jobs):
            folder = Path(job.folder)
            path = folder / f"job-{index}.json"
            path.write_bytes(orjson.dumps(asdict(job)))
            log = (folder / f"worker-{index}.log").open("wb")
            process = subprocess.Popen(
                [sys.executable, "-m", "loopml.train._worker", str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            workers.append((process, log, folder / f"worker-{index}.log"))
        while any(process.poll() is None for process, _, _ in workers):
            time.sleep(0.25)
            collect()
    finally:
        for process, log, _ in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    for process, _, log_path in workers:
        if process.returncode != 0:
            tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-5:])
            if process.returncode < 0:  # a signal: the OOM killer, or someone's kill
                raise StoreError(
                    f"a search worker was killed by signal {-process.returncode}: {tail}",
                    hint="the trials it finished are recorded; give it more memory, or "
                    "fewer trials at once (--parallel)",
                )
            raise UserCodeError(
                f"a search worker exited with status {process.returncode}: {tail}",
                hint="the training code ended the process; the trials it finished are recorded",
            )


def _run_ray(
    jobs: list[_Job], collect: Callable[[], None], address: str | None, threads: int
) -> None:
    from loopml.cluster import connect_ray

    ray, started = connect_ray(address)
    refs: list[Any] = []
    try:
        remote = ray.remote(num_cpus=max(1, threads), max_retries=0)(_work)
        refs = [remote.remote(job) for job in jobs]
        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            collect()
        try:
            ray.get(refs)
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, LoopMLError):
                raise cause from exc
            raise UserCodeError(f"a search task failed on Ray: {cause}") from exc
    finally:
        # Nothing keeps working on this search's folder after it returns or fails.
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # a finished task cannot be cancelled
                continue
        if started:
            ray.shutdown()


def _storage(folder: Path) -> Any:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(folder / "journal.log")))


def _study(folder: Path, direction: str, seed: int, startup: int) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=_STUDY,
        storage=_storage(folder),
        direction="maximize" if direction == "maximize" else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=1),
        load_if_exists=True,
    )


def _work(job: _Job, on_each: Callable[[], None] | None = None) -> int:
    """Run ``job.trials`` trials against the shared journal (in a worker, or inline)."""
    import numpy as np

    folder = Path(job.folder)
    spec = trainers.TrainerSpec(**{**job.spec, "code_path": tuple(job.spec["code_path"])})
    dimensions = [Dimension(**{**d, "choices": tuple(d["choices"])}) for d in job.dimensions]
    scorer = metric(job.metric, spec.task)
    arrays = {
        k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in ("x", "y", "x_valid", "y_valid")
    }
    study = _study(folder, scorer.direction, job.seed, job.startup)

    def objective(trial: Any) -> float:
        return _objective(trial, spec, dimensions, scorer, arrays)

    callbacks = [lambda _study, _trial: on_each()] if on_each is not None else []
    study.optimize(objective, n_trials=job.trials, catch=(Exception,), callbacks=callbacks)
    return job.trials


def _objective(
    trial: Any, spec: trainers.TrainerSpec, dimensions: list[Dimension], scorer: Metric, arrays: Any
) -> float:
    import optuna

    started = datetime.now(UTC)
    meter = ResourceMeter()
    trial.set_user_attr("started_at", started.isoformat())
    trial.set_user_attr("pid", os.getpid())
    params = suggest(trial, dimensions)
    trial_spec = spec.with_params(params)
    y_valid = arrays["y_valid"]

    def checkpoint(step: int, scores: Any) -> None:
        trial.report(scorer.compute(y_valid, scores, spec.n_classes), step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")

    try:
        model = trainers.fit(
            trial_spec, arrays["x"], arrays["y"], arrays["x_valid"], y_valid, checkpoint
        )
        value = scorer.compute(
            y_valid, trainers.scores(trial_spec, model, arrays["x_valid"]), spec.n_classes
        )
    except optuna.TrialPruned:
        _finish(trial, meter)
        raise
    except LoopMLError as exc:
        trial.set_user_attr("error", str(exc))
        _finish(trial, meter)
        raise
    except Exception as exc:
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
        _finish(trial, meter)
        raise
    _finish(trial, meter)
    return float(value)


def _finish(trial: Any, meter: ResourceMeter) -> None:
    trial.set_user_attr("ended_at", datetime.now(UTC).isoformat())
    trial.set_user_attr("resources", meter.usage())


def _finished_trials(folder: Path, seen: set[int]) -> list[TrialOutcome]:
    import optuna

    path = folder / "journal.log"
    if not path.exists():
        return []
    try:
        study = optuna.load_study(study_name=_STUDY, storage=_storage(folder))
    except KeyError:  # the first worker has not created the study yet
        return []
    states = {
        optuna.trial.TrialState.COMPLETE: "finished",
        optuna.trial.TrialState.PRUNED: "pruned",
        optuna.trial.TrialState.FAIL: "failed",
    }
    found = []
    for trial in study.get_trials(deepcopy=False):
        if trial.number in seen or trial.state not in states:
            continue
        seen.add(trial.number)
        attrs = trial.user_attrs
        now = datetime.now(UTC)
        found.append(
            TrialOutcome(
                number=trial.number,
                params={k: list(v) if isinstance(v, tuple) else v for k, v in trial.params.items()},
                state=states[trial.state],
                value=None if trial.value is None else float(trial.value),
                intermediate=sorted(
                    (int(s), float(v)) for s, v in trial.intermediate_values.items()
                ),
                started_at=_when(attrs.get("started_at"), trial.datetime_start or now),
                ended_at=_when(attrs.get("ended_at"), trial.datetime_complete or now),
                resources=dict(attrs.get("resources") or {}),
                error=attrs.get("error"),
            )
        )
    return found


def _when(text: str | None, fallback: datetime) -> datetime:
    if text:
        return datetime.fromisoformat(text)
    return fallback if fallback.tzinfo else fallback.replace(tzinfo=UTC)


def run_job_file(path: str) -> None:
    """Run the trials a job file (written by ``run_search``) describes."""
    job = orjson.loads(Path(path).read_bytes())
    _work(_Job(**job))
