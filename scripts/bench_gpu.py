"""Trials per hour on one GPU at 1, 1/2, 1/4 and 1/8 of a GPU per trial.

A CIFAR-10-shaped CNN (3x32x32 synthetic images, 10 classes) swept through
`tuning.runner.run_sweep` at each GPU share, with the dataset resident on the GPU
(`data_on_device: true`) and copied per batch from pinned host memory (false).

    python scripts/bench_gpu.py                 # on a machine with one CUDA GPU
    python scripts/bench_gpu.py --smoke         # anywhere: tiny, on one *logical* GPU

--smoke runs the same code path on a CPU-only machine: Ray is told it has one GPU, the
trials are packed onto it by the same fractions, and train on the CPU. Its figures
measure nothing about GPUs; it exists so the benchmark cannot rot between GPU sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

SHARES = (1.0, 0.5, 0.25, 0.125)


def experiment(
    share: float, on_device: bool, trials: int, epochs: int, examples: int
) -> dict[str, Any]:
    return {
        "name": f"bench-gpu-{share}-{'device' if on_device else 'host'}",
        "dataset": {"name": "synthetic", "image_size": 32, "synthetic_examples": examples},
        "train": {
            "epochs": epochs,
            "batch_size": 256,
            "model": {"name": "cnn", "depth": 3, "width": 64},
            "optimizer": {"name": "sgd", "lr": {"loguniform": [1.0e-2, 1.0e-1]}, "momentum": 0.9},
            "data_on_device": on_device,
        },
        "search": {"algorithm": "random", "num_samples": trials, "seed": 0},
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": 1, "gpu": share},
        "checkpoint": {"every_epochs": epochs, "keep": 1},
    }


def main() -> None:
    import ray
    import torch

    from tuning.experiment import validate_experiment
    from tuning.runner import run_sweep

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run on a logical GPU (CPU)")
    parser.add_argument("--trials", type=int, default=16, help="trials per setting")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--examples", type=int, default=50_000)
    args = parser.parse_args()
    if args.smoke:
        args.trials, args.epochs, args.examples = 4, 1, 512
    elif not torch.cuda.is_available():
        parser.error("no CUDA GPU here; run with --smoke, or on a GPU machine")

    cpus = os.cpu_count() or 2
    ray.init(num_cpus=max(cpus, 8), num_gpus=1, include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        for on_device in (True, False):
            for share in SHARES:
                raw = experiment(share, on_device, args.trials, args.epochs, args.examples)
                summary = run_sweep(
                    validate_experiment(raw), storage=storage, name=raw["name"]
                ).summary
                wall = summary["wall_seconds"]
                row = {
                    "gpu_per_trial": share,
                    "data": "gpu-resident" if on_device else "host-copied",
                    "trials": summary["num_trials"],
                    "errored": summary["num_errored"] + summary["num_infeasible"],
                    "wall_s": wall,
                    "trials_per_hour": round(summary["num_trials"] / wall * 3600, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    ray.shutdown()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (smoke)"
    print(
        json.dumps(
            {
                "smoke": args.smoke,
                "gpu": device,
                "epochs": args.epochs,
                "examples": args.examples,
                "machine": f"{platform.machine()}, {cpus} CPUs",
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
