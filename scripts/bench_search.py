"""Which searcher and scheduler reach a good mnist5k model in the fewest epochs?

Runs, for each search seed and with the same trial budget, six methods on mnist5k:
random + FIFO, random + ASHA, HyperOpt + ASHA, Optuna + ASHA, PBT (random start), and
"train every configuration 1 epoch, keep the top K, train those fully". Within a seed
every method starts from the same search seed, so random + FIFO, random + ASHA, PBT and
the top-K round 1 draw the same configurations.

Per method it reports the interquartile mean (IQM) over seeds and a bootstrap 95% interval
of: the best val_acc, the test accuracy (summary.json `test.accuracy`), the epochs spent,
and the epochs needed to first reach random + FIFO's final best val_acc of the same seed;
and plots best-so-far val_acc against epochs spent (median and interquartile band).

Epochs are ordered by the time each was reported: every trial's progress.csv rows, sorted
by Tune's `timestamp` (whole seconds; ties broken by trial id, then epoch). A method that
never reaches FIFO's best in a seed is censored at the full budget (trials x epochs) and
counted as not reached.

    python scripts/bench_search.py --seeds 10 --trials 12 --epochs 6 --train-examples 1000
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuning.cluster import keep_private_ray_on_loopback
from tuning.layout import PROGRESS_FILE, TRIAL_PREFIX

keep_private_ray_on_loopback()  # as the CLI does for a local Ray: before Ray is imported

ASHA = {"name": "asha", "grace_period": 1, "reduction_factor": 3}
# method -> (search settings, scheduler settings); "topk" is two FIFO rounds (run_top_k).
METHODS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "random+fifo": ({"algorithm": "random"}, {"name": "fifo"}),
    "random+asha": ({"algorithm": "random"}, ASHA),
    "hyperopt+asha": ({"algorithm": "hyperopt", "initial_points": 5}, ASHA),
    "optuna+asha": ({"algorithm": "optuna", "initial_points": 5}, ASHA),
    "pbt": ({"algorithm": "random"}, {"name": "pbt", "mutate": ["optimizer.lr", "batch_size"]}),
    "topk": ({"algorithm": "random"}, {"name": "fifo"}),
}
REFERENCE = "random+fifo"


def search_space(epochs: int) -> dict[str, Any]:
    """mnist5k's space, smaller models and a wider lr range so that the search matters."""
    return {
        "epochs": epochs,
        "model": {
            "name": "cnn",
            "depth": {"choice": [2, 3]},
            "width": {"choice": [8, 16]},
            "batch_norm": True,
            "dropout": {"uniform": [0.0, 0.3]},
        },
        "optimizer": {
            "name": "adam",
            "lr": {"loguniform": [1.0e-4, 3.0e-2]},
            "weight_decay": {"loguniform": [1.0e-6, 1.0e-3]},
        },
        "lr_schedule": {"name": "cosine"},  # decays to 0 over the trial's epochs
        "augmentation": {"preset": "light"},
        "batch_size": {"choice": [32, 64, 128]},
    }


