"""Conditional parameters: a choice's own parameters appear exactly when it is chosen."""

from __future__ import annotations

import pytest
from ray.tune.search.variant_generator import generate_variants

from trainables.config import TrainConfig
from tuning import space
from tuning.searchers_hyperopt import ConditionalHyperOptSearch

OWN_PARAMETERS = {
    "sgd": {"momentum", "nesterov"},
    "adam": {"beta1", "beta2"},
    "rmsprop": {"alpha", "momentum"},
    "adagrad": set(),
}
TREE = {
    "optimizer": {
        "choice": [
            {
                "name": "sgd",
                "lr": {"loguniform": [1.0e-3, 1.0e-1]},
                "momentum": {"uniform": [0.5, 0.99]},
                "nesterov": {"choice": [True, False]},
            },
            {
                "name": "adam",
                "lr": {"loguniform": [1.0e-4, 1.0e-2]},
                "beta1": {"uniform": [0.8, 0.95]},
                "beta2": {"choice": [0.99, 0.999]},
            },
            {
                "name": "rmsprop",
                "lr": {"loguniform": [1.0e-4, 1.0e-2]},
                "alpha": {"uniform": [0.9, 0.99]},
                "momentum": {"uniform": [0.0, 0.9]},
            },
            {"name": "adagrad", "lr": {"loguniform": [1.0e-3, 1.0e-1]}},
        ]
    },
    "batch_size": {"choice": [32, 64]},
}


def check(configs: list[dict]) -> None:
    names = set()
    for config in configs:
        optimizer = config["optimizer"]
        names.add(optimizer["name"])
        assert set(optimizer) == {"name", "lr"} | OWN_PARAMETERS[optimizer["name"]], optimizer
        assert all(not isinstance(v, dict) for v in optimizer.values()), "an unresolved domain"
        TrainConfig.model_validate(config)  # and the result is a valid training config
    assert names == set(OWN_PARAMETERS)


def test_random_search_resolves_only_the_chosen_branch():
    param_space = space.to_param_space(TREE)
    configs = []
    for seed in range(200):
        ((_, config),) = generate_variants(param_space, random_state=seed)
        configs.append(config)
    check(configs)


def test_hyperopt_resolves_only_the_chosen_branch():
    searcher = ConditionalHyperOptSearch(random_state_seed=0, n_initial_points=20)
    searcher.set_search_properties("val_acc", "max", space.to_param_space(TREE))
    configs = []
    for i in range(200):  # past the random start-up, TPE proposes from its model too
        configs.append(searcher.suggest(f"t{i}"))
        searcher.on_trial_complete(f"t{i}", {"val_acc": (i % 7) / 7})
    check(configs)


def test_grid_over_conditional_branches_expands_every_branch():
    tree = {
        "optimizer": {"grid": [{"name": "sgd", "momentum": {"grid": [0.5, 0.9]}}, {"name": "adam"}]}
    }
    configs = [config for _, config in generate_variants(space.to_param_space(tree))]
    optimizers = sorted((c["optimizer"]["name"], c["optimizer"].get("momentum")) for c in configs)
    assert optimizers == [("adam", None), ("sgd", 0.5), ("sgd", 0.9)]


@pytest.mark.parametrize("seed", range(5))
def test_sample_point_resolves_only_the_chosen_branch(seed):
    config = space.sample_point(TREE, seed)
    assert set(config["optimizer"]) == {"name", "lr"} | OWN_PARAMETERS[config["optimizer"]["name"]]
