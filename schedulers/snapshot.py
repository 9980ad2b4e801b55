"""Save the trial scheduler with Tune's experiment state, and put it back on resume.

Ray 2.60 saves the searcher and the callbacks with each experiment checkpoint, but not
the scheduler (Ray issue #30838): a resumed ASHA starts with empty rungs, HyperBand with
empty brackets, the median rule with no history and PBT with no population. Here a Tune
callback does it. Its state, which Tune saves in the same instant as the trials' states,
is the scheduler pickled whole; on resume it is unpickled into the scheduler object Tune
runs, before Tune hands the scheduler anything.

The coupling to Ray's internals, said once (tests/schedulers/test_snapshot.py breaks if
it changes):
  - Tune keeps the scheduler object given in TuneConfig; tuner.pkl pickles it together
    with this callback, so after `Tuner.restore` both still name the same object;
  - a scheduler's state is its `__dict__`, which holds Tune `Trial` objects (HyperBand,
    the median rule and PBT key their state by trial): they are pickled by trial id and
    resolved to the restored trials;
  - Tune calls `on_step_begin` first in each step, before it starts, restores or feeds
    results of any trial, so the scheduler and the trial logs are put back in time.

On resume it also rolls each trial's progress.csv back to the trial's restart point (its
checkpoint): the rows after it are trained and written again, so keeping them would
duplicate epochs. A trial folder the saved state does not know (a trial created after
the last save) is deleted: the restored searcher creates that trial again.
"""

from __future__ import annotations

import csv
import io
import logging
import pickle
import time
from typing import Any, ClassVar

from pyarrow import fs as pafs
from ray import cloudpickle
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.result import EXPR_PROGRESS_FILE
from ray.tune.schedulers import TrialScheduler

from schedulers.replay import ReplayGuard

logger = logging.getLogger(__name__)

PROGRESS_FILE = EXPR_PROGRESS_FILE  # Tune's CSVLoggerCallback: one row per reported result


