"""A real Optuna + ASHA sweep on a real 2-CPU Ray: what Optuna was told about each trial,
and the same after Ctrl-C and `cnn-tune resume`.

The searcher Tune saved with the experiment is read back with Ray's own
`Searcher.restore_from_dir`, and its study compared with the summary.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tuning.experiment import SearchSettings, validate_experiment
from tuning.runner import run_sweep
from tuning.searchers import TRIAL_ID_ATTR, build_searcher
from tuning.searchers_optuna import EpochwiseOptunaSearch

pytestmark = pytest.mark.integration

EPOCHS = 4
TRIALS = 6


@pytest.fixture(scope="module")
def optuna_sweep(ray_two_cpus, small_experiment, tmp_path_factory):
    """Optuna + ASHA over lr, including learning rates too small to learn anything."""
    raw = small_experiment(
        search={"algorithm": "optuna", "num_samples": TRIALS, "initial_points": 3, "seed": 1},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    raw["train"]["epochs"] = EPOCHS
    raw["train"]["model"] = {"name": "cnn", "depth": 2, "width": 16}
    raw["train"]["optimizer"]["lr"] = {"loguniform": [1.0e-6, 3.0e-2]}
    storage = tmp_path_factory.mktemp("runs")
    return run_sweep(validate_experiment(raw), storage=str(storage), name="optuna")


def saved_searcher(experiment_dir: Path) -> EpochwiseOptunaSearch:
    searcher = build_searcher(SearchSettings(algorithm="optuna"))
    assert isinstance(searcher, EpochwiseOptunaSearch)
    searcher.restore_from_dir(str(experiment_dir))
    return searcher


def assert_optuna_was_told_how_each_trial_ended(
    summary: dict, experiment_dir: Path, trials: int = TRIALS
) -> None:
    assert summary["num_trials"] == trials and summary["num_errored"] == 0
    study = saved_searcher(experiment_dir).study
    assert study is not None and study.direction.name == "MAXIMIZE"
    told = {t.user_attrs[TRIAL_ID_ATTR]: t for t in study.trials}
    assert len(told) == len(study.trials) == trials
    assert set(told) == {t["trial_id"] for t in summary["trials"]}
    states = {}
    for trial in summary["trials"]:
        optuna_trial = told[trial["trial_id"]]
        states[trial["status"]] = optuna_trial.state.name
        # Every epoch it trained, the one ASHA stopped it on included, at step = epoch.
        assert sorted(optuna_trial.intermediate_values) == list(range(1, trial["epochs"] + 1))
        if trial["status"] == "stopped_early":
            assert optuna_trial.state.name == "PRUNED" and trial["epochs"] < EPOCHS
        else:
            assert trial["status"] == "completed" and trial["epochs"] == EPOCHS
            assert optuna_trial.state.name == "COMPLETE"
            assert optuna_trial.value == optuna_trial.intermediate_values[EPOCHS]
    # Which trials ASHA stops depends on the order results arrive in; the pruned path is
    # also driven directly in tests/tuning/test_searchers.py.
    assert states.get("completed") == "COMPLETE", states
    assert states.get("stopped_early", "PRUNED") == "PRUNED", states


def test_interrupted_optuna_sweep_resumes_with_its_study(tmp_path, small_experiment):
    raw = small_experiment(
        search={"algorithm": "optuna", "num_samples": 6, "initial_points": 3, "seed": 2},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    raw["train"].update(epochs=EPOCHS, batch_size={"choice": [4, 8]})  # epochs of ~1 s
    raw["train"]["model"] = {"name": "cnn", "depth": 2, "width": 16}
    raw["train"]["optimizer"]["lr"] = {"loguniform": [1.0e-6, 3.0e-2]}
    experiment_file = tmp_path / "sweep.yaml"
    experiment_file.write_text(yaml.safe_dump(raw))
    experiment_dir = tmp_path / "runs" / "s"

    run = cnn_tune("run", str(experiment_file), "--storage", str(tmp_path / "runs"), "--name", "s")
    deadline = time.monotonic() + 240
    # Two trials run at once: once a third has saved a checkpoint, one has ended.
    while run.poll() is None and len(trials_with_a_checkpoint(experiment_dir)) < 3:
        assert time.monotonic() < deadline, "no third trial trained in time"
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 1, err
    assert not (experiment_dir / "summary.json").exists()

    resume = cnn_tune("resume", str(experiment_dir))
    _, err = resume.communicate(timeout=400)

    assert resume.returncode == 0, err
    summary = json.loads((experiment_dir / "summary.json").read_text())
    # One Optuna trial per Tune trial, none left running: the trials interrupted mid-way
    # went on reporting to the Optuna trials the saved study already had.
    assert_optuna_was_told_how_each_trial_ended(summary, experiment_dir, trials=6)


def trials_with_a_checkpoint(experiment_dir: Path) -> set[str]:
    """Trial folders holding a checkpoint (saved in the storage at once, unlike
    progress.csv, which Tune copies there from its staging folder now and then)."""
    return {path.parent.name for path in experiment_dir.glob("trial_*/checkpoint_*")}


def cnn_tune(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tuning.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# After the subprocess test: the fixture's Ray would otherwise run beside the CLI's own.
def test_optuna_sweep_tells_each_trial_how_it_ended_with_every_epoch(optuna_sweep):
    assert_optuna_was_told_how_each_trial_ended(optuna_sweep.summary, optuna_sweep.experiment_dir)


def test_optuna_sweep_trains_the_configs_it_proposes(optuna_sweep):
    # Learning rates near 1e-6 stay at chance (0.1); the best proposal learns.
    assert optuna_sweep.summary["best"]["val_acc"] > 0.5
