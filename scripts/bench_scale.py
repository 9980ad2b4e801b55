"""Does cnn-tune add anything that grows with the sweep? The same trials three ways.

For each number of trials N, the same kind of short digits trials (depth-2 CNN, random
learning rate and batch size, FIFO, `--parallel` at once) run:
  pool      a plain process pool calling the project's loop (`trainables.loop.fit`):
            no Ray, no checkpoints, no logs; the floor;
  bare-ray  a bare Ray Tune script around the same loop, with Ray's defaults (its
            JSON/CSV/TensorBoard loggers) and no checkpoints;
  cnn-tune  `cnn-tune run` with the default checkpoint settings, then `cnn-tune report`
            and TensorBoard loading the sweep.
Each way runs in a fresh process; its wall time includes Python's imports and Ray's
start. Printed and written to OUT/scale.json: wall time, marginal cost per trial, the
driver's peak memory (VmHWM), the bytes the sweep left on disk, the log lines beyond
Ray's progress table, and the report's and TensorBoard's load time; OUT/scale.png plots
the cost per trial against N.

    python scripts/bench_scale.py                    # 16, 64, 256, 1024 trials x 2 epochs
    python scripts/bench_scale.py --trials 1024 --epochs 1
    python scripts/bench_scale.py --quick            # CI's smoke test: 2 trials, 1 epoch
    python scripts/bench_scale.py --trials 16 64 256 --repeats 3   # medians of 3 runs

With --repeats R every way runs R times at each N, the ways taking turns, and a row holds
the median wall time (each run's in `wall_s_runs`) with the other figures from the median
run: on a shared 2-core machine one run's wall time varies by 15% or more.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from tuning.cluster import keep_private_ray_on_loopback

keep_private_ray_on_loopback()  # as the CLI does for a local Ray: before Ray is imported

REPO = Path(__file__).resolve().parents[1]
WAYS = ("pool", "bare-ray", "cnn-tune")
LR_RANGE = (1.0e-4, 3.0e-2)
BATCH_SIZES = (32, 64, 128)


def train_config(epochs: int, lr: Any, batch_size: Any) -> dict[str, Any]:
    """The trials' TrainConfig tree; `lr` and `batch_size` are values or search domains."""
    return {
        "epochs": epochs,
        "batch_size": batch_size,
        "model": {"name": "cnn", "depth": 2, "width": 32},
        "optimizer": {"name": "adam", "lr": lr},
        "seed": 0,
    }


def experiment(trials: int, epochs: int) -> dict[str, Any]:
    """The cnn-tune experiment: the same trials, default checkpoint settings."""
    return {
        "name": "bench-scale",
        "dataset": {"name": "digits"},
        "train": train_config(
            epochs, {"loguniform": list(LR_RANGE)}, {"choice": list(BATCH_SIZES)}
        ),
        "search": {"algorithm": "random", "num_samples": trials, "seed": 0},
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": 1, "gpu": 0},
    }


# ---------------------------------------------------------------- the three ways (children)

_pool_data = None


def _pool_init() -> None:
    import torch

    from trainables.data import DataConfig, load_splits

    global _pool_data
    torch.set_num_threads(1)  # what a 1-CPU trial gets under Ray
    _pool_data = load_splits(DataConfig(name="digits")).tuning


def _pool_fit(config: dict[str, Any]) -> float:
    from trainables.config import TrainConfig
    from trainables.loop import fit

    assert _pool_data is not None
    rows: list[dict[str, Any]] = []
    fit(TrainConfig.model_validate(config), _pool_data, on_epoch_end=rows.append)
    return float(rows[-1]["val_acc"])


def run_pool(trials: int, epochs: int, parallel: int, storage: Path) -> None:
    import math
    import random
    from concurrent.futures import ProcessPoolExecutor

    rng = random.Random(0)
    configs = [
        train_config(
            epochs, 10 ** rng.uniform(*(math.log10(x) for x in LR_RANGE)), rng.choice(BATCH_SIZES)
        )
        for _ in range(trials)
    ]
    with ProcessPoolExecutor(max_workers=parallel, initializer=_pool_init) as pool:
        list(pool.map(_pool_fit, configs))


def _bare_trainable(config: dict[str, Any], data: Any) -> None:
    from ray import tune

    from trainables.config import TrainConfig
    from trainables.loop import fit

    fit(TrainConfig.model_validate(config), data, on_epoch_end=lambda row: tune.report(row))


