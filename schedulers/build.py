"""Build Ray Tune trial schedulers from validated settings, and check what Ray leaves to us.

Metric and mode are never passed here: `TuneConfig` hands them to the scheduler.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search.sample import Categorical, Domain

from schedulers.settings import ASHASettings, FIFOSettings, PBTSettings, SchedulerSettings

# Searchers that may drive each scheduler. PBT chooses and mutates configurations itself,
# so a model-based searcher would fight it; grid and random only seed the population.
COMPATIBLE_SEARCHERS: dict[str, tuple[str, ...]] = {
    "fifo": ("grid", "random", "hyperopt"),
    "asha": ("grid", "random", "hyperopt"),
    "pbt": ("grid", "random"),
}


# Ray's PBT may restore a donor checkpoint a few epochs old; fewer kept ones get deleted
# before another trial can exploit them.
PBT_MIN_CHECKPOINTS_KEPT = 3


def compatibility_errors(
    settings: SchedulerSettings,
    *,
    searcher: str,
    checkpoint_every: int,
    checkpoints_kept: int,
    max_epochs: int,
) -> list[str]:
    """Everything wrong with running `settings` this way, as user-facing messages."""
    errors = []
    if searcher not in COMPATIBLE_SEARCHERS[settings.name]:
        allowed = ", ".join(COMPATIBLE_SEARCHERS[settings.name])
        errors.append(
            f"scheduler.name={settings.name!r} cannot be combined with search.algorithm="
            f"{searcher!r}: PBT picks and mutates configurations itself. "
            f"Use search.algorithm: {allowed}, or scheduler.name: asha to keep {searcher}."
        )
    if isinstance(settings, PBTSettings) and settings.perturbation_interval % checkpoint_every:
        errors.append(
            f"scheduler.perturbation_interval={settings.perturbation_interval} must be a "
            f"multiple of checkpoint.every_epochs={checkpoint_every}, so that a checkpoint "
            "exists whenever PBT exploits; change either value"
        )
    if isinstance(settings, PBTSettings) and checkpoints_kept < PBT_MIN_CHECKPOINTS_KEPT:
        errors.append(
            f"checkpoint.keep={checkpoints_kept} is too few for PBT, which exploits other "
            f"trials' recent checkpoints; set checkpoint.keep: {PBT_MIN_CHECKPOINTS_KEPT} or more"
        )
    if isinstance(settings, ASHASettings):
        max_t = settings.max_t or max_epochs
        if settings.grace_period > max_t:
            errors.append(
                f"scheduler.grace_period={settings.grace_period} exceeds max_t={max_t} epochs; "
                "lower grace_period or raise train.epochs"
            )
        if settings.max_t is not None and settings.max_t > max_epochs:
            errors.append(
                f"scheduler.max_t={settings.max_t} exceeds train.epochs={max_epochs}; "
                "trials stop at train.epochs, so lower max_t or leave it unset"
            )
    return errors


def build_scheduler(
    settings: SchedulerSettings, *, max_epochs: int, param_space: dict[str, Any]
) -> TrialScheduler:
    """The Ray scheduler for `settings`; `param_space` supplies PBT's mutation domains."""
    if isinstance(settings, FIFOSettings):
        return FIFOScheduler()
    if isinstance(settings, ASHASettings):
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=settings.max_t or max_epochs,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
            brackets=settings.brackets,
        )
    return PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=settings.perturbation_interval,
        quantile_fraction=settings.quantile_fraction,
        resample_probability=settings.resample_probability,
        hyperparam_mutations=pbt_mutations(settings.mutate, param_space),
        synch=settings.synch,
    )


def pbt_mutations(paths: list[str], param_space: dict[str, Any]) -> dict[str, Any]:
    """Nested `hyperparam_mutations` for PBT: each path's search domain from `param_space`.

    A categorical domain becomes its list of values, so PBT moves to a neighbouring value
    and never leaves the declared set (batch sizes stay the ones the user listed).
    """
    mutations: dict[str, Any] = {}
    for path in paths:
        domain = _lookup(param_space, path)
        if not isinstance(domain, Domain):
            raise ValueError(
                f"scheduler.mutate: train.{path} is not a tuned parameter; give it a search "
                "domain such as {loguniform: [1.0e-4, 1.0e-1]} or {choice: [32, 64, 128]}"
            )
        *parents, leaf = path.split(".")
        node = mutations
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = list(domain.categories) if isinstance(domain, Categorical) else domain
    return mutations


def _lookup(tree: dict[str, Any], path: str) -> Any:
    node: Any = tree
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node
