"""Offline transfer: does a backbone pretrained on mnist5k beat training from scratch?

    python scripts/bench_transfer.py                 # 5 seeds, 30 images, ~1 minute on 2 CPUs
    python scripts/bench_transfer.py --seeds 2 --epochs 3 --pretrain-examples 300   # quick

Step 1 runs the built-in pair's first half as a user would: `cnn-tune run
mnist5k-pretrain` (a 3-block CNN on the mnist5k digits 0-4) and `cnn-tune export`.
Step 2 trains three arms on the same small budget (`--examples` training images, the
same epochs and batch size), once per seed; a seed picks both the training subset and
the initialization:

  - frozen:     the exported blocks, frozen; only a new head learns;
  - fine-tuned: the same blocks trained at a tenth of the head's learning rate;
  - scratch:    the same 3-block CNN, randomly initialized.

on two targets: the mnist5k digits 5-9, which the backbone never saw (the built-in
mnist5k-transfer), and scikit-learn's 8x8 digits (another dataset, resized to 28x28).

Each arm's learning rate is the better of the two mnist5k-transfer searches, picked on
seed 0's validation accuracy, so no arm is handicapped by its rate. The figure is the
best validation accuracy over the epochs; the test split is not used. Output:
transfer.json and a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ARMS = {
    "frozen": {"freeze": "all"},
    "fine-tuned": {"freeze": "none", "backbone_lr_factor": 0.1},
    "scratch": None,
}
RATES = (3.0e-3, 1.0e-2)  # mnist5k-transfer's grid
TARGETS = ("mnist5k 5-9", "digits")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--examples", type=int, default=30, help="training images per target")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--pretrain-examples", type=int, help="mnist5k subset (quick runs)")
    parser.add_argument("--out", default="bench-transfer", help="folder for runs and results")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    backbone, pretrain = pretrain_and_export(out, args.pretrain_examples)
    targets: dict[str, Any] = {}
    for target in TARGETS:
        rates = {arm: best_rate(arm, backbone, target, args) for arm in ARMS}
        results: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for seed in range(args.seeds):
            for arm in ARMS:
                results[arm].append(train_arm(arm, backbone, target, rates[arm], seed, args))
                print(f"{target} seed {seed} {arm:<10} {results[arm][-1]:.4f}", flush=True)
        targets[target] = {"rates": rates, "val_acc": results}
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "machine": f"{platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.monotonic() - started, 1),
        "pretrain": pretrain,
        "budget": {"examples": args.examples, "epochs": args.epochs, "batch_size": 32},
        "targets": targets,
    }
    (out / "transfer.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


def pretrain_and_export(out: Path, examples: int | None) -> tuple[Path, dict[str, Any]]:
    """`cnn-tune run mnist5k-pretrain` and `cnn-tune export`, as the built-in pair says."""
    cli = [sys.executable, "-m", "tuning.cli"]
    sweep = out / "runs" / "mnist5k-pretrain"
    if not (sweep / "summary.json").is_file():
        command = [*cli, "run", "mnist5k-pretrain", "--storage", str(out / "runs")]
        command += ["--name", "mnist5k-pretrain"]
        if examples:
            command += ["--set", f"dataset.max_train_examples={examples}"]
        subprocess.run(command, check=True, cwd=REPO)
    subprocess.run([*cli, "export", str(sweep)], check=True, cwd=REPO, capture_output=True)
    summary = json.loads((sweep / "summary.json").read_text())
    facts = {
        "test_accuracy": summary["test"]["accuracy"],
        "seconds": round(summary["wall_seconds"], 1),
        "examples": examples or "all",
    }
    return sweep / "model", facts


def target_data(target: str, examples: int, seed: int) -> Any:
    from trainables.data import DataConfig

    if target == "mnist5k 5-9":
        return DataConfig(
            name="mnist5k", classes=[5, 6, 7, 8, 9], max_train_examples=examples, split_seed=seed
        )
    return DataConfig(name="digits", max_train_examples=examples, split_seed=seed)


def train_arm(
    arm: str, backbone: Path, target: str, lr: float, seed: int, args: argparse.Namespace
) -> float:
    """The best validation accuracy of one arm at one seed."""
    from trainables.config import TrainConfig
    from trainables.data import load_splits
    from trainables.loop import fit
    from trainables.transfer import load_pretrained, pretrained_key

    extra = ARMS[arm]
    if extra is None:
        model: dict[str, Any] = {"name": "cnn", "depth": 3, "width": 32, "batch_norm": True}
    else:
        model = {"name": "transfer", "backbone": "cnn-tune", "weights": str(backbone), **extra}
    config = TrainConfig.model_validate(
        {
            "model": model,
            "epochs": args.epochs,
            "batch_size": 32,
            "optimizer": {"name": "adam", "lr": lr},
            "seed": seed,
        }
    )
    data = load_splits(target_data(target, args.examples, seed)).tuning
    pretrained = {}
    if extra is not None:
        pretrained[pretrained_key(config.model)] = load_pretrained(config.model)  # type: ignore[arg-type]
    best = 0.0

    def keep(metrics: dict[str, Any]) -> None:
        nonlocal best
        best = max(best, float(metrics["val_acc"]))

    fit(config, data, on_epoch_end=keep, pretrained=pretrained)
    return best


def best_rate(arm: str, backbone: Path, target: str, args: argparse.Namespace) -> float:
    scores = {lr: train_arm(arm, backbone, target, lr, 0, args) for lr in RATES}
    return max(scores, key=lambda lr: scores[lr])


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| target | arm | lr | mean val_acc | std | min | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for target, found in report["targets"].items():
        for arm, values in found["val_acc"].items():
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            lines.append(
                f"| {target} | {arm} | {found['rates'][arm]:g} | {statistics.mean(values):.4f} "
                f"| {spread:.4f} | {min(values):.4f} | {max(values):.4f} |"
            )
    pre = report["pretrain"]
    lines.append(
        f"\nPretraining: mnist5k digits 0-4 ({pre['examples']} images), test accuracy "
        f"{pre['test_accuracy']:.4f}, {pre['seconds']} s in Tune. {report['machine']}, "
        f"{report['date']}, {report['seconds']} s in all."
    )
    return "\n".join(lines)


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
