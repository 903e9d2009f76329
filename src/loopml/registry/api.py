"""``ws.models``: the registry's SDK."""

from __future__ import annotations

from collections.abc import Sequence

from loopml.context import Context
from loopml.records import Model, ModelVersion
from loopml.registry import aliases as registry_aliases
from loopml.registry import versions
from loopml.registry.predictor import Predictor


class ModelsAPI:
    """Models and their versions: list, look up, load.

    Example:
        >>> model = ws.models.load("fraud@2")
        >>> model.predict(table)
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def ls(self) -> list[tuple[Model, ModelVersion | None, int]]:
        """Every model with its latest version and its number of versions."""
        with self._ctx.read() as conn:
            return versions.list_models(conn)

    def get(self, ref: str) -> ModelVersion:
        """The version ``ref`` names (``fraud@2``, ``fraud@champion``, ``fraud@<hash>``)."""
        with self._ctx.read() as conn:
            return versions.resolve(conn, ref)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of model ``name``, oldest first."""
        with self._ctx.read() as conn:
            versions.resolve(conn, name)  # NotFound for an unknown model
            return versions.list_versions(conn, name)

    def aliases(self, name: str) -> dict[str, int]:
        """Each alias of model ``name`` and the version number it points at."""
        with self._ctx.read() as conn:
            versions.resolve(conn, name)  # NotFound for an unknown model
            return registry_aliases.aliases(conn, name)

    def set_alias(self, name: str, alias: str, number: int, *, reason: str = "") -> ModelVersion:
        """Point ``alias`` at version ``number`` (no gates: see ``loopml.registry.aliases``)."""
        return registry_aliases.set_alias(self._ctx, name, alias, number, reason=reason)

    def rollback(self, name: str, alias: str = "champion", *, reason: str = "") -> ModelVersion:
        """Move ``alias`` back to the version it pointed at before its current one."""
        return registry_aliases.rollback(self._ctx, name, alias, reason=reason)

    def decisions(self, name: str, number: int) -> list[dict[str, object]]:
        """Every status decision on a version, oldest first: status, who, why, when."""
        with self._ctx.read() as conn:
            versions.resolve(conn, f"{name}@{number}")  # NotFound for an unknown version
            return registry_aliases.decisions(conn, name, number)

    def set_status(self, name: str, number: int, status: str, *, reason: str) -> ModelVersion:
        """Approve, reject, archive (or return to candidate) a version, saying why."""
        return registry_aliases.set_status(self._ctx, name, number, status, reason=reason)

    def load(self, ref: str | ModelVersion, trust: Sequence[str] = ()) -> Predictor:
        """Load a version for prediction; its artifacts are verified against their hashes.

        Args:
            ref: the version, or its reference.
            trust: extra type names to accept in a skops file (your own estimator classes).

        Raises:
            IntegrityError: an artifact is tampered with or truncated.
            InputError: a file holds types nobody trusted, or a flavor's extra is missing.
        """
        version = ref if isinstance(ref, ModelVersion) else self.get(ref)
        return versions.load(self._ctx, version, trust)
