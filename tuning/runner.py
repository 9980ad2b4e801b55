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
from tuning import preflight, warm_start
from tuning.cluster import connect
from tuning.continuation import CONTINUED_FILE, Continuation, GivenConfigs
from tuning.errors import ConfigError, SweepInterrupted
from tuning.experiment import Experiment
from tuning.final import read_test_looks
from tuning.gpu_packing import resolve_gpu_share
from tuning.layout import (
    CLOCK_FILE,
    EXPERIMENT_FILE,
    GPU_SHARE_FILE,
    SUMMARY_FILE,
    WARM_START_FILE,
    trial_dirname,
)
from tuning.progress import ProgressLine
from tuning.results import FinalContext, result_trial_id, results_by_id, summarize
from tuning.retention import CheckpointRetention
from tuning.searchers import build_searcher
from tuning.storage import (
    check_storage_is_shared,
    clear_except,
    holds_anything,
    is_remote,
    read_text,
    sweep_location,
    top_level_files,
    write_text,
)
from tuning.summary import Summary

# Tune unpickles these from a sweep's tuner.pkl by their module path as well: keep the
# names importable from here for sweeps started before they moved.
from tuning.sweep_callbacks import TrialEndedItself, TrialsEndedThisRun
from tuning.tensorboard import TensorBoardLogger
from tuning.warm_start import KnownPoint
from tuning.yaml_io import dump_yaml

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
    tuner, final = new_tuner(experiment, location, address, callbacks or [], save_experiment=True)
    return fit_and_summarize(tuner, experiment, final)


def new_tuner(
    experiment: Experiment,
    location: str,
    address: str | None,
    callbacks: list[tune.Callback],
    *,
    save_experiment: bool = False,
    continuation: Continuation | None = None,
) -> tuple[tune.Tuner, FinalContext]:
    """A Tuner that runs `experiment` from its first trial in `location`; the experiment
    file is saved there (unless it already is) once the data and weights have loaded.
    With a `continuation` its trials are the configs given there, each trained on from
    its checkpoint (tuning.continuation)."""
    warm = warm_start.load(experiment)  # earlier sweeps that cannot be read fail here
    splits = load_splits(experiment.dataset)
    pretrained = _pretrained_backbones(experiment)  # bad weights fail here, before Ray starts
    _check_gpus_exist(experiment, address)
    if continuation is not None:
        continuation.save(location)  # before the experiment: a round that has one is planned
    if save_experiment:
        write_text(location, EXPERIMENT_FILE, experiment_yaml(experiment))
    if warm is not None:
        logger.info("%s", warm.message())
        write_text(location, WARM_START_FILE, warm.to_json())
    connect(address)
    check_storage_is_shared(location)
    gpu = _gpu_per_trial(experiment, splits.tuning, pretrained, location)
    tune_config = _tune_config(experiment, gpu, warm.used if warm is not None else [])
    if continuation is not None:
        tune_config.search_alg = GivenConfigs(list(continuation.configs.values()))
    # Saves the scheduler with Tune's experiment state: Ray saves only the searcher.
    assert tune_config.scheduler is not None  # _tune_config always builds one
    snapshot = SchedulerSnapshot(tune_config.scheduler)
    tuner = tune.Tuner(
        _trainable(experiment, splits.tuning, pretrained, gpu, continuation),
        param_space=experiment.param_space() if continuation is None else {},
        tune_config=tune_config,
        run_config=_run_config(experiment, location, [snapshot, *callbacks]),
    )
    return tuner, FinalContext(splits, location, gpu, pretrained)


def tuner_to_resume(
    experiment: Experiment, location: str, address: str | None
) -> tuple[tune.Tuner, FinalContext]:
    """The Tuner that continues the interrupted Tune experiment in `location`."""
    if not _tune_state_saved(location):
        logger.info("%s stopped before Ray Tune saved any state: starting it afresh", location)
        continuation = Continuation.load(location)
        clear_except(location, {EXPERIMENT_FILE, GPU_SHARE_FILE, CONTINUED_FILE})
        return new_tuner(experiment, location, address, [], continuation=continuation)
    splits = load_splits(experiment.dataset)
    pretrained = _pretrained_backbones(experiment)
    connect(address)
    check_storage_is_shared(location)
    gpu = _gpu_per_trial(experiment, splits.tuning, pretrained, location)
    tuner = tune.Tuner.restore(
        location,
        trainable=_trainable(
            experiment, splits.tuning, pretrained, gpu, Continuation.load(location)
        ),
        resume_unfinished=True,
        resume_errored=True,
    )
    return tuner, FinalContext(splits, location, gpu, pretrained)


