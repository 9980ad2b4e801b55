"""TensorBoard for a sweep: per-trial epoch curves and an HParams session per trial.

Ray's own TBXLoggerCallback opens a new event file each time a trial (re)starts and
names it by the second, so PBT's quick pause/exploit cycles overwrite one another's
files and lose epochs; it also writes no HParams for PBT trials. This logger keeps one
writer per trial for the trial's whole life, steps every scalar by the trial's `epoch`
(which continues through PBT exploits), and closes each trial with its HParams session:
the tuned values it actually used (conditional ones only where their branch was taken)
and its final and best metric.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from ray.tune.experiment import Trial
from ray.tune.logger import LoggerCallback
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from trainables import metrics as m
from tuning.space import tuned_values


class TensorBoardLogger(LoggerCallback):
    """Writes `<trial dir>/events.out.tfevents.*` with tags named like the metrics."""

    _SAVED_FILE_TEMPLATES = ["events.out.tfevents.*"]  # what Ray syncs to remote storage

    def __init__(self, metric: str, mode: str, tuned_paths: list[str]) -> None:
        self._metric, self._mode, self._tuned_paths = metric, mode, tuned_paths
        self._writers: dict[Trial, SummaryWriter] = {}
        self._best: dict[Trial, float] = {}

    def log_trial_start(self, trial: Trial) -> None:
        if trial not in self._writers:  # a PBT restart keeps the trial's open writer
            trial.init_local_path()
            self._writers[trial] = SummaryWriter(trial.local_path, flush_secs=10)

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        if m.EPOCH not in result:
            return
        self.log_trial_start(trial)
        writer, epoch = self._writers[trial], int(result[m.EPOCH])
        for name in m.EPOCH_METRICS:
            value = result.get(name)
            if name != m.EPOCH and _is_finite_number(value):
                writer.add_scalar(name, value, global_step=epoch)
        value = result.get(self._metric)
        if _is_finite_number(value):
            pick = max if self._mode == "max" else min
            self._best[trial] = pick(value, self._best.get(trial, value))
            writer.add_scalar(f"best_{self._metric}", self._best[trial], global_step=epoch)

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        writer = self._writers.pop(trial, None)
        if writer is None:
            return
        best = self._best.pop(trial, None)
        metric_dict = {self._metric: best if best is not None else math.nan}
        metric_dict[f"best_{self._metric}"] = metric_dict[self._metric]
        # add_hparams() would open a second run in a sub-folder; write into this one.
        file_writer = writer._get_file_writer()
        for summary in hparams(self._hparams_of(trial.config), metric_dict):
            file_writer.add_summary(summary)
        writer.close()

    def _hparams_of(self, config: dict[str, Any]) -> dict[str, Any]:
        """Tuned values as TensorBoard accepts them: numbers, strings, bools."""
        return {
            key: value if isinstance(value, int | float | str | bool) else str(value)
            for key, value in tuned_values(config, self._tuned_paths).items()
        }


def _is_finite_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
