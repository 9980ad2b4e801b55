"""Schedulers that remember each decision, so a resumed sweep repeats them exactly.

After `kill -9`, Tune restores every unfinished trial from its last registered checkpoint,
and the trial reports again the epochs it trained after it. The scheduler state saved
with the sweep (schedulers.snapshot) has already seen those results; fed to it a second
time, ASHA would let through a trial it had stopped (the rung is already recorded) and
the median rule would count a result twice. So each scheduler here records the decision
it took on every result of every trial, and answers a result it has already decided
with the same decision, without looking at it again. Results it has not seen go to
Ray's algorithm unchanged.

A trial's results are counted in the order Tune delivers them, which is the order of
the rows of its progress.csv (Tune's duplicate "done" result, which writes no row, is
not counted). `rewind` sets a trial's count back to the results it will not report
again, those up to its checkpoint.
"""

from __future__ import annotations

from typing import Any

from ray.tune.result import RESULT_DUPLICATE
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
)

from schedulers.population import LastEpochLeftAlone


class ReplayGuard:
    """Mixin for a Ray TrialScheduler: one recorded decision per result of each trial.

    State, all keyed by trial id and saved with the scheduler:
      - `_decisions`: the decision taken on each result, in order;
      - `_results_seen`: the results received in this run of the trial (its restart
        point plus those reported since);
      - `_checkpoint_changes`: (results seen, checkpoint path) each time the trial's
        checkpoint was found changed at a result, to find its restart point later.
    """

    def _replay_state(self) -> tuple[dict, dict, dict]:
        state = self.__dict__
        return (
            state.setdefault("_decisions", {}),
            state.setdefault("_results_seen", {}),
            state.setdefault("_checkpoint_changes", {}),
        )

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if RESULT_DUPLICATE in result:  # Tune's end-of-trial echo: no row, not counted
            return super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]
        decisions, seen, changes = self._replay_state()
        trial_id = trial.trial_id
        index = seen.get(trial_id, 0)
        _note_checkpoint(changes.setdefault(trial_id, []), index, _checkpoint_path(trial))
        seen[trial_id] = index + 1
        recorded = decisions.setdefault(trial_id, [])
        if index < len(recorded):
            return str(recorded[index])  # decided before the sweep was interrupted
        decision = super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]
        recorded.append(decision)
        return decision

    def restart_point(self, trial: Any) -> int:
        """How many of `trial`'s results precede its current checkpoint (0 without one).

        A checkpoint first seen when result i arrived was registered after result i-1
        (a save, or a PBT exploit): the trial restarts after i results. One not seen at
        any result came after the last result.
        """
        _, seen, changes = self._replay_state()
        path = _checkpoint_path(trial)
        if path is None:
            return 0
        for index, seen_path in changes.get(trial.trial_id, []):
            if seen_path == path:
                return int(index)
        return int(seen.get(trial.trial_id, 0))

    def results_seen(self, trial_id: str) -> int:
        """The trial's results received so far (after a rewind: from its restart point)."""
        return int(self._replay_state()[1].get(trial_id, 0))

    def rewind(self, trial_id: str, results_kept: int) -> None:
        """The trial restarts after `results_kept` results: later ones come again."""
        _, seen, changes = self._replay_state()
        seen[trial_id] = results_kept
        changes[trial_id] = [c for c in changes.get(trial_id, []) if c[0] <= results_kept]

    def decisions_of(self, trial_id: str) -> list[str]:
        """The decisions taken on the trial's results so far, in order."""
        return list(self._replay_state()[0].get(trial_id, []))


def _note_checkpoint(changes: list[tuple[int, str | None]], index: int, path: str | None) -> None:
    if not changes or changes[-1][1] != path:
        changes.append((index, path))


def _checkpoint_path(trial: Any) -> str | None:
    checkpoint = trial.checkpoint
    return None if checkpoint is None else str(checkpoint.path)


class ResumableFIFO(ReplayGuard, FIFOScheduler):
    """FIFOScheduler that records its decisions (see ReplayGuard)."""


class ResumableASHA(ReplayGuard, ASHAScheduler):
    """ASHAScheduler that records its decisions (see ReplayGuard)."""


class ResumableHyperBand(ReplayGuard, HyperBandScheduler):
    """HyperBandScheduler that records its decisions (see ReplayGuard)."""


class ResumableMedianStopping(ReplayGuard, MedianStoppingRule):
    """MedianStoppingRule that records its decisions (see ReplayGuard)."""


class ResumablePBT(ReplayGuard, LastEpochLeftAlone, PopulationBasedTraining):
    """PopulationBasedTraining that records its decisions (see ReplayGuard) and leaves a
    trial's last epoch alone (schedulers.population)."""


def __getattr__(name: str) -> Any:
    # ResumablePB2 lives in schedulers.replay_pb2 (PB2 imports scikit-learn, a second of
    # start-up that only PB2 sweeps should pay); sweeps saved before it moved find it here.
    if name == "ResumablePB2":
        from schedulers.replay_pb2 import ResumablePB2

        return ResumablePB2
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
