"""Optimizers, the learning rate as a function of the epoch, and the L1 penalty."""

from __future__ import annotations

import math

import torch
from torch import nn

from trainables.config import (
    AdagradConfig,
    AdamConfig,
    AdamWConfig,
    LRScheduleConfig,
    OptimizerConfig,
    RMSpropConfig,
    SGDConfig,
)


def decayed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Weight matrices and conv kernels: the tensors L1 and L2 act on.

    Biases and normalization scales (1-D tensors) are left alone, as is usual practice:
    shrinking them regularizes nothing and hurts batch norm.
    """
    return [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]


def build_optimizer(config: OptimizerConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Build the optimizer with two groups: weights (decayed) and the rest (not decayed)."""
    decayed = decayed_parameters(model)
    decayed_ids = {id(p) for p in decayed}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in decayed_ids]
    groups = [{"params": decayed, "decay": True}, {"params": rest, "decay": False}]
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
    for group in optimizer.param_groups:
        group["lr"] = lr


def lr_at(schedule: LRScheduleConfig, base_lr: float, epoch: int, total_epochs: int) -> float:
    """The learning rate for 0-based `epoch`.

    A pure function of the epoch rather than a stateful torch scheduler: a PBT-mutated
    base lr then takes effect at once, and a restored trial needs no scheduler state.
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
    else:  # cosine, from 1 at the end of warmup to min_factor at the last epoch
        span = max(1, total_epochs - schedule.warmup_epochs - 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(e, span) / span))
        factor = schedule.min_factor + (1.0 - schedule.min_factor) * cosine
    return base_lr * factor


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over the weights that `decayed_parameters` selects."""
    return torch.stack([p.abs().sum() for p in decayed_parameters(model)]).sum()
