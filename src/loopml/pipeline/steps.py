"""What each kind of step does, and the fingerprint that keys its cache entry.

A step's cache key covers its kind and parameters, the bytes it reads from outside
the workspace (source files, contracts, SQL files, the Python module's code) and the
ids of its input versions: when none changed, its output is reused.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from loopml.data.api import DataAPI
from loopml.data.ingest import ingest
from loopml.data.sources import expand_paths
from loopml.errors import InputError, NotFound
from loopml.evaluate.evaluation import evaluate
from loopml.evaluate.gates import Gates, set_gates
from loopml.features import timeseries, transforms
from loopml.features.boundary import function_of, importing, split_path
from loopml.features.splits import split
from loopml.features.transforms import read_sql_file
from loopml.pipeline.dag import Step
from loopml.records import ModelVersion
from loopml.store.artifacts import file_sha256
from loopml.train.inputs import infer_task
from loopml.train.training import train

if TYPE_CHECKING:
    from loopml.context import Context
    from loopml.records import DatasetVersion

NOT_CACHED = "query"  # a database query's rows can change under the same text


def _resolve(root: Path, path: str) -> str:
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else root / candidate)


def _sql_text(root: Path, sql: str) -> str:
    """The step's SQL: inline, or the text of the ``.sql`` file it names."""
    if sql.strip().lower().endswith(".sql") and "\n" not in sql.strip():
        return read_sql_file(_resolve(root, sql.strip()))
    return sql


def _hash_file(path: str, what: str) -> str:
    try:
        return file_sha256(path)[0]
    except FileNotFoundError as exc:
        raise NotFound(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read: {exc}") from exc


_path_users: Counter[str] = Counter()
_path_lock = threading.Lock()


@contextmanager
def importable_from(root: Path) -> Iterator[None]:
    """Let ``module:function`` paths find modules in the spec's folder.

    Steps run in parallel threads and ``sys.path`` is the process's: the folder stays
    on it while any step needs it.
    """
    folder = str(root)
    with _path_lock:
        if _path_users[folder] == 0 and folder not in sys.path:
            sys.path.insert(0, folder)
            _path_users[folder] = 1
        elif _path_users[folder]:
            _path_users[folder] += 1
    try:
        yield
    finally:
        with _path_lock:
            if _path_users[folder]:
                _path_users[folder] -= 1
                if _path_users[folder] == 0 and folder in sys.path:
                    sys.path.remove(folder)


def load_step_function(step: Step, root: Path) -> tuple[Callable[..., Any], str | None]:
    """A python step's function and the hash of its module's code.

    A module in the spec's folder is loaded from its file under a name keyed on its
    path and code, so an edited module runs its new code (Python keeps imported
    modules) and two projects' same-named modules never mix. Other modules are
    imported normally.

    Raises:
        UserCodeError: importing the module raised; the message names the step.
        InputError: the path is malformed or names nothing.
    """
    module_name, attribute = split_path(step.params["python"])
    relative = Path(*module_name.split("."))
    candidates = [root / relative.with_suffix(".py"), root / relative / "__init__.py"]
    file = next((c for c in candidates if c.is_file()), None)
    code: str | None = None
    with importing(module_name, f"step {step.name}"):
        if file is not None:
            code = hashlib.sha256(file.read_bytes()).hexdigest()
            unique = (
                f"loopml_step_{hashlib.sha256(str(file).encode()).hexdigest()[:10]}_{code[:10]}"
            )
            module = sys.modules.get(unique)
            if module is None:
                spec = importlib.util.spec_from_file_location(unique, file)
                if spec is None or spec.loader is None:
                    raise InputError(f"step {step.name}: cannot load {file}")
                module = importlib.util.module_from_spec(spec)
                with importable_from(root):
                    spec.loader.exec_module(module)
                sys.modules[unique] = module
        else:
            with importable_from(root):
                module = importlib.import_module(module_name)
            try:
                code = hashlib.sha256(inspect.getsource(module).encode()).hexdigest()
            except (OSError, TypeError):
                code = None
    return function_of(module, attribute, f"step {step.name}"), code


def _project_code(root: Path, path: str) -> str:
    """A hash of the spec folder's own Python files and of the step's package."""
    package = root / split_path(path)[0].split(".")[0]
    files = sorted(root.glob("*.py"))
    if package.is_dir():
        files += sorted(package.rglob("*.py"))
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file_sha256(file)[0].encode())
    return digest.hexdigest()


