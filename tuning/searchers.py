"""Search algorithms: grid and random (Tune's variant generator) and HyperOpt's TPE."""

from __future__ import annotations

from ray.tune.search import BasicVariantGenerator, SearchAlgorithm, Searcher
from ray.tune.search.hyperopt import HyperOptSearch

from tuning.experiment import SearchSettings


def build_searcher(settings: SearchSettings) -> Searcher | SearchAlgorithm:
    """The searcher for `settings`. Metric and mode come from TuneConfig, not from here.

    Concurrency is limited through `TuneConfig.max_concurrent_trials`, which wraps a
    Searcher in Ray's ConcurrencyLimiter.
    """
    if settings.algorithm == "hyperopt":
        return HyperOptSearch(
            n_initial_points=settings.initial_points, random_state_seed=settings.seed
        )
    # Grid points are enumerated in order; random ones are drawn from a seeded generator.
    return BasicVariantGenerator(random_state=settings.seed)
