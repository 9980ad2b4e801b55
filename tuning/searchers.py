"""Search algorithms: grid and random (Tune's variant generator), HyperOpt's TPE, and
Optuna's TPE, which also learns from the epochs of the trials a scheduler stopped.

HyperOpt's and Optuna's searchers live in tuning.searchers_hyperopt and
tuning.searchers_optuna, imported only by a sweep that uses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.tune.search import BasicVariantGenerator, SearchAlgorithm, Searcher

from tuning.experiment import SearchSettings
from tuning.warm_start import KnownPoint

# Each Optuna trial records the Tune trial it stands for, so a saved study explains itself.
TRIAL_ID_ATTR = "ray_trial_id"
WARM_START_ATTR = "warm_start_from"  # a known point's <earlier sweep>/<trial id>


def build_searcher(
    settings: SearchSettings, known: Sequence[KnownPoint] = ()
) -> Searcher | SearchAlgorithm:
    """The searcher for `settings`. Metric and mode come from TuneConfig, not from here.

    `known`: earlier sweeps' trials (search.warm_start, tuning.warm_start) the searcher
    counts as already run.

    Concurrency is limited through `TuneConfig.max_concurrent_trials`, which wraps a
    Searcher in Ray's ConcurrencyLimiter.
    """
    if settings.algorithm == "hyperopt":
        from tuning.searchers_hyperopt import ConditionalHyperOptSearch

        return ConditionalHyperOptSearch(
            known=known, n_initial_points=settings.initial_points, random_state_seed=settings.seed
        )
    if settings.algorithm == "optuna":
        from tuning.searchers_optuna import EpochwiseOptunaSearch

        return EpochwiseOptunaSearch(
            initial_points=settings.initial_points, seed=settings.seed, known=known
        )
    # Grid points are enumerated in order; random ones are drawn from a seeded generator.
    # Tune ignores TuneConfig.max_concurrent_trials for a variant generator given as
    # search_alg, so the limit goes to the generator itself (0: no limit).
    return BasicVariantGenerator(
        random_state=settings.seed, max_concurrent=settings.max_concurrent or 0
    )


# Sweeps saved before the searchers moved pickled them under this module's name.
_MOVED = {
    "ConditionalHyperOptSearch": "tuning.searchers_hyperopt",
    "EpochwiseOptunaSearch": "tuning.searchers_optuna",
    "optuna_outcome": "tuning.searchers_optuna",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
