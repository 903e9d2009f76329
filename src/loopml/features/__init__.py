"""Features: transforms (DuckDB SQL, Python), time-series features, point-in-time joins, splits."""

from loopml.features.api import FeaturesAPI as FeaturesAPI

__all__ = ["FeaturesAPI"]
