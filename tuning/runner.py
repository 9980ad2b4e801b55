"""Assemble `tune.Tuner` for an experiment, run or resume it, and summarize.

Order matters: everything the user gave is validated and the dataset is loaded before
Ray starts, so bad input costs nothing and no trial ever re-reads files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.logger import CSVLoggerCallback

from schedulers import build_scheduler
from schedulers.snapshot import SchedulerSnapshot
from trainables.config import TrainConfig, TransferConfig
from trainables.data import TuningData, load_splits
from trainables.transfer import StateDict, load_pretrained, pretrained_key
from trainables.tune_adapter import train_trial
from tuning import preflight
from tuning.cluster import connect
from tuning.errors import ConfigError, SweepInterrupted
from tuning.experiment import Experiment, validate_experiment
from tuning.gpu_packing import resolve_gpu_share
from tuning.layout import (
    CLOCK_FILE,
    EXPERIMENT_FILE,
    GPU_SHARE_FILE,
    SUMMARY_FILE,
    trial_dirname,
)
from tuning.progress import ProgressLine
from tuning.results import FinalContext, result_trial_id, summarize
from tuning.retention import CheckpointRetention
from tuning.searchers import build_searcher
from tuning.storage import (
    check_storage_is_shared,
    clear_except,
    holds_anything,
    is_remote,
    read_text,
    resolve_location,
    sweep_location,
    top_level_files,
    write_text,
)
from tuning.summary import Summary

# Tune unpickles these from a sweep's tuner.pkl by their module path as well: keep the
# names importable from here for sweeps started before they moved.
from tuning.sweep_callbacks import TrialEndedItself, TrialsEndedThisRun
from tuning.tensorboard import TensorBoardLogger
from tuning.yaml_io import dump_yaml, parse_yaml_mapping

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "runs"


@dataclass(frozen=True)
class SweepOutcome:
    summary: dict[str, Any]
    location: str  # where the sweep lives: an absolute path or a bucket URI

    @property
    def experiment_dir(self) -> Path:
        """The sweep's folder, for sweeps stored on a filesystem path."""
        if is_remote(self.location):
            raise ValueError(f"{self.location} is not a local folder")
        return Path(self.location)


def run_sweep(
    experiment: Experiment,
    *,
    storage: str = DEFAULT_STORAGE,
    name: str | None = None,
    address: str | None = None,
    callbacks: list[tune.Callback] | None = None,
) -> SweepOutcome:
    """Run `experiment` from scratch and return its summary (also in summary.json).

    `callbacks` are extra Tune callbacks (progress hooks, loggers) for library users.
    """
    preflight.check_run(experiment, storage=storage, name=name, address=address)
    name = name or f"{experiment.name}-{datetime.now():%Y%m%d-%H%M%S}"
    location = _new_location(storage, name)
    return _start_sweep(experiment, location, address, callbacks or [], save_experiment=True)


def _start_sweep(
    experiment: Experiment,
    location: str,
    address: str | None,
    callbacks: list[tune.Callback],
    *,
    save_experiment: bool = False,
) -> SweepOutcome:
    """Run `experiment` from its first trial in `location`; the experiment file is saved
    there (unless it already is) once the data and weights have loaded."""
    splits = load_splits(experiment.dataset)
    pretrained = _pretrained_backbones(experiment)  # bad weights fail here, before Ray starts
    _check_gpus_exist(experiment, address)
    if save_experiment:
        write_text(
            location,
            EXPERIMENT_FILE,
            dump_yaml(experiment.model_dump(mode="json", exclude_none=True)),
        )
    connect(address)
    check_storage_is_shared(location)
    gpu = _gpu_per_trial(experiment, splits.tuning, pretrained, location)
    tune_config = _tune_config(experiment, gpu)
    # Saves the scheduler with Tune's experiment state: Ray saves only the searcher.
    assert tune_config.scheduler is not None  # _tune_config always builds one
    snapshot = SchedulerSnapshot(tune_config.scheduler)
    tuner = tune.Tuner(
        _trainable(experiment, splits.tuning, pretrained, gpu),
        param_space=experiment.param_space(),
        tune_config=tune_config,
        run_config=_run_config(experiment, location, [snapshot, *callbacks]),
    )
    return _fit_and_summarize(tuner, experiment, FinalContext(splits, location, gpu, pretrained))


