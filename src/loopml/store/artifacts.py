"""The artifact store: write-once, content-addressed objects on a local folder or S3.

Layout under the store's root::

    objects/ab/abcdef...   committed objects, named by the sha256 of their bytes
    staging/<id>/...       work in progress; never read as committed data

Every writer stages its files first, then ``put()`` hashes the staged bytes (that
read-back is the verification) and moves them into ``objects/``. A crash leaves only
staging data, which ``gc`` removes. Backends come from ``ARTIFACT_BACKENDS`` by scheme.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, ClassVar

from loopml.errors import IntegrityError, NotFound, StoreError
from loopml.records import StoredObject

_CHUNK = 4 << 20
_LOCAL = "local:"  # marks an S3 store's local staging entries


def file_sha256(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Return the sha256 hex digest and size of a local file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _age(folder: Path) -> float:
    """Seconds since anything in ``folder`` last changed.

    The folder's own time changes only when entries are added or removed, not while a
    file in it grows, so the newest file decides.
    """
    stamps = [folder.stat().st_mtime]
    stamps += [entry.stat().st_mtime for entry in folder.rglob("*")]
    return time.time() - max(stamps)


def _check_sha(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise StoreError(f"not an object address: {sha256!r}")
    return sha256


class ArtifactStore(ABC):
    """The shared contract of the artifact backends."""

    scheme: ClassVar[str]

    def __init__(self, url: str, cache_dir: Path) -> None:
        self.url = url
        self.cache_dir = cache_dir

    @contextmanager
    @abstractmethod
    def staging(self) -> Iterator[Path]:
        """Yield a fresh local folder to write files in before ``put()``; removed on exit."""

    @abstractmethod
    def put(self, path: Path, rows: int | None = None) -> StoredObject:
        """Move a staged file into the store under its content address.

        The bytes are hashed as they are read back, so the address is what was
        written. An object that already exists is kept (write-once).
        """

    @abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether the object is in the store."""

    @abstractmethod
    def open(self, sha256: str) -> IO[bytes]:
        """Open an object for reading, without verifying it (see ``local_path``)."""

    @abstractmethod
    def local_path(self, sha256: str) -> Path:
        """A local path holding the object's bytes, verified against its address."""

    @abstractmethod
    def iter_objects(self) -> Iterator[tuple[str, float]]:
        """Every object address in the store, with its age in seconds."""

    @abstractmethod
    def size(self, sha256: str) -> int:
        """An object's size in bytes."""

    @abstractmethod
    def delete(self, sha256: str) -> None:
        """Remove an object (gc only: committed records must not refer to it)."""

    @abstractmethod
    def staging_entries(self) -> list[tuple[str, float]]:
        """Every staging entry in the store, with its age in seconds."""

    @abstractmethod
    def remove_staging(self, name: str) -> None:
        """Remove one staging entry."""

    def reading(self, hashes: Sequence[str]) -> tuple[list[Path], Callable[[], None]]:
        """Local paths to read objects from now, and a check to call before trusting
        what was read from them (it raises ``IntegrityError`` for a damaged object).

        Here the objects are verified (or downloaded) first and the check is a no-op;
        a local store verifies them while the caller reads.

        Raises:
            NotFound: an object is missing.
            IntegrityError: an object is damaged (here, or from the check).
        """
        if len(hashes) < 2:
            return [self.local_path(sha256) for sha256 in hashes], lambda: None
        from concurrent.futures import ThreadPoolExecutor

        # Downloading and hashing release the GIL: the objects come side by side.
        with ThreadPoolExecutor(min(4, len(hashes))) as pool:
            return list(pool.map(self.local_path, hashes)), lambda: None

    def verify(self, sha256: str) -> None:
        """Re-hash an object and compare it with its address.

        Raises:
            NotFound: the object is missing.
            IntegrityError: its bytes do not match its address.
        """
        if not self.exists(sha256):
            raise NotFound(f"object {sha256[:12]} is missing from {self.url}")
        digest = hashlib.sha256()
        with self.open(sha256) as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise IntegrityError(
                f"object {sha256[:12]} in {self.url} is corrupt: its bytes hash to "
                f"{digest.hexdigest()[:12]}",
                hint="restore it from a backup; `loopml fsck` lists every damaged object",
            )

    def read_bytes(self, sha256: str) -> bytes:
        """Read a whole (small) object and verify it."""
        with self.open(sha256) as handle:
            data = handle.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"object {sha256[:12]} in {self.url} is corrupt")
        return data

    def put_bytes(self, data: bytes) -> StoredObject:
        """Store a small object from memory."""
        with self.staging() as folder:
            path = folder / "blob"
            path.write_bytes(data)
            return self.put(path)


