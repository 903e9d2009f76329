"""``ws.monitor``: drift checks of deployed models, and their time series."""

from __future__ import annotations

from datetime import timedelta

from loopml.context import Context
from loopml.monitor import monitoring
from loopml.monitor.drift import DRIFT_SHARE
from loopml.monitor.monitoring import MonitorResult


class MonitorAPI:
    """Check a model version for drift, over its prediction log or a dataset version.

    Example:
        >>> result = ws.monitor.drift("fraud@champion", window="24h")
        >>> result.flagged, result.statistics["drifted_features"]
        (True, ['amount'])
        >>> [r.flagged for r in ws.monitor.history("fraud")]
        [False, False, True]
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def drift(
        self,
        ref: str,
        *,
        window: int | str | timedelta | None = None,
        data: str | None = None,
        test: str = "psi",
        threshold: float | None = None,
        drift_share: float = DRIFT_SHARE,
        store: bool = True,
    ) -> MonitorResult:
        """Measure the drift of ``ref`` over a log window or dataset version, and store it.

        See ``loopml.monitor.monitoring.check_drift`` for the arguments and errors.
        """
        return monitoring.check_drift(
            self._ctx,
            ref,
            window=window,
            data=data,
            test=test,
            threshold=threshold,
            drift_share=drift_share,
            store=store,
        )

    def history(
        self, model: str, *, kind: str | None = "drift", limit: int | None = None
    ) -> list[MonitorResult]:
        """Model ``model``'s stored checks (``drift``, ``decay`` or None for all), oldest first."""
        return monitoring.history(self._ctx, model, kind=kind, limit=limit)
