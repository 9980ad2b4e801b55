"""Two small Tune hooks the runner adds to every sweep: a stopper and an end tracker."""

from __future__ import annotations

from typing import Any, ClassVar

from ray import tune

from trainables import metrics as m


class TrialEndedItself(tune.Stopper):
    """Stops a trial on the epoch it reports diverged, early-stopped or infeasible.

    The trial's own loop ends there anyway, but Ray hands each result to the scheduler
    before it notices; a Stopper decides first, so PBT never exploits into (or from) a
    trial that just diverged, and the searcher gets that result as the trial's last.
    """

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return bool(
            result.get(m.DIVERGED) or result.get(m.EARLY_STOPPED) or result.get(m.INFEASIBLE)
        )

    def stop_all(self) -> bool:
        return False


class TrialsEndedThisRun(tune.Callback):
    """Records every trial Tune completes, stops or fails for good in this driver process.

    Tune calls these hooks only for trials that really ended; after Ctrl-C it terminates
    the others without them. The ids go to a class attribute because `cnn-tune resume`
    runs the callback that Tune unpickles from the sweep, not one made here; a process
    fits one sweep at a time, and `_fit_and_summarize` clears it first.
    """

    ended: ClassVar[set[str]] = set()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        TrialsEndedThisRun.ended.add(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        TrialsEndedThisRun.ended.add(trial.trial_id)
