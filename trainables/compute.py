"""How a trial's tensors meet its device: input normalization, bf16, channels-last."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainables.config import ModelConfig, TrainConfig
from trainables.data import DatasetInfo
from trainables.gpu import bf16_supported
from trainables.models import input_stats


class Normalizer:
    """uint8 NCHW images to floats in [0, 1], and [0, 1] floats to standardized inputs."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)

    @staticmethod
    def to_unit(images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255.0

    def standardize(self, unit_images: torch.Tensor) -> torch.Tensor:
        return (unit_images - self.mean) / self.std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.standardize(self.to_unit(images))

    @classmethod
    def for_model(cls, config: ModelConfig, info: DatasetInfo, device: torch.device) -> Normalizer:
        return cls(*input_stats(config, info), device)


@dataclass(frozen=True)
class ComputeFormat:
    """How a trial computes on its device: bf16 autocast and channels-last memory format.

    Both pay off on GPUs (tensor cores, cuDNN's NHWC kernels) and are off on the CPU
    unless asked for.
    """

    device: torch.device
    bf16: bool = False
    channels_last: bool = False

    @classmethod
    def for_config(cls, config: TrainConfig, device: torch.device) -> ComputeFormat:
        cuda = device.type == "cuda"
        bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_supported(device))
        channels_last = config.channels_last == "on" or (config.channels_last == "auto" and cuda)
        return cls(device, bf16, channels_last)

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def prepare(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model
