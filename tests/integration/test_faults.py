"""A trial's process dies mid-sweep (SIGKILL, as the OOM killer or a lost node would do it):
Ray retries it from its last checkpoint, or, out of retries, the sweep records the error,
still finishes with the other trials' results, and shows the error in the report and in
TensorBoard's HParams view."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from ray import tune
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from tuning.experiment import validate_experiment
from tuning.report import write_report
from tuning.report.data import STATUS_LABELS
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
    return outcome, trial


def test_a_killed_trial_is_retried_from_its_checkpoint_and_finishes(
    ray_two_cpus, small_experiment, tmp_path
):
    outcome, killed = sweep_with_a_killed_trial(small_experiment, tmp_path, max_failures=1)
    summary = outcome.summary

    assert summary["num_errored"] == 0
    assert killed["status"] == "completed" and killed["epochs"] == EPOCHS
    assert all(t["epochs"] == EPOCHS for t in summary["trials"])


def test_a_killed_trial_out_of_retries_is_recorded_and_the_sweep_still_finishes(
    ray_two_cpus, small_experiment, tmp_path
):
    outcome, killed = sweep_with_a_killed_trial(small_experiment, tmp_path, max_failures=0)
    summary = outcome.summary

    assert summary["num_errored"] == 1 and summary["num_trials"] == 3
    assert killed["status"] == "error" and killed["error"]
    assert killed["epochs"] == KILL_AT_EPOCH  # its finished epochs are kept
    assert summary["best"]["trial_id"] != killed["trial_id"]
    assert summary["test"]["evaluations"] == 1

    html = write_report(outcome.experiment_dir).read_text()
    leaderboard = html.split("<h2>Leaderboard</h2>", 1)[1].split("<h2>", 1)[0]
    (row,) = [r for r in leaderboard.split("<tr") if killed["trial_id"] in r]
    assert STATUS_LABELS["error"] in row and "status-error" in row

    run = EventAccumulator(str(outcome.experiment_dir / f"trial_{killed['trial_id']}"))
    run.Reload()
    assert [e.step for e in run.Scalars("val_acc")] == list(range(1, KILL_AT_EPOCH + 1))
    content = run.PluginTagToContent(metadata.PLUGIN_NAME)
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_FAILURE
