"""The metadata database: one SQLAlchemy engine, migrated on open, with serialised writes.

Backends are chosen by URL scheme from ``METADATA_BACKENDS``. They differ only in how
they open and how a write transaction takes the workspace's write lock:

- SQLite runs in WAL mode; a write transaction starts with ``BEGIN IMMEDIATE``.
- PostgreSQL takes a transaction-scoped advisory lock.

Write transactions are short (one metadata row and its audit event), so serialising
them costs little and keeps version numbers and the audit chain free of races.
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopml.errors import StoreError

_MIGRATIONS = Path(__file__).parent / "migrations"
HEAD_REVISION = "0007"
_WRITE_LOCK_KEY = 0x6C6F6F706D6C  # "loopml"


class MetadataStore(ABC):
    """The shared contract of the metadata backends.

    Use ``read()`` for consistent reads and ``write()`` for changes; both yield a
    SQLAlchemy connection inside a transaction that commits on success.
    """

    scheme: ClassVar[str]

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = self._create_engine(url)
        self._migrated = False
        self._lock = threading.Lock()

    @abstractmethod
    def _create_engine(self, url: str) -> Engine: ...

    @abstractmethod
    def _take_write_lock(self, conn: Connection) -> None: ...

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Yield a connection in a read transaction."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.OperationalError as exc:
            raise StoreError(f"metadata database {self.safe_url} failed: {exc.orig}") from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """Yield a connection in a transaction that holds the workspace's write lock."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(loopml_write=True)
                with conn.begin():
                    self._take_write_lock(conn)
                    yield conn
        except sa.exc.OperationalError as exc:
            raise StoreError(f"metadata database {self.safe_url} failed: {exc.orig}") from exc

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def migrate(self) -> None:
        """Bring the schema to the newest revision; safe when several processes race."""
        with self._lock:
            if self._migrated:
                return
            try:
                with self.engine.connect() as conn:
                    current = self._revision(conn)
                    conn.rollback()
                if current != HEAD_REVISION:
                    self._upgrade()
            except sa.exc.OperationalError as exc:
                raise StoreError(
                    f"cannot open metadata database {self.safe_url}: {exc.orig}",
                    hint="check that the database is running and the URL is right",
                ) from exc
            self._migrated = True

    @staticmethod
    def _revision(conn: Connection) -> str | None:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def _upgrade(self) -> None:
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.connect() as conn:
            conn = conn.execution_options(loopml_write=True)
            with conn.begin():
                self._take_write_lock(conn)
                # Another process may have migrated while we waited for the lock.
                if self._revision(conn) != HEAD_REVISION:
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


class SQLiteMetadataStore(MetadataStore):
    """SQLite in WAL mode: the embedded default, one file beside the workspace."""

    scheme = "sqlite"

    def _create_engine(self, url: str) -> Engine:
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own
            # transaction handling would defer it and break BEGIN IMMEDIATE).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA busy_timeout=60000")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("loopml_write"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

        return engine

    def _take_write_lock(self, conn: Connection) -> None:
        # BEGIN IMMEDIATE already holds SQLite's single write lock.
        return None


def _enable_wal(cursor: Any) -> None:
    """Switch a SQLite database to WAL once; racing first openers retry.

    Changing the journal mode needs an exclusive lock and does not wait on the busy
    timeout, so two processes creating one database at once can see "locked".
    """
    import sqlite3

    for attempt in range(100):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.02 + random.random() * 0.05)


class PostgresMetadataStore(MetadataStore):
    """PostgreSQL, for teams sharing one workspace."""

    scheme = "postgresql"

    def _create_engine(self, url: str) -> Engine:
        return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)

    def _take_write_lock(self, conn: Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK_KEY})


METADATA_BACKENDS: dict[str, type[MetadataStore]] = {
    "sqlite": SQLiteMetadataStore,
    "postgresql": PostgresMetadataStore,
}


def open_metadata(url: str) -> MetadataStore:
    """Open (and migrate) the metadata store for ``url``.

    Raises:
        StoreError: the scheme is unknown or the database cannot be reached.
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    backend = METADATA_BACKENDS.get(scheme)
    if backend is None:
        raise StoreError(
            f"unsupported metadata URL scheme {scheme!r}",
            hint=f"use one of: {', '.join(sorted(METADATA_BACKENDS))}",
        )
    try:
        store = backend(url)
    except (sa.exc.ArgumentError, ModuleNotFoundError, ValueError) as exc:
        raise StoreError(f"cannot use metadata URL for {scheme}: {exc}") from exc
    try:
        store.migrate()
    except BaseException:
        store.dispose()
        raise
    return store
