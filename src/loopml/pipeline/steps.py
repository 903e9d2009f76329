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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from loopml.data.sources import expand_paths
from loopml.errors import InputError, NotFound
from loopml.features.boundary import function_of, importing, split_path
from loopml.pipeline.dag import Step
from loopml.store.artifacts import file_sha256

if TYPE_CHECKING:
    from loopml.context import Context
    from loopml.records import DatasetVersion

NOT_CACHED = "query"  # a database query's rows can change under the same text


def _resolve(root: Path, path: str) -> str:
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else root / candidate)


def _sql_text(root: Path, sql: str) -> str:
    if sql.strip().lower().endswith(".sql") and "\n" not in sql.strip():
        path = Path(_resolve(root, sql.strip()))
        try:
            return path.read_text()
        except FileNotFoundError as exc:
            raise NotFound(f"SQL file {path} does not exist") from exc
    return sql


@contextmanager
def importable_from(root: Path) -> Iterator[None]:
    """Let ``module:function`` paths find modules in the spec's folder."""
    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        yield
    finally:
        if added and str(root) in sys.path:
            sys.path.remove(str(root))


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


def cache_key(step: Step, root: Path, inputs: Mapping[str, DatasetVersion]) -> str | None:
    """The step's content address, or None when its output cannot be reused (queries)."""
    from importlib.metadata import version as installed_version

    if step.kind == "ingest" and "query" in step.params:
        return None
    outside: dict[str, Any] = {}
    if step.kind == "ingest":
        files = expand_paths(_resolve(root, step.params["path"]))
        outside["files"] = [file_sha256(name)[0] for name in files]
        if contract := step.params.get("contract"):
            outside["contract"] = file_sha256(_resolve(root, contract))[0]
    elif step.kind == "sql":
        outside["sql"] = _sql_text(root, step.params["sql"])
    elif step.kind == "python":
        _, code = load_step_function(step, root)
        if code is None:
            return None  # no source to fingerprint: always run it
        outside["code"] = code
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
) -> DatasetVersion:
    """Run one step and return the version it made."""
    from loopml.data.ingest import ingest
    from loopml.features import timeseries, transforms
    from loopml.features.splits import split

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
    raise InputError(f"step {step.name}: unknown kind {step.kind!r}")
