"""What do ASHA and PBT save over FIFO, and what does it cost in accuracy?

Runs the same number of digits trials from the same wide search space under FIFO, ASHA
and PBT (random search), and under ASHA with HyperOpt, for several search seeds, all on
one local Ray. Reports per setting the median over seeds of: epochs spent, the best
val_acc, and the sweep's wall time; and ASHA's epochs as a share of FIFO's.

    python scripts/bench_schedulers.py --trials 16 --epochs 27 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from typing import Any

from tuning.cluster import keep_private_ray_on_loopback

keep_private_ray_on_loopback()  # as the CLI does for a local Ray: before Ray is imported


SETTINGS = {
    "fifo/random": ({"algorithm": "random"}, {"name": "fifo"}),
    "asha/random": (
        {"algorithm": "random"},
        {"name": "asha", "grace_period": 1, "reduction_factor": 3},
    ),
    "asha/hyperopt": (
        {"algorithm": "hyperopt", "initial_points": 5},
        {"name": "asha", "grace_period": 1, "reduction_factor": 3},
    ),
    "pbt/random": (
        {"algorithm": "random"},
        {"name": "pbt", "perturbation_interval": 3, "mutate": ["optimizer.lr", "batch_size"]},
    ),
}


def experiment(setting: str, trials: int, epochs: int, seed: int) -> dict[str, Any]:
    search, scheduler = SETTINGS[setting]
    return {
        "name": f"bench-{setting.replace('/', '-')}",
        "train": {
            "epochs": epochs,
            "model": {"name": "cnn", "depth": 2, "width": 32, "dropout": {"uniform": [0.0, 0.5]}},
            # Wide on purpose: a good share of these learning rates cannot learn in time.
            "optimizer": {"name": "adam", "lr": {"loguniform": [1.0e-5, 1.0e-1]}},
            "batch_size": {"choice": [16, 32, 64, 128]},
        },
        "search": {**search, "num_samples": trials, "seed": seed},
        "scheduler": scheduler,
        "resources": {"cpu": 1, "gpu": 0},
        "checkpoint": {"every_epochs": 3, "keep": 3 if scheduler["name"] == "pbt" else 1},
    }


def main() -> None:
    import ray

    from tuning.experiment import validate_experiment
    from tuning.runner import run_sweep

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=27, help="max epochs per trial")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    args = parser.parse_args()

    ray.init(include_dashboard=False, log_to_driver=False)
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in args.settings}
    with tempfile.TemporaryDirectory() as storage:
        for seed in range(args.seeds):
            for setting in args.settings:
                raw = experiment(setting, args.trials, args.epochs, seed)
                name = f"{raw['name']}-{seed}"
                summary = run_sweep(validate_experiment(raw), storage=storage, name=name).summary
                run = {
                    "epochs": summary["compute"]["epochs"],
                    "best_val_acc": summary["best"]["val_acc"],
                    "wall_s": summary["wall_seconds"],
                }
                runs[setting].append(run)
                print(json.dumps({"setting": setting, "seed": seed, **run}), flush=True)
    ray.shutdown()

    median = statistics.median
    table = {
        setting: {
            key: median(r[key] for r in results) for key in ("epochs", "best_val_acc", "wall_s")
        }
        for setting, results in runs.items()
    }
    report: dict[str, Any] = {
        "trials": args.trials,
        "max_epochs": args.epochs,
        "seeds": args.seeds,
        "median": table,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
    }
    if "fifo/random" in table and "asha/random" in table:
        fifo, asha = table["fifo/random"], table["asha/random"]
        report["asha_epochs_share_of_fifo"] = round(asha["epochs"] / fifo["epochs"], 3)
        report["asha_minus_fifo_best_val_acc_points"] = round(
            100 * (asha["best_val_acc"] - fifo["best_val_acc"]), 2
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
