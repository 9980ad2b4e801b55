"""PyTorch side of cnn-tune: data, models, optimizers and the training loop.

Nothing here imports Ray except `trainables.tune_adapter`.
"""

from trainables.config import ModelConfig, TrainConfig
from trainables.data import (
    DataConfig,
    DataError,
    DatasetInfo,
    ImageSplit,
    Splits,
    TuningData,
    load_splits,
)
from trainables.loop import Trainer, evaluate, fit, model_from_state

__all__ = [
    "DataConfig",
    "DataError",
    "DatasetInfo",
    "ImageSplit",
    "ModelConfig",
    "Splits",
    "TrainConfig",
    "Trainer",
    "TuningData",
    "evaluate",
    "fit",
    "load_splits",
    "model_from_state",
]
