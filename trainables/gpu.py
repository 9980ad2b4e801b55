"""A trial's GPU: which device, how much of its memory, where the data lives, what an OOM is.

Every decision here is a plain function of numbers and strings, tested on the CPU; the
few lines that need CUDA (`claim_gpu_share`, `release_memory`, `cuda_environment`) only
read from or write to torch's CUDA API.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import torch

# Each process that touches CUDA holds a context (kernels, cuBLAS/cuDNN handles) outside
# any allocator cap: measured at 0.5-1 GiB per process on recent drivers. A trial's cap
# leaves this much of its share for it, so N trials at 1/N of a GPU fit together.
CUDA_CONTEXT_BYTES = 1 << 30

# Keep the dataset on the GPU only while it takes at most this share of the trial's
# memory cap; the rest is for weights, activations and the allocator's slack.
DATA_ON_DEVICE_MAX_FRACTION = 0.5

# Set to 1 where Ray's GPUs are logical (CPU-only tests, `gpu_check.py --dry-run`): a trial
# given a GPU share then trains on the CPU instead of failing.
LOGICAL_GPUS_ENV = "CNN_TUNE_LOGICAL_GPUS"

# Messages of allocation failures that reach Python as a plain RuntimeError: cuBLAS and
# cuDNN handles and workspaces, raw CUDA runtime errors, and the CPU allocator.
_OUT_OF_MEMORY_MARKERS = (
    "out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "cudaErrorMemoryAllocation",
    "DefaultCPUAllocator: can't allocate memory",
)


class GpuUnavailableError(RuntimeError):
    """Ray gave the trial a GPU share, but torch cannot use CUDA in its process."""


def pick_device(
    gpus_assigned: float,
    *,
    cuda_available: bool | None = None,
    logical_gpus: bool | None = None,
) -> torch.device:
    """The device a trial with `gpus_assigned` GPUs trains on, with its index.

    Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU, so it is the current device (index
    0 in the process's view). A GPU share without working CUDA fails the trial, unless
    the GPUs are declared logical; training silently on the CPU would mislead every figure.
    """
    if gpus_assigned <= 0:
        return torch.device("cpu")
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if cuda_available:
        return torch.device("cuda", torch.cuda.current_device())
    if logical_gpus is None:
        logical_gpus = os.environ.get(LOGICAL_GPUS_ENV) == "1"
    if logical_gpus:
        return torch.device("cpu")
    raise GpuUnavailableError(
        f"the trial was given {gpus_assigned} GPU, but torch {torch.__version__} "
        f"(built for CUDA {torch.version.cuda}) cannot use CUDA here "
        f"(NVIDIA driver: {nvidia_driver_version() or 'not found'}). Install a torch build "
        "that matches the driver (or a newer driver), or set resources.gpu=0 to train on "
        f"the CPU; {LOGICAL_GPUS_ENV}=1 declares Ray's GPUs logical (tests only)"
    )


def memory_fraction(
    share: float, total_bytes: int, context_bytes: int = CUDA_CONTEXT_BYTES
) -> float:
    """The allocator cap, as a fraction of the GPU, for a trial owning `share` of it.

    The cap covers only memory the caching allocator reserves; the process's CUDA context
    comes on top, so it is taken out of the share first. 1.0 means no cap (a whole GPU).
    """
    if not 0 < share <= 1:
        raise ValueError(f"a trial's GPU share must be in (0, 1], got {share}")
    if share == 1:
        return 1.0
    usable = share * total_bytes - context_bytes
    if usable <= 0:
        raise ValueError(
            f"{share} of a {total_bytes / 2**30:.1f} GiB GPU leaves nothing beside the "
            f"{context_bytes / 2**30:.1f} GiB CUDA context; use a larger resources.gpu"
        )
    return usable / total_bytes


def is_out_of_memory(error: BaseException) -> bool:
    """True for allocation failures: retrying the same configuration would fail again."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    if not isinstance(error, RuntimeError):
        return False
    message = str(error)
    return any(marker in message for marker in _OUT_OF_MEMORY_MARKERS)


def keep_data_on_device(requested: bool, dataset_bytes: int, cap_bytes: int | None) -> bool:
    """Whether the dataset lives on the trial's GPU, or batches come from host memory.

    `cap_bytes` is the trial's GPU memory cap (None on the CPU, where it does not apply).
    A dataset that would take more than half the cap falls back to the host path.
    """
    if not requested or cap_bytes is None:
        return requested
    return dataset_bytes <= DATA_ON_DEVICE_MAX_FRACTION * cap_bytes


def nvidia_driver_version() -> str | None:
    """The loaded NVIDIA kernel driver's version, read without CUDA, or None."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    for word in text.split():
        if word[:1].isdigit() and word.count(".") >= 1:
            return word
    return None


def claim_gpu_share(device: torch.device, share: float) -> int | None:
    """Cap this process's CUDA allocator at its share; returns the cap in bytes (or None)."""
    if device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = memory_fraction(share, total) if share < 1 else 1.0
    if fraction < 1:
        torch.cuda.set_per_process_memory_fraction(fraction, device)
    return int(fraction * total)


def release_memory(device: torch.device) -> None:
    """Give back what a failed trial held, so the next trial on this actor starts clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def bf16_supported(device: torch.device) -> bool:
    """Native bf16 on this CUDA device; emulated bf16 (V100, T4) is slower than fp32."""
    if device.type != "cuda":
        return False
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the keyword counts only native support
        return torch.cuda.is_bf16_supported()


def cuda_environment() -> dict[str, Any]:
    """What the GPU check and error messages report about this machine's CUDA stack."""
    environment: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "driver": nvidia_driver_version(),
        "cuda_available": torch.cuda.is_available(),
    }
    if environment["cuda_available"]:
        device = torch.device("cuda", torch.cuda.current_device())
        properties = torch.cuda.get_device_properties(device)
        environment |= {
            "gpu": properties.name,
            "gpus": torch.cuda.device_count(),
            "memory_gib": round(properties.total_memory / 2**30, 1),
            "bf16": bf16_supported(device),
        }
    return environment
