"""TensorBoard for a sweep: per-trial epoch curves, and the HParams dashboard of the sweep.

Ray's own TBXLoggerCallback opens a new event file each time a trial (re)starts and
names it by the second, so PBT's quick pause/exploit cycles overwrite one another's
files and lose epochs; it also writes no HParams for PBT trials. This logger keeps one
writer per trial for the trial's whole life and steps every scalar by the trial's
`epoch` (which continues through PBT exploits).

HParams layout (what TensorBoard's hparams plugin reads, tensorboard 2.x):

- `<sweep>/events.out.tfevents.*`, the sweep's root run: ONE experiment summary whose
  columns are every tuned parameter any trial can take, conditional ones included, and
  the metric columns. The plugin takes its columns from the first run that carries an
  experiment summary, so per-trial experiment summaries (what `add_hparams` writes)
  would show only the first trial's parameters.
- `<sweep>/trial_<id>/events.out.tfevents.*`, one session per trial: the tuned values it
  used (a conditional one only where its branch was taken), then, when it ends, its status
  (failure for errored, diverged or infeasible trials). A metric column's value is the
  last scalar the trial wrote under that tag.

The values are written when the trial starts, so the dashboard lists running trials,
except under PBT-style schedulers: there the values change while the trial runs and are
written when it ends. TensorBoard keeps the first summary of each kind in a run: a trial
resumed after Ctrl-C writes its session start again, with the same values.

Everything is written under the driver's staging folder, which Ray copies to the
sweep's storage (a path or a bucket) with the trial's other files.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from google.protobuf import struct_pb2
from ray.tune.experiment import Trial
from ray.tune.logger import LoggerCallback
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from trainables import metrics as m
from tuning import space
from tuning.values import is_finite, is_number

_LISTED_KINDS = ("choice", "grid")  # search domains whose every value is written out


class TensorBoardLogger(LoggerCallback):
    """Writes the sweep's HParams experiment and each trial's curves and HParams session."""

    _SAVED_FILE_TEMPLATES = ["events.out.tfevents.*"]  # what Ray syncs to remote storage

    def __init__(
        self, metric: str, mode: str, search_space: space.SearchSpace, *, config_can_change: bool
    ) -> None:
        """Prepares the HParams columns of a sweep.

        Args:
            metric: The metric the sweep optimizes, e.g. `val_acc`.
            mode: `max` or `min`: which direction of `metric` is better.
            search_space: The experiment's parsed `train:` tree.
            config_can_change: True under PBT-style schedulers, which mutate a running
                trial's config: its session's values are then written when it ends.
        """
        self._metric, self._mode = metric, mode
        self._values_known_at_start = not config_can_change
        self._space = search_space
        self._columns = {info.name: info for info in hparam_infos(search_space)}
        self._experiment_written = False
        self._writers: dict[Trial, SummaryWriter] = {}
        self._best: dict[Trial, float] = {}
        self._started_at: dict[str, float] = {}  # trial id -> seconds since the epoch
        self._failed: set[str] = set()  # trial ids that diverged or were infeasible
        self._ended: set[str] = set()
        self._session_started: set[str] = set()  # trial ids, in this driver process
        self._trained_with: dict[str, dict[str, Any]] = {}  # trial id -> last result's config

    def log_trial_start(self, trial: Trial) -> None:
        if not self._experiment_written:
            self._write_experiment(trial.local_experiment_path)
        if trial not in self._writers:  # a PBT restart keeps the trial's open writer
            trial.init_local_path()
            self._writers[trial] = SummaryWriter(trial.local_path, flush_secs=10)
            self._started_at.setdefault(trial.trial_id, time.time())
            if self._values_known_at_start:
                self._start_session(trial)
                self._writers[trial].flush()  # the dashboard lists it now, not in 10 s

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        if result.get(m.DIVERGED) or result.get(m.INFEASIBLE):
            self._failed.add(trial.trial_id)
        if m.EPOCH not in result:
            return
        if not self._values_known_at_start and isinstance(result.get("config"), dict):
            self._trained_with[trial.trial_id] = result["config"]
        self.log_trial_start(trial)
        writer, epoch = self._writers[trial], int(result[m.EPOCH])
        for name in (*m.EPOCH_METRICS, *m.FOOTPRINT_METRICS):
            value = result.get(name)
            if is_finite(value):
                writer.add_scalar(name, value, global_step=epoch)
        value = result.get(self._metric)
        if is_finite(value):
            pick = max if self._mode == "max" else min
            self._best[trial] = pick(value, self._best.get(trial, value))
            writer.add_scalar(f"best_{self._metric}", self._best[trial], global_step=epoch)

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        if trial.trial_id in self._ended:
            return
        self._ended.add(trial.trial_id)
        self.log_trial_start(trial)  # reopens the trial's run if its writer is gone
        self._start_session(trial)
        writer = self._writers.pop(trial)
        self._best.pop(trial, None)
        status = (
            api_pb2.STATUS_FAILURE
            if failed or trial.trial_id in self._failed
            else api_pb2.STATUS_SUCCESS
        )
        _add_summary(writer, session_end_summary(status))
        writer.close()

    def _start_session(self, trial: Trial) -> None:
        """Write the trial's session start (its tuned values) once, into its own run."""
        if trial.trial_id in self._session_started:
            return
        self._session_started.add(trial.trial_id)
        # PBT can exploit at a trial's last epoch: trial.config then holds values it never
        # trained with, and its last result the ones it did.
        config = self._trained_with.pop(trial.trial_id, trial.config)
        hparams = self._space.tuned_values(config)
        summary = session_start_summary(hparams, self._columns, self._started_at[trial.trial_id])
        # add_hparams() would open a second run in a sub-folder; write into this one.
        _add_summary(self._writers[trial], summary)

    def _write_experiment(self, experiment_dir: str) -> None:
        """The sweep's one experiment summary, in the sweep folder's own run."""
        with SummaryWriter(experiment_dir) as writer:
            columns = list(self._columns.values())
            summary = experiment_summary(columns, metric_infos(self._metric, self._mode))
            _add_summary(writer, summary)
        self._experiment_written = True


