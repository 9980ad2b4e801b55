"""The one checkpoint codec: trial checkpoints, final models and exports.

A state is a dict of tensors and JSON types, saved with its format version and loaded
with `torch.load(weights_only=True)`, so nothing in it can make the reader run code.
State keys: format, config (the TrainConfig as JSON types), data_info, epoch, model,
optimizer (trial checkpoints only), torch_rng, cuda_rng. An export's weights are its
model state alone, with the format version in its model.json (tuning.export).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "state.pt"
FORMAT_VERSION = 1
# An exported model folder (tuning.export writes it; a cnn-tune backbone reads it).
WEIGHTS_FILE = "weights.pt"  # the model's state dict alone
MODEL_FILE = "model.json"  # config, data_info, preprocessing, class names, source


def state_to_bytes(state: dict[str, Any]) -> bytes:
    """`state` with the format version, as the bytes of a state.pt."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **state}, buffer)
    return buffer.getvalue()


def state_from_bytes(data: bytes, where: str) -> dict[str, Any]:
    """A state written by `state_to_bytes`, onto the CPU; `where` names it in errors."""
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    check_format(state.get("format"), where)
    return dict(state)


def check_format(found: Any, where: str) -> None:
    """Refuse a state or export written in another format than this version reads."""
    if found != FORMAT_VERSION:
        raise ValueError(
            f"{where}: checkpoint format {found!r}; this version of cnn-tune reads format "
            f"{FORMAT_VERSION}: use the cnn-tune that wrote it, or train it again"
        )


def save_checkpoint(state: dict[str, Any], directory: str | Path) -> Path:
    """Write `state` into `directory` and return the file's path."""
    path = Path(directory) / CHECKPOINT_FILE
    path.write_bytes(state_to_bytes(state))
    return path


def load_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Read a state written by `save_checkpoint`, onto the CPU, without unpickling code."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CHECKPOINT_FILE} in checkpoint folder {str(directory)!r}")
    return state_from_bytes(path.read_bytes(), str(path))
