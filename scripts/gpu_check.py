"""One command for a machine with a CUDA GPU: does cnn-tune's GPU path really work?

    python scripts/gpu_check.py                 # on a GPU machine: about 4-6 minutes
    python scripts/gpu_check.py --dry-run       # anywhere: logical GPU, tiny sizes (CI)

Prints a PASS/FAIL table and writes every figure to a JSON file (--output). Rows:

  environment     GPU, driver, torch, CUDA, native bf16
  gpu tests       the pytest tests marked `gpu`
  packing         4 trials at 0.25 of one GPU at the same time, on CUDA, each under its cap
  infeasible      a config too large for its share is `infeasible` once; the next trial on
                  the same actor (process) trains
  auto share      the share `gpu: auto` chose vs the peak memory every trial used
  syncs/step      host-device synchronisations per training step (set_sync_debug_mode)
  data path       warm epoch time with the data on the GPU vs staged from host memory
  trials/hour     at 1, 1/2, 1/4, 1/8 of a GPU, from warm epochs, finished trials only

Everything runs on one GPU (Ray is told of one), so the figures compare shares of it.
On a bare machine (no Ray, pydantic), see docs/benchmarks.md for the bundle to carry.
--dry-run runs the same code with Ray told of one logical GPU: trials train on the CPU,
rows that need CUDA say SKIP, and it exists so this script cannot rot between GPU sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

from tuning.cluster import keep_private_ray_on_loopback

keep_private_ray_on_loopback()  # as the CLI does for a local Ray: before Ray is imported

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARES = (1.0, 0.5, 0.25, 0.125)


class Sizes:
    """Workload sizes: a CIFAR-shaped synthetic dataset and a 3-block CNN."""

    def __init__(self, dry_run: bool) -> None:
        self.examples = 600 if dry_run else 20_000
        self.image_size = 16 if dry_run else 32
        self.epochs = 2 if dry_run else 4
        # Long enough that 4 trials are running together once the last one has started,
        # however slowly 4 workers start on a small machine (a dry-run epoch is ~0.1 s).
        self.packing_epochs = 30 if dry_run else 4
        self.batch_size = 64 if dry_run else 256
        self.width = 8 if dry_run else 64
        # Too large for a quarter of any GPU: one conv output of batch x width x 512 x 512.
        self.oversized = (
            {"image_size": 64, "width": 64, "batch": 64}
            if dry_run
            else {"image_size": 512, "width": 256, "batch": 512}
        )


def experiment(sizes: Sizes, name: str, gpu: float | str, trials: int, **train: Any) -> dict:
    """A digits-free sweep on synthetic CIFAR-shaped data with a fixed learning rate."""
    image_size = train.pop("image_size", sizes.image_size)
    return {
        "name": name,
        "dataset": {
            "name": "synthetic",
            "image_size": image_size,
            "synthetic_examples": train.pop("examples", sizes.examples),
        },
        "train": {
            "epochs": sizes.epochs,
            "batch_size": sizes.batch_size,
            "model": {"name": "cnn", "depth": 3, "width": sizes.width},
            "optimizer": {"name": "sgd", "lr": {"loguniform": [1.0e-2, 5.0e-2]}, "momentum": 0.9},
            **train,
        },
        "search": {"algorithm": "random", "num_samples": trials, "seed": 0},
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": 1, "gpu": gpu},
        "checkpoint": {"every_epochs": sizes.epochs, "keep": 1},
    }


def sweep(raw: dict, storage: str, callbacks: list | None = None) -> tuple[dict, dict[str, list]]:
    """Run one sweep; returns its summary and each trial's progress rows."""
    from tuning.experiment import validate_experiment
    from tuning.runner import run_sweep

    outcome = run_sweep(
        validate_experiment(raw), storage=storage, name=raw["name"], callbacks=callbacks
    )
    rows = {
        t["trial_id"]: _progress_rows(outcome.experiment_dir / f"trial_{t['trial_id']}")
        for t in outcome.summary["trials"]
    }
    return outcome.summary, rows


