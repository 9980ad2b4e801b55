"""A model this tool trained as a transfer backbone: offline transfer learning.

Pretrain on one dataset (mnist5k, digits, a folder of images), `cnn-tune export` the
best model, then tune a new head, and if unfrozen the blocks, on another dataset:
`model: {name: transfer, backbone: cnn-tune, weights: runs/pretrain/model}`. Nothing is
downloaded.

The exported folder's weights.pt is a ConvNet (trainables.models) state dict and its
model.json says the image size it trained at. The backbone's architecture (depth,
widths, batch norm, input channels) is read from the shapes of its conv weights, and
the image size travels beside them under IMAGE_SIZE_KEY, a buffer of the transfer model
too: so a trained transfer model rebuilds from its own state dict and config alone
(trainables.loop.model_from_state), as a torchvision one does.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from trainables.checkpoint import MODEL_FILE, WEIGHTS_FILE
from trainables.config import TransferConfig
from trainables.errors import WeightsError

StateDict = dict[str, torch.Tensor]
IMAGE_SIZE_KEY = "backbone_image_size"  # pixels of the square images it trained on


def load_exported_backbone(config: TransferConfig) -> StateDict:
    """The conv blocks' weights of the exported model in `config.weights`, and its image
    size under IMAGE_SIZE_KEY (read once, in the driver)."""
    folder = Path(config.weights).expanduser()
    where = f"train.model.weights={config.weights!r}"
    if not (folder / MODEL_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise WeightsError(
            f"{where} is not an exported model (it needs {MODEL_FILE} and {WEIGHTS_FILE}); "
            "create one with `cnn-tune export SWEEP_DIR`, which writes SWEEP_DIR/model"
        )
    try:
        description = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
        weights = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        kind = description["config"]["model"]["name"]
        _, height, width = (int(n) for n in description["preprocessing"]["input_shape"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        raise WeightsError(f"{where}: cannot read the exported model: {error}") from error
    if kind != "cnn":
        raise WeightsError(
            f"{where} holds a {kind!r} model; a cnn-tune backbone is a model.name=cnn one. "
            "Pretrain with model.name: cnn, or use a torchvision backbone"
        )
    size = min(height, width)
    if config.input_size is not None and config.input_size != size:
        raise WeightsError(
            f"train.model.input_size={config.input_size}, but the backbone in {str(folder)!r} "
            f"trained on {size}x{size} images: leave input_size out, or set it to {size}"
        )
    state = {k: v for k, v in weights.items() if k.startswith("features.")}
    state[IMAGE_SIZE_KEY] = torch.tensor(size)
    return state


def backbone_blocks(pretrained: StateDict) -> tuple[list[nn.Module], int, int, int]:
    """(conv blocks, output channels, input channels, image size) of the ConvNet whose
    weights `pretrained` holds: an exported model's (`features.*`, loaded into the
    blocks) or a trained transfer model's (`backbone.*`, which its caller loads)."""
    from trainables.models import ConvNet  # models builds transfer models: no cycle at import

    prefix = "features." if any(k.startswith("features.") for k in pretrained) else "backbone."
    ours = {k.removeprefix(prefix): v for k, v in pretrained.items() if k.startswith(prefix)}
    convs = [v for k, v in ours.items() if k.endswith("weight") and v.ndim == 4]
    if not convs or IMAGE_SIZE_KEY not in pretrained:
        raise WeightsError(
            "a cnn-tune backbone needs a ConvNet's conv weights and its image size; these "
            "weights hold neither: export the pretraining sweep again with `cnn-tune export`"
        )
    in_channels, size = int(convs[0].shape[1]), int(pretrained[IMAGE_SIZE_KEY])
    net = ConvNet(
        in_channels=in_channels,
        image_size=size,
        num_classes=1,  # the head is dropped
        depth=len(convs),
        width=int(convs[0].shape[0]),
        batch_norm=any(k.endswith("running_mean") for k in ours),
        dropout=0.0,
    )
    if prefix == "features.":
        try:
            net.features.load_state_dict(ours)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise WeightsError(f"the exported weights do not fit a ConvNet: {first}") from error
    return _blocks(net.features), int(convs[-1].shape[0]), in_channels, size


def _blocks(features: nn.Sequential) -> list[nn.Module]:
    """The ConvNet's layers grouped into its blocks, each starting at a convolution."""
    blocks: list[list[nn.Module]] = []
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            blocks.append([])
        blocks[-1].append(layer)
    return [nn.Sequential(*block) for block in blocks]
