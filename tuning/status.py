"""How a trial ended (or where it stands): the one list of statuses, and their spelling.

summary.json, the report and the CLI use these values. A trial stopped by its own
patience (`train.early_stopping`) is `patience_stopped`; sweeps written before that
name say `early_stopped`, which `TrialStatus.read` still understands, so it cannot be
confused with `stopped_early`, a trial the scheduler stopped.
"""

from __future__ import annotations

from enum import Enum


class TrialStatus(str, Enum):
    """A trial's status. Members compare and hash equal to their values, so they work
    as dict keys next to the plain strings read back from summary.json (each member's
    name is its value: Enum hashes a member by its name)."""

    completed = "completed"  # ran every epoch
    stopped_early = "stopped_early"  # the scheduler (ASHA, median, HyperBand) stopped it
    patience_stopped = "patience_stopped"  # its own early stopping ran out of patience
    diverged = "diverged"  # a loss became NaN or infinite; it ended itself
    infeasible = "infeasible"  # did not fit its memory share; see the trial's error
    error = "error"  # raised, and Ray's retries ran out
    running = "running"  # the rest: a sweep still running
    paused = "paused"
    pending = "pending"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def read(cls, text: str) -> TrialStatus:
        """The status named `text`, also in the spelling of older sweeps."""
        return cls(_RENAMED.get(text, text))

    @property
    def can_win(self) -> bool:
        """Whether a trial that ended like this may be the sweep's best."""
        return self in _CAN_WIN


_RENAMED = {"early_stopped": "patience_stopped"}  # before 2026-12
_CAN_WIN = {TrialStatus.completed, TrialStatus.stopped_early, TrialStatus.patience_stopped}