def resume_sweep(directory: str | Path, *, address: str | None = None) -> SweepOutcome:
    """Finish an interrupted sweep from whatever state a crash left it in.

    - finished (summary.json exists): returned as it stands, the test split untouched;
    - Tune had saved no state yet (killed in its first seconds): started afresh from
      the experiment saved with it, in the same folder;
    - otherwise: finished trials are kept, the others continue from their checkpoints,
      and the scheduler carries on from its saved state (schedulers.snapshot).
    """
    preflight.check_resume(directory, address=address)
    location = resolve_location(str(directory))
    config_text = read_text(location, EXPERIMENT_FILE)
    if config_text is None:
        raise ConfigError(
            f"{location!r} is not a cnn-tune sweep: it has no {EXPERIMENT_FILE}; pass the "
            "folder <storage>/<name> that `cnn-tune run` printed. A run killed before it "
            "saved its experiment left nothing to resume: run it again with the same --name"
        )
    experiment = validate_experiment(parse_yaml_mapping(config_text, EXPERIMENT_FILE))
    finished = _finished_summary(location)
    if finished is not None:
        # The test split was looked at when the sweep finished; another look would be a
        # second one for the same final model.
        logger.info("%s has finished: its summary stands, the test split is not touched", location)
        return SweepOutcome(summary=finished, location=location)
    if not _tune_state_saved(location):
        logger.info("%s stopped before Ray Tune saved any state: starting it afresh", location)
        clear_except(location, {EXPERIMENT_FILE, GPU_SHARE_FILE})
        return _start_sweep(experiment, location, address, [])
    splits = load_splits(experiment.dataset)
    pretrained = _pretrained_backbones(experiment)
    connect(address)
    check_storage_is_shared(location)
    gpu = _gpu_per_trial(experiment, splits.tuning, pretrained, location)
    tuner = tune.Tuner.restore(
        location,
        trainable=_trainable(experiment, splits.tuning, pretrained, gpu),
        resume_unfinished=True,
        resume_errored=True,
    )
    return _fit_and_summarize(tuner, experiment, FinalContext(splits, location, gpu, pretrained))


def _finished_summary(location: str) -> dict[str, Any] | None:
    """The sweep's summary, or None if it has none (or only a part of one, cut by a crash)."""
    text = read_text(location, SUMMARY_FILE)
    if text is None:
        return None
    try:
        return Summary.read(text).as_dict()
    except ValueError:  # also pydantic's ValidationError
        logger.warning("%s/%s is incomplete: summarizing again", location, SUMMARY_FILE)
        return None


def _fit_and_summarize(
    tuner: tune.Tuner, experiment: Experiment, final: FinalContext
) -> SweepOutcome:
    # Ray would add its TBXLoggerCallback, which loses PBT epochs (see tuning.tensorboard);
    # the loggers we want are listed explicitly in _run_config.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    start = time.monotonic()
    TrialsEndedThisRun.ended.clear()
    SchedulerSnapshot.earlier_seconds = 0.0  # set by Tune when it restores the sweep
    results = tuner.fit()
    _raise_if_unfinished(results, experiment, final.location)
    # Every run's time in Tune: the earlier ones' as saved with the sweep (with Tune's
    # state, or when an earlier fit ended), and this one's.
    earlier = max(SchedulerSnapshot.earlier_seconds, _clock_seconds(final.location))
    wall_seconds = earlier + time.monotonic() - start
    write_text(final.location, CLOCK_FILE, json.dumps({"tune_seconds": wall_seconds}) + "\n")
    summary = Summary.model_validate(summarize(results, experiment, final, wall_seconds))
    write_text(final.location, SUMMARY_FILE, summary.to_json())
    return SweepOutcome(summary=summary.as_dict(), location=final.location)


