"""``ws.features``: transforms, time-series features and splits over dataset versions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from loopml.context import Context
from loopml.features import transforms
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
