"""Chaos test of `cnn-tune resume`: kill -9 the driver at random moments, resume, compare.

For each scenario it runs the sweep once uninterrupted (the reference), then, for each
chaos run, starts the same sweep as a real `cnn-tune run` subprocess in its own process
group, SIGKILLs that group (the driver and the Ray it started; Ray workers that outlive
it are left alone) at a seeded random moment, and calls `cnn-tune resume` until the
sweep finishes. Each finished chaos sweep is compared with the reference:

- asha: every trial present, no epoch row of progress.csv lost or duplicated, the test
  split evaluated once, the same trials stopped at the same rungs (and only at rungs),
  the same winner with the same validation score and test accuracy;
- pbt: what can be made deterministic. PBT's explore step draws from Python's global
  `random` and exploits depend on the order in which 2 concurrent trials report, so
  neither run is reproducible; compared are: every trial trained to the last epoch,
  rows only repeated where the trial recorded an exploit, the test split evaluated once.

Determinism: ASHA's decisions depend on the order results arrive, so the asha sweep
runs one trial at a time (`search.max_concurrent: 1`); then the reference itself is
reproducible, and any difference is the resume's fault.

    python scripts/chaos.py                      # 20 asha kills + 4 pbt kills, ~25 min
    python scripts/chaos.py --quick              # 1 asha kill on a tiny sweep, ~1 min
    python scripts/chaos.py --kills 20 --seed 0 --output chaos.json
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ASHA_SWEEP: dict[str, Any] = {
    "name": "chaos-asha",
    "dataset": {"name": "digits"},
    "train": {
        "epochs": 9,
        "model": {"name": "cnn", "depth": 1, "width": 8},
        "optimizer": {"name": "adam", "lr": {"loguniform": [1.0e-4, 3.0e-2]}},
        "batch_size": {"choice": [32, 64, 128]},
        "seed": 0,
    },
    "search": {"algorithm": "random", "num_samples": 10, "max_concurrent": 1, "seed": 0},
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3},
    "metric": "val_acc",
    "resources": {"cpu": 1, "gpu": 0},
    "checkpoint": {"every_epochs": 1, "keep": 1},
}
ASHA_RUNGS = {1, 3, 9}  # grace_period 1, reduction_factor 3, max_t 9

PBT_SWEEP: dict[str, Any] = {
    "name": "chaos-pbt",
    "dataset": {"name": "digits"},
    "train": {
        "epochs": 6,
        "model": {"name": "cnn", "depth": 1, "width": 8},
        "optimizer": {"name": "sgd", "lr": {"loguniform": [1.0e-3, 3.0e-1]}, "momentum": 0.9},
        "batch_size": {"choice": [32, 64, 128]},
        "seed": 0,
    },
    "search": {"algorithm": "random", "num_samples": 4, "seed": 0},
    "scheduler": {
        "name": "pbt",
        "perturbation_interval": 2,
        "mutate": ["optimizer.lr", "batch_size"],
    },
    "metric": "val_acc",
    "resources": {"cpu": 1, "gpu": 0},
    "checkpoint": {"every_epochs": 2, "keep": 3},
}

QUICK_ASHA: dict[str, Any] = {
    **ASHA_SWEEP,
    "train": {**ASHA_SWEEP["train"], "epochs": 3},
    "search": {**ASHA_SWEEP["search"], "num_samples": 3},
}
QUICK_RUNGS = {1, 3}

EVALUATION_LINE = "held-out test examples"  # tuning.final logs it once per evaluation
RESUME_LIMIT = 6  # resumes after the last kill before a chaos run counts as stuck


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="cnn-tune-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    scenarios = [
        ("asha", ASHA_SWEEP, ASHA_RUNGS, args.kills),
        ("pbt", PBT_SWEEP, set(), args.pbt_kills),
    ]
    if args.quick:
        scenarios = [("asha", QUICK_ASHA, QUICK_RUNGS, 1)]
    report: dict[str, Any] = {"seed": args.seed, "workdir": str(workdir), "scenarios": {}}
    for name, sweep, rungs, kills in scenarios:
        if kills:
            report["scenarios"][name] = run_scenario(name, sweep, rungs, kills, workdir, rng)
    print(format_table(report))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    identical = all(r["identical"] for s in report["scenarios"].values() for r in s["runs"])
    return 0 if identical else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="chaos runs of the asha sweep")
    parser.add_argument("--pbt-kills", type=int, default=4, help="chaos runs of the pbt sweep")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--quick", action="store_true", help="one kill of a tiny asha sweep")
    parser.add_argument("--workdir", help="where sweeps are written (default: a temp folder)")
    parser.add_argument("--output", help="write the results as JSON here")
    return parser


def run_scenario(
    name: str, sweep: dict[str, Any], rungs: set[int], kills: int, workdir: Path, rng: random.Random
) -> dict[str, Any]:
    """The reference run and `kills` chaos runs of one sweep, each killed once."""
    experiment = workdir / f"{name}.yaml"
    experiment.write_text(yaml.safe_dump(sweep))
    storage = workdir / name
    started = time.monotonic()
    reference_log = finish(["run", str(experiment), "--storage", str(storage), "--name", "ref"])
    duration = time.monotonic() - started
    reference = read_sweep(storage / "ref", reference_log)
    runs = []
    for index in range(kills):
        # Uniform over the whole life of a run, data loading and summary included.
        kill_after = round(rng.uniform(0.5, duration), 2)
        chaos = chaos_run(experiment, storage, f"chaos-{index:02d}", kill_after)
        kill_after = chaos["kill_after"]
        outcome = read_sweep(storage / f"chaos-{index:02d}", chaos["log"])
        differences = compare(reference, outcome, rungs, pbt=name == "pbt")
        runs.append(
            {
                "name": f"chaos-{index:02d}",
                "kill_after_s": kill_after,
                "state_at_kill": chaos["state_at_kill"],
                "resumes": chaos["resumes"],
                "evaluations": outcome["evaluations"],
                "wall_seconds": outcome["summary"]["wall_seconds"],
                "identical": not differences,
                "differences": differences,
            }
        )
        print(_row(name, runs[-1]), flush=True)
    return {
        "sweep": sweep,
        "reference_seconds": round(duration, 1),
        "reference_wall_seconds": reference["summary"]["wall_seconds"],
        "reference": {k: v for k, v in reference.items() if k != "rows"},
        "runs": runs,
    }


def cnn_tune(args: list[str]) -> subprocess.Popen:
    """`cnn-tune ARGS` in its own process group, output to a temp file (no pipe to fill)."""
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "tuning.cli", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    process.log = log  # type: ignore[attr-defined]
    return process


def output_of(process: subprocess.Popen) -> str:
    process.log.seek(0)  # type: ignore[attr-defined]
    return str(process.log.read())  # type: ignore[attr-defined]


def finish(args: list[str], timeout: float = 900) -> str:
    process = cnn_tune(args)
    if process.wait(timeout=timeout) != 0:
        raise RuntimeError(f"cnn-tune {' '.join(args)} failed:\n{output_of(process)[-3000:]}")
    return output_of(process)


def chaos_run(experiment: Path, storage: Path, name: str, kill_after: float) -> dict[str, Any]:
    """Run, kill -9 after `kill_after` s, then resume until the sweep has its summary.

    A run that finishes before `kill_after` is thrown away and started again with a kill
    moment drawn below its duration, so that every chaos run holds one real kill.
    """
    location = storage / name
    while True:
        process = cnn_tune(["run", str(experiment), "--storage", str(storage), "--name", name])
        started = time.monotonic()
        try:
            process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            break
        kill_after = round(random.Random(kill_after).uniform(0.5, time.monotonic() - started), 2)
        subprocess.run(["rm", "-rf", str(location)], check=True)
    state = state_of(location)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    log = output_of(process)
    resumes = 0
    while not (location / "summary.json").exists():
        if resumes >= RESUME_LIMIT:
            raise RuntimeError(f"{location} did not finish after {resumes} resumes:\n{log[-3000:]}")
        resumes += 1
        # Killed before it saved its experiment, the sweep is not there: run it again.
        saved = (location / "cnn-tune-experiment.yaml").exists()
        args = ["resume", str(location)] if saved else ["run", str(experiment), "--storage"]
        args += [] if saved else [str(storage), "--name", name]
        again = cnn_tune(args)
        again.wait(timeout=900)
        log += output_of(again)
    return {"log": log, "state_at_kill": state, "resumes": resumes, "kill_after": kill_after}


def state_of(location: Path) -> str:
    """What the sweep folder held when the kill came."""
    if (location / "summary.json").exists():
        return "summary written"
    if (location / "final").exists():
        return "final model / test evaluation"
    if not any(location.glob("experiment_state-*.json")):
        return (
            "no Tune state yet" if (location / "cnn-tune-experiment.yaml").exists() else "nothing"
        )
    rows = sum(len(epochs_of(p)) for p in location.glob("trial_*/progress.csv"))
    return f"mid-sweep ({rows} epoch rows)"


def epochs_of(progress: Path) -> list[int]:
    with progress.open() as f:
        return [int(row["training_iteration"]) for row in csv.DictReader(f)]


def read_sweep(location: Path, log: str) -> dict[str, Any]:
    """What a finished sweep decided, trials keyed by their index (ids differ per run)."""
    summary = json.loads((location / "summary.json").read_text())
    trials = {}
    for trial in summary["trials"]:
        index = trial["trial_id"].rsplit("_", 1)[-1]
        trials[index] = {
            "status": trial["status"],
            "epochs": trial["epochs"],
            "best": trial["best"],
            "tuned": trial["tuned"],
            "exploits": len(trial.get("lineage", [])),
        }
    rows = {
        p.parent.name.rsplit("_", 1)[-1]: epochs_of(p)
        for p in location.glob("trial_*/progress.csv")
    }
    return {
        "summary": {k: summary[k] for k in ("num_trials", "wall_seconds")},
        "winner": summary["best"]["trial_id"].rsplit("_", 1)[-1],
        "winner_score": summary["best"][summary["metric"]],
        "test_accuracy": summary["test"]["accuracy"],
        "trials": trials,
        "rows": rows,
        "evaluations": log.count(EVALUATION_LINE),
    }


def compare(
    reference: dict[str, Any], outcome: dict[str, Any], rungs: set[int], *, pbt: bool
) -> list[str]:
    """Every way `outcome` differs from `reference` (an empty list: identical)."""
    differences = []
    if outcome["evaluations"] != 1:
        differences.append(f"test split evaluated {outcome['evaluations']} times")
    if set(outcome["trials"]) != set(reference["trials"]):
        differences.append(f"trials {sorted(outcome['trials'])} vs {sorted(reference['trials'])}")
    for index, trial in outcome["trials"].items():
        rows = outcome["rows"].get(index, [])
        differences += _row_problems(index, rows, trial, pbt)
        if pbt:
            if trial["status"] != "completed":
                differences.append(f"trial {index}: {trial['status']} at {trial['epochs']}")
            continue
        expected = reference["trials"].get(index)
        if trial["status"] == "stopped_early" and trial["epochs"] not in rungs:
            differences.append(f"trial {index} stopped at epoch {trial['epochs']}, not a rung")
        if expected and (trial["status"], trial["epochs"]) != (
            expected["status"],
            expected["epochs"],
        ):
            differences.append(
                f"trial {index}: {trial['status']} at {trial['epochs']} vs "
                f"{expected['status']} at {expected['epochs']}"
            )
    if not pbt and (outcome["winner"], outcome["winner_score"], outcome["test_accuracy"]) != (
        reference["winner"],
        reference["winner_score"],
        reference["test_accuracy"],
    ):
        differences.append(
            f"winner {outcome['winner']} ({outcome['winner_score']}, test "
            f"{outcome['test_accuracy']}) vs {reference['winner']} ({reference['winner_score']}, "
            f"test {reference['test_accuracy']})"
        )
    return differences


def _row_problems(index: str, rows: list[int], trial: dict[str, Any], pbt: bool) -> list[str]:
    """Rows lost or duplicated: epochs run 1, 2, ..., changing course only at PBT exploits."""
    irregular = sum(1 for a, b in itertools.pairwise(rows) if b != a + 1)
    allowed = trial["exploits"] if pbt else 0
    if rows and rows[0] == 1 and rows[-1] == trial["epochs"] and irregular <= allowed:
        return []
    return [f"trial {index}: epoch rows {rows} (ran {trial['epochs']}, {allowed} exploits)"]


def _row(scenario: str, run: dict[str, Any]) -> str:
    verdict = "identical" if run["identical"] else "DIFFERS: " + "; ".join(run["differences"])
    return (
        f"{scenario:<5} {run['name']:<9} kill@{run['kill_after_s']:>6.1f}s "
        f"{run['state_at_kill']:<32} resumes {run['resumes']} evals {run['evaluations']} "
        f"wall {run['wall_seconds']:>6.1f}s  {verdict}"
    )


def format_table(report: dict[str, Any]) -> str:
    lines = ["", "scenario run       kill    state at kill                    ..."]
    for name, scenario in report["scenarios"].items():
        lines += [_row(name, run) for run in scenario["runs"]]
        same = sum(run["identical"] for run in scenario["runs"])
        lines.append(
            f"{name}: {same} of {len(scenario['runs'])} identical to the uninterrupted run "
            f"(reference {scenario['reference_seconds']} s, wall_seconds "
            f"{scenario['reference_wall_seconds']})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