def run_bare_ray(trials: int, epochs: int, parallel: int, storage: Path) -> None:
    import ray
    from ray import tune

    from trainables.data import DataConfig, load_splits

    data = load_splits(DataConfig(name="digits")).tuning
    ray.init(address="local", num_cpus=parallel, include_dashboard=False)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_bare_trainable, data=data), {"cpu": 1}),
        param_space=train_config(
            epochs, tune.loguniform(*LR_RANGE), tune.choice(list(BATCH_SIZES))
        ),
        # reuse_actors is off by default; without it every trial starts a process (~5 s
        # here), and nobody runs a thousand short trials that way. cnn-tune turns it on.
        tune_config=tune.TuneConfig(
            metric="val_acc", mode="max", num_samples=trials, reuse_actors=True
        ),
        run_config=tune.RunConfig(name="bench", storage_path=str(storage)),
    )
    tuner.fit()
    ray.shutdown()


def run_cnn_tune(trials: int, epochs: int, parallel: int, storage: Path) -> None:
    from tuning.cli import main
    from tuning.yaml_io import dump_yaml

    # The private Ray gets every CPU of the machine, as `cnn-tune run` does: run with
    # --parallel equal to the machine's CPUs (2 here) for a like-for-like comparison.
    path = storage.parent / "bench-scale.yaml"
    path.write_text(dump_yaml(experiment(trials, epochs)))
    code = main(["run", str(path), "--storage", str(storage), "--name", "bench"])
    if code:
        raise SystemExit(code)


def child(way: str, trials: int, epochs: int, parallel: int, storage: Path, out: Path) -> None:
    """Run one way in this process; write the driver's peak memory and CPU time to `out`."""
    runner = {"pool": run_pool, "bare-ray": run_bare_ray, "cnn-tune": run_cnn_tune}[way]
    runner(trials, epochs, parallel, storage)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    driver = {"peak_rss_bytes": _peak_rss_bytes(), "driver_cpu_s": usage.ru_utime + usage.ru_stime}
    out.write_text(json.dumps(driver))


def _peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------- measuring (parent)

# Progress output, not log lines: Ray's status tables and their headers, and the status
# line cnn-tune prints instead of them (tuning.progress).
_PROGRESS = re.compile(
    r"^\s*$|^[╭╰│├─┌└┐┘┤┬┴┼\s]|^\[\s*[\dhm]+s\] \d+/\d+ trials ended"
    r"|^(Trial status|Current time|Logical resource|Current best"
    r"|Trial name|View detailed|To visualize|Configuration for experiment|Search algorithm"
    r"|Scheduler|Number of trials|Training started|Training finished|Training completed)"
)


