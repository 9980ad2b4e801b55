"""Model builders. They return CPU modules; the training loop moves them to a device."""

from __future__ import annotations

import torch
from torch import nn

from trainables.config import CNNConfig, ModelConfig, ResNet18Config, TransferConfig
from trainables.data import DatasetInfo
from trainables.transfer import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    StateDict,
    build_transfer_model,
)

_MAX_CHANNELS = 1024


def build_model(
    config: ModelConfig, info: DatasetInfo, pretrained: StateDict | None = None
) -> nn.Module:
    """Build `config` for inputs of `info.input_shape` and `info.num_classes` outputs.

    `pretrained` is the backbone state dict of a transfer model (see trainables.transfer).
    """
    in_channels, height, width = info.input_shape
    if isinstance(config, CNNConfig):
        return ConvNet(
            in_channels=in_channels,
            image_size=min(height, width),
            num_classes=info.num_classes,
            depth=config.depth,
            width=config.width,
            batch_norm=config.batch_norm,
            dropout=config.dropout,
        )
    if isinstance(config, ResNet18Config):
        return resnet18_for_small_inputs(in_channels, info.num_classes, config.dropout)
    return build_transfer_model(config, info.num_classes, pretrained)


def input_stats(
    config: ModelConfig, info: DatasetInfo
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) to standardize inputs with, for pixels scaled to [0, 1].

    Models trained here use the train split's statistics, and so does a backbone that was
    (trainables.cnn_backbone); a torchvision backbone expects the ImageNet normalization
    it was trained with (averaged over RGB for grey images).
    """
    if (
        isinstance(config, TransferConfig)
        and config.weights != "none"
        and (config.backbone != "cnn-tune")
    ):
        if info.input_shape[0] == 1:
            return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
        return IMAGENET_MEAN, IMAGENET_STD
    return info.mean, info.std


class ConvNet(nn.Module):
    """`depth` blocks of conv3x3-(BN)-ReLU-maxpool, then global pooling and a linear head.

    Channels start at `width` and double per block. A block pools only while the feature
    map is at least 2 pixels wide, so any depth works on 8x8 digits as on 32x32 CIFAR.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        num_classes: int,
        depth: int,
        width: int,
        batch_norm: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for block in range(depth):
            out_channels = min(width * 2**block, _MAX_CHANNELS)
            layers.append(nn.Conv2d(channels, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def resnet18_for_small_inputs(in_channels: int, num_classes: int, dropout: float) -> nn.Module:
    """torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool, for 8-32 px images.

    The ImageNet stem (7x7 stride 2, then max-pool) would shrink a 32x32 image to 8x8
    before the first residual block.
    """
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.fc.in_features, num_classes))
    return model