def check_environment(dry_run: bool) -> tuple[bool, dict]:
    from trainables.gpu import cuda_environment

    environment = cuda_environment()
    environment["mps"] = _mps_running()
    if dry_run:
        return True, environment
    return bool(environment["cuda_available"] and environment.get("bf16")), environment


def check_gpu_tests(dry_run: bool) -> tuple[bool, dict]:
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    # Where they live: collecting all of tests/ would import the report's matplotlib and
    # plotly, which the bundle for a bare GPU machine leaves out.
    command.append("tests/trainables")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    tail = done.stdout.strip().splitlines()[-1:] or done.stderr.strip().splitlines()[-1:]
    passed = done.returncode == 0 and (dry_run or "skipped" not in tail[0])
    return passed, {"exit_code": done.returncode, "result": tail[0] if tail else ""}


def check_packing(sizes: Sizes, storage: str, dry_run: bool) -> tuple[bool, dict]:
    recorder = _concurrency_recorder()
    raw = experiment(sizes, "packing", 0.25, 4, epochs=sizes.packing_epochs)
    summary, rows = sweep(raw, storage, [recorder])
    last = [r[-1] for r in rows.values() if r]
    on_cuda = all(str(r.get("device", "")).startswith("cuda") for r in last)
    under_cap = all(
        float(r.get("gpu_memory_peak_bytes") or 0) <= float(r.get("gpu_memory_cap_bytes") or 0)
        for r in last
    )
    figures = {
        "trials_at_once": recorder.most_at_once,
        "completed": sum(t["status"] == "completed" for t in summary["trials"]),
        "devices": sorted({str(r.get("device")) for r in last}),
        "peak_gib": [round(float(r.get("gpu_memory_peak_bytes") or 0) / 2**30, 2) for r in last],
        "cap_gib": [round(float(r.get("gpu_memory_cap_bytes") or 0) / 2**30, 2) for r in last],
    }
    passed = recorder.most_at_once == 4 and figures["completed"] == 4
    return passed and (dry_run or (on_cuda and under_cap)), figures


def check_infeasible(sizes: Sizes, storage: str, dry_run: bool) -> tuple[bool, dict]:
    big = sizes.oversized
    raw = experiment(sizes, "infeasible", 0.25, 1, image_size=big["image_size"], examples=600)
    # One conv block, so width alone sets the memory: the large one's first activation
    # (batch x 256 x 512 x 512, bf16) is ~50 GB; the small one's (width 4) under 1 GB.
    raw["train"]["model"] = {"name": "cnn", "depth": 1, "width": {"grid": [big["width"], 4]}}
    raw["train"]["batch_size"] = big["batch"]
    raw["train"]["optimizer"]["lr"] = 0.02
    raw["search"] = {"algorithm": "grid", "num_samples": 1, "max_concurrent": 1}
    summary, rows = sweep(raw, storage)
    by_width = {t["tuned"]["model.width"]: t for t in summary["trials"]}
    large, small = by_width[big["width"]], by_width[4]
    pids = {rows[t["trial_id"]][0].get("pid") for t in (large, small) if rows[t["trial_id"]]}
    figures = {
        "oversized": {"status": large["status"], "rows": len(rows[large["trial_id"]])},
        "next": {"status": small["status"], "epochs": small["epochs"]},
        "same_process": len(pids) == 1,
        "reason": (large.get("error") or "")[:160],
    }
    if dry_run:  # a CPU allocation of this size succeeds; only the flow is exercised
        return small["status"] == "completed", figures
    passed = (
        large["status"] == "infeasible"
        and len(rows[large["trial_id"]]) == 1
        and small["status"] == "completed"
        and figures["same_process"]
    )
    return passed, figures


