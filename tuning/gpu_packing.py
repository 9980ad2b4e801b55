"""`resources.gpu: auto`: measure one trial's GPU memory, then pack as many per GPU as fit.

A short probe on one GPU trains a few batches of the space's largest configurations
(every representative the search space can produce, up to a few) and records
`torch.cuda.max_memory_allocated`, plus the bytes of the dataset that each trial keeps
on its GPU. The sweep then uses the largest packing of 1, 2, 4 or 8 trials per GPU whose
share still holds that peak with `HEADROOM` to spare.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import ray

from trainables.config import TrainConfig
from trainables.data import ImageSplit, TuningData
from trainables.transfer import StateDict

logger = logging.getLogger(__name__)

HEADROOM = 0.25  # spare share of the measured peak: cuDNN workspaces, fragmentation
PACKINGS = (8, 4, 2, 1)  # trials per GPU, most first
PROBE_BATCHES = 5
MAX_PROBED_CONFIGS = 4


def resolve_gpu_share(
    candidates: list[dict[str, Any]], data: TuningData, pretrained: dict[str, StateDict | None]
) -> float:
    """The GPU share per trial for `gpu: auto`: 0 without GPUs, else 1, 1/2, 1/4 or 1/8."""
    if ray.cluster_resources().get("GPU", 0) == 0:
        logger.warning("resources.gpu: auto found no GPU in the Ray cluster; trials run on the CPU")
        return 0.0
    largest = sorted(candidates, key=lambda c: TrainConfig.model_validate(c).batch_size)
    probes = [_probe.remote(config, data, pretrained) for config in largest[-MAX_PROBED_CONFIGS:]]
    measured = ray.get(probes)
    peak = max(p["peak_bytes"] for p in measured)
    total = min(p["total_bytes"] for p in measured)
    share = share_for(peak, total)
    logger.warning(
        "resources.gpu: auto measured %.2f GiB peak per trial on a %.1f GiB GPU "
        "(%.3f s per step): %g of a GPU per trial",
        peak / 2**30,
        total / 2**30,
        max(p["seconds_per_step"] for p in measured),
        share,
    )
    return share


def share_for(peak_bytes: float, total_bytes: float) -> float:
    """The smallest share 1/k (k in PACKINGS) whose memory holds the peak plus headroom."""
    for per_gpu in PACKINGS:
        if peak_bytes * (1 + HEADROOM) <= total_bytes / per_gpu:
            return 1.0 / per_gpu
    return 1.0  # does not fit even alone: run one per GPU and let the trial report OOM


@ray.remote(num_gpus=1)
def _probe(
    config: dict[str, Any], data: TuningData, pretrained: dict[str, StateDict | None]
) -> dict[str, float]:
    import torch

    from trainables.loop import Trainer

    train_config = TrainConfig.model_validate({**config, "epochs": 1})
    steps = train_config.batch_size * PROBE_BATCHES
    sample = dataclasses.replace(data, train=_head(data.train, steps), val=_head(data.val, steps))
    device = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(train_config, sample, device, pretrained)
    start = time.perf_counter()
    trainer.run_epoch()
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    dataset_bytes = sum(
        s.images.numel() * s.images.element_size() + s.labels.numel() * 8
        for s in (data.train, data.val)
    )
    return {
        "peak_bytes": torch.cuda.max_memory_allocated(device) + dataset_bytes,
        "total_bytes": torch.cuda.get_device_properties(device).total_memory,
        "seconds_per_step": seconds / PROBE_BATCHES,
    }


def _head(split: ImageSplit, n: int) -> ImageSplit:
    return ImageSplit(images=split.images[:n], labels=split.labels[:n])
