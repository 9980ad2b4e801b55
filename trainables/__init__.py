"""PyTorch side of cnn-tune: data, models, optimizers and the training loop.

Nothing here imports Ray except `trainables.tune_adapter`. The names below load on first
use, so that `trainables.config` and `trainables.data_config` (what the CLI validates
with) are importable without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainables.config import ModelConfig, TrainConfig
    from trainables.data import DatasetInfo, ImageSplit, Splits, TuningData, load_splits
    from trainables.data_config import DataConfig
    from trainables.errors import DataError
    from trainables.loop import Trainer, evaluate, fit, model_from_state

_MODULE_OF = {
    "DataConfig": "trainables.data_config",
    "DataError": "trainables.errors",
    "DatasetInfo": "trainables.data",
    "ImageSplit": "trainables.data",
    "ModelConfig": "trainables.config",
    "Splits": "trainables.data",
    "TrainConfig": "trainables.config",
    "Trainer": "trainables.loop",
    "TuningData": "trainables.data",
    "evaluate": "trainables.loop",
    "fit": "trainables.loop",
    "load_splits": "trainables.data",
    "model_from_state": "trainables.loop",
}

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


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use (PEP 562)."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'trainables' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
