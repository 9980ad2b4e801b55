"""The batch-size finder: the largest training batch that fits the trial's memory.

Batch sizes are tried by doubling from a start until one fails (or the limit is
reached), then by bisecting between the largest that fit and the smallest that failed,
to within `BISECT_PRECISION`. A try runs `STEPS_PER_TRY` optimizer steps on a fresh
trainer, so it holds what a trial holds: weights, gradients, optimizer state,
activations, and the dataset where the trial would keep it on the device.

What counts as "out of memory" is `trainables.gpu.is_out_of_memory`, the same rule
that marks a trial infeasible; on a GPU the limit is the allocator cap the caller set
for the trial's share (`trainables.gpu.claim_gpu_share`). Any other failure is raised.
The search itself (`next_batch_size`, `largest_fitting`) is plain arithmetic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from trainables.config import TrainConfig
from trainables.data import TuningData
from trainables.gpu import is_out_of_memory, release_memory
from trainables.probe_steps import endless_batches, probe_trainer, train_step

logger = logging.getLogger(__name__)

# Step 1 allocates the optimizer's state, step 2 runs with it in place: the trial's
# steady-state peak. A third step gives the allocator's caching a chance to fragment.
STEPS_PER_TRY = 3
# Bisection stops once the gap between the largest fit and the smallest failure is at
# most this share of the largest fit.
BISECT_PRECISION = 1 / 8
MIN_BATCH_SIZE = 2  # batch norm needs two examples per batch


@dataclass
class BatchSearch:
    """The batch sizes tried so far (size -> whether it fit) and the search's bounds."""

    start: int
    limit: int
    tried: dict[int, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.limit < MIN_BATCH_SIZE:
            raise ValueError(
                f"the batch-size limit must be at least {MIN_BATCH_SIZE}, got {self.limit}"
            )
        if self.start < MIN_BATCH_SIZE:
            raise ValueError(f"the first batch size must be at least {MIN_BATCH_SIZE}")

    def next(self) -> int | None:
        return next_batch_size(self.tried, self.start, self.limit)

    @property
    def largest(self) -> int | None:
        return largest_fitting(self.tried)


def largest_fitting(tried: Mapping[int, bool]) -> int | None:
    """The largest batch size that fit, or None if none did."""
    return max((size for size, fits in tried.items() if fits), default=None)


def next_batch_size(tried: Mapping[int, bool], start: int, limit: int) -> int | None:
    """The next batch size to try given the outcomes so far, or None when the search is done.

    First `start` (capped at `limit`); then double while everything fits, up to `limit`;
    halve down from the first failure while nothing fits, to MIN_BATCH_SIZE; bisect
    between the largest fit and the smallest failure to within BISECT_PRECISION.
    """
    if not tried:
        return max(MIN_BATCH_SIZE, min(start, limit))
    fit = largest_fitting(tried)
    failed = min((size for size, fits in tried.items() if not fits), default=None)
    if failed is None:
        assert fit is not None  # tried holds only fits
        return None if fit >= limit else min(fit * 2, limit)
    if fit is None:
        return None if failed <= MIN_BATCH_SIZE else max(MIN_BATCH_SIZE, failed // 2)
    if failed - fit <= max(1, int(fit * BISECT_PRECISION)):
        return None
    return (fit + failed) // 2


def suggested_batch_sizes(largest: int, count: int = 4) -> list[int]:
    """Up to `count` powers of two, halving down from the largest one that is <= `largest`.

    Powers of two, and the step down from the measured maximum, leave the headroom a long
    run needs (allocator fragmentation, cuDNN picking another algorithm).
    """
    if largest < MIN_BATCH_SIZE:
        raise ValueError(f"no batch size fits: the largest that fit is {largest}")
    top = 1 << (largest.bit_length() - 1)
    sizes = [top >> k for k in range(count) if top >> k >= MIN_BATCH_SIZE]
    return sorted(sizes)


def batch_fits(
    config: TrainConfig,
    data: TuningData,
    device: torch.device,
    batch_size: int,
    memory_cap_bytes: int | None = None,
) -> bool:
    """Whether `config` trains at `batch_size` for STEPS_PER_TRY steps without running
    out of memory. Any other error is raised."""
    try:
        _train_a_few_steps(config, data, device, batch_size, memory_cap_bytes)
        return True
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        logger.info("batch size %d: out of memory (%s)", batch_size, str(error).splitlines()[0])
        return False
    finally:
        release_memory(device)  # the try's trainer is gone: its memory goes back


def _train_a_few_steps(
    config: TrainConfig,
    data: TuningData,
    device: torch.device,
    batch_size: int,
    memory_cap_bytes: int | None,
) -> None:
    """STEPS_PER_TRY steps on a fresh trainer, which is freed when this returns."""
    trainer = probe_trainer(
        config.model_copy(update={"batch_size": batch_size}), data, device, memory_cap_bytes
    )
    batches = endless_batches(trainer, batch_size, config.seed)
    for _ in range(STEPS_PER_TRY):
        images, labels = next(batches)
        train_step(trainer, images, labels)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # an asynchronous failure surfaces here, not later


def find_largest_batch(
    config: TrainConfig,
    data: TuningData,
    device: torch.device,
    limit: int,
    memory_cap_bytes: int | None = None,
    on_try: Callable[[int, bool], None] | None = None,
) -> BatchSearch:
    """Search batch sizes from `config.batch_size` up to `limit`; returns every outcome.

    `on_try(batch_size, fits)` is called after each try, for progress.
    """
    search = BatchSearch(start=max(MIN_BATCH_SIZE, config.batch_size), limit=limit)
    while (size := search.next()) is not None:
        search.tried[size] = batch_fits(config, data, device, size, memory_cap_bytes)
        if on_try is not None:
            on_try(size, search.tried[size])
    return search
