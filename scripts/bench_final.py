"""Best checkpoint or retrain on train+val: what does each final-model protocol give?

For several search seeds, runs the built-in `digits` sweep (final.protocol
best_checkpoint), then retrains the same best configuration on train+val for its best
epoch count with `--retrain-seeds` seeds, exactly as `final.protocol: retrain` does,
and tests every final model on the held-out split. Reports per sweep the best val_acc,
the checkpoint's test accuracy, the retrained models' mean, spread and the seconds the
retraining added, and the medians over sweeps.

    python scripts/bench_final.py --sweeps 3 --retrain-seeds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from typing import Any

from tuning.cluster import keep_private_ray_on_loopback

keep_private_ray_on_loopback()  # as the CLI does for a local Ray: before Ray is imported


def one_sweep(search_seed: int, retrain_seeds: int, storage: str) -> dict[str, Any]:
    from trainables.data import load_splits
    from tuning.experiment import load_experiment
    from tuning.final import HeldOutTest, retrained_models, test_summary
    from tuning.runner import run_sweep

    overrides = [f"search.seed={search_seed}"]
    experiment = load_experiment("digits", overrides)
    start = time.monotonic()
    outcome = run_sweep(experiment, storage=storage, name=f"final-{search_seed}")
    sweep_s = time.monotonic() - start
    summary = outcome.summary

    retrain = load_experiment(
        "digits", [*overrides, "final.protocol=retrain", f"final.seeds={retrain_seeds}"]
    )
    splits = load_splits(retrain.dataset)
    start = time.monotonic()
    models = retrained_models(
        retrain,
        summary["best"]["config"],
        summary["best"]["best_epoch"],
        splits.tuning,
        outcome.location,
        gpu=0.0,
        pretrained={},
    )
    retrain_s = time.monotonic() - start
    held_out = HeldOutTest(splits.test)
    retrained = test_summary(models, [held_out.evaluate(model) for model in models])
    accuracies = [m["accuracy"] for m in retrained["models"]]
    return {
        "search_seed": search_seed,
        "best_val_acc": summary["best"]["val_acc"],
        "best_epoch": summary["best"]["best_epoch"],
        "checkpoint_test_acc": summary["test"]["accuracy"],
        "checkpoint_ci95": summary["test"]["accuracy_ci95"],
        "retrain_test_acc_mean": round(retrained["accuracy"], 4),
        "retrain_test_acc_std": round(statistics.stdev(accuracies), 4)
        if len(accuracies) > 1
        else 0,
        "retrain_test_acc_range": [min(accuracies), max(accuracies)],
        "sweep_s": round(sweep_s, 1),
        "retrain_s": round(retrain_s, 1),
    }


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=3, help="search seeds 0..N-1")
    parser.add_argument("--retrain-seeds", type=int, default=5)
    args = parser.parse_args()

    ray.init(include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        for seed in range(args.sweeps):
            rows.append(one_sweep(seed, args.retrain_seeds, storage))
            print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()

    median = statistics.median
    keys = ("checkpoint_test_acc", "retrain_test_acc_mean", "retrain_test_acc_std", "retrain_s")
    print(
        json.dumps(
            {
                "sweeps": args.sweeps,
                "retrain_seeds": args.retrain_seeds,
                "median": {key: median(row[key] for row in rows) for key in keys},
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                f"Python {platform.python_version()}",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