class LocalArtifactStore(ArtifactStore):
    """A folder on the local file system; staging sits beside the objects so moves are renames."""

    scheme = "file"

    def __init__(self, url: str, cache_dir: Path) -> None:
        super().__init__(url, cache_dir)
        self.root = Path(url.removeprefix("file://")).expanduser().absolute()
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "staging").mkdir(parents=True, exist_ok=True)
        self._verified: set[str] = set()

    def _object_path(self, sha256: str) -> Path:
        sha256 = _check_sha(sha256)
        return self.root / "objects" / sha256[:2] / sha256

    @contextmanager
    def staging(self) -> Iterator[Path]:
        folder = self.root / "staging" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def put(self, path: Path, rows: int | None = None) -> StoredObject:
        sha256, size = file_sha256(path)
        target = self._object_path(sha256)
        if target.exists():
            path.unlink()
            # Refresh its age: gc removes uncommitted objects by age, and this one is
            # about to be committed (again).
            os.utime(target)
        else:
            target.parent.mkdir(exist_ok=True)
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(path, 0o444)
            os.replace(path, target)
        self._verified.add(sha256)
        return StoredObject(sha256=sha256, size=size, rows=rows)

    def exists(self, sha256: str) -> bool:
        return self._object_path(sha256).exists()

    def open(self, sha256: str) -> IO[bytes]:
        try:
            return open(self._object_path(sha256), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"object {sha256[:12]} is missing from {self.url}") from exc

    def local_path(self, sha256: str) -> Path:
        # Verify once per process: re-hashing on every read would double read costs.
        if sha256 not in self._verified:
            self.verify(sha256)
            self._verified.add(sha256)
        return self._object_path(sha256)

    def reading(self, hashes: Sequence[str]) -> tuple[list[Path], Callable[[], None]]:
        # Hashing releases the GIL: objects not yet verified in this process are hashed
        # on threads while the caller reads them (a 36 MB Parquet file: 50 ms of hashing
        # that would come before Arrow's read, which takes about as long).
        paths = []
        for sha256 in hashes:
            if not self.exists(sha256):
                raise NotFound(f"object {sha256[:12]} is missing from {self.url}")
            paths.append(self._object_path(sha256))
        unverified = [h for h in dict.fromkeys(hashes) if h not in self._verified]
        if not unverified:
            return paths, lambda: None
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(min(4, len(unverified)), thread_name_prefix="loopml-verify")
        checks = [pool.submit(self.verify, sha256) for sha256 in unverified]
        pool.shutdown(wait=False)

        def check() -> None:
            for sha256, done in zip(unverified, checks, strict=True):
                done.result()
                self._verified.add(sha256)

        return paths, check

    def iter_objects(self) -> Iterator[tuple[str, float]]:
        now = time.time()
        for prefix in sorted((self.root / "objects").iterdir()):
            for entry in sorted(prefix.iterdir()):
                yield entry.name, now - entry.stat().st_mtime

    def size(self, sha256: str) -> int:
        return self._object_path(sha256).stat().st_size

    def delete(self, sha256: str) -> None:
        self._object_path(sha256).unlink(missing_ok=True)
        self._verified.discard(sha256)

    def staging_entries(self) -> list[tuple[str, float]]:
        return [(entry.name, _age(entry)) for entry in sorted((self.root / "staging").iterdir())]

    def remove_staging(self, name: str) -> None:
        if "/" in name or name in {"", ".", ".."}:
            raise StoreError(f"not a staging entry: {name!r}")
        shutil.rmtree(self.root / "staging" / name, ignore_errors=True)


