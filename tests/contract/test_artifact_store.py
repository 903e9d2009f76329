"""The artifact store contract, run against every backend in ``ARTIFACT_BACKENDS``.

Each backend has one row in ``RAW``: how to reach its bytes behind the store's back,
to damage an object or leave a crashed writer's staging data, as a disk fault, an
operator or a killed process would.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from loopml.errors import IntegrityError, NotFound, StoreError
from loopml.store import ARTIFACT_BACKENDS, ArtifactStore, open_artifacts

if TYPE_CHECKING:
    from conftest import ArtifactTarget


class Raw:
    """Direct access to a backend's bytes (paths relative to the store's root)."""

    def write(self, relative: str, data: bytes) -> None:
        raise NotImplementedError

    def remove(self, relative: str) -> None:
        raise NotImplementedError

    def read(self, relative: str) -> bytes:
        raise NotImplementedError

    def make_old(self, relative: str) -> float:
        """Age an object (as time passing would); return an age it has now passed."""
        raise NotImplementedError


class LocalRaw(Raw):
    def __init__(self, target: ArtifactTarget, request: pytest.FixtureRequest) -> None:
        self.root = Path(target.url)

    def write(self, relative: str, data: bytes) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            # Committed objects are read-only; a disk fault or an operator does not care.
            path.chmod(stat.S_IRUSR | stat.S_IWUSR)
        path.write_bytes(data)

    def remove(self, relative: str) -> None:
        os.remove(self.root / relative)

    def read(self, relative: str) -> bytes:
        return (self.root / relative).read_bytes()

    def make_old(self, relative: str) -> float:
        two_hours_ago = time.time() - 7200
        os.utime(self.root / relative, (two_hours_ago, two_hours_ago))
        return 7000.0


class S3Raw(Raw):
    def __init__(self, target: ArtifactTarget, request: pytest.FixtureRequest) -> None:
        self.client = request.getfixturevalue("s3_client")
        self.bucket, _, prefix = target.url.removeprefix("s3://").partition("/")
        self.prefix = prefix.strip("/")

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def write(self, relative: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(relative), Body=data)

    def remove(self, relative: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(relative))

    def read(self, relative: str) -> bytes:
        response = self.client.get_object(Bucket=self.bucket, Key=self._key(relative))
        return bytes(response["Body"].read())

    def make_old(self, relative: str) -> float:
        # S3 sets LastModified itself (to the second): let time pass.
        time.sleep(2.5)
        return 2.0


# One row per backend in ARTIFACT_BACKENDS.
RAW: dict[str, type[Raw]] = {"file": LocalRaw, "s3": S3Raw}


def _object_key(sha256: str) -> str:
    return f"objects/{sha256[:2]}/{sha256}"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def open_store(artifact_target: ArtifactTarget, tmp_path: Path) -> Callable[[], ArtifactStore]:
    """Open a store on the target; each call is a new instance, as a new process has."""
    counter = iter(range(1_000))

    def open_() -> ArtifactStore:
        return open_artifacts(
            artifact_target.url,
            tmp_path / f"cache-{next(counter)}",
            artifact_target.s3_endpoint_url,
        )

    return open_


@pytest.fixture
def store(open_store: Callable[[], ArtifactStore]) -> ArtifactStore:
    return open_store()


@pytest.fixture
def raw(artifact_target: ArtifactTarget, request: pytest.FixtureRequest) -> Raw:
    url = artifact_target.url
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme not in RAW:
        pytest.fail(f"artifact backend {scheme!r} has no row in RAW")
    return RAW[scheme](artifact_target, request)


def _put(store: ArtifactStore, data: bytes, rows: int | None = None) -> Any:
    with store.staging() as folder:
        path = folder / "part.bin"
        path.write_bytes(data)
        stored = store.put(path, rows=rows)
        # put() moves the staged file into the store; nothing is left to clean up.
        assert not path.exists()
    return stored


def test_every_backend_has_raw_access() -> None:
    assert set(ARTIFACT_BACKENDS) <= set(RAW)


def test_put_is_content_addressed(store: ArtifactStore) -> None:
    data = b"id,amount\n1,2.5\n" * 100
    stored = _put(store, data, rows=100)
    assert stored.sha256 == _sha(data)
    assert stored.size == len(data)
    assert stored.rows == 100
    assert store.exists(stored.sha256)
    assert store.size(stored.sha256) == len(data)
    assert store.read_bytes(stored.sha256) == data
    with store.open(stored.sha256) as handle:
        assert handle.read() == data


def test_put_is_write_once(store: ArtifactStore, raw: Raw) -> None:
    data = b"same bytes, twice"
    first = _put(store, data)
    second = _put(store, data)
    third = store.put_bytes(data)
    assert first.sha256 == second.sha256 == third.sha256
    assert [sha for sha, _ in store.iter_objects()] == [first.sha256]
    assert raw.read(_object_key(first.sha256)) == data


def test_objects_persist_across_instances(
    store: ArtifactStore, open_store: Callable[[], ArtifactStore]
) -> None:
    stored = store.put_bytes(b"written by one process, read by another")
    other = open_store()
    assert other.exists(stored.sha256)
    other.verify(stored.sha256)
    assert (
        other.local_path(stored.sha256).read_bytes() == b"written by one process, read by another"
    )


def test_iter_objects_and_size(store: ArtifactStore) -> None:
    assert list(store.iter_objects()) == []
    blobs = [b"a", b"bb" * 10, b"ccc" * 1000, b""]
    shas = {store.put_bytes(blob).sha256: len(blob) for blob in blobs}
    listed = dict(store.iter_objects())
    assert set(listed) == set(shas)
    for sha256, size in shas.items():
        assert store.size(sha256) == size
        assert -5 <= listed[sha256] < 300, "an object's age is seconds since it was written"


def test_verify_accepts_a_sound_object(store: ArtifactStore) -> None:
    stored = store.put_bytes(b"sound" * 1000)
    store.verify(stored.sha256)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"X" + data[1:], id="edited"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: b"", id="emptied"),
        pytest.param(lambda data: data + b"\n", id="extended"),
    ],
)
def test_verify_detects_damage(
    store: ArtifactStore, raw: Raw, damage: Callable[[bytes], bytes]
) -> None:
    data = b"tx_id,amount\n" + b"1,10.0\n" * 500
    stored = store.put_bytes(data)
    raw.write(_object_key(stored.sha256), damage(data))
    with pytest.raises(IntegrityError, match=stored.sha256[:12]):
        store.verify(stored.sha256)
    with pytest.raises(IntegrityError):
        store.read_bytes(stored.sha256)


def test_verify_reports_a_missing_object(store: ArtifactStore, raw: Raw) -> None:
    stored = store.put_bytes(b"soon gone")
    raw.remove(_object_key(stored.sha256))
    assert not store.exists(stored.sha256)
    with pytest.raises(NotFound, match=stored.sha256[:12]):
        store.verify(stored.sha256)


def test_never_written_object_is_not_found(store: ArtifactStore) -> None:
    sha256 = _sha(b"never written")
    assert not store.exists(sha256)
    with pytest.raises(NotFound):
        store.verify(sha256)
    with pytest.raises(NotFound):
        store.local_path(sha256)


def test_delete_removes_the_object(store: ArtifactStore) -> None:
    keep = store.put_bytes(b"keep")
    drop = store.put_bytes(b"drop")
    store.delete(drop.sha256)
    assert not store.exists(drop.sha256)
    assert [sha for sha, _ in store.iter_objects()] == [keep.sha256]
    with pytest.raises(NotFound):
        store.verify(drop.sha256)


def test_local_path_holds_the_verified_bytes(store: ArtifactStore) -> None:
    data = b"parquet would be here" * 100
    stored = store.put_bytes(data)
    path = store.local_path(stored.sha256)
    assert path.read_bytes() == data
    assert store.local_path(stored.sha256).read_bytes() == data


def test_local_path_verifies_the_checksum(
    store: ArtifactStore, raw: Raw, open_store: Callable[[], ArtifactStore]
) -> None:
    data = b"tx_id,amount\n" + b"2,20.0\n" * 500
    stored = store.put_bytes(data)
    raw.write(_object_key(stored.sha256), b"tampered" + data[8:])
    # A reader in another process has verified nothing yet.
    reader = open_store()
    with pytest.raises(IntegrityError, match=stored.sha256[:12]):
        reader.local_path(stored.sha256)
    # A failed read leaves no copy behind that a retry could take for verified.
    with pytest.raises(IntegrityError):
        reader.local_path(stored.sha256)


def test_reading_gives_the_bytes_and_its_check_refuses_damage(
    store: ArtifactStore, raw: Raw, open_store: Callable[[], ArtifactStore]
) -> None:
    sound = store.put_bytes(b"a,b\n" + b"1,2\n" * 400)
    damaged = store.put_bytes(b"tx_id,amount\n" + b"3,30.0\n" * 500)
    raw.write(_object_key(damaged.sha256), b"tampered" * 10)
    reader = open_store()  # another process: nothing verified yet
    paths, check = reader.reading([sound.sha256])
    assert paths[0].read_bytes() == b"a,b\n" + b"1,2\n" * 400
    check()
    # Whether the check comes before the read or after it, a damaged object is refused
    # before its bytes are trusted, and again on the next try.
    for _ in range(2):
        with pytest.raises(IntegrityError, match=damaged.sha256[:12]):
            _paths, check = reader.reading([sound.sha256, damaged.sha256])
            check()


@pytest.mark.parametrize("way", ["local_path", "reading"])
def test_a_missing_object_is_not_found(
    store: ArtifactStore, raw: Raw, open_store: Callable[[], ArtifactStore], way: str
) -> None:
    stored = store.put_bytes(b"about to vanish")
    raw.remove(_object_key(stored.sha256))
    reader = open_store()
    with pytest.raises(NotFound):
        if way == "local_path":
            reader.local_path(stored.sha256)
        else:
            reader.reading([stored.sha256])


def test_staging_folder_is_local_and_removed_on_exit(store: ArtifactStore) -> None:
    with store.staging() as folder:
        assert folder.is_dir()
        (folder / "part-00000.parquet").write_bytes(b"work in progress")
    assert not folder.exists()
    with pytest.raises(RuntimeError), store.staging() as failing:
        (failing / "half").write_bytes(b"half")
        raise RuntimeError("the writer failed")
    assert not failing.exists()
    assert store.staging_entries() == []


def test_staging_entries_are_listed_and_removed(store: ArtifactStore, raw: Raw) -> None:
    # What writers killed between staging and put() leave behind.
    raw.write("staging/crashed-writer-a/part-00000.parquet", b"half a part")
    raw.write("staging/crashed-writer-b/blob", b"another")
    entries = dict(store.staging_entries())
    assert set(entries) == {"crashed-writer-a", "crashed-writer-b"}
    assert all(-5 <= age < 300 for age in entries.values())
    store.remove_staging("crashed-writer-a")
    assert [name for name, _ in store.staging_entries()] == ["crashed-writer-b"]
    store.remove_staging("crashed-writer-b")
    assert store.staging_entries() == []
    # Staging data is never an object.
    assert list(store.iter_objects()) == []


@pytest.mark.parametrize("name", ["", ".", "..", "../objects", "a/b"])
def test_remove_staging_rejects_paths(store: ArtifactStore, name: str) -> None:
    with pytest.raises(StoreError):
        store.remove_staging(name)


@pytest.mark.parametrize("address", ["../../etc/passwd", "abc", "G" * 64, "A" * 64])
def test_addresses_are_checked(store: ArtifactStore, address: str) -> None:
    with pytest.raises(StoreError):
        store.exists(address)
    with pytest.raises(StoreError):
        store.verify(address)


def test_unknown_scheme_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="gopher"):
        open_artifacts("gopher://host/path", tmp_path / "cache")


def _same_folder_bytes(sha256: str) -> bytes:
    """Bytes whose address shares ``sha256``'s two-character folder under objects/."""
    for counter in range(100_000):
        data = f"another writer's object {counter}".encode()
        if _sha(data)[:2] == sha256[:2]:
            return data
    raise AssertionError("no bytes found for the folder")


