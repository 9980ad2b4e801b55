"""The training loop: plain PyTorch, one epoch at a time, no Ray.

    trainer = Trainer(config, data)
    for metrics in trainer.epochs():   # train one epoch, validate, yield the metrics
        ...                            # report, checkpoint (trainer.state_dict()), stop

`fit` runs it to the end; the Tune adapter wraps the same generator.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables import metrics as m
from trainables.config import TrainConfig
from trainables.data import DatasetInfo, ImageSplit, TuningData
from trainables.models import build_model
from trainables.optim import (
    apply_optimizer_settings,
    build_optimizer,
    l1_penalty,
    lr_at,
    set_learning_rate,
)

logger = logging.getLogger(__name__)

EpochMetrics = dict[str, float]


class Normalizer:
    """uint8 NCHW images to float, standardized per channel with the train split's stats."""

    def __init__(self, info: DatasetInfo, device: torch.device) -> None:
        self.mean = torch.tensor(info.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std, device=device).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255.0 - self.mean) / self.std


class Trainer:
    """Trains one `TrainConfig` on `TuningData`; its state round-trips through checkpoints."""

    def __init__(self, config: TrainConfig, data: TuningData, device: torch.device | None = None):
        self.config = config
        self.info = data.info
        self.device = device or torch.device("cpu")
        torch.manual_seed(config.seed)
        self.model = build_model(config.model, data.info).to(self.device)
        self.optimizer = build_optimizer(config.optimizer, self.model)
        # The whole dataset lives on the trial's device: no per-batch host-to-device copy.
        self.train_split = _to_device(data.train, self.device)
        self.val_split = _to_device(data.val, self.device)
        self.normalize = Normalizer(data.info, self.device)
        self.epoch = 0  # epochs completed

    def epochs(self) -> Iterator[EpochMetrics]:
        """Train until `config.epochs` epochs are done, yielding each epoch's metrics."""
        while self.epoch < self.config.epochs:
            yield self.run_epoch()

    def run_epoch(self) -> EpochMetrics:
        lr = lr_at(
            self.config.lr_schedule, self.config.optimizer.lr, self.epoch, self.config.epochs
        )
        set_learning_rate(self.optimizer, lr)
        train_loss, train_acc = self._train_one_epoch()
        val_loss, val_acc = evaluate(
            self.model, self.val_split, self.normalize, self.config.eval_batch_size
        )
        self.epoch += 1
        return {
            m.EPOCH: self.epoch,
            m.TRAIN_LOSS: train_loss,
            m.TRAIN_ACC: train_acc,
            m.VAL_LOSS: val_loss,
            m.VAL_ACC: val_acc,
            m.LR: lr,
            m.BATCH_SIZE: self.config.batch_size,
        }

    def _train_one_epoch(self) -> tuple[float, float]:
        """One pass over the train split; returns the mean data loss and the accuracy."""
        self.model.train()
        images, labels = self.train_split.images, self.train_split.labels
        order = self._batch_order(len(labels))
        loss_sum, correct, seen = 0.0, 0, 0
        for batch in _batches(order, self.config.batch_size):
            x, y = self.normalize(images[batch]), labels[batch]
            logits = self.model(x)
            data_loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
            loss = data_loss
            if self.config.l1 > 0:
                loss = loss + self.config.l1 * l1_penalty(self.model)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += data_loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        return loss_sum / seen, correct / seen

    def _batch_order(self, n: int) -> torch.Tensor:
        # Seeded by (seed, epoch) so a restored trial shuffles exactly as an unbroken one.
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + self.epoch)
        return torch.randperm(n, generator=generator).to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training, as checkpoint-safe types."""
        return {
            "config": self.config.model_dump(mode="json"),
            "data_info": self.info.to_dict(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`, keeping this trainer's config (PBT may have mutated it)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        apply_optimizer_settings(self.optimizer, self.config.optimizer)
        self.epoch = int(state["epoch"])
        torch.set_rng_state(state["torch_rng"])


def evaluate(
    model: nn.Module, split: ImageSplit, normalize: Normalizer, batch_size: int
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on `split`, in eval mode, no augmentation."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            x = normalize(split.images[start : start + batch_size])
            y = split.labels[start : start + batch_size]
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
    n = max(1, len(split))
    return loss_sum / n, correct / n


def fit(
    config: TrainConfig,
    data: TuningData,
    device: torch.device | None = None,
    on_epoch_end: Callable[[EpochMetrics], None] | None = None,
) -> Trainer:
    """Train `config` to the end without Ray; returns the trainer (model, state)."""
    trainer = Trainer(config, data, device)
    for metrics in trainer.epochs():
        if not all(math.isfinite(v) for v in metrics.values()):
            logger.warning("epoch %d: non-finite metrics %s", trainer.epoch, metrics)
        if on_epoch_end is not None:
            on_epoch_end(metrics)
    return trainer


def model_from_state(state: dict[str, Any], device: torch.device | None = None) -> nn.Module:
    """Rebuild the trained model stored in a checkpoint state, in eval mode."""
    config = TrainConfig.model_validate(state["config"])
    model = build_model(config.model, DatasetInfo.from_dict(state["data_info"]))
    model.load_state_dict(state["model"])
    return model.to(device or torch.device("cpu")).eval()


def pick_device(gpus_assigned: float) -> torch.device:
    """CUDA when the trial was given a GPU share and CUDA works here, else the CPU."""
    if gpus_assigned > 0 and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _to_device(split: ImageSplit, device: torch.device) -> ImageSplit:
    return ImageSplit(images=split.images.to(device), labels=split.labels.to(device))


def _batches(order: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Index batches of `order`; a last batch of one example is dropped (batch norm needs 2)."""
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        if len(batch) > 1 or start == 0:
            yield batch