class S3ArtifactStore(ArtifactStore):
    """An S3-compatible bucket and prefix, through s3fs.

    Files are written locally first (Parquet writers need a seekable file), uploaded
    to ``staging/``, checked, then copied to ``objects/``.
    """

    scheme = "s3"

    def __init__(self, url: str, cache_dir: Path, endpoint_url: str | None = None) -> None:
        super().__init__(url, cache_dir)
        try:
            import s3fs
        except ModuleNotFoundError as exc:
            raise StoreError(
                "an s3:// artifact store needs s3fs", hint="pip install 'loopml[s3]'"
            ) from exc
        # No listing cache: other processes write and delete objects under us.
        options: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
        if endpoint_url:
            options["client_kwargs"] = {"endpoint_url": endpoint_url}
        self.fs = s3fs.S3FileSystem(**options)
        self.prefix = url.removeprefix("s3://").rstrip("/")
        self._verified: set[str] = set()
        try:
            bucket = self.prefix.split("/", 1)[0]
            if not self.fs.exists(bucket):
                self.fs.mkdir(bucket)
        except Exception as exc:  # s3fs raises botocore and aiohttp errors of many types
            raise StoreError(f"cannot reach artifact store {url}: {exc}") from exc

    def _key(self, sha256: str) -> str:
        sha256 = _check_sha(sha256)
        return f"{self.prefix}/objects/{sha256[:2]}/{sha256}"

    @contextmanager
    def staging(self) -> Iterator[Path]:
        local = self.cache_dir / "staging"
        local.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=local))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def put(self, path: Path, rows: int | None = None) -> StoredObject:
        sha256, size = file_sha256(path)
        target = self._key(sha256)
        try:
            # Written even when it exists: equal bytes, and a fresh LastModified keeps
            # gc (which removes uncommitted objects by age) off an object about to commit.
            staged = f"{self.prefix}/staging/{uuid.uuid4().hex}/{sha256}"
            self.fs.put_file(str(path), staged)
            if self.fs.info(staged)["size"] != size:
                raise IntegrityError(f"upload of {path.name} to {staged} was truncated")
            self.fs.copy(staged, target)
            self.fs.rm(staged)
        except IntegrityError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot write object to {self.url}: {exc}") from exc
        path.unlink(missing_ok=True)
        self._verified.add(sha256)
        return StoredObject(sha256=sha256, size=size, rows=rows)

    def exists(self, sha256: str) -> bool:
        return bool(self.fs.exists(self._key(sha256)))

    def open(self, sha256: str) -> IO[bytes]:
        try:
            return self.fs.open(self._key(sha256), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"object {sha256[:12]} is missing from {self.url}") from exc

    def local_path(self, sha256: str) -> Path:
        cached = self.cache_dir / "objects" / sha256
        if cached.exists() and sha256 in self._verified:
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{uuid.uuid4().hex}.part")
        try:
            self.fs.get_file(self._key(sha256), str(partial))
        except FileNotFoundError as exc:
            raise NotFound(f"object {sha256[:12]} is missing from {self.url}") from exc
        if file_sha256(partial)[0] != sha256:
            partial.unlink(missing_ok=True)
            raise IntegrityError(f"object {sha256[:12]} in {self.url} is corrupt")
        os.replace(partial, cached)
        self._verified.add(sha256)
        return cached

    def iter_objects(self) -> Iterator[tuple[str, float]]:
        root = f"{self.prefix}/objects"
        if not self.fs.exists(root):
            return
        now = time.time()
        for key, info in sorted(self.fs.find(root, detail=True).items()):
            stamp = info.get("LastModified")
            yield key.rsplit("/", 1)[-1], now - stamp.timestamp() if stamp else float("inf")

    def size(self, sha256: str) -> int:
        return int(self.fs.info(self._key(sha256))["size"])

    def delete(self, sha256: str) -> None:
        self.fs.rm(self._key(sha256))
        self._verified.discard(sha256)

    def staging_entries(self) -> list[tuple[str, float]]:
        # Files are written locally before upload, so a crash can leave staging here too.
        local = self.cache_dir / "staging"
        entries = [
            (f"{_LOCAL}{entry.name}", _age(entry))
            for entry in (sorted(local.iterdir()) if local.exists() else [])
        ]
        root = f"{self.prefix}/staging"
        if not self.fs.exists(root):
            return entries
        now = time.time()
        for info in self.fs.ls(root, detail=True, refresh=True):
            name = info["name"].rstrip("/").rsplit("/", 1)[-1]
            files = self.fs.find(info["name"], detail=True)
            stamps = [f.get("LastModified") for f in files.values() if f.get("LastModified")]
            age = now - max(stamp.timestamp() for stamp in stamps) if stamps else float("inf")
            entries.append((name, age))
        return entries

    def remove_staging(self, name: str) -> None:
        local = name.startswith(_LOCAL)
        name = name.removeprefix(_LOCAL)
        if "/" in name or name in {"", ".", ".."}:
            raise StoreError(f"not a staging entry: {name!r}")
        if local:
            shutil.rmtree(self.cache_dir / "staging" / name, ignore_errors=True)
        else:
            self.fs.rm(f"{self.prefix}/staging/{name}", recursive=True)


ARTIFACT_BACKENDS: dict[str, type[ArtifactStore]] = {
    "file": LocalArtifactStore,
    "s3": S3ArtifactStore,
}


def open_artifacts(url: str, cache_dir: Path, s3_endpoint_url: str | None = None) -> ArtifactStore:
    """Open the artifact store for ``url`` (a folder, ``file://...`` or ``s3://bucket/prefix``).

    Raises:
        StoreError: the scheme is unknown or the store cannot be reached.
    """
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    backend = ARTIFACT_BACKENDS.get(scheme)
    if backend is None:
        raise StoreError(
            f"unsupported artifact store URL scheme {scheme!r}",
            hint=f"use a folder or one of: {', '.join(sorted(ARTIFACT_BACKENDS))}://",
        )
    if backend is S3ArtifactStore:
        return S3ArtifactStore(url, cache_dir, endpoint_url=s3_endpoint_url)
    return backend(url, cache_dir)
