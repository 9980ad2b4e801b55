"""The training loop: plain PyTorch, one epoch at a time, no Ray.

    trainer = Trainer(config, data)
    for metrics in trainer.epochs():   # train one epoch, validate, yield the metrics
        ...                            # report, checkpoint (trainer.state_dict()), stop

`fit` runs it to the end; the Tune adapter wraps the same generator.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables import metrics as m
from trainables.augment import Augmenter
from trainables.batches import BatchFeeder, split_bytes
from trainables.compute import ComputeFormat, Normalizer
from trainables.config import ModelConfig, TrainConfig, TransferConfig
from trainables.data import DatasetInfo, ImageSplit, TuningData
from trainables.gpu import keep_data_on_device
from trainables.models import build_model
from trainables.optim import (
    apply_optimizer_settings,
    batch_lr_multiplier,
    batch_size_at,
    build_optimizer,
    l1_penalty,
    lr_at,
    set_learning_rate,
)
from trainables.transfer import StateDict, load_pretrained, pretrained_key

logger = logging.getLogger(__name__)

EpochMetrics = dict[str, Any]

# A NaN loss is looked for every this many steps and at the end of the epoch, not at
# every step: each look waits for the GPU to catch up with the host.
DIVERGENCE_CHECK_STEPS = 32


@dataclass
class Stall:
    """Counts epochs without an improvement of more than `min_delta` in one metric."""

    mode: str
    min_delta: float
    patience: int
    best: float | None = None
    bad_epochs: int = 0

    def update(self, value: float) -> bool:
        """Record `value`; True once `patience` epochs in a row brought no improvement."""
        improved = self.best is None or (
            value > self.best + self.min_delta
            if self.mode == "max"
            else value < self.best - self.min_delta
        )
        if improved:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


class Trainer:
    """Trains one `TrainConfig` on `TuningData`; its state round-trips through checkpoints.

    `pretrained` maps `pretrained_key(model config)` to backbone weights the driver loaded
    once; a transfer model missing from it loads its weights itself (standalone use).
    `memory_cap_bytes` is the trial's share of its GPU, which decides whether the dataset
    is kept on the GPU (None: no cap known, `config.data_on_device` decides alone).
    """

    def __init__(
        self,
        config: TrainConfig,
        data: TuningData,
        device: torch.device | None = None,
        pretrained: Mapping[str, StateDict | None] | None = None,
        memory_cap_bytes: int | None = None,
    ) -> None:
        self.config = config
        self.info = data.info
        self.device = device or torch.device("cpu")
        torch.manual_seed(config.seed)
        model_config = config.model
        weights = _pretrained_weights(model_config, pretrained or {})
        self.compute = ComputeFormat.for_config(config, self.device)
        self.model = self.compute.prepare(
            build_model(model_config, data.info, weights).to(self.device)
        )
        backbone_lr_factor = (
            model_config.backbone_lr_factor if isinstance(model_config, TransferConfig) else 1.0
        )
        self.optimizer = build_optimizer(config.optimizer, self.model, backbone_lr_factor)
        # By default the whole dataset lives on the trial's device: no per-batch
        # host-to-device copy. Otherwise batches are staged through pinned host buffers.
        self.data_on_device = keep_data_on_device(
            config.data_on_device, split_bytes(data.train) + split_bytes(data.val), memory_cap_bytes
        )
        largest_batch = max(largest_batch_size(config), config.eval_batch_size)
        self.train_feed = BatchFeeder(data.train, self.device, self.data_on_device, largest_batch)
        self.val_feed = BatchFeeder(data.val, self.device, self.data_on_device, largest_batch)
        self.normalize = Normalizer.for_model(model_config, data.info, self.device)
        self.augment = Augmenter(config.augmentation, self.device)
        schedule, stopping = config.lr_schedule, config.early_stopping
        plateau_mode = "min" if schedule.plateau_metric == m.VAL_LOSS else "max"
        self.plateau = Stall(plateau_mode, schedule.plateau_min_delta, schedule.plateau_patience)
        self.plateau_decays = 0
        self.early_stop = (
            Stall(stopping.mode, stopping.min_delta, stopping.patience) if stopping else None
        )
        self.epoch = 0  # epochs completed
        self.stopped_early = False
        self.diverged = False

    @property
    def finished(self) -> bool:
        return self.stopped_early or self.diverged or self.epoch >= self.config.epochs

    def epochs(self) -> Iterator[EpochMetrics]:
        """Train until `config.epochs` or early stopping, yielding each epoch's metrics."""
        while not self.finished:
            yield self.run_epoch()

    def run_epoch(self) -> EpochMetrics:
        config = self.config
        batch_size = batch_size_at(config.batch_size, config.batch_growth, self.epoch)
        lr = lr_at(
            config.lr_schedule, config.optimizer.lr, self.epoch, config.epochs, self.plateau_decays
        ) * batch_lr_multiplier(batch_size, config.batch_size, config.batch_growth)
        set_learning_rate(self.optimizer, lr)
        train_loss, train_acc = self._train_one_epoch(batch_size)
        val_loss, val_acc = evaluate_feed(
            self.model, self.val_feed, self.normalize, config.eval_batch_size, self.compute
        )
        self.epoch += 1
        metrics: EpochMetrics = {
            m.EPOCH: self.epoch,
            m.TRAIN_LOSS: train_loss,
            m.TRAIN_ACC: train_acc,
            m.VAL_LOSS: val_loss,
            m.VAL_ACC: val_acc,
            m.LR: lr,
            m.BATCH_SIZE: batch_size,
        }
        self._after_epoch(metrics)
        return metrics

    def _after_epoch(self, metrics: EpochMetrics) -> None:
        """Divergence, plateau decays and early stopping: decided on this epoch's metrics."""
        self.diverged = not all(math.isfinite(metrics[k]) for k in (m.TRAIN_LOSS, m.VAL_LOSS))
        metrics[m.DIVERGED] = self.diverged
        metrics[m.EARLY_STOPPED] = self.stopped_early
        if self.diverged:
            logger.warning("epoch %d diverged: %s", self.epoch, metrics)
            metrics.update(m.WORST)
            return
        schedule = self.config.lr_schedule
        if schedule.name == "plateau" and self.plateau.update(metrics[schedule.plateau_metric]):
            self.plateau_decays += 1
            self.plateau.bad_epochs = 0
        if self.early_stop is not None and self.config.early_stopping is not None:
            self.stopped_early = self.early_stop.update(metrics[self.config.early_stopping.metric])
            metrics[m.EARLY_STOPPED] = self.stopped_early

    def _train_one_epoch(self, batch_size: int) -> tuple[float, float]:
        """One pass over the train split; returns the mean data loss and the accuracy.

        The running sums stay on the device: reading a GPU value makes the host wait, so
        it happens every DIVERGENCE_CHECK_STEPS steps and once at the end.
        """
        self.model.train()
        order = self._batch_order(len(self.train_feed))
        self.augment.generator.manual_seed(self._epoch_seed(salt=1))
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        for step, (images, y) in enumerate(self.train_feed.batches(order, batch_size), 1):
            data_loss, logits = self.train_step(images, y)
            loss_sum += data_loss * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if step % DIVERGENCE_CHECK_STEPS == 0 and not torch.isfinite(loss_sum):
                break  # diverged: the epoch reports it
        return float(loss_sum) / max(1, seen), int(correct) / max(1, seen)

    def train_step(
        self, images: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch (augmented, normalized, L1 added); returns the
        data loss (detached) and the logits. The model must be in training mode.

        Both stay on the device: reading them makes the host wait for a GPU.
        """
        x = self.normalize.standardize(self.augment(self.normalize.to_unit(images)))
        with self.compute.autocast():
            logits = self.model(self.compute.inputs(x)).float()
        data_loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
        loss = data_loss
        if self.config.l1 > 0:
            loss = loss + self.config.l1 * l1_penalty(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return data_loss.detach(), logits.detach()

    def _epoch_seed(self, salt: int = 0) -> int:
        # Seeded by (seed, epoch) so a restored trial shuffles and augments exactly as an
        # unbroken one would.
        return self.config.seed * 100_003 + self.epoch * 7 + salt

    def _batch_order(self, n: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self._epoch_seed())
        return torch.randperm(n, generator=generator).to(self.train_feed.index_device)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training, as checkpoint-safe types."""
        return {
            "config": self.config.model_dump(mode="json"),
            "data_info": self.info.to_dict(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            # Dropout on a GPU draws from the device's generator.
            "cuda_rng": torch.cuda.get_rng_state(self.device)
            if self.device.type == "cuda"
            else None,
            "plateau": {**asdict(self.plateau), "decays": self.plateau_decays},
            "early_stop": asdict(self.early_stop) if self.early_stop else None,
            "stopped_early": self.stopped_early,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`, keeping this trainer's config (PBT may have mutated it)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        apply_optimizer_settings(self.optimizer, self.config.optimizer)
        self.epoch = int(state["epoch"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        plateau = dict(state["plateau"])
        self.plateau_decays = int(plateau.pop("decays"))
        self.plateau.best, self.plateau.bad_epochs = plateau["best"], plateau["bad_epochs"]
        if self.early_stop is not None and state.get("early_stop"):
            self.early_stop.best = state["early_stop"]["best"]
            self.early_stop.bad_epochs = state["early_stop"]["bad_epochs"]
        self.stopped_early = bool(state["stopped_early"])


def evaluate(
    model: nn.Module,
    split: ImageSplit,
    normalize: Normalizer,
    batch_size: int,
    compute: ComputeFormat | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on `split`, in eval mode, no augmentation."""
    loss, predictions = predict_split(model, split, normalize, batch_size, compute)
    correct = int((predictions == split.labels.to(predictions.device)).sum())
    return loss, correct / max(1, len(split))


def evaluate_feed(
    model: nn.Module,
    feed: BatchFeeder,
    normalize: Normalizer,
    batch_size: int,
    compute: ComputeFormat,
) -> tuple[float, float]:
    """`evaluate` on a split a trainer has already placed; the sums stay on the device."""
    loss, predictions = _predict_feed(model, feed, normalize, batch_size, compute)
    correct = int((predictions == feed.split.labels.to(predictions.device)).sum())
    return loss, correct / max(1, len(feed))


def predict_split(
    model: nn.Module,
    split: ImageSplit,
    normalize: Normalizer,
    batch_size: int,
    compute: ComputeFormat | None = None,
) -> tuple[float, torch.Tensor]:
    """Mean cross-entropy on `split` and the predicted class of every example.

    The split stays where it is; on a GPU its batches are staged through pinned buffers.
    """
    compute = compute or ComputeFormat(torch.device("cpu"))
    feed = BatchFeeder(split, compute.device, on_device=False, max_batch=batch_size)
    return _predict_feed(model, feed, normalize, batch_size, compute)


def _predict_feed(
    model: nn.Module,
    feed: BatchFeeder,
    normalize: Normalizer,
    batch_size: int,
    compute: ComputeFormat,
) -> tuple[float, torch.Tensor]:
    model.eval()
    loss_sum, predictions = torch.zeros((), device=compute.device), []
    with torch.no_grad():
        for images, y in feed.in_order(batch_size):
            with compute.autocast():
                logits = model(compute.inputs(normalize(images))).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            predictions.append(logits.argmax(1))
    empty = torch.empty(0, dtype=torch.long, device=compute.device)
    return float(loss_sum) / max(1, len(feed)), torch.cat(predictions) if predictions else empty


def fit(
    config: TrainConfig,
    data: TuningData,
    device: torch.device | None = None,
    on_epoch_end: Callable[[EpochMetrics], None] | None = None,
    pretrained: Mapping[str, StateDict | None] | None = None,
) -> Trainer:
    """Train `config` to the end without Ray; returns the trainer (model, state)."""
    trainer = Trainer(config, data, device, pretrained)
    for metrics in trainer.epochs():
        if on_epoch_end is not None:
            on_epoch_end(metrics)
    return trainer


def retrain(
    config: TrainConfig,
    data: TuningData,
    epochs: int,
    device: torch.device | None = None,
    pretrained: Mapping[str, StateDict | None] | None = None,
    memory_cap_bytes: int | None = None,
) -> Trainer:
    """Train `config` on train+val for exactly `epochs` epochs: the final-model protocol.

    The learning-rate and batch-size schedules run as in the tuned trial (they depend on
    `config.epochs`, which is kept), stopping after `epochs`; early stopping is off, as
    there is no held-out data left to watch.
    """
    trainer = Trainer(
        config.model_copy(update={"early_stopping": None}),
        data.pooled(),
        device,
        pretrained,
        memory_cap_bytes,
    )
    while trainer.epoch < epochs and not trainer.diverged:
        trainer.run_epoch()
    return trainer


def model_from_state(state: dict[str, Any], device: torch.device | None = None) -> nn.Module:
    """Rebuild the trained model stored in a checkpoint state, in eval mode.

    The checkpoint holds every weight, pretrained backbones included, so nothing else
    is loaded.
    """
    config = TrainConfig.model_validate(state["config"])
    # A cnn-tune backbone's architecture is read from the weights (trainables.cnn_backbone).
    own = isinstance(config.model, TransferConfig) and config.model.backbone == "cnn-tune"
    info = DatasetInfo.from_dict(state["data_info"])
    model = build_model(config.model, info, pretrained=state["model"] if own else None)
    model.load_state_dict(state["model"])
    return model.to(device or torch.device("cpu")).eval()


def normalizer_from_state(state: dict[str, Any], device: torch.device | None = None) -> Normalizer:
    """The input normalization the checkpointed model was trained with."""
    config = TrainConfig.model_validate(state["config"])
    info = DatasetInfo.from_dict(state["data_info"])
    return Normalizer.for_model(config.model, info, device or torch.device("cpu"))


def _pretrained_weights(
    config: ModelConfig, pretrained: Mapping[str, StateDict | None]
) -> StateDict | None:
    if not isinstance(config, TransferConfig):
        return None
    key = pretrained_key(config)
    return pretrained[key] if key in pretrained else load_pretrained(config)


def largest_batch_size(config: TrainConfig) -> int:
    """The largest training batch over all epochs (batch growth included)."""
    return max(
        batch_size_at(config.batch_size, config.batch_growth, epoch)
        for epoch in range(max(1, config.epochs))
    )
