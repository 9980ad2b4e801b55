"""`resources.gpu: auto`: measure the space's worst cases on a GPU, then pack trials that fit.

1. `probe_configs` lists the configurations that bound the sweep's memory: every model
   family (and every option of other memory-relevant choices) with every number at its
   largest, batch growth at its final size.
2. One probe per configuration, each on a whole GPU, trains a few batches at the largest
   training batch and validates one batch at `eval_batch_size`. It records the memory
   the allocator reserved (what a share caps) and the process's CUDA context, which sits
   outside any cap. A probe that fails (out of memory included) makes the sweep fall
   back to a whole GPU per trial.
3. `share_for` picks the smallest share 1/k whose cap holds the worst probe with
   `HEADROOM`, counting the dataset where it would stay on the GPU; `spread_share` then
   widens the share when fewer trials run at once than there are slots, since Ray packs
   fractional requests best-fit onto as few GPUs as possible.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from typing import Any

import ray

from trainables.batches import split_bytes
from trainables.config import TrainConfig
from trainables.data import ImageSplit, TuningData
from trainables.gpu import CUDA_CONTEXT_BYTES, keep_data_on_device
from trainables.loop import largest_batch_size
from trainables.transfer import StateDict
from tuning import space
from tuning.values import is_number

logger = logging.getLogger(__name__)

HEADROOM = 0.25  # spare share of the measured peak: cuDNN workspaces, fragmentation
PACKINGS = (8, 4, 2, 1)  # trials per GPU, most first
PROBE_BATCHES = 5
MAX_PROBED_CONFIGS = 8
# A measured context outside this range means other processes share the GPU: use the
# documented estimate instead.
_PLAUSIBLE_CONTEXT_BYTES = (128 << 20, 4 << 30)
# Choices of plain values whose options differ in memory (a choice of mappings, such as
# model families or optimizer sections, always counts).
_MEMORY_RELEVANT_PREFIXES = ("model", "optimizer.name", "precision", "channels_last")


@dataclasses.dataclass(frozen=True)
class Probe:
    """What one probe measured, in bytes; `failure` is set instead when it failed."""

    reserved_bytes: int = 0
    context_bytes: int = CUDA_CONTEXT_BYTES
    total_bytes: int = 0
    seconds_per_step: float = 0.0
    failure: str | None = None


def resolve_gpu_share(
    train_tree: dict[str, Any],
    data: TuningData,
    pretrained: dict[str, StateDict | None],
    trials_at_once: int,
) -> float:
    """The GPU share per trial for `gpu: auto`: 0 without GPUs, else 1, 1/2, 1/4 or 1/8."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus == 0:
        logger.warning("resources.gpu: auto found no GPU in the Ray cluster; trials run on the CPU")
        return 0.0
    configs = probe_configs(train_tree)
    data_ref, pretrained_ref = ray.put(data), ray.put(pretrained)
    refs = [_probe.remote(config, data_ref, pretrained_ref) for config in configs]
    probes = [_probe_result(ref) for ref in refs]
    failed = [p.failure for p in probes if p.failure]
    if failed:
        logger.warning("resources.gpu: auto: a probe failed (%s); one trial per GPU", failed[0])
        return 1.0
    requested_on_device = all(TrainConfig.model_validate(c).data_on_device for c in configs)
    memory_share = share_for(
        probes, split_bytes(data.train) + split_bytes(data.val), requested_on_device
    )
    share = spread_share(memory_share, int(gpus), trials_at_once)
    worst = max(probes, key=lambda p: p.reserved_bytes)
    logger.warning(
        "resources.gpu: auto probed %d configurations: at most %.2f GiB reserved plus a "
        "%.2f GiB CUDA context per trial on a %.1f GiB GPU; %d trials at once on %d GPUs: "
        "%g of a GPU per trial",
        len(probes),
        worst.reserved_bytes / 2**30,
        worst.context_bytes / 2**30,
        worst.total_bytes / 2**30,
        trials_at_once,
        gpus,
        share,
    )
    return share


def probe_configs(train_tree: dict[str, Any]) -> list[dict[str, Any]]:
    """Concrete configs bounding the space's memory: each family, every number at its max.

    Each returned config trains at its largest batch (batch growth folded in) for one
    epoch. At most MAX_PROBED_CONFIGS are probed; more are logged and dropped.
    """
    configs: list[dict[str, Any]] = []
    for candidate in _worst_cases(train_tree, ()):
        config = TrainConfig.model_validate({**candidate, "epochs": candidate.get("epochs", 1)})
        probe = config.model_copy(
            update={"batch_size": largest_batch_size(config), "batch_growth": None, "epochs": 1}
        ).model_dump(mode="json")
        if probe not in configs:
            configs.append(probe)
    if len(configs) > MAX_PROBED_CONFIGS:
        logger.warning(
            "resources.gpu: auto probes %d of the space's %d worst-case configurations",
            MAX_PROBED_CONFIGS,
            len(configs),
        )
    return configs[:MAX_PROBED_CONFIGS]


