"""The registry tests share the training tests' fixtures: a workspace and user code."""

from tests.train.conftest import lws, one_thread, trainers_module

__all__ = ["lws", "one_thread", "trainers_module"]
