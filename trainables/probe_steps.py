"""Optimizer steps outside an epoch: what the LR range test and the batch-size finder run.

Both probes build a `Trainer` for the configuration under test and step it directly, so
they measure what a trial would run: the same model, optimizer (param groups, weight
decay), data placement for the memory cap, input normalization, augmentation, bf16 and
channels-last. Only the epoch around the steps (validation, schedules) is left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch

from trainables.config import TrainConfig
from trainables.data import TuningData
from trainables.loop import Trainer

Batch = tuple[torch.Tensor, torch.Tensor]


def probe_trainer(
    config: TrainConfig,
    data: TuningData,
    device: torch.device,
    memory_cap_bytes: int | None = None,
) -> Trainer:
    """A trainer for `config` at its `batch_size`, batch growth off (a probe runs no epochs)."""
    fixed = config.model_copy(update={"batch_growth": None, "early_stopping": None})
    return Trainer(fixed, data, device, memory_cap_bytes=memory_cap_bytes)


def endless_batches(trainer: Trainer, batch_size: int, seed: int) -> Iterator[Batch]:
    """Training batches of `batch_size`, reshuffled after every pass over the train split.

    The shuffles are seeded by (`seed`, pass), so a probe is repeatable.
    """
    feed = trainer.train_feed
    for sweep in itertools.count():
        generator = torch.Generator().manual_seed(seed * 100_003 + sweep)
        order = torch.randperm(len(feed), generator=generator).to(feed.index_device)
        yield from feed.batches(order, batch_size)


def train_step(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One optimizer step on a batch, the training loop's own; returns the data loss."""
    trainer.model.train()
    data_loss, _ = trainer.train_step(images, labels)
    return data_loss