def _add_summary(writer: SummaryWriter, summary: Summary) -> None:
    """Into the writer's own run (add_hparams() would open a second run in a sub-folder),
    through its public `file_writer`, which is set while the writer is open."""
    file_writer = writer.file_writer
    assert file_writer is not None, "the writer was closed"
    file_writer.add_summary(summary)


def hparam_infos(search_space: space.SearchSpace) -> list[api_pb2.HParamInfo]:
    """One HParams column per dotted key any trial of `search_space` can set.

    The keys and their values come from the space's representative configs, which take
    every option of every choice and both ends of every range: a key set by a range
    domain gets an interval, any other key the discrete list of values it can take.
    """
    values: dict[str, list[Any]] = {}
    for candidate in search_space.representatives:
        for key, value in search_space.tuned_values(candidate).items():
            if value is not None:
                values.setdefault(key, []).append(value)
    ranged = {d.path for d in search_space.domains if d.kind not in _LISTED_KINDS}
    return [_hparam_info(key, key_values, key in ranged) for key, key_values in values.items()]


def _hparam_info(name: str, values: list[Any], ranged: bool) -> api_pb2.HParamInfo:
    data_type = _data_type(values)
    distinct = list({_hparam_value(v, data_type).SerializeToString(): v for v in values}.values())
    info = api_pb2.HParamInfo(
        name=name, display_name=name, type=data_type, differs=ranged or len(distinct) > 1
    )
    if ranged and data_type == api_pb2.DATA_TYPE_FLOAT64:
        info.domain_interval.min_value = min(values)
        info.domain_interval.max_value = max(values)
    elif not ranged:
        info.domain_discrete.values.extend(_hparam_value(v, data_type) for v in distinct)
    return info