def _clock_seconds(location: str) -> float:
    """The seconds in Tune that the sweep's runs had counted when a fit last ended."""
    text = read_text(location, CLOCK_FILE)
    try:
        return float(json.loads(text)["tune_seconds"]) if text else 0.0
    except (ValueError, KeyError, TypeError):  # cut short by a crash: Tune's state counts
        return 0.0


def _tune_state_saved(location: str) -> bool:
    """Whether Ray Tune saved the sweep's state (tuner.pkl and an experiment_state file)."""
    return tune.Tuner.can_restore(location) and any(
        name.startswith("experiment_state-") and name.endswith(".json")
        for name in top_level_files(location)
    )


def _raise_if_unfinished(results: tune.ResultGrid, experiment: Experiment, location: str) -> None:
    """Ray returns normally after Ctrl-C; only finished sweeps may touch the test split.

    A trial has ended if Tune ended it in this run (TrialsEndedThisRun), or if the state
    an earlier run saved says so. The state Tune saves last is no guide for this run: it
    can still show a trial whose process just died as running, or a trial that HyperBand
    paused as it finished as paused. Nor are the trials in memory: after Ctrl-C Tune
    marks them all terminated.
    """
    expected = experiment.num_trials
    ended = set(TrialsEndedThisRun.ended)
    in_memory = (results[i] for i in range(len(results)))
    ended |= {result_trial_id(r) for r in in_memory if r.error is not None}
    if len(ended) < expected:  # trials ended by earlier runs: read the saved state (slow)
        saved = tune.ExperimentAnalysis(location).trials
        ended |= {trial.trial_id for trial in saved if trial.status in ("TERMINATED", "ERROR")}
    if len(ended) < expected:
        raise SweepInterrupted(
            f"sweep interrupted with {len(ended)} of {expected} trials ended; its state is saved. "
            f"Continue it with: cnn-tune resume {location}"
        )


def _gpu_per_trial(
    experiment: Experiment,
    data: TuningData,
    pretrained: dict[str, StateDict | None],
    location: str,
) -> float:
    """The GPU share per trial; `gpu: auto` measures once and a resumed sweep reuses it."""
    if experiment.resources.gpu != "auto":
        return experiment.resources.gpu
    saved = read_text(location, GPU_SHARE_FILE)
    if saved is not None:
        return float(json.loads(saved)["gpu_per_trial"])
    total = experiment.num_trials
    cpu_slots = _trials_that_fit(experiment.resources.cpu, 0.0)
    trials_at_once = min(total, experiment.search.max_concurrent or total, cpu_slots)
    share = resolve_gpu_share(experiment.train, data, pretrained, trials_at_once)
    write_text(location, GPU_SHARE_FILE, json.dumps({"gpu_per_trial": share}) + "\n")
    return share


def _trainable(
    experiment: Experiment,
    data: TuningData,
    pretrained: dict[str, StateDict | None],
    gpu: float,
) -> Any:
    with_data = tune.with_parameters(
        train_trial,
        data=data,
        checkpoint_every=experiment.checkpoint.every_epochs,
        pretrained=pretrained,
    )
    return tune.with_resources(with_data, {"cpu": experiment.resources.cpu, "gpu": gpu})


def _pretrained_backbones(experiment: Experiment) -> dict[str, StateDict | None]:
    """Every backbone's weights the space can pick, loaded once here in the driver."""
    weights: dict[str, StateDict | None] = {}
    for candidate in experiment.search_space.representatives:
        model = TrainConfig.model_validate(candidate).model
        if isinstance(model, TransferConfig) and pretrained_key(model) not in weights:
            weights[pretrained_key(model)] = load_pretrained(model)
    return weights


