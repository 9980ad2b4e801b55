"""Which checkpoints a sweep keeps: what resume, the schedulers and the final model need.

Ray's own retention, `CheckpointConfig(num_to_keep=k)`, deletes a trial's older
checkpoints itself, and forces a snapshot of the whole experiment state (which grows with
the number of trials) whenever a trial has checkpointed k times since the last one: with
short trials that is nearly every checkpoint, so each trial costs more the larger the
sweep, and Ray warns about it each time. cnn-tune keeps retention out of Ray
(`num_to_keep=None`, so snapshots come at Ray's own pace) and deletes here instead:

- a running (or paused) trial keeps its latest checkpoint, which resume, HyperBand's
  pauses and restarts after a failure continue from, and its `keep` best by the metric,
  from which the final model may come;
- an ended trial keeps those while it can still be the sweep's best trial (or one of the
  `final.reevaluate.top_k` best); once enough ended trials score strictly better, or it
  diverged, could not fit in memory or broke an outcome constraint (tuning.tradeoffs),
  its checkpoints go. An errored trial keeps its
  latest: `cnn-tune resume` retries it.

A checkpoint let go leaves Ray's record of its trial at once, so that record (in the
driver and in each experiment snapshot) holds at most `keep` + 1 checkpoints a trial
however many epochs it trains; its folder is deleted only at the second experiment
snapshot after that, so the state Tune saved by then names newer ones. A kill that still
finds a deleted one named is handled by schedulers.snapshot (that trial trains from
epoch 1).

PBT is the exception: it hands trials each other's checkpoints, so its sweeps keep Ray's
own retention (a population is small, so its snapshots are cheap).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ray import tune

from trainables import metrics as m
from tuning.tradeoffs import Constraint

logger = logging.getLogger(__name__)


@dataclass
class _Kept:
    """One checkpoint of a trial, with the trial's metric at the epoch it was saved."""

    checkpoint: tune.Checkpoint
    score: float  # the metric, sign-flipped for mode=min: higher is better; -inf if unusable
    order: int  # the how-manyth checkpoint of its trial: ties go to the earlier one


@dataclass
class _TrialCheckpoints:
    kept: list[_Kept] = field(default_factory=list)
    best: float = -math.inf  # the trial's best score over every result, checkpointed or not
    # What its constraints are judged on: training metrics at its best result, the
    # footprint at its latest (None in the state of sweeps saved before constraints).
    values: dict[str, Any] | None = None


