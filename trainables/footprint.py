"""What a model costs to keep and to run: its parameters, FLOPs and inference latency.

The Tune adapter measures a trial's model once per run of the trial, after its first
epoch there (so the model is known to fit; its architecture and device do not change
across epochs), and reports the figures with every epoch under the names in
trainables.metrics; `footprint_of` measures each architecture once per trial process.
Everything runs in eval mode without gradients on all-zero inputs, so no random number
is drawn and no batch-norm statistic moves: a trial trains exactly as it would
unmeasured.

Latency is wall time per forward pass on the trial's device, in its compute format
(bf16, channels-last) and with its CPU threads, so trials are compared as they ran. It
leaves out input normalization and host-to-device copies. On digits the whole
measurement takes tens of milliseconds; a large model on a CPU gets fewer repeats (see
TIME_BUDGET_S) rather than a long wait.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from trainables import metrics as m
from trainables.compute import ComputeFormat

LARGE_BATCH = 256  # images in the throughput batch, unless the trial's eval batch is smaller
WARMUP_PASSES = 2  # untimed passes first: allocator, cuDNN autotuning, CPU caches
TIMED_PASSES = 7  # the latency is the median of at most this many timed passes
TIME_BUDGET_S = 0.5  # per batch size: stop repeating once this much time has been timed


@dataclass(frozen=True)
class Footprint:
    """One model's size and speed, as reported under the names in trainables.metrics."""

    params: int
    flops: int  # per image; a multiply-add counts as 2
    latency_ms: float  # per forward pass of 1 image
    latency_ms_batch: float  # per forward pass of `latency_batch_size` images
    latency_batch_size: int

    def metrics(self) -> dict[str, float | int]:
        return {
            m.PARAMS: self.params,
            m.FLOPS: self.flops,
            m.LATENCY_MS: self.latency_ms,
            m.LATENCY_MS_BATCH: self.latency_ms_batch,
            m.LATENCY_BATCH_SIZE: self.latency_batch_size,
        }


def measure_footprint(
    model: nn.Module,
    input_shape: tuple[int, ...],
    compute: ComputeFormat,
    large_batch: int = LARGE_BATCH,
) -> Footprint:
    """Parameters, FLOPs per image and latency at batch 1 and `large_batch` of `model`.

    `input_shape` is one image's (channels, height, width); `compute` holds the device
    and format the model runs in. The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        return Footprint(
            params=parameter_count(model),
            flops=flops_per_image(model, input_shape, compute.device),
            latency_ms=latency_ms(model, input_shape, 1, compute),
            latency_ms_batch=latency_ms(model, input_shape, large_batch, compute),
            latency_batch_size=large_batch,
        )
    finally:
        model.train(was_training)


# Footprints this process measured, by what decides them: the architecture (the module
# tree as printed, every layer's shape and setting), the input, the compute format, the
# throughput batch and the CPU threads.
_measured: dict[tuple[object, ...], Footprint] = {}


def footprint_of(
    model: nn.Module,
    input_shape: tuple[int, ...],
    compute: ComputeFormat,
    large_batch: int = LARGE_BATCH,
) -> Footprint:
    """`measure_footprint`, once per architecture and compute format in this process.

    A reused Ray actor runs trial after trial of the same few architectures: measuring
    each again cost 0.06-0.09 s of a 0.2 s digits trial. Trials that differ only in
    their training hyperparameters (learning rate, batch size, regularization) get the
    figures their architecture's first trial measured here.
    """
    key = (repr(model), tuple(input_shape), compute, large_batch, torch.get_num_threads())
    if key not in _measured:
        _measured[key] = measure_footprint(model, input_shape, compute, large_batch)
    return _measured[key]


def parameter_count(model: nn.Module) -> int:
    """Every parameter, trainable or frozen (a frozen backbone still has to be shipped)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_image(
    model: nn.Module, input_shape: tuple[int, ...], device: torch.device | None = None
) -> int:
    """FLOPs of one forward pass of one image, counting a multiply-add as 2 FLOPs.

    torch's FlopCounterMode counts the matrix multiplications and convolutions, which
    dominate a CNN; element-wise work (ReLU, batch norm, pooling) is not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode  # imports triton: 0.1 s

    x = torch.zeros(1, *input_shape, device=device or torch.device("cpu"))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def latency_ms(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, compute: ComputeFormat
) -> float:
    """Median milliseconds per forward pass of `batch_size` images, after a warm-up."""
    x = compute.inputs(torch.zeros(batch_size, *input_shape, device=compute.device))

    def forward() -> None:
        with torch.no_grad(), compute.autocast():
            model(x)

    return 1000.0 * _median_seconds(forward, _synchronizer(compute.device))


def _median_seconds(run: Callable[[], None], synchronize: Callable[[], None]) -> float:
    """The median time of `run` over up to TIMED_PASSES passes within TIME_BUDGET_S.

    A pass slower than the budget is timed once: a large model on a CPU is measured,
    not waited on.
    """
    for _ in range(WARMUP_PASSES):
        start = time.perf_counter()
        run()
        synchronize()
        if time.perf_counter() - start > TIME_BUDGET_S:
            break
    timings: list[float] = []
    while len(timings) < TIMED_PASSES and sum(timings) < TIME_BUDGET_S:
        start = time.perf_counter()
        run()
        synchronize()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """What makes the host wait for the device: CUDA runs kernels asynchronously."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None
