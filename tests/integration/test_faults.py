"""A trial's process dies mid-sweep (SIGKILL, as the OOM killer or a lost node would do it):
Ray retries it from its last checkpoint, or, out of retries, the sweep records the error
and still finishes with the other trials' results."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from ray import tune

from tuning.experiment import validate_experiment
from tuning.runner import run_sweep

pytestmark = pytest.mark.integration

EPOCHS = 4
KILL_AT_EPOCH = 2


class KillOneTrialProcess(tune.Callback):
    """Kills the process training the first trial to report epoch KILL_AT_EPOCH, once."""

    def __init__(self) -> None:
        self.killed: str | None = None

    def on_trial_result(self, iteration, trials, trial, result: dict[str, Any], **info):
        if self.killed is None and result.get("epoch") == KILL_AT_EPOCH:
            self.killed = trial.trial_id
            os.kill(int(result["pid"]), signal.SIGKILL)


def sweep_with_a_killed_trial(small_experiment, storage, max_failures: int):
    raw = small_experiment(
        search={"algorithm": "random", "num_samples": 3, "seed": 0},
        checkpoint={"every_epochs": 1, "keep": 1},
        max_failures=max_failures,
    )
    raw["train"]["epochs"] = EPOCHS
    killer = KillOneTrialProcess()
    outcome = run_sweep(
        validate_experiment(raw),
        storage=str(storage),
        name=f"killed-{max_failures}",
        callbacks=[killer],
    )
    assert killer.killed is not None, "no trial reached the epoch to kill it at"
    trial = next(t for t in outcome.summary["trials"] if t["trial_id"] == killer.killed)
    return outcome.summary, trial


def test_a_killed_trial_is_retried_from_its_checkpoint_and_finishes(
    ray_two_cpus, small_experiment, tmp_path
):
    summary, killed = sweep_with_a_killed_trial(small_experiment, tmp_path, max_failures=1)

    assert summary["num_errored"] == 0
    assert killed["status"] == "completed" and killed["epochs"] == EPOCHS
    assert all(t["epochs"] == EPOCHS for t in summary["trials"])


def test_a_killed_trial_out_of_retries_is_recorded_and_the_sweep_still_finishes(
    ray_two_cpus, small_experiment, tmp_path
):
    summary, killed = sweep_with_a_killed_trial(small_experiment, tmp_path, max_failures=0)

    assert summary["num_errored"] == 1 and summary["num_trials"] == 3
    assert killed["status"] == "error" and killed["error"]
    assert killed["epochs"] == KILL_AT_EPOCH  # its finished epochs are kept
    assert summary["best"]["trial_id"] != killed["trial_id"]
    assert summary["test"]["evaluations"] == 1