def check_auto_share(sizes: Sizes, storage: str, dry_run: bool) -> tuple[bool, dict]:
    import torch

    trials = 2 if dry_run else 4
    raw = experiment(sizes, "auto", "auto", trials)
    raw["train"]["model"]["width"] = {"choice": [sizes.width // 2, sizes.width]}
    summary, rows = sweep(raw, storage)
    share = json.loads((Path(storage) / "auto" / "gpu-share.json").read_text())["gpu_per_trial"]
    peaks = [
        max(float(r.get("gpu_memory_peak_bytes") or 0) for r in trial_rows)
        for trial_rows in rows.values()
        if trial_rows
    ]
    total = torch.cuda.get_device_properties(0).total_memory if not dry_run else 0
    figures = {
        "share": share,
        "share_gib": round(share * total / 2**30, 2),
        "peak_gib": [round(p / 2**30, 2) for p in peaks],
        "completed": sum(t["status"] == "completed" for t in summary["trials"]),
    }
    if dry_run:
        return figures["completed"] == trials, figures
    from trainables.gpu import CUDA_CONTEXT_BYTES

    fits = all(p + CUDA_CONTEXT_BYTES <= share * total for p in peaks)
    return fits and share < 1 and figures["completed"] == 4, figures


def check_syncs_per_step(sizes: Sizes, dry_run: bool) -> tuple[bool, dict]:
    if dry_run:
        return True, {"skipped": "needs CUDA"}
    import torch

    trainer = _trainer(sizes, data_on_device=True, augment=True)
    trainer.run_epoch()  # warm: cuDNN autotuning, allocator growth
    steps = len(trainer.train_feed) // sizes.batch_size
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.run_epoch()  # training, validation and the epoch's bookkeeping
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    figures = {"steps": steps, "syncs": syncs, "per_step": round(syncs / max(1, steps), 3)}
    return figures["per_step"] <= 0.25, figures


def check_data_path(sizes: Sizes, dry_run: bool) -> tuple[bool, dict]:
    seconds = {}
    for on_device in (True, False):
        trainer = _trainer(sizes, data_on_device=on_device, augment=False)
        trainer.run_epoch()  # warm
        start = time.perf_counter()
        trainer.run_epoch()
        seconds["gpu_resident" if on_device else "host_staged"] = time.perf_counter() - start
        staged = not trainer.train_feed.resident
        if not on_device and not dry_run and not staged:
            return False, {"error": "the host path did not stage batches"}
    figures = {key: round(value, 3) for key, value in seconds.items()}
    return all(v > 0 for v in seconds.values()), figures


def check_trials_per_hour(sizes: Sizes, storage: str, dry_run: bool) -> tuple[bool, dict]:
    figures = {}
    for share in (0.5,) if dry_run else SHARES:
        trials = round(1 / share)
        summary, rows = sweep(experiment(sizes, f"share-{share}", share, trials), storage)
        finished = [t for t in summary["trials"] if t["status"] == "completed"]
        warm = [
            float(row["time_this_iter_s"])
            for t in finished
            for row in rows[t["trial_id"]][1:]  # the first epoch is cold
        ]
        per_trial_s = sizes.epochs * median(warm) if warm else float("inf")
        figures[str(share)] = {
            "finished": len(finished),
            "warm_epoch_s": round(median(warm), 3) if warm else None,
            "trials_per_hour": round(len(finished) * 3600 / per_trial_s, 1),
        }
    return all(f["finished"] == round(1 / float(s)) for s, f in figures.items()), figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="logical GPU, CPU, tiny sizes")
    parser.add_argument("--output", default="gpu-check.json", help="where the JSON goes")
    args = parser.parse_args()
    started = time.monotonic()
    if args.dry_run:
        from trainables.gpu import LOGICAL_GPUS_ENV

        os.environ[LOGICAL_GPUS_ENV] = "1"  # before Ray starts: its workers inherit it
    import ray

    ray.init(
        num_cpus=max(8, os.cpu_count() or 1),
        num_gpus=1,
        include_dashboard=False,
        log_to_driver=False,
    )
    sizes = Sizes(args.dry_run)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as storage:
        checks: list[tuple[str, Callable[[], tuple[bool, dict]]]] = [
            ("environment", lambda: check_environment(args.dry_run)),
            ("gpu tests", lambda: check_gpu_tests(args.dry_run)),
            ("packing", lambda: check_packing(sizes, storage, args.dry_run)),
            ("infeasible", lambda: check_infeasible(sizes, storage, args.dry_run)),
            ("auto share", lambda: check_auto_share(sizes, storage, args.dry_run)),
            ("trials/hour", lambda: check_trials_per_hour(sizes, storage, args.dry_run)),
            # In this process, last: its CUDA memory would crowd the trials' shares.
            ("syncs/step", lambda: check_syncs_per_step(sizes, args.dry_run)),
            ("data path", lambda: check_data_path(sizes, args.dry_run)),
        ]
        rows = [_run_check(name, check) for name, check in checks]
    ray.shutdown()
    report = {
        "dry_run": args.dry_run,
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.monotonic() - started, 1),
        "checks": rows,
    }
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    _print_table(rows, report["seconds"], args.output)
    return 0 if all(row["status"] in ("PASS", "SKIP") for row in rows) else 1


