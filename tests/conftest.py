"""Shared fixtures: real backends for every store, and workspaces over each combination.

Nothing here is mocked. PostgreSQL is the server at ``127.0.0.1:5432`` (trust auth);
every test that asks for it gets a database of its own, created for it and dropped
after it. S3 is moto's standalone server, started once per session on a free loopback
port; every test gets a bucket of its own.

Backends are listed once, in ``METADATA_URL_MAKERS`` and ``ARTIFACT_URL_MAKERS``,
keyed like ``loopml.store.METADATA_BACKENDS`` and ``ARTIFACT_BACKENDS``. The
parametrised fixtures run over every backend that loopml registers, and fail (they
never skip) when a backend has no maker here, so a new backend is a new row in a
table below, not a new set of tests.

Fixtures, from the most specific to the most general:

``pg_url``
    (session) a fresh PostgreSQL database for the whole session, dropped at its end.
``fresh_pg_url``
    (function) a fresh PostgreSQL database for one test, dropped after it.
``s3_server``
    (session) the moto endpoint URL, with fake AWS credentials in the environment.
``s3_client``
    (session) a boto3 S3 client on that endpoint, to inspect or damage objects.
``metadata_url``
    (function, parametrised over ``METADATA_BACKENDS``: ids ``sqlite``,
    ``postgresql``) the URL of an empty metadata database.
``artifact_target``
    (function, parametrised over ``ARTIFACT_BACKENDS``: ids ``local``, ``s3``) an
    ``ArtifactTarget`` with the URL and endpoint of an empty artifact store.
``workspace_factory``
    (function, parametrised over metadata x artifacts: ids ``sqlite-local``,
    ``sqlite-s3``, ``postgresql-local``, ``postgresql-s3``) a ``WorkspaceFactory``
    that opens (and closes at teardown) workspaces on one shared set of stores.
``ws``
    (function) ``workspace_factory()``: an opened workspace, for each combination.
``make_csv``
    (function) writes rows to a CSV file under ``tmp_path``; see ``write_csv``.
``loopml_cli``
    (function) runs the ``loopml`` command line in a subprocess.

A test that wants fewer combinations overrides the parametrisation with
``@pytest.mark.parametrize("workspace_factory", ["sqlite-local"], indirect=True)``
(the same works for ``metadata_url`` and ``artifact_target``).
"""

from __future__ import annotations

import csv
import itertools
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import loopml
from loopml.store import ARTIFACT_BACKENDS, METADATA_BACKENDS
from loopml.workspace import Workspace

PG_HOST = os.environ.get("LOOPML_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("LOOPML_TEST_PG_PORT", "5432"))
PG_ADMIN_DATABASE = os.environ.get("LOOPML_TEST_PG_DATABASE", "test")
PG_USERS = ("postgres", "root")

# The `loopml` console script of the interpreter running the tests.
LOOPML_BIN = str(Path(sys.executable).with_name("loopml"))

# How each artifact backend is named in test ids ("file" reads badly next to "s3").
ARTIFACT_IDS = {"file": "local", "s3": "s3"}


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class PostgresServer:
    """The PostgreSQL server the tests use, and a way to make throwaway databases."""

    host: str
    port: int
    user: str

    def admin(self) -> psycopg.Connection[Any]:
        """An autocommit connection to the admin database (CREATE/DROP DATABASE need one)."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=PG_ADMIN_DATABASE,
            autocommit=True,
            connect_timeout=5,
        )

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """Create an empty database with a unique name and return that name."""
        name = f"loopml_test_{uuid.uuid4().hex[:16]}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing any connection still open to it (left by a killed child)."""
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    """The PostgreSQL server; fails (never skips) the tests when it cannot be reached."""
    errors = []
    for user in PG_USERS:
        server = PostgresServer(PG_HOST, PG_PORT, user)
        try:
            with server.admin() as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            errors.append(f"{user}: {exc}")
            continue
        return server
    pytest.fail(
        f"PostgreSQL at {PG_HOST}:{PG_PORT}/{PG_ADMIN_DATABASE} is needed: {'; '.join(errors)}"
    )


@pytest.fixture(scope="session")
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL database shared by the whole session, dropped at its end."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture
def fresh_pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped after it (about 0.1 s)."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


# --------------------------------------------------------------------------- S3 (moto)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Start moto's standalone S3 server on a free loopback port; yield its endpoint URL.

    Fake credentials go into ``os.environ`` for the whole session, so subprocesses
    (the CLI) inherit them too.
    """
    from moto.server import ThreadedMotoServer

    # One log line per request would bury every failure report.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_server: str) -> Any:
    """A boto3 S3 client on the moto server, for looking at (or damaging) objects directly."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")