def experiment(
    method: str, seed: int, trials: int, epochs: int, train_examples: int
) -> dict[str, Any]:
    """The raw experiment of one (method, seed) sweep (the top-K method's round 1: 1 epoch)."""
    search, scheduler = copy.deepcopy(METHODS[method])
    checkpoint = {"every_epochs": 1, "keep": 1}
    if scheduler["name"] == "pbt":
        interval = max(1, epochs // 3)  # epochs between perturbations
        scheduler["perturbation_interval"] = interval
        # Checkpoint only at perturbations and keep them all: with every_epochs 1 and
        # keep 3, a donor's checkpoint was deleted before the trial exploiting it
        # restored it ("does not exist on storage anymore"; 2026-12-03).
        checkpoint = {"every_epochs": interval, "keep": max(3, -(-epochs // interval))}
    return {
        "name": f"bench-{method.replace('+', '-')}",
        "dataset": {"name": "mnist5k", "max_train_examples": train_examples},
        "train": search_space(1 if method == "topk" else epochs),
        "search": {**search, "num_samples": trials, "seed": seed},
        "scheduler": scheduler,
        "resources": {"cpu": 1, "gpu": 0},
        "checkpoint": checkpoint,
    }


# ---- statistics (pure, unit-tested) ---------------------------------------------------


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (as scipy's trim_mean(x, 0.25))."""
    if len(values) == 0:
        raise ValueError("iqm needs at least one value, got none")
    return float(_trimmed_means(np.asarray(values, dtype=float)[None, :])[0])


def _trimmed_means(rows: np.ndarray) -> np.ndarray:
    """Each row's mean without its lowest and highest quarter (int(n / 4) values each)."""
    cut = int(0.25 * rows.shape[1])
    ordered = np.sort(rows, axis=1)
    return ordered[:, cut : rows.shape[1] - cut].mean(axis=1)


def bootstrap_iqm_interval(
    values: Sequence[float], resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the IQM over `values` (seeds), with a fixed RNG."""
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1, got {resamples}, {level}")
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    stats = _trimmed_means(data[rng.integers(0, len(data), size=(resamples, len(data)))])
    tail = (1 - level) / 2
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))


def best_so_far(values: Sequence[float]) -> list[float]:
    """Running maximum of `values` (val_acc per epoch spent, in reporting order)."""
    return [float(v) for v in np.maximum.accumulate(np.asarray(values, dtype=float))]


def epochs_to_reach(values: Sequence[float], target: float) -> int | None:
    """Epochs spent (1-based) when `values` first reach `target`; None if they never do."""
    for spent, value in enumerate(values, start=1):
        if value >= target:
            return spent
    return None


def censored(reached: int | None, budget: int) -> int:
    """`reached`, or the full `budget` for a seed that never reached the target."""
    return budget if reached is None else reached


def curve_on_grid(values: Sequence[float], length: int) -> list[float]:
    """Best-so-far of `values` at 1..length epochs spent, the last value held after the end."""
    running = best_so_far(values)
    return running + [running[-1]] * (length - len(running))


# ---- reading a sweep ------------------------------------------------------------------


def val_acc_in_report_order(sweep_dir: Path) -> list[float]:
    """Every reported epoch's val_acc in the sweep, ordered by the time it was reported."""
    rows: list[tuple[int, str, int, float]] = []
    for progress in sorted(sweep_dir.glob(f"{TRIAL_PREFIX}*/{PROGRESS_FILE}")):
        with progress.open(newline="") as handle:
            for row in csv.DictReader(handle):
                value = float(row["val_acc"]) if row.get("val_acc") else float("nan")
                rows.append((int(row["timestamp"]), row["trial_id"], int(row["epoch"]), value))
    rows.sort(key=lambda r: r[:3])
    return [0.0 if np.isnan(r[3]) else r[3] for r in rows]  # a diverged epoch learned nothing


def top_configs(summary: dict[str, Any], tree: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """The train trees of the `k` trials with the best val_acc, tuned values filled in."""
    from trainables.dotted import set_path

    ranked = sorted(summary["trials"], key=lambda t: -(t.get("best") or 0.0))[:k]
    configs = []
    for trial in ranked:
        config = copy.deepcopy(tree)
        for path, value in trial["tuned"].items():
            set_path(config, path, value)
        configs.append(config)
    return configs


# ---- running ---------------------------------------------------------------------------


def run_one(raw: dict[str, Any], storage: str, name: str) -> tuple[list[float], dict[str, Any]]:
    """Run one sweep; its val_acc per epoch in reporting order and its summary."""
    from tuning.experiment import validate_experiment
    from tuning.runner import run_sweep

    summary = run_sweep(validate_experiment(raw), storage=storage, name=name).summary
    values = val_acc_in_report_order(Path(storage) / name)
    shutil.rmtree(Path(storage) / name, ignore_errors=True)  # checkpoints: disk, not data
    return values, summary


def run_top_k(
    seed: int, args: argparse.Namespace, storage: str
) -> tuple[list[float], dict[str, Any]]:
    """Round 1: every configuration 1 epoch; round 2: the top K trained fully, one sweep
    whose train tree is a grid over the K fixed configurations."""
    raw = experiment("topk", seed, args.trials, args.epochs, args.train_examples)
    first, summary = run_one(raw, storage, f"topk-r1-{seed}")
    finalists = top_configs(summary, search_space(args.epochs), args.top_k)
    raw["train"] = {"grid": finalists}
    raw["search"] = {"algorithm": "grid", "seed": seed}
    second, summary = run_one(raw, storage, f"topk-r2-{seed}")
    return first + second, summary


def run_method(method: str, seed: int, args: argparse.Namespace, storage: str) -> dict[str, Any]:
    """One (method, seed) sweep as a JSON-lines record."""
    start = time.monotonic()
    if method == "topk":
        values, summary = run_top_k(seed, args, storage)
    else:
        raw = experiment(method, seed, args.trials, args.epochs, args.train_examples)
        values, summary = run_one(raw, storage, f"{method}-{seed}")
    return {
        "method": method,
        "seed": seed,
        **settings_key(args),
        "val_acc": values,
        "test_acc": summary["test"]["accuracy"],
        "wall_s": round(time.monotonic() - start, 1),
    }


def settings_key(args: argparse.Namespace) -> dict[str, int]:
    """What a finished record must match to be reused by a rerun."""
    return {
        "trials": args.trials,
        "epochs": args.epochs,
        "train_examples": args.train_examples,
        "top_k": args.top_k,
    }


def finished(path: Path, args: argparse.Namespace) -> dict[tuple[str, int], dict[str, Any]]:
    """The records already in the JSON-lines file for these settings, by (method, seed)."""
    if not path.exists():
        return {}
    key = settings_key(args)
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {
        (r["method"], r["seed"]): r
        for r in records
        if all(r.get(name) == value for name, value in key.items())
    }


# ---- summarizing ------------------------------------------------------------------------


def interval_summary(values: Sequence[float]) -> dict[str, Any]:
    low, high = bootstrap_iqm_interval(values)
    return {"iqm": round(iqm(values), 4), "ci95": [round(low, 4), round(high, 4)]}


def method_figures(
    runs: dict[int, dict[str, Any]], reference: dict[int, dict[str, Any]], budget: int
) -> dict[str, Any]:
    """One method's figures over the seeds it shares with the reference method."""
    seeds = sorted(set(runs) & set(reference))
    spent = [len(runs[s]["val_acc"]) for s in seeds]
    reached = [epochs_to_reach(runs[s]["val_acc"], max(reference[s]["val_acc"])) for s in seeds]
    to_reach = [censored(r, budget) for r in reached]
    fifo_spent = [len(reference[s]["val_acc"]) for s in seeds]
    return {
        "seeds": seeds,
        "best_val_acc": interval_summary([max(runs[s]["val_acc"]) for s in seeds]),
        "test_acc": interval_summary([runs[s]["test_acc"] for s in seeds]),
        "epochs_spent": interval_summary(spent),
        "epochs_to_reach_fifo_best": interval_summary(to_reach),
        "share_of_fifo_epochs": interval_summary(
            [a / b for a, b in zip(spent, fifo_spent, strict=True)]
        ),
        "to_reach_share_of_fifo_epochs": interval_summary(
            [a / b for a, b in zip(to_reach, fifo_spent, strict=True)]
        ),
        "reached": sum(r is not None for r in reached),
        "per_seed_epochs_to_reach": reached,
        "per_seed_epochs_spent": spent,
        "wall_s": interval_summary([runs[s]["wall_s"] for s in seeds]),
    }


def targets(table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's two targets, each with the figures it was judged on."""
    fifo, asha = table[REFERENCE], table.get("random+asha")
    verdict: dict[str, Any] = {}
    if asha:
        share = asha["share_of_fifo_epochs"]["iqm"]
        low, high = fifo["best_val_acc"]["ci95"]
        inside = low <= asha["best_val_acc"]["iqm"] <= high
        verdict["asha_share_at_most_0.20"] = {"share": share, "met": share <= 0.20}
        verdict["asha_best_inside_fifo_interval"] = {"met": inside, "fifo_ci95": [low, high]}
    others = {m: f for m, f in table.items() if m != REFERENCE}
    if others:
        best = min(others, key=lambda m: others[m]["to_reach_share_of_fifo_epochs"]["iqm"])
        share = others[best]["to_reach_share_of_fifo_epochs"]["iqm"]
        verdict["best_reaches_fifo_best_in_0.10"] = {
            "method": best,
            "share": share,
            "met": share <= 0.10,
        }
    return verdict


def plot_anytime(by_method: dict[str, dict[int, dict[str, Any]]], budget: int, path: Path) -> None:
    """Best-so-far val_acc against epochs spent: median and interquartile band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    lowest = 1.0
    for method, runs in by_method.items():
        length = max(len(r["val_acc"]) for r in runs.values())
        curves = np.array([curve_on_grid(r["val_acc"], length) for r in runs.values()])
        x = np.arange(1, length + 1)
        q25, q50, q75 = np.percentile(curves, [25, 50, 75], axis=0)
        (line,) = ax.plot(x, q50, label=f"{method} ({len(runs)} seeds)")
        ax.fill_between(x, q25, q75, color=line.get_color(), alpha=0.15)
        # The y axis starts where the curves stand at 1/10 of the budget (the target).
        lowest = min(lowest, float(q25[min(length, max(1, budget // 10)) - 1]))
    ax.axvline(budget / 10, color="grey", linestyle=":", label="1/10 of the FIFO budget")
    ax.set_xscale("log")
    ax.set_ylim(max(0.0, np.floor(lowest * 20) / 20), 1.0)
    ax.set_xlabel("epochs spent (all trials of the sweep, in reporting order)")
    ax.set_ylabel("best val_acc so far")
    ax.set_title("mnist5k: best-so-far val_acc, median and interquartile band over seeds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- command line ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="search seeds 0..N-1")
    parser.add_argument("--trials", type=int, default=12, help="trials per sweep")
    parser.add_argument("--epochs", type=int, default=6, help="max epochs per trial")
    parser.add_argument("--train-examples", type=int, default=1000, help="training images")
    parser.add_argument("--top-k", type=int, default=3, help="configurations kept by topk")
    parser.add_argument("--out", default="docs/img/bench_search", help="writes OUT.json, OUT.png")
    parser.add_argument(
        "--records",
        default="runs/bench_search.jsonl",
        help="JSON lines, one per finished (method, seed); a rerun skips what it holds",
    )
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (1 seed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.epochs, args.train_examples, args.top_k = 1, 4, 3, 300, 2
    if REFERENCE not in args.methods:
        parser.error(f"--methods must include {REFERENCE}: every figure is relative to it")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    import ray

    args = parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records_path = Path(args.records)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    done = finished(records_path, args)
    ray.init(include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="bench_search-") as storage:
        for seed in range(args.seeds):
            for method in args.methods:
                if (method, seed) in done:
                    continue
                try:
                    record = run_method(method, seed, args, storage)
                except Exception as error:  # one failed sweep must not lose the others
                    print(f"FAILED {method} seed {seed}: {error!r}", flush=True)
                    continue
                done[(method, seed)] = record
                with records_path.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(
                    f"{method} seed {seed}: {len(record['val_acc'])} epochs, best val "
                    f"{max(record['val_acc']):.4f}, test {record['test_acc']:.4f}, "
                    f"{record['wall_s']} s",
                    flush=True,
                )
    ray.shutdown()
    write_summary(done, args, out)


def write_summary(
    done: dict[tuple[str, int], dict[str, Any]], args: argparse.Namespace, out: Path
) -> None:
    by_method = {
        method: {seed: r for (m, seed), r in done.items() if m == method and seed < args.seeds}
        for method in args.methods
    }
    by_method = {m: runs for m, runs in by_method.items() if runs}
    budget = args.trials * args.epochs
    table = {m: method_figures(runs, by_method[REFERENCE], budget) for m, runs in by_method.items()}
    report = {
        "command": "python scripts/bench_search.py " + " ".join(sys.argv[1:]),
        **settings_key(args),
        "budget_epochs": budget,
        "censoring": "a seed that never reaches random+fifo's best counts as budget_epochs",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "methods": table,
        "targets": targets(table),
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    plot_anytime(by_method, budget, out.with_suffix(".png"))
    print(json.dumps({"targets": report["targets"]}, indent=2))


if __name__ == "__main__":
    main()
