"""The checkpoint layout: one file that describes itself, loaded with weights_only=True.

State keys: format, config (the TrainConfig as JSON types), data_info, epoch, model,
optimizer, torch_rng. Nothing in it needs unpickling of code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "state.pt"
FORMAT_VERSION = 1


def save_checkpoint(state: dict[str, Any], directory: str | Path) -> Path:
    """Write `state` into `directory` and return the file's path."""
    path = Path(directory) / CHECKPOINT_FILE
    torch.save({"format": FORMAT_VERSION, **state}, path)
    return path


def load_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Read a state written by `save_checkpoint`, onto the CPU, without unpickling code."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CHECKPOINT_FILE} in checkpoint folder {str(directory)!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {state.get('format')!r}; "
            f"this version reads format {FORMAT_VERSION}"
        )
    return state