class CheckpointRetention(tune.Callback):
    """Deletes the checkpoints a sweep can no longer need (see the module docstring)."""

    _constraints: tuple[Constraint, ...] = ()  # also for callbacks pickled before they existed

    def __init__(
        self,
        metric: str,
        mode: str,
        keep: int,
        winners: int = 1,
        constraints: tuple[Constraint, ...] = (),
    ) -> None:
        """`winners`: how many of the best trials the final step looks at (1, or
        `final.reevaluate.top_k`); their checkpoints are kept. A trial that breaks one of
        the `constraints` cannot win, so it neither keeps its own nor displaces others."""
        self._constraints = tuple(constraints)
        self._metric = metric
        self._sign = 1.0 if mode == "max" else -1.0
        self._keep = keep
        self._winners = winners
        self._trials: dict[str, _TrialCheckpoints] = {}  # running or paused trials
        # Ended trials that may still be among the best `winners` (ties included).
        self._contenders: dict[str, _TrialCheckpoints] = {}
        self._unneeded: list[tune.Checkpoint] = []  # since the last experiment snapshot
        self._to_delete: list[tune.Checkpoint] = []  # before it: deleted at the next one
        # Deleting takes the driver ~1 ms per file: a thread does it, off Tune's loop.
        self._deleter: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ Tune's hooks

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        record = self._trials.setdefault(trial.trial_id, _TrialCheckpoints())
        score = self._score(result)
        if self._constraints:
            self._remember_values(record, result, improved=score > record.best)
        record.best = max(record.best, score)

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: tune.Checkpoint, **info: Any
    ) -> None:
        record = self._trials.setdefault(trial.trial_id, _TrialCheckpoints())
        if any(kept.checkpoint.path == checkpoint.path for kept in record.kept):
            return  # a pause saves the checkpoint the trial last reported again
        # Tune updates the trial's last result before it registers that result's checkpoint.
        score = self._score(trial.last_result)
        record.kept.append(_Kept(checkpoint, score, len(record.kept)))
        keep = set(map(id, best_first(record.kept[:-1])[: self._keep]))
        keep.add(id(record.kept[-1]))  # the latest
        self._let_go(record, [kept for kept in record.kept if id(kept) not in keep], trial)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self._trials.pop(trial.trial_id, None)
        if record is None:
            return
        last = trial.last_result
        if (
            last.get(m.DIVERGED)
            or last.get(m.INFEASIBLE)
            or record.best == -math.inf
            or self._breaks_a_constraint(record)
        ):
            self._let_go(record, list(record.kept), trial)  # never the best trial
            return
        self._contenders[trial.trial_id] = record
        bests = sorted((other.best for other in self._contenders.values()), reverse=True)
        # The `winners` best ended trials may still win, and any tied with the last of them.
        threshold = bests[self._winners - 1] if len(bests) >= self._winners else -math.inf
        losers = [key for key, other in self._contenders.items() if other.best < threshold]
        by_id = {t.trial_id: t for t in trials} if losers else {}
        for trial_id in losers:
            other = self._contenders.pop(trial_id)
            self._let_go(other, list(other.kept), by_id[trial_id])

    def get_state(self) -> dict[str, Any]:
        # Tune calls this as it snapshots the experiment: what stopped being needed before
        # the previous snapshot is named by neither, so it goes now.
        self._delete(self._to_delete)
        self._to_delete, self._unneeded = self._unneeded, []
        return {
            "trials": self._trials,
            "contenders": self._contenders,
            "to_delete": self._to_delete,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._trials = state["trials"]
        self._contenders = state["contenders"]
        self._to_delete = state["to_delete"]
        self._unneeded = []

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Every trial has ended: nothing unneeded can be restored from any more.
        self._delete(self._to_delete + self._unneeded)
        self._to_delete, self._unneeded = [], []
        if self._deleter is not None:
            self._deleter.shutdown(wait=True)  # done before the final model is looked for
            self._deleter = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_deleter"] = None  # a thread does not pickle; the next one starts its own
        return state

    # ------------------------------------------------------------------ helpers

    def _score(self, result: dict[str, Any]) -> float:
        value = result.get(self._metric)
        if result.get(m.DIVERGED) or result.get(m.INFEASIBLE):
            return -math.inf
        if not isinstance(value, int | float) or not math.isfinite(value):
            return -math.inf
        return self._sign * float(value)

    def _remember_values(
        self, record: _TrialCheckpoints, result: dict[str, Any], improved: bool
    ) -> None:
        values = record.values if record.values is not None else {}
        names = m.OPTIMIZABLE if improved or record.values is None else ()
        values.update({k: result[k] for k in names if k in result})
        values.update({k: result[k] for k in m.FOOTPRINT_METRICS if k in result})
        record.values = values

    def _breaks_a_constraint(self, record: _TrialCheckpoints) -> bool:
        if not self._constraints or record.values is None:
            return False  # nothing known to judge by: kept, as before constraints
        return any(c.broken_by(record.values) is not None for c in self._constraints)

    def _let_go(self, record: _TrialCheckpoints, unneeded: list[_Kept], trial: Any) -> None:
        for kept in unneeded:
            record.kept.remove(kept)
            self._unneeded.append(kept.checkpoint)
        _forget_in_ray(trial, {kept.checkpoint.path for kept in unneeded})

    def _delete(self, checkpoints: list[tune.Checkpoint]) -> None:
        if not checkpoints:
            return
        if self._deleter is None:
            self._deleter = ThreadPoolExecutor(1, thread_name_prefix="cnn-tune-retention")
        self._deleter.submit(_delete_now, list(checkpoints))


def _forget_in_ray(trial: Any, paths: set[str]) -> None:
    """Take checkpoints let go out of Ray's record of `trial`.

    Without `num_to_keep`, Ray's checkpoint manager lists every checkpoint a trial ever
    reported, in the driver and in every experiment snapshot: a trial of E epochs would
    carry E entries long after their folders are gone (the state grew by 23 KiB a trial
    at 12 epochs). Ray has no public way to drop one: `_checkpoint_results` is the list
    its own `num_to_keep` prunes (tests/integration/test_sweeps.py checks the saved
    state). The latest stays Ray's `trial.checkpoint`, as it is with Ray's retention.
    """
    manager = trial.run_metadata.checkpoint_manager
    if not paths or manager is None:
        return
    manager._checkpoint_results = [
        result for result in manager._checkpoint_results if result.checkpoint.path not in paths
    ]
    trial.run_metadata.invalidate_cache()  # the JSON Ray caches for its snapshots


def _delete_now(checkpoints: list[tune.Checkpoint]) -> None:
    for checkpoint in checkpoints:
        filesystem = checkpoint.filesystem
        assert filesystem is not None  # Tune's checkpoints always know their filesystem
        try:
            filesystem.delete_dir(checkpoint.path)
        except FileNotFoundError:
            pass
        except OSError as error:  # a full or read-only store must not end the sweep
            logger.warning("could not delete checkpoint %s: %s", checkpoint.path, error)


def best_first(kept: list[_Kept]) -> list[_Kept]:
    """Highest score first; among equal scores, the earlier checkpoint first (as Ray's
    `Result.get_best_checkpoint` picks)."""
    return sorted(kept, key=lambda k: (-k.score, k.order))
