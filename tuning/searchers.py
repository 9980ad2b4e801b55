"""Search algorithms: grid and random (Tune's variant generator) and HyperOpt's TPE."""

from __future__ import annotations

from typing import Any

from hyperopt import hp
from ray.tune.search import BasicVariantGenerator, SearchAlgorithm, Searcher
from ray.tune.search.hyperopt import HyperOptSearch
from ray.tune.search.sample import Categorical

from tuning.experiment import SearchSettings


class ConditionalHyperOptSearch(HyperOptSearch):
    """HyperOptSearch that gives every branch of a conditional choice its own labels.

    Ray's converter labels a parameter inside a choice's branch by its path alone, so
    two optimizers that both have an `lr` become two hyperopt parameters named
    "optimizer/lr", which hyperopt rejects (DuplicateLabel). Here a branch's parameters
    are labelled "optimizer/<branch index>/lr"; everything else is Ray's conversion.
    """

    @staticmethod
    def convert_search_space(spec: dict, prefix: str = "") -> dict:
        return _hyperopt_space(spec, prefix)


def _hyperopt_space(spec: dict[str, Any], prefix: str) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for key, value in spec.items():
        label = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Categorical) and any(isinstance(c, dict) for c in value.categories):
            branches = [
                _hyperopt_space(c, f"{label}/{i}") if isinstance(c, dict) else c
                for i, c in enumerate(value.categories)
            ]
            converted[key] = hp.choice(label, branches)
        elif isinstance(value, dict):
            converted[key] = _hyperopt_space(value, label)
        else:  # a plain domain or a constant: Ray's own conversion
            converted[key] = HyperOptSearch.convert_search_space({key: value}, prefix).get(
                key, value
            )
    return converted


def build_searcher(settings: SearchSettings) -> Searcher | SearchAlgorithm:
    """The searcher for `settings`. Metric and mode come from TuneConfig, not from here.

    Concurrency is limited through `TuneConfig.max_concurrent_trials`, which wraps a
    Searcher in Ray's ConcurrencyLimiter.
    """
    if settings.algorithm == "hyperopt":
        return ConditionalHyperOptSearch(
            n_initial_points=settings.initial_points, random_state_seed=settings.seed
        )
    # Grid points are enumerated in order; random ones are drawn from a seeded generator.
    # Tune ignores TuneConfig.max_concurrent_trials for a variant generator given as
    # search_alg, so the limit goes to the generator itself (0: no limit).
    return BasicVariantGenerator(
        random_state=settings.seed, max_concurrent=settings.max_concurrent or 0
    )
