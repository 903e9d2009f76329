"""What every command shares: the -w/--workspace and --json options, output, errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from loopml.workspace import Workspace

WorkspaceOption = Annotated[
    str | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar="LOOPML_WORKSPACE",
        help="Workspace folder or metadata URL [env: LOOPML_WORKSPACE; "
        "default: ./loopml-workspace].",
        show_envvar=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object, for scripts.")]


class _Invocation:
    """What the root command was given, for commands that must tell a flag from the
    environment (``demo`` never writes into ``LOOPML_WORKSPACE`` unless asked)."""

    workspace_flag: str | None = None


invocation = _Invocation()


def open_workspace(location: str | None) -> Workspace:
    """Open the workspace a command was pointed at."""
    import loopml

    return loopml.open(location)


def console(stderr: bool = False) -> Console:
    """A Rich console on stdout (or stderr, for progress and warnings)."""
    from rich.console import Console

    # markup=False: user text (reasons with regexes, paths) must print as written.
    return Console(stderr=stderr, highlight=False, soft_wrap=False, markup=False)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(data: Any) -> None:
    """Print ``data`` as one JSON object on stdout."""
    import orjson

    sys.stdout.write(orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS).decode())
    sys.stdout.write("\n")
    sys.stdout.flush()


def emit(as_json: bool, data: Any, render: Callable[[Console], None]) -> None:
    """Print ``data`` as JSON, or let ``render`` draw it for people."""
    if as_json:
        print_json(data)
    else:
        render(console())


def age(moment: datetime) -> str:
    """A short local timestamp for tables."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def human_bytes(size: float) -> str:
    """Bytes in B, KiB, MiB, GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def transform_report(version: Any, started: float) -> dict[str, Any]:
    """What a command that made a version by transform prints with ``--json``."""
    import time

    return {
        "dataset": version.dataset,
        "version": version.number,
        "id": version.id,
        "rows": version.row_count,
        "inputs": [i["ref"] for i in version.meta["transform"]["inputs"]],
        "seconds": round(time.perf_counter() - started, 3),
    }


def transform_summary(version: Any, data: dict[str, Any]) -> str:
    """The one line such a command prints for people."""
    return (
        f"{version.ref} ({version.id[:12]}): {version.row_count:,} rows, "
        f"{len(version.schema)} columns from {', '.join(data['inputs'])} "
        f"in {data['seconds']:.2f}s"
    )


def yaml_value(text: str, what: str) -> Any:
    """A flag's value as YAML or JSON, or the contents of @FILE, parsed."""
    import yaml

    from loopml.config import load_yaml
    from loopml.errors import SpecError

    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise SpecError(f"{what}: file {path} does not exist")
        text = path.read_text()
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "cannot parse it"
        mark = getattr(exc, "problem_mark", None)
        where = f" at column {mark.column + 1}" if mark is not None else ""
        raise SpecError(f"{what}: not valid YAML or JSON: {problem}{where}") from exc
