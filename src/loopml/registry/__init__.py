"""The model registry: versions, their artifacts in safe formats, signatures and loading."""

from loopml.registry.predictor import Predictor as Predictor
from loopml.registry.versions import load as load
from loopml.registry.versions import register as register
from loopml.registry.versions import resolve as resolve

__all__ = ["Predictor", "load", "register", "resolve"]