def measure(
    way: str, trials: int, epochs: int, parallel: int, scratch: Path, out: Path
) -> dict[str, Any]:
    storage = scratch / f"{way}-{trials}" / "runs"
    shutil.rmtree(storage.parent, ignore_errors=True)  # an earlier repeat's
    storage.mkdir(parents=True)
    result_file = storage.parent / "child.json"
    log_file = storage.parent / "output.log"
    command = [sys.executable, __file__, "--child", way, "--trials", str(trials)]
    command += ["--epochs", str(epochs), "--parallel", str(parallel)]
    command += ["--storage", str(storage), "--result", str(result_file)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    with log_file.open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    wall = time.perf_counter() - start
    output = log_file.read_text(errors="replace").splitlines()
    shutil.copy(log_file, out / f"{way}-{trials}.log")  # kept for reading, next to scale.json
    if done.returncode:
        raise SystemExit(f"{way} at {trials} trials failed:\n" + "\n".join(output[-40:]))
    row: dict[str, Any] = {"way": way, "trials": trials, "epochs": epochs, "wall_s": wall}
    row.update(json.loads(result_file.read_text()))
    row["storage_bytes"] = _bytes_under(storage)
    logged = _log_lines(output[: _summary_start(output)] if way == "cnn-tune" else output)
    row["log_lines"], row["log_excerpt"] = len(logged), logged[:20]
    if way == "cnn-tune":
        sweep = storage / "bench"
        row["report_s"] = _timed([str(REPO / ".venv/bin/cnn-tune"), "report", str(sweep)])
        row["tensorboard_load_s"] = _tensorboard_load_seconds(sweep)
    time.sleep(1)  # let Ray's processes exit before the next timed run
    return row


def _log_lines(output: list[str]) -> list[str]:
    """The lines of `output` that are neither progress tables nor blank."""
    return [line for line in output if not _PROGRESS.match(line)]


def _summary_start(output: list[str]) -> int:
    """Where the summary `cnn-tune run` prints at its end begins: the result, not noise."""
    return next((i for i, line in enumerate(output) if line.startswith("Sweep ")), len(output))


def _bytes_under(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def _tensorboard_load_seconds(sweep: Path) -> float:
    """Seconds TensorBoard's event multiplexer takes to load every run of the sweep."""
    code = (
        "import sys, time\n"
        "from tensorboard.backend.event_processing import plugin_event_multiplexer as pem\n"
        "start = time.perf_counter()\n"
        "mux = pem.EventMultiplexer()\n"
        "mux.AddRunsFromDirectory(sys.argv[1])\n"
        "mux.Reload()\n"
        "print(len(mux.Runs()), time.perf_counter() - start)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(sweep)], capture_output=True, text=True, check=True
    )
    runs, seconds = done.stdout.split()[-2:]
    if int(runs) == 0:
        raise SystemExit(f"TensorBoard found no runs under {sweep}")
    return float(seconds)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for repeated runs of a way at one N: the run with the median wall time
    (the lower of the two middle ones for an even count), with every run's wall time."""
    middle = sorted(runs, key=lambda run: run["wall_s"])[(len(runs) - 1) // 2]
    return {**middle, "wall_s_runs": [run["wall_s"] for run in runs]}


def marginal_costs(rows: list[dict[str, Any]]) -> None:
    """Seconds each extra trial adds between consecutive N, per way (in place)."""
    for way in WAYS:
        previous = None
        for row in sorted((r for r in rows if r["way"] == way), key=lambda r: r["trials"]):
            if previous is not None:
                row["marginal_s_per_trial"] = (row["wall_s"] - previous["wall_s"]) / (
                    row["trials"] - previous["trials"]
                )
            previous = row


def print_table(rows: list[dict[str, Any]]) -> None:
    by = {(r["way"], r["trials"]): r for r in rows}
    print(
        "\n| trials x epochs | pool | bare Ray | cnn-tune | cnn-tune / bare Ray "
        "| bare Ray / pool | cnn-tune / pool |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in sorted({r["trials"] for r in rows}):
        pool, bare, ours = by[("pool", n)], by[("bare-ray", n)], by[("cnn-tune", n)]
        print(
            f"| {n} x {ours['epochs']} | {pool['wall_s']:.1f} s | {bare['wall_s']:.1f} s "
            f"| {ours['wall_s']:.1f} s | {ours['wall_s'] / bare['wall_s']:.2f} "
            f"| {bare['wall_s'] / pool['wall_s']:.2f} | {ours['wall_s'] / pool['wall_s']:.2f} |"
        )
    print(
        "\n| way | trials | marginal s/trial | driver peak | storage | storage/trial "
        "| log lines | report | TensorBoard load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        marginal = row.get("marginal_s_per_trial")
        print(
            f"| {row['way']} | {row['trials']} "
            f"| {'' if marginal is None else f'{marginal:.3f}'} "
            f"| {row['peak_rss_bytes'] / 2**20:.0f} MiB | {row['storage_bytes'] / 2**20:.1f} MiB "
            f"| {row['storage_bytes'] / row['trials'] / 1024:.0f} KiB | {row['log_lines']} "
            f"| {_seconds(row.get('report_s'))} | {_seconds(row.get('tensorboard_load_s'))} |"
        )


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} s"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (per_trial, memory) = plt.subplots(1, 2, figsize=(11, 4))
    for way in WAYS:
        mine = sorted((r for r in rows if r["way"] == way), key=lambda r: r["trials"])
        trials = [r["trials"] for r in mine]
        per_trial.plot(trials, [r["wall_s"] / r["trials"] for r in mine], "o-", label=way)
        memory.plot(trials, [r["peak_rss_bytes"] / 2**20 for r in mine], "o-", label=way)
    for axis, label in ((per_trial, "wall seconds per trial"), (memory, "driver peak MiB")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("trials in the sweep")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"Cost against sweep size ({rows[0]['epochs']} epochs per trial)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=2, help="trials at once, every way")
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS))
    parser.add_argument("--repeats", type=int, default=1, help="runs per way and N (median)")
    parser.add_argument("--quick", action="store_true", help="2 trials of 1 epoch")
    parser.add_argument("--out", type=Path, default=Path("bench-scale"))
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--storage", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.trials[0], args.epochs, args.parallel, args.storage, args.result)
        return 0
    if args.quick:
        args.trials, args.epochs = [2], 1
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        for trials in args.trials:
            runs: dict[str, list[dict[str, Any]]] = {way: [] for way in args.ways}
            for _ in range(args.repeats):
                for way in args.ways:
                    run = measure(way, trials, args.epochs, args.parallel, Path(scratch), args.out)
                    print(json.dumps(run), flush=True)
                    runs[way].append(run)
            rows.extend(median_run(runs[way]) for way in args.ways)
    marginal_costs(rows)
    if set(args.ways) == set(WAYS):
        print_table(rows)
    plot(rows, args.out / "scale.png")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    report = {"date": str(date.today()), "machine": machine, "parallel": args.parallel}
    report["repeats"] = args.repeats
    (args.out / "scale.json").write_text(json.dumps({**report, "rows": rows}, indent=2) + "\n")
    print(f"\n{machine}; figures in {args.out / 'scale.json'}, plot in {args.out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