def test_objects_written_and_removed_elsewhere_are_seen(store: ArtifactStore, raw: Raw) -> None:
    """A long-lived store (a server, a gc run) sees what other processes do after it listed."""
    first = store.put_bytes(b"listed before another process wrote")
    assert [sha for sha, _ in store.iter_objects()] == [first.sha256]
    data = _same_folder_bytes(first.sha256)
    raw.write(_object_key(_sha(data)), data)
    assert store.exists(_sha(data))
    store.verify(_sha(data))
    assert _sha(data) in dict(store.iter_objects())
    raw.remove(_object_key(first.sha256))
    assert not store.exists(first.sha256)
    with pytest.raises(NotFound):
        store.verify(first.sha256)


def test_putting_an_object_again_makes_it_young(store: ArtifactStore, raw: Raw) -> None:
    """gc's age guard must protect what a running writer has just stored.

    A crashed writer leaves an orphan; a retry of the same data puts the same bytes.
    Until the retry commits, gc must not take the object for an old orphan.
    """
    data = b"stored by a writer that then crashed"
    orphan = store.put_bytes(data)
    old = raw.make_old(_object_key(orphan.sha256))
    assert dict(store.iter_objects())[orphan.sha256] >= old
    again = store.put_bytes(data)
    assert again.sha256 == orphan.sha256
    assert dict(store.iter_objects())[again.sha256] < old
