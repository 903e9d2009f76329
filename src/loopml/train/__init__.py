"""Training: trainers, preprocessing, hyper-parameter search and run tracking."""

from loopml.train.training import TrainResult as TrainResult
from loopml.train.training import train as train

__all__ = ["TrainResult", "train"]
