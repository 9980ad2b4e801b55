"""Optimizers, the learning rate as a function of the epoch, and the L1 penalty."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from trainables.config import (
    AdagradConfig,
    AdamConfig,
    AdamWConfig,
    BatchGrowthConfig,
    LRScheduleConfig,
    OptimizerConfig,
    RMSpropConfig,
    SGDConfig,
)
from trainables.transfer import TransferNet


def decayed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Weight matrices and conv kernels: the tensors L1 and L2 act on.

    Biases and normalization scales (1-D tensors) are left alone, as is usual practice:
    shrinking them regularizes nothing and hurts batch norm.
    """
    return [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]


def parameter_groups(model: nn.Module, backbone_lr_factor: float = 1.0) -> list[dict[str, Any]]:
    """Trainable parameters split by (decayed or not) x (head or pretrained backbone).

    Each group carries `decay` and `lr_factor` (its lr = scheduled lr x lr_factor);
    frozen parameters are left out. Empty groups are dropped.
    """
    decayed_ids = {id(p) for p in decayed_parameters(model)}
    backbone_ids = (
        {id(p) for p in model.backbone.parameters()} if isinstance(model, TransferNet) else set()
    )
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        factor = backbone_lr_factor if id(parameter) in backbone_ids else 1.0
        groups.setdefault((id(parameter) in decayed_ids, factor), []).append(parameter)
    return [
        {"params": params, "decay": decay, "lr_factor": factor}
        for (decay, factor), params in sorted(groups.items(), reverse=True)
    ]


def build_optimizer(
    config: OptimizerConfig, model: nn.Module, backbone_lr_factor: float = 1.0
) -> torch.optim.Optimizer:
    """Build the optimizer over `parameter_groups(model)`; weights decay, the rest not."""
    groups = parameter_groups(model, backbone_lr_factor)
    optimizer: torch.optim.Optimizer
    if isinstance(config, SGDConfig):
        optimizer = torch.optim.SGD(groups, lr=config.lr)
    elif isinstance(config, AdamWConfig):  # before AdamConfig: AdamWConfig subclasses it
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    elif isinstance(config, AdamConfig):
        optimizer = torch.optim.Adam(groups, lr=config.lr)
    elif isinstance(config, RMSpropConfig):
        optimizer = torch.optim.RMSprop(groups, lr=config.lr)
    elif isinstance(config, AdagradConfig):
        optimizer = torch.optim.Adagrad(groups, lr=config.lr)
    else:  # pragma: no cover - the discriminated union admits nothing else
        raise TypeError(f"unknown optimizer config {config!r}")
    apply_optimizer_settings(optimizer, config)
    return optimizer


def apply_optimizer_settings(optimizer: torch.optim.Optimizer, config: OptimizerConfig) -> None:
    """Write `config`'s hyperparameters into every param group.

    Called after building and after loading a checkpoint, so values that PBT mutated in
    the config replace the ones stored in the donor's optimizer state.
    """
    for group in optimizer.param_groups:
        group["weight_decay"] = config.weight_decay if group["decay"] else 0.0
        if isinstance(config, SGDConfig):
            group["momentum"] = config.momentum
            group["nesterov"] = config.nesterov
        elif isinstance(config, AdamConfig):
            group["betas"] = (config.beta1, config.beta2)
            group["eps"] = config.eps
        elif isinstance(config, RMSpropConfig):
            group["alpha"] = config.alpha
            group["momentum"] = config.momentum
            group["eps"] = config.eps
        elif isinstance(config, AdagradConfig):
            group["eps"] = config.eps


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give each param group `lr` x its `lr_factor` (backbone groups learn slower)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_factor", 1.0)


def lr_at(
    schedule: LRScheduleConfig,
    base_lr: float,
    epoch: int,
    total_epochs: int,
    plateau_decays: int = 0,
) -> float:
    """The learning rate for 0-based `epoch` (`plateau_decays`: decays so far, plateau only).

    A pure function of the epoch rather than a stateful torch scheduler: a PBT-mutated
    base lr then takes effect at once, and a restored trial needs no scheduler state
    beyond the plateau count.
    """
    if epoch < schedule.warmup_epochs:
        start = schedule.warmup_start_factor
        return base_lr * (start + (1.0 - start) * epoch / schedule.warmup_epochs)
    e = epoch - schedule.warmup_epochs  # epochs since warmup ended
    if schedule.name == "constant":
        factor = 1.0
    elif schedule.name == "exponential":
        factor = schedule.gamma**e
    elif schedule.name == "step":
        factor = schedule.gamma ** (e // schedule.step_epochs)
    elif schedule.name == "multistep":
        factor = schedule.gamma ** sum(1 for m in schedule.milestones if m <= epoch)
    elif schedule.name == "plateau":
        factor = schedule.gamma**plateau_decays
    else:  # cosine, from 1 at the end of warmup to min_factor at the last epoch
        span = max(1, total_epochs - schedule.warmup_epochs - 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(e, span) / span))
        factor = schedule.min_factor + (1.0 - schedule.min_factor) * cosine
    return base_lr * factor


def batch_size_at(batch_size: int, growth: BatchGrowthConfig | None, epoch: int) -> int:
    """The batch size in effect at 0-based `epoch` under progressive growth."""
    if growth is None:
        return batch_size
    return min(growth.max_batch_size, batch_size * growth.factor ** (epoch // growth.every_epochs))


def batch_lr_multiplier(
    batch_size: int, base_batch_size: int, growth: BatchGrowthConfig | None
) -> float:
    """How the lr follows a grown batch: x1 (none), x b/b0 (linear), x sqrt(b/b0) (sqrt)."""
    if growth is None or growth.lr_scaling == "none":
        return 1.0
    ratio = batch_size / base_batch_size
    return ratio if growth.lr_scaling == "linear" else math.sqrt(ratio)


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over the weights that `decayed_parameters` selects."""
    return torch.stack([p.abs().sum() for p in decayed_parameters(model)]).sum()
