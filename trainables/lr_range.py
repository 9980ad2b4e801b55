"""The learning-rate range test: train a few hundred steps with the lr growing exponentially.

Leslie Smith's test (2015), as fastai runs it: the loss barely moves while the lr is too
small, falls fastest somewhere in the middle, and blows up once the lr is too large.
Reading the curve is done by plain functions of the (lr, loss) series, so it is tested
on made-up series; `lr_range_test` only produces the series.

    sweep = lr_range_test(config, data, device)
    low, high = suggested_lr_range(sweep.lrs, sweep.points())
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from trainables.config import TrainConfig
from trainables.data import TuningData
from trainables.optim import set_learning_rate
from trainables.probe_steps import endless_batches, probe_trainer, train_step

logger = logging.getLogger(__name__)

# Limits of the lr the sweep may cover; 10 is also the largest optimizer.lr a config takes.
MIN_START_LR, MAX_END_LR = 1.0e-10, 10.0


@dataclass(frozen=True)
class LRRangeSettings:
    """How the sweep runs.

    Attributes:
        start_lr: the lr of the first step.
        end_lr: the lr of the last step, reached unless the loss diverges first.
        steps: optimizer steps from start_lr to end_lr (a few hundred: about 40 per decade).
        smoothing: weight of the past in the loss's moving average (0.95: about 20 steps).
        divergence_factor: the sweep stops once the smoothed loss exceeds this multiple
            of the lowest smoothed loss so far (or any loss is not finite).
    """

    start_lr: float = 1.0e-7
    end_lr: float = 10.0
    steps: int = 300
    smoothing: float = 0.95
    divergence_factor: float = 4.0

    def __post_init__(self) -> None:
        if not MIN_START_LR <= self.start_lr < self.end_lr <= MAX_END_LR:
            raise ValueError(
                f"the lr range test needs {MIN_START_LR:g} <= start_lr < end_lr <= "
                f"{MAX_END_LR:g}, got start_lr={self.start_lr:g}, end_lr={self.end_lr:g}"
            )
        if self.steps < 20:
            raise ValueError(f"the lr range test needs at least 20 steps, got {self.steps}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if self.divergence_factor <= 1:
            raise ValueError(f"divergence_factor must be > 1, got {self.divergence_factor}")


@dataclass(frozen=True)
class SweepPoints:
    """Indices into the sweep: steepest descent, lowest loss, divergence (None: not found)."""

    steepest: int | None
    minimum: int
    divergence: int | None


@dataclass(frozen=True)
class LRSweep:
    """One sweep's series, one entry per step taken; `diverged_at` is the step that stopped it."""

    settings: LRRangeSettings
    batch_size: int
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    diverged_at: int | None

    @property
    def curve(self) -> list[float]:
        """The loss curve the points are read from: `centered_losses` up to the divergence."""
        taken = len(self.losses) if self.diverged_at is None else self.diverged_at
        return centered_losses(self.losses[:taken], self.settings.smoothing)

    def points(self) -> SweepPoints:
        return choose_points(self.lrs, self.curve, self.diverged_at, self.settings.steps)


def exponential_lrs(start_lr: float, end_lr: float, steps: int) -> list[float]:
    """`steps` learning rates from `start_lr` to `end_lr`, evenly spaced on a log scale."""
    ratio = end_lr / start_lr
    return [start_lr * ratio ** (i / (steps - 1)) for i in range(steps)]


def smooth_losses(losses: Sequence[float], smoothing: float) -> list[float]:
    """The bias-corrected exponential moving average of `losses` (as Adam corrects its
    moments), so the first values are not pulled towards zero."""
    average, smoothed = 0.0, []
    for step, loss in enumerate(losses, 1):
        average = smoothing * average + (1 - smoothing) * loss
        smoothed.append(average / (1 - smoothing**step))
    return smoothed


def centered_losses(losses: Sequence[float], smoothing: float) -> list[float]:
    """`smooth_losses` run forwards, then backwards over the result: no lag.

    The running average that decides when to stop trails the loss by about
    smoothing / (1 - smoothing) steps (19 at 0.95: half a decade of lr with the default
    sweep), which would report every point late. Smoothing both ways weighs the past and
    the future alike, so the curve's points stay where they are.
    """
    forwards = smooth_losses(losses, smoothing)
    return smooth_losses(forwards[::-1], smoothing)[::-1]


def has_diverged(smoothed_loss: float, lowest: float, factor: float) -> bool:
    """The sweep's stopping rule: a non-finite loss, or `factor` x the lowest loss so far."""
    return not math.isfinite(smoothed_loss) or smoothed_loss > factor * lowest