def cache_key(
    step: Step,
    root: Path,
    inputs: Mapping[str, DatasetVersion],
    pii_key: str | None = None,
) -> str | None:
    """The step's content address, or None when its output cannot be reused (queries).

    ``pii_key`` is a fingerprint of the workspace's PII key: hashed columns change
    with it, so an ingest's output does too.
    """
    if step.kind == "ingest" and "query" in step.params:
        return None
    outside: dict[str, Any] = {}
    if step.kind == "ingest":
        files = expand_paths(_resolve(root, step.params["path"]))
        outside["files"] = [file_sha256(name)[0] for name in files]
        if contract := step.params.get("contract"):
            outside["contract"] = _hash_file(_resolve(root, contract), "contract")
        outside["pii_key"] = pii_key
    elif step.kind == "sql":
        outside["sql"] = _sql_text(root, step.params["sql"])
    elif step.kind == "python":
        _, code = load_step_function(step, root)
        if code is None:
            return None  # no source to fingerprint: always run it
        # The module may import helpers beside it: any Python file of the project counts.
        outside["code"] = code
        outside["project"] = _project_code(root, step.params["python"])
    elif step.kind == "train":
        model = step.params["model"]
        if model.startswith("python:"):
            outside["project"] = _project_code(root, model.removeprefix("python:"))
        elif model.startswith("sklearn:") and not model.startswith("sklearn:sklearn."):
            # The project's own estimator class: its code is part of the model.
            outside["project"] = _project_code(root, model.removeprefix("sklearn:"))
    body = orjson.dumps(
        {
            "loopml": installed_version("loopml"),
            # Two steps with one definition still make two datasets.
            "output": step.output,
            "kind": step.kind,
            "params": step.params,
            "outside": outside,
            "inputs": {name: inputs[name].id for name in step.reads},
        },
        option=orjson.OPT_SORT_KEYS,
        default=str,
    )
    return hashlib.sha256(body).hexdigest()


def execute(
    ctx: Context, step: Step, root: Path, inputs: Mapping[str, DatasetVersion]
) -> DatasetVersion | ModelVersion:
    """Run one step and return the version it made (a model version for training)."""
    refs = [inputs[name].ref for name in step.reads]
    params = step.params
    if step.kind == "ingest":
        source = params.get("from") if "query" in params else _resolve(root, params["path"])
        contract = params.get("contract")
        result = ingest(
            ctx,
            step.output,
            source,
            contract=_resolve(root, contract) if contract else None,
            pii=dict(params.get("pii") or {}),
            query=params.get("query"),
            format=params.get("format"),
        )
        return result.version
    if step.kind == "sql":
        return transforms.sql_transform(ctx, step.output, _sql_text(root, params["sql"]), refs)
    if step.kind == "python":
        function, _ = load_step_function(step, root)
        with importable_from(root):
            return transforms.python_transform(
                ctx, step.output, function, refs, params.get("params") or {}, label=params["python"]
            )
    if step.kind == "rolling":
        rolling = {k: v for k, v in params.items() if k != "input"}
        return timeseries.rolling_features(ctx, step.output, refs[0], **rolling)
    if step.kind == "pit_join":
        join = {k: v for k, v in params.items() if k not in {"events", "features"}}
        return timeseries.point_in_time_join(ctx, step.output, refs[0], refs[1], **join)
    if step.kind == "split":
        return split(ctx, step.output, refs[0], **params)
    if step.kind == "train":
        return _train(ctx, params, refs[0], root)
    raise InputError(f"step {step.name}: unknown kind {step.kind!r}")


def _train(ctx: Context, params: Mapping[str, Any], data: str, root: Path) -> ModelVersion:
    search = params.get("search") or {}
    declared = params.get("evaluate") or {}
    sensitive, slices = declared.get("sensitive") or (), declared.get("slices") or ()
    gates = None
    if declared.get("gates"):
        gates = Gates.from_spec(declared["gates"], sensitive=sensitive, slices=slices)
        # A gate on a figure this task lacks (rmse for a classifier) fails now, before a
        # version is registered, not after.
        task = params.get("task") or _task_of(ctx, data, params.get("target"))
        if task is not None:
            gates.parsed(task)
    with importable_from(root):
        result = train(
            ctx,
            params["name"],
            data,
            params.get("target"),
            model=params["model"],
            task=params.get("task"),
            params=params.get("params") or {},
            features=params.get("features"),
            exclude=params.get("exclude") or (),
            space=search.get("space") or None,
            trials=search.get("trials"),
            seed=search.get("seed", 0),
            metric_name=params.get("metric"),
            cpus=params.get("cpus"),
            gpus=params.get("gpus", 0),
            gpu_fallback=params.get("gpu_fallback", False),
            onnx=params.get("onnx", False),
            code_folder=root,
        )
    version = result.version
    if declared:
        if gates is not None:
            set_gates(ctx, version.model, gates)
        evaluate(ctx, version, sensitive=sensitive, slices=slices)
    return version


def _task_of(ctx: Context, data: str, target: str | None) -> str | None:
    """The task training will infer from ``data``'s target, or None when it cannot
    be told here (training then says what is wrong with the target)."""
    import pyarrow.compute as pc

    if target is None:
        return "anomaly"
    try:
        column = DataAPI(ctx).read(data, columns=[target])
    except (KeyError, ValueError, NotFound):
        return None
    if target not in column.schema.names:
        return None
    column = column.filter(pc.is_valid(column[target]))
    field_type = str(column.schema.field(target).type)
    return infer_task(field_type, column[target].to_numpy(zero_copy_only=False))
