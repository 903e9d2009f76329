"""What every stage is given: the stores, the acting identity, settings and the audit writer."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Connection

from loopml.config import Settings
from loopml.errors import SpecError, StoreError
from loopml.governance import audit
from loopml.governance.identity import current_user
from loopml.records import AuditEvent
from loopml.store.artifacts import ArtifactStore, open_artifacts
from loopml.store.metadata import MetadataStore, open_metadata


@dataclass
class Context:
    """The stores, identity and settings a stage function works with.

    Stages change state only through ``write()``, which yields a transaction in which
    ``audit()`` records the change: both commit together or not at all.
    """

    settings: Settings
    metadata: MetadataStore
    artifacts: ArtifactStore
    actor: str
    owner: str | None = None

    @property
    def asset_owner(self) -> str:
        """Who owns what this context creates: a workload's owner, else the actor."""
        return self.owner or self.actor

    def owned_by(self, owner: str | None) -> Context:
        """The same stores and actor, creating assets owned by ``owner``."""
        return replace(self, owner=owner) if owner else self

    @classmethod
    def open(cls, settings: Settings) -> Context:
        """Open (and create or migrate when needed) the stores that ``settings`` name."""
        settings.root.mkdir(parents=True, exist_ok=True)
        metadata = open_metadata(settings.metadata_url)
        try:
            artifacts = open_artifacts(
                settings.artifacts_url, settings.root / "cache", settings.s3_endpoint_url
            )
        except BaseException:
            metadata.dispose()
            raise
        return cls(settings, metadata, artifacts, current_user(settings.user))

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A metadata transaction holding the workspace's write lock."""
        with self.metadata.write() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A metadata read transaction."""
        with self.metadata.read() as conn:
            yield conn

    def audit(
        self,
        conn: Connection,
        action: str,
        target: str,
        *,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """Append an audit event for ``action`` on ``target`` inside ``conn``'s transaction."""
        return audit.append(
            conn, actor=self.actor, action=action, target=target, outcome=outcome, details=details
        )

    def secret_key(self, name: str) -> bytes:
        """A workspace secret (such as the PII hashing key), created on first use.

        ``LOOPML_<NAME>_KEY`` (hex) overrides the key file; teams sharing a workspace
        set it so every member hashes alike.
        """
        env = os.environ.get(f"LOOPML_{name.upper()}_KEY")
        if env:
            try:
                return bytes.fromhex(env)
            except ValueError as exc:
                raise SpecError(f"LOOPML_{name.upper()}_KEY is not hex") from exc
        path = self.settings.root / "keys" / f"{name}.key"
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Write a private temp file, then link it into place: a reader never sees a
            # half-written key, and of two racing creators the first link wins.
            partial = path.with_name(f".{name}.{secrets.token_hex(8)}.partial")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            try:
                os.link(partial, path)
            except FileExistsError:
                pass
            finally:
                partial.unlink()
        try:
            key = bytes.fromhex(path.read_text().strip())
        except ValueError as exc:
            raise StoreError(
                f"key file {path} is not hex", hint="restore it from a backup"
            ) from exc
        if len(key) < 32:
            raise StoreError(
                f"key file {path} holds {len(key)} bytes, not 32", hint="restore it from a backup"
            )
        return key

    def secret_fingerprint(self, name: str) -> str:
        """A hash of a workspace secret (created if missing), never the secret itself."""
        import hashlib

        return hashlib.sha256(self.secret_key(name)).hexdigest()

    def close(self) -> None:
        """Release the stores' connections."""
        self.metadata.dispose()
