"""Export a sweep's best model to a self-describing folder, and predict with it.

The model folder holds `weights.pt` (the model's state dict, tensors only, loadable with
`torch.load(weights_only=True)`) and `model.json` (the training config, the dataset
description, the preprocessing and where the weights came from). Rebuilding the model
needs this package, but neither Ray nor the sweep folder. The model folder layout is
defined here and nowhere else.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torchvision.transforms.functional import pil_to_tensor

from trainables.checkpoint import (
    CHECKPOINT_FILE,
    FORMAT_VERSION,
    MODEL_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
)
from trainables.compute import Normalizer
from trainables.config import TrainConfig
from trainables.data import DatasetInfo
from trainables.loop import model_from_state
from trainables.models import input_stats
from tuning.errors import ConfigError
from tuning.layout import CHECKPOINT_PREFIX, EXTENSION_PREFIX, SUMMARY_FILE, final_model_dir
from tuning.summary import BestTrial, Summary

MODEL_DIR = "model"
RESIZE = "PIL bilinear resize to input_shape's (H, W), after converting to L (1 channel) or RGB"

Preprocess = Callable[[Image.Image], torch.Tensor]


def export_best(sweep: str | Path, output: str | Path | None = None) -> Path:
    """Write the sweep's final model as a model folder: the model its summary tested.

    That is the best trial's best checkpoint, or with `final.protocol: retrain` the
    first retrained seed. A sweep in a bucket is read through a temporary folder, into
    which only summary.json and that model's files are copied.

    Args:
        sweep: a finished sweep, `<storage>/<name>`, holding summary.json: a folder, or a
            storage URI (s3://, gs://, file://).
        output: the model folder to write (default `<sweep>/model`, or `./<name>-model`
            for a sweep in a bucket).

    Returns:
        The model folder written.

    Raises:
        ConfigError: no summary.json, or the final model's weights are missing.
    """
    from tuning.storage import is_remote

    text = str(sweep)
    if not is_remote(text):
        sweep_dir = Path(text).expanduser().resolve()
        output_dir = Path(output) if output else sweep_dir / MODEL_DIR
        return _export(sweep_dir, output_dir, str(sweep_dir))
    with tempfile.TemporaryDirectory(prefix="cnn-tune-export-") as scratch:
        local = _copy_final_model(text, Path(scratch))
        return _export(local, Path(output) if output else Path(f"{local.name}-model"), text)


def _export(sweep_dir: Path, output: Path, source: str) -> Path:
    """Export from a local sweep folder; `source` is where the sweep really is."""
    summary = _read_summary(sweep_dir)
    state = _final_model_state(sweep_dir, summary)
    config = TrainConfig.model_validate(state["config"])
    info = DatasetInfo.from_dict(state["data_info"])
    mean, std = input_stats(config.model, info)
    description = {
        "format": FORMAT_VERSION,
        "config": config.model_dump(mode="json"),
        "data_info": info.to_dict(),
        "preprocessing": {
            "input_shape": list(info.input_shape),
            "mean": list(mean),
            "std": list(std),
            "pixel_scale": "pixels/255",
            "resize": RESIZE,
        },
        "class_names": list(info.class_names),
        "source": {
            "sweep": source,
            "trial_id": summary.best.trial_id,
            "epoch": state["epoch"],
            "final_model": summary.as_dict().get("final", {}).get("models", [{}])[0],
        },
        "test": summary.as_dict()["test"],
    }
    output = output.expanduser().resolve()
    output.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state["model"]), output / WEIGHTS_FILE)
    (output / MODEL_FILE).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return output


def load_exported(model_dir: str | Path) -> tuple[nn.Module, Preprocess, list[str]]:
    """The exported model in eval mode on the CPU, its preprocessing, and its class names.

    The preprocessing turns a PIL image into one normalized CHW float tensor, exactly
    as training saw its uint8 images.
    """
    model_dir = Path(model_dir).expanduser().resolve()
    description = _read_model_description(model_dir)
    weights = torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model = model_from_state({**description, "model": weights})
    prep = description["preprocessing"]
    normalize = Normalizer(tuple(prep["mean"]), tuple(prep["std"]), torch.device("cpu"))
    channels, height, width = (int(n) for n in prep["input_shape"])
    mode = "L" if channels == 1 else "RGB"

    def preprocess(image: Image.Image) -> torch.Tensor:
        resized = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        return normalize(pil_to_tensor(resized).unsqueeze(0))[0]

    return model, preprocess, list(description["class_names"])


def predict(model_dir: str | Path, image_paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The most probable class of each image: {"image", "class", "index", "probability"}.

    Raises:
        ConfigError: the model folder or an image cannot be read.
    """
    model, preprocess, class_names = load_exported(model_dir)
    inputs = torch.stack([preprocess(_read_image(Path(path))) for path in image_paths])
    with torch.no_grad():
        probabilities = torch.softmax(model(inputs).float(), dim=1)
    top_probability, top_index = probabilities.max(dim=1)
    return [
        {
            "image": str(path),
            "class": class_names[int(index)],
            "index": int(index),
            "probability": float(probability),
        }
        for path, index, probability in zip(image_paths, top_index, top_probability, strict=True)
    ]


def _read_summary(sweep_dir: Path) -> Summary:

    path = sweep_dir / SUMMARY_FILE
    if not path.is_file():
        raise ConfigError(
            f"export: no {SUMMARY_FILE} in {str(sweep_dir)!r}; pass the folder of a finished "
            "sweep, <storage>/<name>, that `cnn-tune run` printed (or finish it with "
            "`cnn-tune resume DIR`)"
        )
    return _parse_summary(path.read_text(encoding="utf-8"), str(path))


def _parse_summary(text: str, where: str) -> Summary:
    try:
        return Summary.read(text)
    except ValueError as error:
        raise ConfigError(
            f"export: {where} is not a complete summary ({str(error).splitlines()[0]}); "
            "finish the sweep with `cnn-tune resume DIR`, which writes it again"
        ) from None


def _copy_final_model(location: str, scratch: Path) -> Path:
    """Copy summary.json and the files of the model it tested from a bucket sweep."""
    from tuning.storage import copy_files, list_files, read_text, resolve_location

    location = resolve_location(location)
    text = read_text(location, SUMMARY_FILE)
    if text is None:
        raise ConfigError(
            f"export: no {SUMMARY_FILE} in {location!r}; pass a finished sweep, "
            "<storage>/<name>, that `cnn-tune run` printed (or finish it with "
            "`cnn-tune resume LOCATION`)"
        )
    summary = _parse_summary(text, f"{location}/{SUMMARY_FILE}")
    if summary.final.protocol == "best_checkpoint":
        prefix = f"{Path(summary.best.path).name}/{CHECKPOINT_PREFIX}"
    else:
        prefix = f"{final_model_dir(summary.final.models[0].name)}/"
    model_files = [name for name in list_files(location) if name.startswith(prefix)]
    local = scratch / location.rsplit("/", 1)[-1]
    copy_files(location, [SUMMARY_FILE, *model_files], local)
    return local


def _final_model_state(sweep_dir: Path, summary: Summary) -> dict[str, Any]:
    """The state of the model the sweep tested: the first final model (see tuning.final)."""
    if summary.final.protocol == "best_checkpoint":
        return _best_checkpoint_state(sweep_dir, summary.best)
    from tuning.final import load_final_state  # here: it imports Ray, which predict never needs

    model = summary.final.models[0]
    state = load_final_state(str(sweep_dir), model.name)
    if state is None:
        raise ConfigError(
            f"export: {str(sweep_dir / model.path)!r} holds no retrained "
            "final model; was it deleted? Copy the whole sweep folder, or resume the sweep "
            "to retrain it"
        )
    return state


def _best_checkpoint_state(sweep_dir: Path, best: BestTrial) -> dict[str, Any]:
    """The state of the best trial's checkpoint at `best.checkpoint_epoch`."""
    trial_dir = _trial_dir(sweep_dir, best.path)
    epoch = int(best.checkpoint_epoch or 0)
    for checkpoint_dir in sorted(trial_dir.glob(f"{CHECKPOINT_PREFIX}*"), reverse=True):
        if (checkpoint_dir / CHECKPOINT_FILE).is_file():
            state = load_checkpoint(checkpoint_dir)
            if int(state["epoch"]) == epoch:
                return state
    raise ConfigError(
        f"export: trial folder {str(trial_dir)!r} has no checkpoint_*/{CHECKPOINT_FILE} of "
        f"epoch {epoch}, the checkpoint summary.json names as the best; was it deleted? "
        "Rerun the sweep, or copy the whole sweep folder"
    )


def _trial_dir(sweep_dir: Path, recorded: str) -> Path:
    """The best trial's folder: where summary.json says, or, if the sweep moved, in it
    or in one of its extension rounds."""
    name = Path(recorded).name
    rounds = sweep_dir.glob(f"{EXTENSION_PREFIX}*/{name}")
    for candidate in (Path(recorded), sweep_dir / name, *rounds):
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        f"export: the best trial's folder {recorded!r} is missing, and so is "
        f"{str(sweep_dir / Path(recorded).name)!r}; copy the whole sweep folder, trial "
        "folders included, before exporting"
    )


def _read_model_description(model_dir: Path) -> dict[str, Any]:
    files = (model_dir / MODEL_FILE, model_dir / WEIGHTS_FILE)
    if not all(path.is_file() for path in files):
        raise ConfigError(
            f"predict: {str(model_dir)!r} is not an exported model (it needs {MODEL_FILE} and "
            f"{WEIGHTS_FILE}); create one with `cnn-tune export SWEEP_DIR`"
        )
    description = dict(json.loads(files[0].read_text(encoding="utf-8")))
    if description.get("format") != FORMAT_VERSION:
        raise ConfigError(
            f"predict: {str(files[0])!r} has format {description.get('format')!r}; this "
            f"version reads format {FORMAT_VERSION}; export the sweep again with this version"
        )
    return description


def _read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except OSError as error:  # missing, unreadable, or not an image PIL knows
        raise ConfigError(
            f"predict: cannot read image {str(path)!r} ({type(error).__name__}: {error}); "
            "pass PNG, JPEG or another format Pillow reads"
        ) from error