def _run_check(name: str, check: Callable[[], tuple[bool, dict]]) -> dict:
    start = time.monotonic()
    try:
        passed, figures = check()
        status = "SKIP" if "skipped" in figures else ("PASS" if passed else "FAIL")
    except Exception as error:  # one broken check must not hide the others' figures
        status, figures = "FAIL", {"error": f"{type(error).__name__}: {error}"[:500]}
    row = {"check": name, "status": status, "seconds": round(time.monotonic() - start, 1)}
    print(f"{name}: {status} {json.dumps(figures)}", flush=True)
    return {**row, "figures": figures}


def _print_table(rows: list[dict], seconds: float, output: str) -> None:
    print(f"\n{'check':<13} {'status':<6} {'s':>6}  figures")
    for row in rows:
        figures = json.dumps(row["figures"])
        print(f"{row['check']:<13} {row['status']:<6} {row['seconds']:>6}  {figures[:200]}")
    print(f"\n{seconds:.0f} s in all; every figure in {output}")


def _trainer(sizes: Sizes, data_on_device: bool, augment: bool) -> Any:
    """A Trainer in this process on the GPU (the CPU in a dry run), CIFAR-shaped data."""
    import torch

    from trainables.config import TrainConfig
    from trainables.data import DataConfig, load_splits
    from trainables.gpu import pick_device
    from trainables.loop import Trainer

    data = load_splits(
        DataConfig(name="synthetic", image_size=sizes.image_size, synthetic_examples=sizes.examples)
    ).tuning
    config = TrainConfig.model_validate(
        {
            "epochs": 3,
            "batch_size": sizes.batch_size,
            "model": {"name": "cnn", "depth": 3, "width": sizes.width},
            "optimizer": {"name": "sgd", "lr": 0.02, "momentum": 0.9},
            "data_on_device": data_on_device,
            "augmentation": {"crop_padding_fraction": 0.125, "flip": True} if augment else {},
        }
    )
    device = pick_device(1.0) if torch.cuda.is_available() else torch.device("cpu")
    return Trainer(config, data, device)


def _concurrency_recorder() -> Any:
    from ray import tune

    class ConcurrencyRecorder(tune.Callback):
        def __init__(self) -> None:
            self.running = 0
            self.most_at_once = 0

        def on_trial_start(self, iteration, trials, trial, **info):
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.running -= 1

        on_trial_error = on_trial_complete

    return ConcurrencyRecorder()


def _progress_rows(trial_dir: Path) -> list[dict[str, Any]]:
    import csv

    path = trial_dir / "progress.csv"
    if not path.is_file():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _mps_running() -> bool:
    """Whether a CUDA MPS control daemon runs here (trials then share the GPU's SMs)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip().startswith("nvidia-cuda-mps"):
                return True
        except OSError:
            continue
    return False


if __name__ == "__main__":
    sys.exit(main())
