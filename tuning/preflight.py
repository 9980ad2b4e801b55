"""Checks of a sweep against the machine it starts from, before any data loads or Ray starts.

The experiment file is validated on its own (tuning.experiment); what is checked here
needs this machine: whether --storage can be written, and whether a trial's CPUs fit
the local Ray that cnn-tune is about to start. Every problem is listed at once, each
naming the flag or key, the value and the fix; warnings are logged and the sweep runs.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path

from tuning.errors import ConfigError
from tuning.experiment import Experiment, trial_count_text, validate_experiment
from tuning.layout import EXPERIMENT_FILE
from tuning.storage import (
    STORAGE_SCHEMES,
    check_sweep_name,
    is_remote,
    read_text,
    resolve_location,
)
from tuning.yaml_io import parse_yaml_mapping

logger = logging.getLogger(__name__)

MAX_TRIALS_AT_ONCE_PER_CPU = 2  # beyond, trial processes (each with torch) crowd the machine
MANY_TRIALS = 1_000  # above this, a warning says how much training the sweep asks for


def check_run(
    experiment: Experiment, *, storage: str, name: str | None, address: str | None
) -> None:
    """Refuse a `cnn-tune run` that cannot work here; log what looks unintended.

    Raises:
        ConfigError: every problem found, naming --name, --storage or the key.
    """
    problems = []
    if name is not None:
        try:
            check_sweep_name(name)
        except ConfigError as error:
            problems += error.messages
    problems += storage_problems(storage, flag="--storage")
    problems += cpu_problems(experiment, address)
    if problems:
        raise ConfigError(problems)
    for warning in experiment_warnings(experiment) + concurrency_warnings(experiment, address):
        logger.warning("warning: %s", warning)


def check_resume(directory: str | Path, *, address: str | None) -> None:
    """Refuse a `cnn-tune resume` whose folder cannot be written or whose trials cannot fit.

    A folder that is not a sweep is left to the runner, which says so.
    """

    if not str(directory).strip():
        raise ConfigError("resume DIR '' is empty; pass the sweep folder <storage>/<name>")
    location = resolve_location(str(directory))
    if not is_remote(location) and not Path(location).is_dir():
        return
    problems = storage_problems(location, flag="resume DIR")
    text = read_text(location, EXPERIMENT_FILE) if not problems else None
    if text is not None:
        problems += cpu_problems(validate_experiment(parse_yaml_mapping(text, location)), address)
    if problems:
        raise ConfigError(problems)


def storage_problems(storage: str, *, flag: str) -> list[str]:
    """Why sweeps cannot be written under `storage` (a path or a URI), if they cannot."""
    if not storage.strip():
        return [f"{flag} '' is empty; give a folder (the default is ./runs) or a bucket URI"]
    if is_remote(storage):
        return _uri_problems(storage, flag)
    folder = Path(storage).expanduser().resolve()
    existing = _nearest_existing(folder)
    if existing == folder and not folder.is_dir():
        return [f"{flag} {storage!r} is a file, not a folder; give a folder for the sweeps"]
    if not existing.is_dir():
        return [
            f"{flag} {storage!r} lies under {str(existing)!r}, which is a file, not a "
            "folder; give a folder path"
        ]
    reason = _cannot_create_folders_in(existing)
    if reason is not None:
        return [
            f"{flag} {storage!r}: cannot create folders in {str(existing)!r} ({reason}); "
            "choose a folder you can write to, e.g. --storage ./runs"
        ]
    return []


def _uri_problems(storage: str, flag: str) -> list[str]:
    scheme, _, rest = storage.partition("://")
    if scheme.lower() not in STORAGE_SCHEMES:
        return [
            f"{flag} {storage!r}: {scheme + '://'!r} is not storage Ray Tune can write to; use "
            f"{', '.join(s + '://' for s in STORAGE_SCHEMES)}, or a folder path"
        ]
    if scheme.lower() != "file" and not rest.strip("/"):
        return [f"{flag} {storage!r} names no bucket; write {scheme}://BUCKET/PREFIX"]
    return []


def _nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists (a folder, or a file in the way)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _cannot_create_folders_in(folder: Path) -> str | None:
    """Why no folder can be made in `folder`, found by making (and removing) one."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "no write permission"
    try:
        probe = tempfile.mkdtemp(prefix=".cnn-tune-write-check-", dir=folder)
    except OSError as error:
        if error.errno == errno.ENOENT:  # /proc, /sys: virtual filesystems take no folders
            return "its filesystem takes no new folders"
        return error.strerror or type(error).__name__
    os.rmdir(probe)
    return None