def share_for(probes: list[Probe], dataset_bytes: int, data_on_device: bool = True) -> float:
    """The smallest share 1/k (k in PACKINGS) whose cap holds every probe plus headroom.

    A share's cap is its part of the GPU less the CUDA context. The dataset counts where
    the trial would keep it on the GPU at that cap (see `keep_data_on_device`).
    """
    total = min(p.total_bytes for p in probes)
    for per_gpu in PACKINGS:
        if all(_fits(p, total / per_gpu, dataset_bytes, data_on_device) for p in probes):
            return 1.0 / per_gpu
    return 1.0  # does not fit even alone: one per GPU, and the trial reports infeasible


def spread_share(memory_share: float, gpus: int, trials_at_once: int) -> float:
    """Widen `memory_share` so `trials_at_once` trials spread over all `gpus` GPUs.

    Ray places fractional GPU requests best-fit: 8 trials at 1/8 on 8 GPUs would all land
    on one GPU. With 1/k per trial, k trials share each GPU; k is made no larger than the
    trials need to fill every GPU.
    """
    if memory_share >= 1 or gpus <= 0:
        return memory_share
    per_gpu_needed = math.ceil(max(1, trials_at_once) / gpus)
    for per_gpu in sorted(PACKINGS):
        if per_gpu >= per_gpu_needed:
            return max(memory_share, 1.0 / per_gpu)
    return memory_share


def context_bytes_from(total: int, free: int, reserved: int) -> int:
    """This process's CUDA context, from the device's free memory right after start-up."""
    used_outside_allocator = total - free - reserved
    low, high = _PLAUSIBLE_CONTEXT_BYTES
    return used_outside_allocator if low <= used_outside_allocator <= high else CUDA_CONTEXT_BYTES


def _fits(probe: Probe, share_bytes: float, dataset_bytes: int, data_on_device: bool) -> bool:
    cap = share_bytes - probe.context_bytes
    if cap <= 0:
        return False
    on_device = keep_data_on_device(data_on_device, dataset_bytes, int(cap))
    return probe.reserved_bytes * (1 + HEADROOM) + (dataset_bytes if on_device else 0) <= cap


def _worst_cases(node: Any, path: tuple[str, ...]) -> list[Any]:
    """Every worst-case resolution of `node`: numbers at their largest, options branched."""
    if space.is_domain(node):
        kind, args = next(iter(node.items()))
        if kind not in ("choice", "grid"):
            return [max(space.representatives(node))]
        if all(is_number(option) for option in args):
            return [max(args)]
        if any(isinstance(o, dict) for o in args) or _memory_relevant(path):
            return [case for option in args for case in _worst_cases(option, path)]
        return _worst_cases(args[0], path)
    if isinstance(node, dict):
        keys = list(node)
        alternatives = [_worst_cases(node[key], (*path, str(key))) for key in keys]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*alternatives)]
    return [node]


def _memory_relevant(path: tuple[str, ...]) -> bool:
    dotted = ".".join(path)
    return any(dotted == p or dotted.startswith(p + ".") for p in _MEMORY_RELEVANT_PREFIXES)


def _probe_result(ref: ray.ObjectRef) -> Probe:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:  # the probe raised or its process died
        return Probe(failure=str(error).strip().splitlines()[-1][:300])


@ray.remote(num_gpus=1, max_calls=1)
def _probe(
    config: dict[str, Any], data: TuningData, pretrained: dict[str, StateDict | None]
) -> Probe:
    import torch

    from trainables.gpu import is_out_of_memory, pick_device
    from trainables.loop import Trainer

    train_config = TrainConfig.model_validate(config)
    device = pick_device(1.0)
    if device.type != "cuda":  # a logical GPU (tests, dry runs): nothing to measure
        return Probe(failure="the probe's GPU is logical; no CUDA memory to measure")
    torch.cuda.init()
    free, total = torch.cuda.mem_get_info(device)
    context = context_bytes_from(total, free, torch.cuda.memory_reserved(device))
    steps = train_config.batch_size * PROBE_BATCHES
    sample = dataclasses.replace(
        data,
        train=_head(data.train, steps),
        val=_head(data.val, train_config.eval_batch_size),
    )
    try:
        trainer = Trainer(train_config, sample, device, pretrained)
        start = time.perf_counter()
        trainer.run_epoch()
        torch.cuda.synchronize(device)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        return Probe(failure=f"out of memory alone on a GPU: {str(error).splitlines()[0]}")
    return Probe(
        reserved_bytes=torch.cuda.max_memory_reserved(device),
        context_bytes=context,
        total_bytes=total,
        seconds_per_step=(time.perf_counter() - start) / PROBE_BATCHES,
    )


def _head(split: ImageSplit, n: int) -> ImageSplit:
    return ImageSplit(images=split.images[:n], labels=split.labels[:n])
