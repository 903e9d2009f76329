"""Serving: the real-time endpoint, micro-batching, hot swap, canary and shadow, batch scoring.

- ``config``: ``ServeConfig``, what a server is told (plain data, JSON in the environment);
- ``inputs``: request bodies checked against a version's signature (4xx naming fields);
- ``batching``: ``MicroBatcher``, concurrent requests in one vectorised predict;
- ``models``: loaded, warmed versions; the alias watcher and hot swap; canary, shadow;
- ``app``: the Starlette app (``create_app``, ``app_from_env`` for uvicorn workers);
- ``server``: uvicorn with workers, TLS and TCP_NODELAY; ``serve()`` for the SDK and CLI;
- ``ray_serve``: the same app as a Ray Serve deployment;
- ``prediction_log``: ``PredictionLog``, served predictions written as Parquet;
- ``batch``: ``predict_dataset``, a dataset version scored into a new one.
"""

from loopml.serve.batch import BatchResult as BatchResult
from loopml.serve.batch import predict_dataset as predict_dataset
from loopml.serve.config import ServeConfig as ServeConfig
from loopml.serve.config import parse_canary as parse_canary
from loopml.serve.prediction_log import PredictionLog as PredictionLog

__all__ = ["BatchResult", "PredictionLog", "ServeConfig", "parse_canary", "predict_dataset"]
