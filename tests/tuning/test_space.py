"""The YAML search-space syntax and its translation to Ray Tune domains."""

from __future__ import annotations

import pytest
from ray.tune.search.sample import Categorical, Float, Integer

from trainables.config import TrainConfig
from tuning import space


@pytest.mark.parametrize(
    ("node", "domain_type", "bounds"),
    [
        ({"uniform": [0.0, 0.5]}, Float, (0.0, 0.5)),
        ({"loguniform": [1.0e-4, 1.0e-1]}, Float, (1.0e-4, 1.0e-1)),
        ({"quniform": [0.0, 1.0, 0.25]}, Float, (0.0, 1.0)),
        ({"quniform": [16, 64, 16]}, Integer, (16, 64)),
        ({"randint": [1, 4]}, Integer, (1, 4)),
        ({"lograndint": [8, 256]}, Integer, (8, 256)),
    ],
)
def test_to_param_space_range_domains_keep_their_bounds(node, domain_type, bounds):
    domain = space.to_param_space(node)
    assert isinstance(domain, domain_type)
    assert (domain.lower, domain.upper) == bounds


def test_to_param_space_choice_and_grid():
    converted = space.to_param_space({"a": {"choice": [1, 2]}, "b": {"grid": [3, 4]}, "c": 5})
    assert isinstance(converted["a"], Categorical) and converted["a"].categories == [1, 2]
    assert converted["b"] == {"grid_search": [3, 4]}
    assert converted["c"] == 5


def test_to_param_space_converts_domains_inside_choice_options():
    node = {"choice": [{"name": "sgd", "momentum": {"uniform": [0.8, 0.99]}}, {"name": "adam"}]}
    converted = space.to_param_space(node)
    assert isinstance(converted.categories[0]["momentum"], Float)


def test_representatives_cover_every_extreme_and_option():
    tree = {"lr": {"loguniform": [1.0e-4, 1.0e-1]}, "bs": {"choice": [16, 32, 64]}, "fixed": 1}
    reps = space.representatives(tree)
    assert {r["lr"] for r in reps} == {1.0e-4, 1.0e-1}
    assert {r["bs"] for r in reps} == {16, 32, 64}
    assert all(r["fixed"] == 1 for r in reps)
    assert len(reps) == 1 + 1 + 2  # base, plus each other value once: sum, not product


def test_validation_errors_reports_a_choice_option_the_model_rejects():
    tree = {"optimizer": {"choice": [{"name": "sgd"}, {"name": "sgd", "momentum": 1.5}]}}
    errors = space.validation_errors(tree, TrainConfig, prefix="train")
    assert errors == ["train.optimizer.momentum: Input should be less than 1 (got 1.5)"]


def test_validation_errors_empty_for_a_valid_conditional_space():
    tree = {
        "optimizer": {
            "choice": [
                {
                    "name": "sgd",
                    "lr": {"loguniform": [1.0e-3, 1.0e-1]},
                    "momentum": {"uniform": [0.5, 0.9]},
                },
                {"name": "adam", "lr": {"loguniform": [1.0e-4, 1.0e-2]}},
            ]
        }
    }
    assert space.validation_errors(tree, TrainConfig, prefix="train") == []


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        ({"loguniform": [0.0, 1.0]}, "low > 0"),
        ({"uniform": [1.0, 1.0]}, "low < high"),
        ({"uniform": [0.1]}, "[low, high]"),
        ({"quniform": [0, 10, 0]}, "q > 0"),
        ({"uniform": ["a", "b"]}, "numbers"),
        ({"choice": "abc"}, "non-empty list"),
        ({"randint": [0.5, 4]}, "integer bounds"),
    ],
)
def test_syntax_errors_name_the_path_and_the_problem(node, problem):
    errors = space.syntax_errors({"x": node}, prefix="train")
    assert len(errors) == 1
    assert errors[0].startswith("train.x: ") and problem in errors[0]


def test_tuned_paths_are_outermost_domains():
    tree = {
        "optimizer": {"choice": [{"name": "sgd", "momentum": {"uniform": [0.5, 0.9]}}]},
        "batch_size": {"grid": [32, 64]},
        "model": {"width": {"randint": [8, 64]}, "depth": 2},
    }
    assert space.tuned_paths(tree) == ["optimizer", "batch_size", "model.width"]


def test_grid_size_is_the_product_of_grid_lengths():
    assert (
        space.grid_size({"a": {"grid": [1, 2, 3]}, "b": {"grid": [1, 2]}, "c": {"choice": [1, 2]}})
        == 6
    )
    assert space.grid_size({"c": 1}) == 1


def test_sample_point_is_seeded_and_within_bounds():
    tree = {
        "lr": {"loguniform": [1.0e-4, 1.0e-1]},
        "bs": {"choice": [16, 32]},
        "w": {"grid": [8, 16]},
    }
    first, again = space.sample_point(tree, seed=3), space.sample_point(tree, seed=3)
    assert first == again
    assert 1.0e-4 <= first["lr"] < 1.0e-1 and first["bs"] in (16, 32) and first["w"] == 8
    assert {space.sample_point(tree, seed=s)["lr"] for s in range(5)} != {first["lr"]}


def test_largest_value_finds_the_maximum_over_a_domain():
    assert space.SearchSpace.parse({"epochs": {"choice": [5, 20, 10]}}).largest("epochs", 1) == 20
    assert space.SearchSpace.parse({"epochs": 7}).largest("epochs", 1) == 7
    assert space.SearchSpace.parse({}).largest("epochs", 10) == 10


def test_dotted_paths_read_write_and_flatten_one_way():
    import pytest

    from trainables.dotted import PathBlocked, flatten, get_path, set_path

    tree = {"optimizer": {"name": "adam", "lr": 0.1}, "epochs": 3}
    assert get_path(tree, "optimizer.lr") == 0.1 and get_path(tree, "optimizer.x.y") is None
    set_path(tree, "lr_schedule.gamma", 0.5)
    assert flatten(tree) == {
        "optimizer.name": "adam",
        "optimizer.lr": 0.1,
        "epochs": 3,
        "lr_schedule.gamma": 0.5,
    }
    with pytest.raises(PathBlocked, match="epochs is 3, not a mapping, so it has no key 'x'"):
        set_path(tree, "epochs.x", 1)
