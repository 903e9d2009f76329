"""The metadata store contract, run against every backend in ``METADATA_BACKENDS``."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from loopml.errors import StoreError
from loopml.store import METADATA_BACKENDS, MetadataStore, open_metadata
from loopml.store.metadata import HEAD_REVISION
from loopml.store.tables import datasets

TABLES = {
    "alembic_version",
    "datasets",
    "dataset_versions",
    "objects",
    "audit_events",
    "audit_head",
}


@pytest.fixture
def store(metadata_url: str) -> Iterator[MetadataStore]:
    opened = open_metadata(metadata_url)
    yield opened
    opened.dispose()


def _revisions(store: MetadataStore) -> list[str]:
    with store.read() as conn:
        return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def _dataset_names(store: MetadataStore) -> list[str]:
    with store.read() as conn:
        return list(conn.execute(sa.select(datasets.c.name).order_by(datasets.c.name)).scalars())


def _add_dataset(conn: sa.Connection, name: str) -> None:
    conn.execute(
        datasets.insert().values(
            name=name, owner="tester", created_at=datetime.now(UTC), description=""
        )
    )


def _open_and_report(url: str, start: Any, results: Any) -> None:
    # Runs in a child process: wait until every child is ready, then all open at once.
    start.wait(60)
    try:
        store = open_metadata(url)
        try:
            results.put(_revisions(store))
        finally:
            store.dispose()
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")
        raise


def test_every_backend_is_tested() -> None:
    from conftest import METADATA_URL_MAKERS

    assert set(METADATA_BACKENDS) <= set(METADATA_URL_MAKERS)


def test_open_migrates_to_head(store: MetadataStore) -> None:
    with store.read() as conn:
        assert set(sa.inspect(conn).get_table_names()) >= TABLES
    assert _revisions(store) == [HEAD_REVISION]


def test_migrations_are_idempotent(store: MetadataStore, metadata_url: str) -> None:
    with store.write() as conn:
        _add_dataset(conn, "kept")
    store.migrate()
    again = open_metadata(metadata_url)
    try:
        again.migrate()
        assert _revisions(again) == [HEAD_REVISION]
        assert _dataset_names(again) == ["kept"]
    finally:
        again.dispose()


def test_processes_opening_a_fresh_database_at_once_all_succeed(metadata_url: str) -> None:
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(2), spawn.Queue()
    children = [
        spawn.Process(target=_open_and_report, args=(metadata_url, start, results))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    reports = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(30)
    assert reports == [[HEAD_REVISION]] * 2
    assert [child.exitcode for child in children] == [0, 0]
    store = open_metadata(metadata_url)
    try:
        assert _revisions(store) == [HEAD_REVISION]
    finally:
        store.dispose()


def test_write_commits(store: MetadataStore) -> None:
    with store.write() as conn:
        _add_dataset(conn, "a")
        _add_dataset(conn, "b")
    assert _dataset_names(store) == ["a", "b"]


def test_write_rolls_back_on_exception(store: MetadataStore) -> None:
    with store.write() as conn:
        _add_dataset(conn, "before")
    with pytest.raises(RuntimeError, match="midway"), store.write() as conn:
        _add_dataset(conn, "half")
        conn.execute(datasets.update().where(datasets.c.name == "before").values(owner="changed"))
        raise RuntimeError("failed midway")
    assert _dataset_names(store) == ["before"]
    with store.read() as conn:
        owner = conn.execute(sa.select(datasets.c.owner).where(datasets.c.name == "before"))
        assert owner.scalar_one() == "tester"


def test_failed_statement_rolls_back_the_whole_transaction(store: MetadataStore) -> None:
    with pytest.raises(sa.exc.IntegrityError), store.write() as conn:
        _add_dataset(conn, "first")
        _add_dataset(conn, "first")  # the primary key refuses a second row
    assert _dataset_names(store) == []


def test_reads_do_not_see_uncommitted_writes(store: MetadataStore) -> None:
    with store.write() as conn:
        _add_dataset(conn, "pending")
        assert _dataset_names(store) == []
    assert _dataset_names(store) == ["pending"]


def test_write_transactions_are_serialised(store: MetadataStore, metadata_url: str) -> None:
    """A second writer (another store, as another process has) waits for the first."""
    other = open_metadata(metadata_url)
    holding = threading.Event()
    seen: list[list[str]] = []
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            holding.wait(10)
            with other.write() as conn:
                names = list(conn.execute(sa.select(datasets.c.name)).scalars())
                seen.append(names)
                _add_dataset(conn, f"after-{len(names)}")
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=second_writer)
    thread.start()
    try:
        with store.write() as conn:
            _add_dataset(conn, "first")
            holding.set()
            time.sleep(0.5)
            assert seen == [], "the second writer ran while the first held the write lock"
        thread.join(30)
    finally:
        other.dispose()
    assert not errors, errors
    # The second writer read after the first committed: no lost update.
    assert seen == [["first"]]
    assert _dataset_names(store) == ["after-1", "first"]


def test_unknown_scheme_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="mysql"):
        open_metadata("mysql://localhost/loopml")


def test_unreachable_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").mkdir()
    # A folder where the database file should be: SQLite cannot open it.
    with pytest.raises(StoreError):
        open_metadata(f"sqlite:///{tmp_path / 'not-a-db'}")
    with pytest.raises(StoreError, match="cannot open metadata database"):
        open_metadata("postgresql+psycopg://nobody@127.0.0.1:1/loopml?connect_timeout=2")


def test_safe_url_hides_passwords() -> None:
    store = METADATA_BACKENDS["postgresql"]("postgresql+psycopg://ml:s3cret@db.internal/loopml")
    assert "s3cret" not in store.safe_url
    assert "db.internal" in store.safe_url
