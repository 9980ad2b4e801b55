"""Build Ray Tune trial schedulers from validated settings, and check what Ray leaves to us.

Metric and mode are never passed here: `TuneConfig` hands them to the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import TrialScheduler
from ray.tune.search.sample import Categorical, Domain, Float, Integer

from schedulers.replay import (
    ResumableASHA,
    ResumableFIFO,
    ResumableHyperBand,
    ResumableMedianStopping,
    ResumablePB2,
    ResumablePBT,
)
from schedulers.settings import (
    ASHASettings,
    FIFOSettings,
    HyperBandSettings,
    MedianStoppingSettings,
    PB2Settings,
    PBTSettings,
    SchedulerSettings,
)
from trainables.config import flatten

# Searchers that may drive each scheduler. PBT and PB2 choose and mutate configurations
# themselves, so a model-based searcher would fight them; synchronous HyperBand pauses
# and resumes trials in brackets that a sequential model-based searcher does not follow.
COMPATIBLE_SEARCHERS: dict[str, tuple[str, ...]] = {
    "fifo": ("grid", "random", "hyperopt"),
    "asha": ("grid", "random", "hyperopt"),
    "median": ("grid", "random", "hyperopt"),
    "hyperband": ("grid", "random"),
    "pbt": ("grid", "random"),
    "pb2": ("grid", "random"),
}
_INSTEAD = {
    "hyperband": "use scheduler.name: asha (asynchronous HyperBand) to keep hyperopt",
    "pbt": "PBT picks and mutates configurations itself; seed it with random or grid",
    "pb2": "PB2 picks and mutates configurations itself; seed it with random or grid",
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
            f"{searcher!r}: {_INSTEAD[settings.name]}. Use search.algorithm: {allowed}."
        )
    if isinstance(settings, PBTSettings | PB2Settings):
        if settings.perturbation_interval % checkpoint_every:
            errors.append(
                f"scheduler.perturbation_interval={settings.perturbation_interval} must be a "
                f"multiple of checkpoint.every_epochs={checkpoint_every}, so that a checkpoint "
                "exists whenever PBT exploits; change either value"
            )
        if checkpoints_kept < PBT_MIN_CHECKPOINTS_KEPT:
            errors.append(
                f"checkpoint.keep={checkpoints_kept} is too few for {settings.name.upper()}, which "
                "exploits other trials' recent checkpoints; set checkpoint.keep: "
                f"{PBT_MIN_CHECKPOINTS_KEPT} or more"
            )
    if isinstance(settings, HyperBandSettings) and checkpoint_every != 1:
        errors.append(
            f"scheduler.name='hyperband' pauses trials at its milestones and resumes them from "
            f"their last checkpoint; with checkpoint.every_epochs={checkpoint_every} a resumed "
            "trial would train epochs again. Set checkpoint.every_epochs: 1"
        )
    if isinstance(settings, ASHASettings) and settings.grace_period > (
        settings.max_t or max_epochs
    ):
        errors.append(
            f"scheduler.grace_period={settings.grace_period} exceeds "
            f"max_t={settings.max_t or max_epochs} epochs; lower grace_period or raise train.epochs"
        )
    max_t = getattr(settings, "max_t", None)
    if max_t is not None and max_t > max_epochs:
        errors.append(
            f"scheduler.max_t={max_t} exceeds train.epochs={max_epochs}; trials stop at "
            "train.epochs, so lower max_t or leave it unset"
        )
    return errors


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


def pb2_errors(paths: list[str], param_space: dict[str, Any]) -> list[str]:
    """PB2 models continuous parameters only: every mutated path needs a numeric range."""
    return [
        f"scheduler.mutate: PB2 needs a numeric range for train.{path} (uniform, loguniform, "
        "randint...); use scheduler.name: pbt to mutate a choice"
        for path in paths
        if not isinstance(_lookup(param_space, path), Float | Integer)
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
            *parents, leaf = path.split(".")
            node = config
            for key in parents:
                node = node[key]
            if integer:  # Tune's integer upper bounds are exclusive
                node[leaf] = int(min(max(round(node[leaf]), low), high - 1))
            else:
                node[leaf] = float(min(max(node[leaf], low), high))
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


def _lookup(tree: dict[str, Any], path: str) -> Any:
    node: Any = tree
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node
