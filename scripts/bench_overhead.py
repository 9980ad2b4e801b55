"""How much does running trials through cnn-tune's Ray Tune runner cost?

Runs the same N short digits trials two ways, with the same parallelism:
  (a) plain: one Python process hands them to a pool of P worker processes that call
      `trainables.fit` directly (no Ray, no checkpoints, no logging);
  (b) tuned: `tuning.runner.run_sweep` on a fresh local Ray (FIFO, grid over N learning
      rates, P trials at once, a checkpoint every --checkpoint-every epochs, TensorBoard +
      CSV + JSON logs, and the final test evaluation).
and prints wall(b) / wall(a), end to end and without Ray's start-up.

    python scripts/bench_overhead.py --trials 8 --epochs 5 --parallel 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tuning.cluster import keep_private_ray_on_loopback

keep_private_ray_on_loopback()  # as the CLI does for a local Ray: before Ray is imported

_worker_data = None


def _init_worker() -> None:
    import torch

    from trainables.data import DataConfig, load_splits

    global _worker_data
    torch.set_num_threads(1)  # what a 1-CPU trial gets under Ray
    _worker_data = load_splits(DataConfig(name="digits")).tuning


def _fit_one(config: dict[str, Any]) -> float:
    from trainables.config import TrainConfig
    from trainables.loop import fit

    history: list[dict[str, float]] = []
    fit(TrainConfig.model_validate(config), _worker_data, on_epoch_end=history.append)
    return history[-1]["val_acc"]


def train_config(epochs: int) -> dict[str, Any]:
    return {
        "epochs": epochs,
        "batch_size": 64,
        "model": {"name": "cnn", "depth": 2, "width": 32},
        "optimizer": {"name": "adam", "lr": 1.0e-3},
    }


def learning_rates(n: int) -> list[float]:
    return [round(1.0e-3 * (30 ** (i / max(1, n - 1))), 6) for i in range(n)]


def run_plain(n: int, epochs: int, parallel: int) -> float:
    configs = []
    for lr in learning_rates(n):
        config = train_config(epochs)
        config["optimizer"] = {**config["optimizer"], "lr": lr}
        configs.append(config)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=parallel, initializer=_init_worker) as pool:
        list(pool.map(_fit_one, configs))
    return time.perf_counter() - start


def run_tuned(n: int, epochs: int, parallel: int, every: int) -> tuple[float, float]:
    import ray

    from tuning.experiment import validate_experiment
    from tuning.runner import run_sweep

    train = train_config(epochs)
    train["optimizer"] = {**train["optimizer"], "lr": {"grid": learning_rates(n)}}
    experiment = validate_experiment(
        {
            "name": "bench-overhead",
            "train": train,
            "search": {"algorithm": "grid", "max_concurrent": parallel},
            "scheduler": {"name": "fifo"},
            "resources": {"cpu": 1, "gpu": 0},
            "checkpoint": {"every_epochs": every, "keep": 1},
        }
    )
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        ray.init(num_cpus=parallel, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter()
        run_sweep(experiment, storage=storage, name="bench")
        end = time.perf_counter()
        ray.shutdown()
    time.sleep(5)  # let Ray's processes exit before the next (timed) plain run
    return end - start, end - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=2, help="trials at once, both ways")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=1, help="epochs, tuned runs")
    args = parser.parse_args()

    plain, tuned, tuned_no_start = [], [], []
    for repeat in range(args.repeats):
        plain.append(run_plain(args.trials, args.epochs, args.parallel))
        total, after_start = run_tuned(
            args.trials, args.epochs, args.parallel, args.checkpoint_every
        )
        tuned.append(total)
        tuned_no_start.append(after_start)
        print(
            f"repeat {repeat + 1}: plain {plain[-1]:.1f} s, tuned {total:.1f} s "
            f"({after_start:.1f} s after ray.init)",
            flush=True,
        )

    median = statistics.median
    report = {
        "trials": args.trials,
        "epochs": args.epochs,
        "parallel": args.parallel,
        "repeats": args.repeats,
        "checkpoint_every": args.checkpoint_every,
        "plain_s": round(median(plain), 2),
        "tuned_s": round(median(tuned), 2),
        "tuned_after_ray_init_s": round(median(tuned_no_start), 2),
        "ratio": round(median(tuned) / median(plain), 2),
        "ratio_after_ray_init": round(median(tuned_no_start) / median(plain), 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