def _tune_config(experiment: Experiment, gpu: float) -> tune.TuneConfig:
    search = experiment.search
    max_concurrent = search.max_concurrent
    if max_concurrent is None and search.algorithm in ("hyperopt", "optuna"):
        # TPE learns from ended trials: never propose more than can run at once.
        max_concurrent = _trials_that_fit(experiment.resources.cpu, gpu)
    return tune.TuneConfig(
        metric=experiment.metric,
        mode=experiment.resolved_mode,
        search_alg=build_searcher(search),
        scheduler=build_scheduler(
            experiment.scheduler,
            max_epochs=experiment.max_epochs,
            param_space=experiment.param_space(),
        ),
        num_samples=search.resolved_num_samples,
        max_concurrent_trials=max_concurrent,
        reuse_actors=True,
        trial_name_creator=_trial_name,
        trial_dirname_creator=_trial_name,
    )


def _trial_name(trial: Any) -> str:
    """`trial_<id>`: Ray's default packs every parameter into the folder name."""
    return trial_dirname(trial.trial_id)


def _run_config(
    experiment: Experiment, location: str, callbacks: list[tune.Callback]
) -> tune.RunConfig:
    storage_path, name = location.rstrip("/").rsplit("/", 1)
    metric, mode, keep = experiment.metric, experiment.resolved_mode, experiment.checkpoint.keep
    pbt = experiment.scheduler.mutates_config
    retention: list[tune.Callback] = []
    if pbt:
        # PBT hands trials each other's checkpoints: Ray's retention, which snapshots the
        # experiment each time it deletes (cheap for a small population), and no warning
        # about those snapshots at every perturbation.
        os.environ["TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"] = "0"
    else:
        reevaluate = experiment.final.reevaluate
        winners = reevaluate.top_k if reevaluate is not None else 1
        retention = [CheckpointRetention(metric, mode, keep, winners)]  # see tuning.retention
    return tune.RunConfig(
        name=name,
        storage_path=storage_path,
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=keep if pbt else None,
            checkpoint_score_attribute=metric,
            checkpoint_score_order=mode,
        ),
        failure_config=tune.FailureConfig(max_failures=experiment.max_failures),
        stop=TrialEndedItself(),
        # No JsonLoggerCallback: when PBT restarts a trial it copies result.json back from
        # storage and drops the rows written since the last sync (Ray 2.60). progress.csv
        # keeps every row, and Tune reads it when there is no result.json.
        callbacks=[
            CSVLoggerCallback(),  # progress.csv: one row per reported epoch
            TrialsEndedThisRun(),
            TensorBoardLogger(metric, mode, experiment.search_space, config_can_change=pbt),
            *retention,
            # Ray's own output prints a table for every trial that starts; one line instead.
            ProgressLine(metric, mode, experiment.num_trials),
            *callbacks,
        ],
        verbose=0,
    )


def _trials_that_fit(cpu: float, gpu: float) -> int:
    available = ray.cluster_resources()
    fits = [available.get("CPU", 1.0) / cpu]
    if gpu > 0:
        fits.append(available.get("GPU", 0.0) / gpu)
    return max(1, math.floor(min(fits) + 1e-9))


def _new_location(storage: str, name: str) -> str:
    location = sweep_location(storage, name)
    if holds_anything(location):
        raise ConfigError(
            f"{location!r} already holds a sweep; resume it with "
            f"`cnn-tune resume {location}` or choose another --name"
        )
    return location


def _check_gpus_exist(experiment: Experiment, address: str | None) -> None:
    """A local sweep that asks for GPUs on a machine without CUDA would wait forever."""
    if experiment.resources.gpu in (0, "auto") or address is not None or ray.is_initialized():
        return
    if torch.cuda.device_count() == 0:
        raise ConfigError(
            f"resources.gpu={experiment.resources.gpu}, but this machine has no CUDA GPU; "
            "set resources.gpu=0 to train on the CPU, or pass --address to use a GPU cluster"
        )