def fit_and_summarize(
    tuner: tune.Tuner, experiment: Experiment, final: FinalContext
) -> SweepOutcome:
    results, seconds = fit(tuner, experiment, final.location)
    return summarize_sweep(results_by_id(results), experiment, final, seconds)


def fit(tuner: tune.Tuner, experiment: Experiment, location: str) -> tuple[tune.ResultGrid, float]:
    """Run the Tune experiment in `location` to its end; its results and its seconds in
    Tune over every run of it. Raises SweepInterrupted if it stopped early (Ctrl-C)."""
    # Ray would add its TBXLoggerCallback, which loses PBT epochs (see tuning.tensorboard);
    # the loggers we want are listed explicitly in _run_config.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # Ray keeps each checkpoint's whole result in the driver and in every experiment
    # snapshot; only the metric it is ranked by is read back (tuning.final).
    os.environ["TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE"] = "1"
    start = time.monotonic()
    TrialsEndedThisRun.ended.clear()
    SchedulerSnapshot.earlier_seconds = 0.0  # set by Tune when it restores the sweep
    results = tuner.fit()
    _raise_if_unfinished(results, experiment, location)
    # Every run's time in Tune: the earlier ones' as saved with the sweep (with Tune's
    # state, or when an earlier fit ended), and this one's.
    earlier = max(SchedulerSnapshot.earlier_seconds, _clock_seconds(location))
    seconds = earlier + time.monotonic() - start
    write_text(location, CLOCK_FILE, json.dumps({"tune_seconds": seconds}) + "\n")
    return results, seconds


def summarize_sweep(
    by_id: dict[str, tune.Result],
    experiment: Experiment,
    final: FinalContext,
    wall_seconds: float,
    extra: dict[str, Any] | None = None,
) -> SweepOutcome:
    """Test the best of `by_id`'s trials once and write the sweep's summary.json."""
    record = summarize(by_id, experiment, final, wall_seconds)
    record["test"]["looks"] = len(read_test_looks(final.location))
    record |= _warm_start_record(final.location) | (extra or {})
    summary = Summary.model_validate(record)
    write_text(final.location, SUMMARY_FILE, summary.to_json())
    return SweepOutcome(summary=summary.as_dict(), location=final.location)


def experiment_yaml(experiment: Experiment) -> str:
    return dump_yaml(experiment.model_dump(mode="json", exclude_none=True))


def _warm_start_record(location: str) -> dict[str, Any]:
    """summary.json's `warm_start`, from what the sweep recorded as it started."""
    text = read_text(location, WARM_START_FILE)
    if text is None:
        return {}
    record = json.loads(text)
    return {"warm_start": {"used": record["used"], "dropped": record["dropped"]}}


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
    cpu_slots = _trials_thatfit(experiment.resources.cpu, 0.0)
    trials_at_once = min(total, experiment.search.max_concurrent or total, cpu_slots)
    share = resolve_gpu_share(experiment.train, data, pretrained, trials_at_once)
    write_text(location, GPU_SHARE_FILE, json.dumps({"gpu_per_trial": share}) + "\n")
    return share


def _trainable(
    experiment: Experiment,
    data: TuningData,
    pretrained: dict[str, StateDict | None],
    gpu: float,
    continuation: Continuation | None = None,
) -> Any:
    with_data = tune.with_parameters(
        train_trial,
        data=data,
        checkpoint_every=experiment.checkpoint.every_epochs,
        pretrained=pretrained,
        continue_from=continuation.checkpoint_by_config() if continuation else None,
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


def _tune_config(experiment: Experiment, gpu: float, known: list[KnownPoint]) -> tune.TuneConfig:
    search = experiment.search
    max_concurrent = search.max_concurrent
    if max_concurrent is None and search.algorithm in ("hyperopt", "optuna"):
        # TPE learns from ended trials: never propose more than can run at once.
        max_concurrent = _trials_thatfit(experiment.resources.cpu, gpu)
    return tune.TuneConfig(
        metric=experiment.metric,
        mode=experiment.resolved_mode,
        search_alg=build_searcher(search, known),
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
        winners = max(experiment.checkpoint.keep_trials, reevaluate.top_k if reevaluate else 1)
        retention = [  # see tuning.retention
            CheckpointRetention(metric, mode, keep, winners, experiment.outcome_constraints)
        ]
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
            ProgressLine(
                metric, mode, experiment.num_trials, constraints=experiment.outcome_constraints
            ),
            *callbacks,
        ],
        verbose=0,
    )


def _trials_thatfit(cpu: float, gpu: float) -> int:
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
