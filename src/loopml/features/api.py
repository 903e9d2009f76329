"""``ws.features``: transforms, time-series features and splits over dataset versions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from loopml.context import Context
from loopml.features import splits, timeseries, transforms
from loopml.records import DatasetVersion


class FeaturesAPI:
    """Make new dataset versions from existing ones, with lineage to them.

    Example:
        >>> ws.features.sql("daily", "SELECT customer_id, sum(amount) FROM tx GROUP BY 1",
        ...                 inputs=["tx@2"])
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def sql(self, name: str, sql: str, inputs: Sequence[str]) -> DatasetVersion:
        """DuckDB SQL over the inputs, each a table named after its dataset."""
        return transforms.sql_transform(self._ctx, name, sql, inputs)

    def python(
        self,
        name: str,
        function: str | Callable[..., Any],
        inputs: Sequence[str],
        params: dict[str, Any] | None = None,
    ) -> DatasetVersion:
        """A Python function (``module:function`` or a callable) over the inputs."""
        return transforms.python_transform(self._ctx, name, function, inputs, params)

    def rolling(
        self,
        name: str,
        input: str,
        *,
        entity: str,
        time: str,
        value: str,
        windows: str | Sequence[str],
        aggs: str | Sequence[str] = ("count", "sum", "mean"),
        lags: int = 0,
        time_since_previous: bool = True,
    ) -> DatasetVersion:
        """Per-entity rolling windows, lags and time since the previous event.

        Every feature of an event uses only the entity's events strictly before it;
        see ``loopml.features.timeseries.rolling_features``.

        Example:
            >>> ws.features.rolling("tx_history", "transactions", entity="customer_id",
            ...                     time="ts", value="amount", windows=["1h", "24h", "7d"],
            ...                     aggs=["count", "sum", "mean"])
        """
        return timeseries.rolling_features(
            self._ctx,
            name,
            input,
            entity=entity,
            time=time,
            value=value,
            windows=windows,
            aggs=aggs,
            lags=lags,
            time_since_previous=time_since_previous,
        )

    def point_in_time_join(
        self,
        name: str,
        events: str,
        features: str,
        *,
        entity: str,
        time: str,
        feature_time: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> DatasetVersion:
        """Each event with its entity's latest feature row from strictly before it.

        See ``loopml.features.timeseries.point_in_time_join``.
        """
        return timeseries.point_in_time_join(
            self._ctx,
            name,
            events,
            features,
            entity=entity,
            time=time,
            feature_time=feature_time,
            columns=columns,
        )

    def split(
        self,
        name: str,
        input: str,
        *,
        by: str = "random",
        test: float = 0.2,
        valid: float = 0.0,
        seed: int = 0,
        column: str | None = None,
        cutoff: str | date | datetime | None = None,
    ) -> DatasetVersion:
        """A seeded, recorded train/valid/test split: every row plus a ``split`` column.

        ``by`` is ``random``, ``stratified`` (``column`` is the label), ``time``
        (``column`` a date or timestamp; ``cutoff`` or the latest ``test`` fraction is
        test) or ``group`` (``column`` the group id); see ``loopml.features.splits``.

        Example:
            >>> version = ws.features.split("tx_split", "tx@3", by="time", column="ts")
            >>> loopml.features.splits.split_counts(version)
            {'train': 80000, 'valid': 0, 'test': 20000}
        """
        return splits.split(
            self._ctx,
            name,
            input,
            by=by,
            test=test,
            valid=valid,
            seed=seed,
            column=column,
            cutoff=cutoff,
        )
