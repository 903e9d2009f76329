"""``ws.audit``: read and verify the audit chain."""

from __future__ import annotations

from loopml.governance import audit
from loopml.records import AuditEvent
from loopml.store.metadata import MetadataStore


class AuditAPI:
    """The audit trail of a workspace."""

    def __init__(self, metadata: MetadataStore) -> None:
        self._metadata = metadata

    def ls(
        self, limit: int = 50, action: str | None = None, target: str | None = None
    ) -> list[AuditEvent]:
        """The newest events first, optionally filtered by action or target prefix."""
        with self._metadata.read() as conn:
            return audit.events(conn, limit=limit, action=action, target=target)

    def verify(self) -> audit.ChainReport:
        """Recompute the hash chain; the report names every edited, deleted or inserted event."""
        with self._metadata.read() as conn:
            return audit.verify(conn)
