"""Build Ray Tune trial schedulers from validated settings, with PBT's mutation domains.

Metric and mode are never passed here: `TuneConfig` hands them to the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import TrialScheduler
from ray.tune.search.sample import Categorical, Domain, Float, Integer

from schedulers.compatibility import COMPATIBLE_SEARCHERS, compatibility_errors
from schedulers.replay import (
    ResumableASHA,
    ResumableFIFO,
    ResumableHyperBand,
    ResumableMedianStopping,
    ResumablePBT,
)
from schedulers.settings import (
    ASHASettings,
    FIFOSettings,
    HyperBandSettings,
    MedianStoppingSettings,
    PB2Settings,
    SchedulerSettings,
)
from trainables.dotted import flatten, get_path, set_path

__all__ = [
    "COMPATIBLE_SEARCHERS",
    "build_scheduler",
    "clip_to_domains",
    "compatibility_errors",
    "pb2_errors",
    "pbt_mutations",
]


def build_scheduler(
    settings: SchedulerSettings, *, max_epochs: int, param_space: dict[str, Any]
) -> TrialScheduler:
    """The Ray scheduler for `settings`; `param_space` supplies PBT's mutation domains.

    Each is Ray's own algorithm with a record of its decisions, so that a resumed sweep
    decides as the interrupted one did (schedulers.replay).
    """
    epochs = "training_iteration"  # one tune.report per epoch
    if isinstance(settings, FIFOSettings):
        return ResumableFIFO()
    if isinstance(settings, ASHASettings):
        return ResumableASHA(
            time_attr=epochs,
            max_t=settings.max_t or max_epochs,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
            brackets=settings.brackets,
        )
    if isinstance(settings, HyperBandSettings):
        return ResumableHyperBand(
            time_attr=epochs,
            max_t=settings.max_t or max_epochs,
            reduction_factor=settings.reduction_factor,
        )
    if isinstance(settings, MedianStoppingSettings):
        return ResumableMedianStopping(
            time_attr=epochs,
            grace_period=settings.grace_period,
            min_samples_required=settings.min_samples_required,
        )
    mutations = pbt_mutations(settings.mutate, param_space)
    if isinstance(settings, PB2Settings):
        from schedulers.replay_pb2 import ResumablePB2  # imports scikit-learn: PB2 only

        return ResumablePB2(
            time_attr=epochs,
            perturbation_interval=settings.perturbation_interval,
            quantile_fraction=settings.quantile_fraction,
            hyperparam_bounds=_bounds_of(mutations),
            synch=settings.synch,
            custom_explore_fn=clip_to_domains(mutations),
        )
    return ResumablePBT(
        time_attr=epochs,
        perturbation_interval=settings.perturbation_interval,
        quantile_fraction=settings.quantile_fraction,
        resample_probability=settings.resample_probability,
        hyperparam_mutations=mutations,
        synch=settings.synch,
        custom_explore_fn=clip_to_domains(mutations),
    )


def pbt_mutations(paths: list[str], param_space: dict[str, Any]) -> dict[str, Any]:
    """Nested `hyperparam_mutations` for PBT: each path's search domain from `param_space`.

    A categorical domain becomes its list of values, so PBT moves to a neighbouring value
    and never leaves the declared set (batch sizes stay the ones the user listed).
    """
    mutations: dict[str, Any] = {}
    for path in paths:
        domain = get_path(param_space, path)
        if not isinstance(domain, Domain):
            raise ValueError(
                f"scheduler.mutate: train.{path} is not a tuned parameter; give it a search "
                "domain such as {loguniform: [1.0e-4, 1.0e-1]} or {choice: [32, 64, 128]}"
            )
        set_path(
            mutations, path, list(domain.categories) if isinstance(domain, Categorical) else domain
        )
    return mutations


def pb2_errors(paths: list[str], param_space: dict[str, Any]) -> list[str]:
    """PB2 models continuous parameters only: every mutated path needs a numeric range."""
    return [
        f"scheduler.mutate: PB2 needs a numeric range for train.{path} (uniform, loguniform, "
        "randint...); use scheduler.name: pbt to mutate a choice"
        for path in paths
        if not isinstance(get_path(param_space, path), Float | Integer)
    ]


def clip_to_domains(mutations: dict[str, Any]) -> Callable[[dict], dict]:
    """An explore hook keeping every mutated number inside its declared range.

    PBT multiplies a value by 0.8 or 1.2 at each explore step; repeated, that walks a
    learning rate or a dropout out of the range the user declared (and a dropout past
    1 would be an invalid config). Integers are rounded back into range.
    """
    ranges = {
        path: (domain.lower, domain.upper, isinstance(domain, Integer))
        for path, domain in flatten(mutations).items()
        if isinstance(domain, Float | Integer)
    }

    def clip(config: dict) -> dict:
        for path, (low, high, integer) in ranges.items():
            value = get_path(config, path)
            if integer:  # Tune's integer upper bounds are exclusive
                set_path(config, path, int(min(max(round(value), low), high - 1)))
            else:
                set_path(config, path, float(min(max(value, low), high)))
        return config

    return clip


def _bounds_of(mutations: dict[str, Any]) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for key, value in mutations.items():
        if isinstance(value, dict):
            bounds[key] = _bounds_of(value)
        else:
            bounds[key] = [value.lower, value.upper]
    return bounds