def unique_bucket() -> str:
    """A bucket name no other test uses."""
    return f"loopml-test-{uuid.uuid4().hex[:20]}"


# --------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class ArtifactTarget:
    """Where an artifact store lives: its URL and, for S3, the endpoint."""

    url: str
    s3_endpoint_url: str | None = None


def _sqlite_url(request: pytest.FixtureRequest, root: Path) -> str:
    return f"sqlite:///{root / 'metadata.db'}"


def _postgresql_url(request: pytest.FixtureRequest, root: Path) -> str:
    return str(request.getfixturevalue("fresh_pg_url"))


def _local_target(request: pytest.FixtureRequest, root: Path) -> ArtifactTarget:
    return ArtifactTarget(str(root / "artifacts"))


def _s3_target(request: pytest.FixtureRequest, root: Path) -> ArtifactTarget:
    endpoint = request.getfixturevalue("s3_server")
    return ArtifactTarget(f"s3://{unique_bucket()}/loopml", endpoint)


# One row per backend, keyed like loopml.store.METADATA_BACKENDS / ARTIFACT_BACKENDS.
METADATA_URL_MAKERS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": _sqlite_url,
    "postgresql": _postgresql_url,
}
ARTIFACT_URL_MAKERS: dict[str, Callable[[pytest.FixtureRequest, Path], ArtifactTarget]] = {
    "file": _local_target,
    "s3": _s3_target,
}


def _artifact_scheme(test_id: str) -> str:
    return {v: k for k, v in ARTIFACT_IDS.items()}.get(test_id, test_id)


def _metadata_url_for(scheme: str, request: pytest.FixtureRequest, root: Path) -> str:
    maker = METADATA_URL_MAKERS.get(scheme)
    if maker is None:
        pytest.fail(f"metadata backend {scheme!r} has no URL maker in tests/conftest.py")
    return maker(request, root)


def _artifact_target_for(scheme: str, request: pytest.FixtureRequest, root: Path) -> ArtifactTarget:
    maker = ARTIFACT_URL_MAKERS.get(scheme)
    if maker is None:
        pytest.fail(f"artifact backend {scheme!r} has no URL maker in tests/conftest.py")
    return maker(request, root)


METADATA_IDS = sorted(METADATA_BACKENDS)
ARTIFACT_BACKEND_IDS = [ARTIFACT_IDS.get(scheme, scheme) for scheme in sorted(ARTIFACT_BACKENDS)]
COMBINATION_IDS = [
    f"{metadata}-{artifacts}"
    for metadata, artifacts in itertools.product(METADATA_IDS, ARTIFACT_BACKEND_IDS)
]


@pytest.fixture(params=METADATA_IDS)
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty metadata database, for each backend in ``METADATA_BACKENDS``."""
    return _metadata_url_for(request.param, request, tmp_path)


@pytest.fixture(params=ARTIFACT_BACKEND_IDS)
def artifact_target(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactTarget:
    """An empty artifact store's URL and endpoint, for each backend in ``ARTIFACT_BACKENDS``."""
    return _artifact_target_for(_artifact_scheme(request.param), request, tmp_path)


# --------------------------------------------------------------------------- workspaces