def divergence_index(smoothed: Sequence[float], factor: float) -> int | None:
    """The first step at which `has_diverged`, or None."""
    lowest = math.inf
    for index, value in enumerate(smoothed):
        if has_diverged(value, lowest, factor):
            return index
        lowest = min(lowest, value)
    return None


def choose_points(
    lrs: Sequence[float], curve: Sequence[float], diverged_at: int | None, planned_steps: int
) -> SweepPoints:
    """Where the loss `curve` falls fastest, where it is lowest, and where the sweep diverged.

    `curve` is the smoothed loss of each step (`centered_losses`); only the steps before
    the divergence count. The fall is measured across half a decade of lr (the loss at
    lr x sqrt(10) against the loss at lr), not step to step: a step's change is mostly
    noise, a half decade's is the curve. The steepest point is the middle of the steepest
    half decade, looked for from the first 5% of the planned steps (the smoothing has
    little history before) up to the lowest loss; None when the loss never falls there.
    """
    taken = len(curve) if diverged_at is None else min(diverged_at, len(curve))
    losses = np.asarray(curve[:taken], dtype=float)
    if len(losses) == 0:
        return SweepPoints(steepest=None, minimum=0, divergence=diverged_at)
    minimum = int(np.argmin(losses))
    span = _steps_per_half_decade(lrs)
    starts = range(max(1, planned_steps // 20), minimum - span + 1)
    if not starts:
        return SweepPoints(steepest=None, minimum=minimum, divergence=diverged_at)
    falls = [losses[i + span] - losses[i] for i in starts]
    steepest = int(np.argmin(falls))
    found = starts[steepest] + span // 2 if falls[steepest] < 0 else None
    return SweepPoints(steepest=found, minimum=minimum, divergence=diverged_at)


def _steps_per_half_decade(lrs: Sequence[float]) -> int:
    if len(lrs) < 2:
        return 1
    decades_per_step = math.log10(lrs[1] / lrs[0])
    return max(1, round(0.5 / decades_per_step))


def suggested_lr_range(lrs: Sequence[float], points: SweepPoints) -> tuple[float, float]:
    """The range to search: from a decade below the steepest descent up to the lowest loss.

    Below that the loss barely moves; at the lowest loss training is already at its
    edge, and beyond it diverges. The upper end is at least 10x the lower.

    Raises:
        ValueError: the sweep found no descent (it diverged at once, or the loss never fell).
    """
    if points.steepest is None:
        raise ValueError(
            "the loss never fell before the sweep ended or diverged, so there is no "
            "steepest descent to start the range from"
        )
    low = lrs[points.steepest] / 10
    high = max(lrs[points.minimum], low * 10)
    return low, min(high, MAX_END_LR)


def lr_range_test(
    config: TrainConfig,
    data: TuningData,
    device: torch.device | None = None,
    settings: LRRangeSettings | None = None,
    memory_cap_bytes: int | None = None,
    on_step: Callable[[int, float, float], None] | None = None,
) -> LRSweep:
    """Train `config` at its batch size with the lr growing from start_lr to end_lr.

    Stops early at divergence. `on_step(step, lr, smoothed_loss)` is called after each
    step (1-based), for progress. The model starts from `config.seed`'s initialization,
    as a trial's would.
    """
    settings = settings or LRRangeSettings()
    device = device or torch.device("cpu")
    trainer = probe_trainer(config, data, device, memory_cap_bytes)
    trainer.augment.generator.manual_seed(config.seed)
    schedule = exponential_lrs(settings.start_lr, settings.end_lr, settings.steps)
    batches = endless_batches(trainer, config.batch_size, config.seed)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, lowest, diverged_at = 0.0, math.inf, None
    # The batches never end: the schedule decides how many steps run.
    for step, (lr, (images, labels)) in enumerate(zip(schedule, batches, strict=False), 1):
        set_learning_rate(trainer.optimizer, lr)
        loss = float(train_step(trainer, images, labels))  # one host sync per step: a probe
        # The running form of smooth_losses: O(1) per step.
        average = settings.smoothing * average + (1 - settings.smoothing) * loss
        lrs.append(lr)
        losses.append(loss)
        smoothed.append(average / (1 - settings.smoothing**step))
        if on_step is not None:
            on_step(step, lr, smoothed[-1])
        if has_diverged(smoothed[-1], lowest, settings.divergence_factor):
            diverged_at = step - 1
            logger.info("lr range test: diverged at step %d, lr %.3g", step, lr)
            break
        lowest = min(lowest, smoothed[-1])
    return LRSweep(settings, config.batch_size, lrs, losses, smoothed, diverged_at)