def _data_type(values: Iterable[Any]) -> api_pb2.DataType.ValueType:
    """bool or number when every value is one, else string (values written as text)."""
    values = list(values)
    if values and all(isinstance(v, bool) for v in values):
        return api_pb2.DATA_TYPE_BOOL
    if values and all(is_number(v) for v in values):
        return api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.DATA_TYPE_STRING


def _hparam_value(value: Any, data_type: api_pb2.DataType.ValueType) -> struct_pb2.Value:
    if data_type == api_pb2.DATA_TYPE_BOOL:
        return struct_pb2.Value(bool_value=bool(value))
    if data_type == api_pb2.DATA_TYPE_FLOAT64:
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=value if isinstance(value, str) else str(value))


def metric_infos(metric: str, mode: str) -> list[api_pb2.MetricInfo]:
    """The metric columns: the sweep's best-so-far metric, each final epoch metric, and
    the model's footprint (trainables.footprint; lower is better for each)."""
    better = "higher" if mode == "max" else "lower"
    columns = [
        (f"best_{metric}", f"best {metric}", f"best {metric} of any epoch ({better} is better)"),
        (m.VAL_ACC, "val_acc (last epoch)", "validation accuracy, fraction"),
        (m.VAL_LOSS, "val_loss (last epoch)", "validation cross-entropy"),
        (m.TRAIN_ACC, "train_acc (last epoch)", "training accuracy, fraction"),
        (m.TRAIN_LOSS, "train_loss (last epoch)", "training cross-entropy"),
        (m.EPOCH, "epochs", "epochs the trial trained"),
        (m.PARAMS, "params", "parameters of the model"),
        (m.FLOPS, "FLOPs/image", "FLOPs of one forward pass of one image (multiply-add = 2)"),
        (m.LATENCY_MS, "latency ms (batch 1)", "ms per forward pass of 1 image, on its device"),
        (
            m.LATENCY_MS_BATCH,
            "latency ms (large batch)",
            "ms per forward pass of a large batch (see latency_batch_size in progress.csv)",
        ),
    ]
    return [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(group="", tag=tag),
            display_name=display_name,
            description=description,
            dataset_type=_dataset_type(tag),
        )
        for tag, display_name, description in columns
    ]


def _dataset_type(tag: str) -> api_pb2.DatasetType.ValueType:
    if "val_" in tag:
        return api_pb2.DATASET_VALIDATION
    if "train_" in tag:
        return api_pb2.DATASET_TRAINING
    return api_pb2.DATASET_UNKNOWN


def experiment_summary(
    hparams: list[api_pb2.HParamInfo], metrics: list[api_pb2.MetricInfo]
) -> Summary:
    """The HParams experiment summary: the dashboard's columns, for the sweep's root run."""
    experiment = api_pb2.Experiment(
        description="cnn-tune sweep: one session per trial",
        time_created_secs=time.time(),
        hparam_infos=hparams,
        metric_infos=metrics,
    )
    return _summary(
        metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)
    )


def session_start_summary(
    hparams: dict[str, Any], columns: dict[str, api_pb2.HParamInfo], start_time_secs: float
) -> Summary:
    """A trial's HParams session: its values, typed as their columns declare."""
    info = plugin_data_pb2.SessionStartInfo(start_time_secs=start_time_secs)
    for key, value in hparams.items():
        if value is None:
            continue
        data_type = columns[key].type if key in columns else _data_type([value])
        info.hparams[key].CopyFrom(_hparam_value(value, data_type))
    return _summary(
        metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info)
    )


def session_end_summary(status: api_pb2.Status.ValueType) -> Summary:
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    return _summary(
        metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info)
    )


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    return Summary(
        value=[
            Summary.Value(
                tag=tag,
                metadata=metadata.create_summary_metadata(data),
                tensor=metadata.NULL_TENSOR,
            )
        ]
    )
