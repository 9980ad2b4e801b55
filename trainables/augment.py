"""Batched, on-device data augmentation for training batches.

Every example in a batch gets its own random crop offset, flip, rotation and colour
jitter, drawn in one vectorized step: a single affine `grid_sample` moves, flips and
rotates the whole batch on whatever device it lives on. torchvision's transforms draw
one set of random parameters per call, which would augment a whole batch identically.
Validation and test batches never pass through here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainables.config import AugmentationConfig


class Augmenter:
    """Applies `config` to NCHW float batches with pixels in [0, 1], per example."""

    def __init__(self, config: AugmentationConfig, device: torch.device | None = None) -> None:
        self.config = config
        # On the batches' device, so drawing a batch's parameters never copies from the
        # host (and never makes the host wait). Reseeded by the loop every epoch.
        self.generator = torch.Generator(device=device or torch.device("cpu"))

    @property
    def active(self) -> bool:
        c = self.config
        return bool(c.crop_padding_fraction or c.flip or c.rotation_degrees or c.color_jitter)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return images
        images = self._geometric(images)
        if self.config.color_jitter:
            images = self._color(images)
        return images

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        draw = torch.rand(n, generator=self.generator, device=self.generator.device)
        return low + (high - low) * draw

    def _geometric(self, images: torch.Tensor) -> torch.Tensor:
        c = self.config
        n, _, height, width = images.shape
        if not (c.crop_padding_fraction or c.flip or c.rotation_degrees):
            return images
        device = self.generator.device
        angle = self._uniform(n, -c.rotation_degrees, c.rotation_degrees) * (math.pi / 180)
        # Whole-pixel shifts, as a crop of the zero-padded image would give; in grid units
        # (the image spans [-1, 1]) one pixel is 2 / size.
        pad_x = round(c.crop_padding_fraction * width)
        pad_y = round(c.crop_padding_fraction * height)
        shift_x = torch.randint(-pad_x, pad_x + 1, (n,), generator=self.generator, device=device)
        shift_y = torch.randint(-pad_y, pad_y + 1, (n,), generator=self.generator, device=device)
        flip = torch.ones(n, device=device)
        if c.flip:
            flip = torch.where(self._uniform(n, 0.0, 1.0) < 0.5, -1.0, 1.0)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
        theta[:, 0, 2] = shift_x * (2.0 / width)
        theta[:, 1, 2] = shift_y * (2.0 / height)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )

    def _color(self, images: torch.Tensor) -> torch.Tensor:
        """Brightness and contrast (and saturation for colour images), each x in [1-s, 1+s]."""
        s, n = self.config.color_jitter, images.shape[0]
        shape = (n, 1, 1, 1)
        brightness = self._uniform(n, 1 - s, 1 + s).view(shape)
        contrast = self._uniform(n, 1 - s, 1 + s).view(shape)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * contrast + mean * brightness
        if images.shape[1] == 3:
            saturation = self._uniform(n, 1 - s, 1 + s).view(shape)
            gray = images.mean(dim=1, keepdim=True)
            images = gray + (images - gray) * saturation
        return images
