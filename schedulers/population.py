"""PBT and PB2 as cnn-tune runs them: a trial's last epoch is never exploited.

Ray's population-based schedulers look at every result that completes a perturbation
interval, the last epoch of a trial included. An exploit there restores the trial from
its donor's checkpoint with nothing left to train: the trial ends as a copy of the
donor, and its own last epoch, the one its progress and curves show, is gone from its
result. So at a trial's last planned epoch the population is left alone and the trial
simply ends; the donors it could have copied are still there for the trials that go on.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import TrialScheduler

from trainables import metrics as m


class LastEpochLeftAlone:
    """Mixin for Ray's PopulationBasedTraining (and PB2): no exploit at a last epoch."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        planned = trial.config.get("epochs")
        if isinstance(planned, int) and result.get(m.EPOCH, 0) >= planned:
            return TrialScheduler.CONTINUE  # the trial ends itself after this result
        return super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]
