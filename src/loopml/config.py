"""Workspace settings: from the workspace file, then the environment, then arguments.

A workspace is a folder. Its optional ``workspace.yaml`` can point the metadata and the
artifacts elsewhere (PostgreSQL, S3); without it everything lives in the folder::

    metadata: postgresql+psycopg://ml@db.internal/loopml
    artifacts: s3://ml-bucket/loopml
    s3_endpoint_url: http://127.0.0.1:9000
    owner: risk-ml@example.com
    smtp: {host: smtp.example.com, port: 587, from: loopml@example.com, starttls: true}
    alerts: {attempts: 5, backoff: 0.5, deadline: 60}   # how alert deliveries retry

Environment variables override the file: ``LOOPML_METADATA_URL``,
``LOOPML_ARTIFACTS_URL``, ``LOOPML_S3_ENDPOINT_URL``, ``LOOPML_USER``, ``LOOPML_PII_KEY``;
the SMTP login comes only from ``LOOPML_SMTP_USER`` and ``LOOPML_SMTP_PASSWORD``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from loopml.errors import SpecError

if TYPE_CHECKING:
    from pydantic import BaseModel

ModelT = TypeVar("ModelT", bound="BaseModel")

WORKSPACE_FILE = "workspace.yaml"
_KEYS = {"metadata", "artifacts", "s3_endpoint_url", "owner", "prices", "smtp", "alerts"}


@dataclass(frozen=True)
class Settings:
    """Where a workspace keeps its metadata and artifacts, and who acts in it.

    Attributes:
        root: the workspace folder (local settings, keys, caches).
        metadata_url: a SQLAlchemy URL; SQLite in ``root`` by default.
        artifacts_url: a local folder or ``s3://bucket/prefix``.
        s3_endpoint_url: an S3-compatible endpoint, for stores other than AWS.
        user: the acting identity; the OS user by default.
        extra: anything else the workspace file holds, for later stages.
    """

    root: Path
    metadata_url: str
    artifacts_url: str
    s3_endpoint_url: str | None = None
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def yaml_loader() -> type:
    """A safe YAML loader with YAML 1.2 booleans: only true/false, never yes/no/on/off.

    YAML 1.1 reads a column named ``no`` or the country code ``NO`` as False.
    """
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool",
        re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    return Loader


def load_yaml(text: str) -> Any:
    """Parse YAML text safely, with YAML 1.2 booleans (see ``yaml_loader``)."""
    import yaml

    return yaml.load(text, Loader=yaml_loader())


def _read_file(root: Path) -> dict[str, Any]:
    path = root / WORKSPACE_FILE
    if not path.exists():
        return {}
    import yaml

    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise SpecError(
            f"{path}: unknown setting(s) {', '.join(unknown)}",
            hint=f"known settings: {', '.join(sorted(_KEYS))}",
        )
    return data


def load_settings(
    location: str | os.PathLike[str],
    *,
    metadata_url: str | None = None,
    artifacts_url: str | None = None,
    s3_endpoint_url: str | None = None,
    user: str | None = None,
) -> Settings:
    """Resolve a workspace's settings from its folder, the environment and arguments.

    Args:
        location: the workspace folder, or a metadata URL (``postgresql+psycopg://...``),
            in which case ``artifacts_url`` (or ``LOOPML_ARTIFACTS_URL``) must be given.
        metadata_url: overrides the metadata database URL.
        artifacts_url: overrides the artifact store URL.
        s3_endpoint_url: overrides the S3 endpoint.
        user: overrides the acting identity.

    Raises:
        SpecError: the workspace file is invalid, or a URL workspace has no artifact store.
    """
    text = os.fspath(location)
    env = os.environ
    if "://" in text and not text.startswith("file://"):
        metadata_url = metadata_url or text
        root = Path(env.get("LOOPML_HOME", Path.home() / ".loopml")) / "remote"
        data: dict[str, Any] = {}
    else:
        root = Path(text.removeprefix("file://")).expanduser().absolute()
        data = _read_file(root)
    metadata = metadata_url or env.get("LOOPML_METADATA_URL") or data.get("metadata")
    artifacts = artifacts_url or env.get("LOOPML_ARTIFACTS_URL") or data.get("artifacts")
    if metadata is None:
        metadata = f"sqlite:///{root / 'loopml.db'}"
    if artifacts is None:
        if "://" in text and not text.startswith("file://"):
            raise SpecError(
                "a workspace given by URL needs an artifact store",
                hint="pass --artifacts s3://bucket/prefix or set LOOPML_ARTIFACTS_URL",
            )
        artifacts = str(root / "store")
    extra = {k: v for k, v in data.items() if k not in {"metadata", "artifacts"}}
    return Settings(
        root=root,
        metadata_url=str(metadata),
        artifacts_url=str(artifacts),
        s3_endpoint_url=s3_endpoint_url
        or env.get("LOOPML_S3_ENDPOINT_URL")
        or data.get("s3_endpoint_url"),
        user=user or env.get("LOOPML_USER") or data.get("owner"),
        extra=extra,
    )


def write_settings(root: Path, values: dict[str, Any]) -> Path:
    """Merge ``values`` (the settings given explicitly) into the workspace file in ``root``."""
    import yaml

    unknown = sorted(set(values) - _KEYS)
    if unknown:
        raise SpecError(f"unknown setting(s) {', '.join(unknown)}")
    root.mkdir(parents=True, exist_ok=True)
    merged = {**_read_file(root), **{k: v for k, v in values.items() if v}}
    path = root / WORKSPACE_FILE
    partial = path.with_suffix(".yaml.partial")
    partial.write_text(yaml.safe_dump(merged, sort_keys=True))
    os.replace(partial, path)
    return path


def parse_model(model: type[ModelT], text: str, *, source: str, what: str) -> ModelT:
    """Parse YAML ``text`` into the pydantic ``model``, with errors that name field and line.

    Raises:
        SpecError: the YAML does not parse, is not a mapping, or does not validate; one
            line per problem, such as ``loopml.yaml:12: train.model: ...``.
    """
    import yaml
    from pydantic import ValidationError

    try:
        node = yaml.compose(text, Loader=yaml_loader())
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SpecError(_yaml_error(exc, source)) from exc
    if not isinstance(data, dict):
        raise SpecError(f"{source}: {what} is a mapping of settings, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_describe(exc, node, source)) from exc


def _yaml_error(exc: Exception, source: str) -> str:
    """One line for a YAML syntax error: the file, the line and the problem."""
    mark = getattr(exc, "problem_mark", None)
    # At the end of the stream the problem is where the unclosed construct began.
    if getattr(exc, "context_mark", None) is not None and "<stream end>" in str(exc):
        mark = exc.context_mark  # type: ignore[attr-defined]
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    return f"{where}: not valid YAML: {problem}"


def _describe(exc: Any, node: Any, source: str) -> str:
    """One line per problem, naming the field's path and its line in the file."""
    lines = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        line = _line_of(node, location)
        where = f"{source}:{line}" if line else source
        field = ".".join(location) or "(top level)"
        lines.append(f"{where}: {field}: {error['msg']}")
    return "; ".join(lines)


def _line_of(node: Any, path: list[str]) -> int | None:
    """The 1-based line of the YAML node at ``path``, or of its nearest parent."""
    import yaml

    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            return line
    return line
