"""The scheduler state a resumed sweep gets back: recorded decisions, pickled with its trials.

These use Ray's own ASHA and Tune Trial objects; the end-to-end check against a real
kill -9 is tests/test_scripts.py's chaos test.
"""

from __future__ import annotations

import pickle

import pytest
from pydantic import TypeAdapter
from ray.train._internal.checkpoint_manager import _TrainingResult
from ray.tune import Checkpoint
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from schedulers import SchedulerSettings, build_scheduler
from schedulers.snapshot import dumps_with_trial_ids, forget_checkpoint, loads_with_trials

settings_of = TypeAdapter(SchedulerSettings).validate_python


def asha_with_trials(count: int):
    asha = build_scheduler(
        settings_of({"name": "asha", "grace_period": 1, "reduction_factor": 3}),
        max_epochs=9,
        param_space={},
    )
    asha.set_search_properties("val_acc", "max")
    trials = [Trial("trainable", stub=True, trial_id=f"t{i}") for i in range(count)]
    for trial in trials:
        asha.on_trial_add(None, trial)
    return asha, trials


def report(scheduler, trial, epoch: int, val_acc: float) -> str:
    return scheduler.on_trial_result(None, trial, {"training_iteration": epoch, "val_acc": val_acc})


def test_replay_guard_repeats_the_decision_on_a_result_reported_again():
    asha, (first, second) = asha_with_trials(2)
    assert report(asha, first, 1, 0.9) == TrialScheduler.CONTINUE
    assert report(asha, second, 1, 0.1) == TrialScheduler.STOP

    asha.rewind(second.trial_id, 0)  # restored from before its first epoch

    # Ray's ASHA alone would let it through: its rung already holds the trial.
    assert report(asha, second, 1, 0.95) == TrialScheduler.STOP
    assert asha.decisions_of(second.trial_id) == [TrialScheduler.STOP]


def test_replay_guard_asks_the_algorithm_about_results_it_has_not_seen():
    asha, (first, second) = asha_with_trials(2)
    report(asha, first, 1, 0.5)
    asha.rewind(first.trial_id, 1)

    assert report(asha, second, 1, 0.1) == TrialScheduler.STOP
    assert report(asha, first, 2, 0.6) == TrialScheduler.CONTINUE
    assert asha.decisions_of(first.trial_id) == [TrialScheduler.CONTINUE] * 2


def test_restart_point_is_zero_for_a_trial_without_a_checkpoint():
    asha, (trial,) = asha_with_trials(1)
    report(asha, trial, 1, 0.5)
    assert asha.restart_point(trial) == 0


def test_snapshot_round_trip_keeps_rungs_and_resolves_trials_by_id():
    asha, trials = asha_with_trials(3)
    report(asha, trials[0], 1, 0.9)
    blob = dumps_with_trial_ids(asha)
    restored_trials = [Trial("trainable", stub=True, trial_id=t.trial_id) for t in trials]

    restored = loads_with_trials(blob, restored_trials)

    # The rung recorded before the save decides for a trial seen after it, in both.
    assert report(restored, restored_trials[1], 1, 0.1) == TrialScheduler.STOP
    assert report(asha, trials[1], 1, 0.1) == TrialScheduler.STOP


def test_snapshot_maps_state_keyed_by_trial_objects_to_the_restored_trials():
    # HyperBand, the median rule and PBT key their state by Trial object, not by id.
    trial = Trial("trainable", stub=True, trial_id="t0")
    restored_trial = Trial("trainable", stub=True, trial_id="t0")

    restored = loads_with_trials(dumps_with_trial_ids({trial: [0.5]}), [restored_trial])

    assert restored == {restored_trial: [0.5]}
    assert next(iter(restored)) is restored_trial


def test_snapshot_refuses_a_trial_that_the_restored_state_lacks():
    _, trials = asha_with_trials(1)
    blob = dumps_with_trial_ids({"trial": trials[0]})
    with pytest.raises(pickle.UnpicklingError, match="does not hold"):
        loads_with_trials(blob, [])


def test_forget_checkpoint_leaves_a_trial_that_tune_starts_from_scratch(tmp_path):
    # Couples to Ray: the attribute PBT sets to hand a trial a checkpoint.
    trial = Trial("trainable", stub=True, trial_id="t0")
    trial.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(
        checkpoint=Checkpoint(str(tmp_path)), metrics={"training_iteration": 3}
    )
    assert trial.checkpoint is not None

    forget_checkpoint(trial)

    assert trial.checkpoint is None and trial.latest_checkpoint_result is None