class SchedulerSnapshot(Callback):
    """Saves `scheduler` with every experiment checkpoint and restores it on resume.

    It also keeps the sweep's clock: `earlier_seconds` is the time the runs before this
    one spent in Tune (each killed run counted up to its last saved state). It is a class
    attribute because `cnn-tune resume` runs the callback Tune unpickles from the sweep.
    """

    earlier_seconds: ClassVar[float] = 0.0

    def __init__(self, scheduler: TrialScheduler) -> None:
        self._scheduler = scheduler
        self._saved_scheduler: bytes | None = None  # set on restore, used on the first step
        self._earlier = 0.0
        self._started = time.monotonic()

    def setup(self, *args: Any, **info: Any) -> None:
        self._started = time.monotonic()

    def get_state(self) -> dict[str, Any]:
        return {
            "scheduler": dumps_with_trial_ids(self._scheduler),
            "seconds": self._earlier + time.monotonic() - self._started,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._saved_scheduler = state["scheduler"]
        self._earlier = float(state.get("seconds", 0.0))
        SchedulerSnapshot.earlier_seconds = self._earlier
        self._started = time.monotonic()

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if self._saved_scheduler is None:
            return
        try:
            saved = loads_with_trials(self._saved_scheduler, trials)
        except pickle.UnpicklingError as error:
            # Only a kill in the milliseconds Tune copies its state files gets here.
            logger.warning("the scheduler starts afresh: %s", error)
            return
        finally:
            self._saved_scheduler = None
        self._scheduler.__dict__.clear()
        self._scheduler.__dict__.update(saved.__dict__)
        roll_back_trial_logs(self._scheduler, trials)
        logger.info("restored %s's state of %d trials", type(saved).__name__, len(trials))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_saved_scheduler"] = None  # tuner.pkl holds the setup, not a restore
        return state


def roll_back_trial_logs(scheduler: TrialScheduler, trials: list[Trial]) -> None:
    """Cut each trial's progress.csv to the rows it will not report again; drop orphans.

    A finished trial keeps every row. An unfinished one keeps the rows up to its
    checkpoint, and the scheduler is told to expect the rest again.
    """
    if not trials:
        return
    guard = scheduler if isinstance(scheduler, ReplayGuard) else None
    for trial in trials:
        if guard is None:
            continue
        if trial.status == Trial.TERMINATED:
            kept = guard.results_seen(trial.trial_id)
        elif trial.checkpoint is not None and not checkpoint_exists(trial.checkpoint):
            forget_checkpoint(trial)
            kept = 0
        else:
            kept = guard.restart_point(trial)
        guard.rewind(trial.trial_id, kept)
        _truncate_progress(trial, kept)
    _delete_unknown_trial_folders(trials)


def checkpoint_exists(checkpoint: Any) -> bool:
    """Whether a Tune checkpoint's folder is still there (retention may have deleted it)."""
    return bool(
        checkpoint.filesystem.get_file_info(checkpoint.path).type == pafs.FileType.Directory
    )


def forget_checkpoint(trial: Trial) -> None:
    """Make `trial` start again from its first epoch: its saved checkpoint was deleted.

    Tune deletes a trial's older checkpoints (CheckpointConfig.num_to_keep) as soon as a
    newer one registers, and saves the experiment state that names the newer one a
    moment later; a kill in between leaves a state naming a deleted checkpoint, from
    which Tune cannot restore. The trial is trained again from scratch instead (seeded,
    so to the same results) and its recorded decisions are replayed. Ray has no public
    way to drop a trial's checkpoint; this is the attribute Ray's own PBT sets when it
    hands a trial another's checkpoint (tests/schedulers/test_snapshot.py checks it).
    """
    logger.warning(
        "%s: its saved checkpoint %s was deleted before the kill; it trains from epoch 1",
        trial.trial_id,
        trial.checkpoint.path if trial.checkpoint else None,
    )
    manager = trial.run_metadata.checkpoint_manager
    if manager is not None:
        manager._latest_checkpoint_result = None


def _truncate_progress(trial: Trial, rows_kept: int) -> None:
    if trial.storage is None:  # a trial Tune never set up has written nothing
        return
    fs = trial.storage.storage_filesystem
    path = f"{trial.path}/{PROGRESS_FILE}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return
    with fs.open_input_stream(path) as stream:
        text = stream.read().decode("utf-8")
    records = list(csv.reader(io.StringIO(text)))
    if len(records) - 1 <= rows_kept:
        if len(records) - 1 < rows_kept:
            logger.warning(
                "%s has %d rows, fewer than the %d its saved state counts (a save was cut)",
                path,
                len(records) - 1,
                rows_kept,
            )
        return
    out = io.StringIO()
    csv.writer(out).writerows(records[: rows_kept + 1] if rows_kept else [])
    with fs.open_output_stream(path) as stream:
        stream.write(out.getvalue().encode("utf-8"))
    logger.info(
        "%s: %d rows after the trial's checkpoint will be trained again",
        trial.trial_id,
        len(records) - 1 - rows_kept,
    )


def _delete_unknown_trial_folders(trials: list[Trial]) -> None:
    """Trial folders (those with a progress.csv) of trials the saved state does not hold."""
    storage = trials[0].storage
    if storage is None or storage.experiment_fs_path is None:
        return
    fs, experiment = storage.storage_filesystem, storage.experiment_fs_path
    known = {(trial.path or "").rstrip("/").rsplit("/", 1)[-1] for trial in trials}
    for info in fs.get_file_info(pafs.FileSelector(experiment, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or info.base_name in known:
            continue
        if fs.get_file_info(f"{info.path}/{PROGRESS_FILE}").type == pafs.FileType.File:
            logger.info("deleting %s: its trial started after the last saved state", info.path)
            fs.delete_dir(info.path)


class _TrialIdPickler(cloudpickle.CloudPickler):
    def persistent_id(self, obj: Any) -> str | None:
        return f"trial:{obj.trial_id}" if isinstance(obj, Trial) else None


class _TrialIdUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, trials: dict[str, Trial]) -> None:
        super().__init__(io.BytesIO(data))
        self._trials = trials

    def persistent_load(self, pid: str) -> Trial:
        trial_id = pid.removeprefix("trial:")
        if trial_id not in self._trials:
            raise pickle.UnpicklingError(
                f"the saved scheduler names trial {trial_id}, which Tune's saved state "
                "does not hold; the sweep's state files come from different saves"
            )
        return self._trials[trial_id]


def dumps_with_trial_ids(obj: Any) -> bytes:
    """Pickle `obj` (closures included), each Tune Trial in it as a reference by id."""
    buffer = io.BytesIO()
    _TrialIdPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def loads_with_trials(data: bytes, trials: list[Trial]) -> Any:
    """Unpickle what `dumps_with_trial_ids` wrote, resolving trial ids to `trials`."""
    return _TrialIdUnpickler(data, {trial.trial_id: trial for trial in trials}).load()