class WorkspaceFactory:
    """Opens workspaces on one metadata database and one artifact store.

    Every workspace it opens shares the stores, so a second ``open()`` sees what the
    first wrote, as another process would. All of them are closed at teardown.

    Attributes:
        backend: the combination's id, such as ``"postgresql-s3"``.
        root: the default workspace folder.
        metadata_url: the metadata database URL.
        artifacts_url: the artifact store URL.
        s3_endpoint_url: the S3 endpoint, or None for a local store.
    """

    def __init__(self, backend: str, root: Path, metadata_url: str, target: ArtifactTarget) -> None:
        self.backend = backend
        self.root = root
        self.metadata_url = metadata_url
        self.artifacts_url = target.url
        self.s3_endpoint_url = target.s3_endpoint_url
        self._opened: list[Workspace] = []

    def __call__(self, root: Path | None = None, *, user: str | None = None) -> Workspace:
        """Open a workspace (folder ``root``, default ``self.root``) on the shared stores."""
        workspace = loopml.open(
            root or self.root,
            metadata_url=self.metadata_url,
            artifacts_url=self.artifacts_url,
            s3_endpoint_url=self.s3_endpoint_url,
            user=user,
        )
        self._opened.append(workspace)
        return workspace

    def cli_env(self, **extra: str) -> dict[str, str]:
        """The environment that points ``loopml -w ROOT ...`` subprocesses at these stores."""
        env = {
            **os.environ,
            "LOOPML_METADATA_URL": self.metadata_url,
            "LOOPML_ARTIFACTS_URL": self.artifacts_url,
            **extra,
        }
        if self.s3_endpoint_url:
            env["LOOPML_S3_ENDPOINT_URL"] = self.s3_endpoint_url
        return env

    def close_all(self) -> None:
        """Close every workspace this factory opened."""
        for workspace in self._opened:
            workspace.close()
        self._opened.clear()

    def __repr__(self) -> str:
        return f"WorkspaceFactory({self.backend!r})"


@pytest.fixture(params=COMBINATION_IDS)
def workspace_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkspaceFactory]:
    """A ``WorkspaceFactory`` for each metadata x artifacts combination (``sqlite-local``...)."""
    metadata, _, artifacts = str(request.param).partition("-")
    factory = WorkspaceFactory(
        request.param,
        tmp_path / "workspace",
        _metadata_url_for(metadata, request, tmp_path),
        _artifact_target_for(_artifact_scheme(artifacts), request, tmp_path),
    )
    yield factory
    factory.close_all()


@pytest.fixture
def ws(workspace_factory: WorkspaceFactory) -> Workspace:
    """An opened workspace, once for each metadata x artifacts combination."""
    return workspace_factory()


# --------------------------------------------------------------------------- files and CLI


def write_csv(
    path: Path,
    rows: Iterable[Mapping[str, Any] | Sequence[Any]],
    *,
    columns: Sequence[str] | None = None,
    delimiter: str = ",",
) -> Path:
    """Write ``rows`` to the CSV file ``path`` with a header line, and return ``path``.

    Rows are mappings (columns come from the first row unless given) or sequences
    (then ``columns`` names them). ``None`` is written as an empty field.
    """
    rows = list(rows)
    if columns is None:
        if not rows or not isinstance(rows[0], Mapping):
            raise ValueError("write_csv needs columns= for rows that are not mappings")
        columns = list(rows[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(columns)
        for row in rows:
            values = [row.get(c) for c in columns] if isinstance(row, Mapping) else list(row)
            writer.writerow(["" if v is None else v for v in values])
    return path


@pytest.fixture
def make_csv(tmp_path: Path) -> Callable[..., Path]:
    """A function writing rows to a new CSV file under ``tmp_path``; returns its path.

    ``make_csv(rows, *, columns=None, name=None, directory=None, delimiter=",")``;
    without ``name`` each call gets a new file (``data-1.csv``, ``data-2.csv``...).

    Example:
        >>> path = make_csv([{"id": 1, "amount": 2.5}, {"id": 2, "amount": 4.0}])
    """
    counter = itertools.count(1)

    def make(
        rows: Iterable[Mapping[str, Any] | Sequence[Any]],
        *,
        columns: Sequence[str] | None = None,
        name: str | None = None,
        directory: Path | None = None,
        delimiter: str = ",",
    ) -> Path:
        folder = directory or tmp_path
        path = folder / (name or f"data-{next(counter)}.csv")
        return write_csv(path, rows, columns=columns, delimiter=delimiter)

    return make


@pytest.fixture
def loopml_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``loopml ARGS...`` in a subprocess; returns the completed process (text output).

    ``loopml_cli(*args, env=None, timeout=120, cwd=None)``; the exit code is not checked.
    """

    def run(
        *args: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LOOPML_BIN, *map(str, args)],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