def experiment_warnings(experiment: Experiment) -> list[str]:
    """Settings that are valid but probably not what the user meant; the sweep still runs."""
    warnings = []
    if experiment.num_trials > MANY_TRIALS:
        warnings.append(
            f"{trial_count_text(experiment)}, each up to {experiment.max_epochs} epochs: "
            f"a long sweep; lower search.num_samples if that was not the plan"
        )
    search = experiment.search
    tuned = experiment.search_space.tuned_paths
    if search.algorithm == "grid" and search.resolved_num_samples > 1 and "seed" not in tuned:
        warnings.append(
            f"search.num_samples={search.resolved_num_samples} with search.algorithm=grid "
            "repeats every grid point with the same train.seed, so the repeats train the same "
            "configuration again; tune the seed instead, e.g. train.seed: {grid: [0, 1, 2]}"
        )
    if experiment.metric.startswith("train_"):
        warnings.append(
            f"metric={experiment.metric} picks the trial that fits the training data best, "
            "not the one that generalizes; use metric: val_acc or val_loss"
        )
    if experiment.scheduler.mutates_config and experiment.num_trials < 2:
        warnings.append(
            f"scheduler {experiment.scheduler.name} with {experiment.num_trials} trial has "
            "no population to exploit; raise search.num_samples (4 or more)"
        )
    tpe = search.algorithm in ("hyperopt", "optuna")
    if tpe and search.initial_points >= search.resolved_num_samples:
        warnings.append(
            f"search.initial_points={search.initial_points} >= search.num_samples="
            f"{search.resolved_num_samples}: every trial is a random one and TPE never "
            "models the space; lower initial_points or use search.algorithm: random"
        )
    return warnings


def cpu_problems(experiment: Experiment, address: str | None) -> list[str]:
    """A local trial that asks for more CPUs than Ray will see here never starts."""
    cpus = local_cpu_count(address)
    if cpus is None or experiment.resources.cpu <= cpus:
        return []
    return [
        f"resources.cpu={experiment.resources.cpu:g} per trial, but this machine has {cpus} "
        "CPUs for Ray, so no trial could ever start and the sweep would wait for ever; set "
        f"resources.cpu={cpus} or less, or pass --address to use a cluster with larger nodes"
    ]


def concurrency_warnings(experiment: Experiment, address: str | None) -> list[str]:
    """Tiny CPU shares let Ray start far more trial processes than the machine has CPUs."""
    cpus = local_cpu_count(address)
    resources, search = experiment.resources, experiment.search
    if cpus is None or search.max_concurrent is not None or resources.gpu not in (0, 0.0):
        return []
    at_once = min(experiment.num_trials, int(cpus // resources.cpu))
    if at_once <= MAX_TRIALS_AT_ONCE_PER_CPU * cpus:
        return []
    return [
        f"resources.cpu={resources.cpu:g} lets Ray run {at_once} trials at once on {cpus} "
        "CPUs, each its own process holding torch and the data; set search.max_concurrent "
        "or raise resources.cpu"
    ]


def local_cpu_count(address: str | None) -> int | None:
    """CPUs of the Ray that cnn-tune starts here, or None when it joins a cluster instead.

    Ray counts them itself (multiprocessing.cpu_count, or the container's CPU quota);
    its own function is used so the check matches what the trials will be offered.
    """
    if address is not None:  # without one, cnn-tune starts a private Ray (tuning.cluster)
        return None
    import ray

    if ray.is_initialized():  # a library user's own Ray, already running: its business
        return None
    try:
        from ray._private.utils import get_num_cpus  # Ray 2.60; the coupling lives here only
    except ImportError:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return int(get_num_cpus(override_docker_cpu_warning=True))
