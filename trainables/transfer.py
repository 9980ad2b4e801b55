"""Transfer learning: a torchvision backbone, pretrained weights, frozen blocks, a new head.

Pretrained weights are resolved once, in the driver (`load_pretrained`), and reach the
trials through Ray's object store with the data; a trial never downloads or re-reads
a weights file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables.cnn_backbone import IMAGE_SIZE_KEY, backbone_blocks, load_exported_backbone
from trainables.config import TransferConfig
from trainables.errors import WeightsError

# torchvision's ImageNet preprocessing, which every supported backbone was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

StateDict = dict[str, torch.Tensor]


def pretrained_key(config: TransferConfig) -> str:
    """Identifies one set of backbone weights: `backbone@weights`."""
    return f"{config.backbone}@{config.weights}"


def load_pretrained(config: TransferConfig) -> StateDict | None:
    """The full torchvision model's state dict for `config.weights`; None for "none";
    for a cnn-tune backbone, its exported blocks (trainables.cnn_backbone)."""
    if config.backbone == "cnn-tune":
        return load_exported_backbone(config)
    from torchvision import models

    if config.weights == "none":
        return None
    if config.weights == "imagenet":
        try:
            weights = models.get_model_weights(config.backbone).DEFAULT
            return weights.get_state_dict(progress=False)
        except Exception as error:  # URLError, hub cache errors: report one way
            raise WeightsError(
                f"train.model.weights=imagenet: could not fetch {config.backbone}'s ImageNet "
                f"weights ({type(error).__name__}: {error}); without internet, pass a local "
                "file: --set train.model.weights=/path/to/state_dict.pt"
            ) from error
    path = Path(config.weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"train.model.weights={config.weights!r} is not a file; give 'imagenet', 'none' "
            f"or the path of a {config.backbone} state dict saved with torch.save"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"train.model.weights={str(path)!r}: cannot read it: {error}") from error
    if not isinstance(state, dict):
        raise WeightsError(f"train.model.weights={str(path)!r} holds no state dict")
    return state


class TransferNet(nn.Module):
    """Backbone blocks, global average pooling, and a new linear head.

    Inputs are resized to `input_size` and given the backbone's channels (grey repeated
    to RGB, RGB averaged to grey). Frozen blocks never get gradients and stay in eval
    mode, so their batch-norm statistics do not drift either: their tensors remain
    exactly the pretrained ones.
    """

    def __init__(
        self,
        blocks: list[nn.Module],
        feature_dim: int,
        num_classes: int,
        config: TransferConfig,
        *,
        in_channels: int = 3,
        input_size: int = 224,
    ) -> None:
        super().__init__()
        self.backbone = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(feature_dim, num_classes))
        self.in_channels, self.input_size = in_channels, input_size
        frozen = {"all": len(blocks), "none": 0}.get(str(config.freeze), config.freeze)
        self.frozen_blocks = min(int(frozen), len(blocks))
        for block in blocks[: self.frozen_blocks]:
            block.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        features = self.backbone(x)
        return self.head(F.adaptive_avg_pool2d(features, 1).flatten(1))

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        for block in list(self.backbone)[: self.frozen_blocks]:
            block.eval()
        return self


def build_transfer_model(
    config: TransferConfig, num_classes: int, pretrained: StateDict | None
) -> TransferNet:
    """The transfer model; for a cnn-tune backbone `pretrained` is required: its exported
    blocks, or the trained transfer model's own state dict (which describes them)."""
    if config.backbone == "cnn-tune":
        if pretrained is None:
            raise WeightsError("a cnn-tune backbone is built from its weights; none were given")
        blocks, feature_dim, in_channels, size = backbone_blocks(pretrained)
        model = TransferNet(
            blocks, feature_dim, num_classes, config, in_channels=in_channels, input_size=size
        )
        model.register_buffer(IMAGE_SIZE_KEY, torch.tensor(size))
        return model
    from torchvision import models

    full = models.get_model(config.backbone, weights=None)
    if pretrained is not None:
        try:
            full.load_state_dict(pretrained)
        except RuntimeError as error:
            raise WeightsError(
                f"train.model.weights={config.weights!r} does not fit torchvision's "
                f"{config.backbone}: {str(error).splitlines()[0]}"
            ) from error
    blocks, feature_dim = _blocks_of(config.backbone, full)
    size = config.input_size or 224
    return TransferNet(blocks, feature_dim, num_classes, config, input_size=size)


def _blocks_of(backbone: str, model: Any) -> tuple[list[nn.Module], int]:
    """The backbone's stages from input to output, and the channels of the last one."""
    if backbone.startswith("resnet"):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return [stem, model.layer1, model.layer2, model.layer3, model.layer4], model.fc.in_features
    if backbone == "vgg16":  # five conv stages, each ending in a max-pool
        stages: list[nn.Module] = []
        current: list[nn.Module] = []
        for layer in model.features:
            current.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                stages.append(nn.Sequential(*current))
                current = []
        return stages, 512
    features = list(model.features)  # mobilenet_v3_small, efficientnet_b0
    last_conv = [m for m in features[-1].modules() if isinstance(m, nn.Conv2d)][-1]
    return features, last_conv.out_channels
