"""Building Ray's schedulers from settings, and the checks Ray leaves to us."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter
from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
)
from ray.tune.schedulers.pb2 import PB2

from schedulers import SchedulerSettings, build_scheduler, compatibility_errors
from schedulers.build import clip_to_domains, pb2_errors, pbt_mutations
from schedulers.population import LastEpochLeftAlone
from schedulers.replay import ReplayGuard

settings_of = TypeAdapter(SchedulerSettings).validate_python
SPACE = {
    "optimizer": {"lr": tune.loguniform(1e-4, 1e-1), "momentum": 0.9},
    "batch_size": tune.choice([16, 32, 64]),
}


@pytest.mark.parametrize(
    ("raw", "scheduler_class"),
    [
        ({"name": "fifo"}, FIFOScheduler),
        ({"name": "asha", "grace_period": 2}, ASHAScheduler),
        ({"name": "pbt", "mutate": ["optimizer.lr"]}, PopulationBasedTraining),
        ({"name": "hyperband", "reduction_factor": 3}, HyperBandScheduler),
        ({"name": "median", "grace_period": 2}, MedianStoppingRule),
        ({"name": "pb2", "mutate": ["optimizer.lr"]}, PB2),
    ],
)
def test_build_scheduler_returns_the_named_ray_scheduler(raw, scheduler_class):
    scheduler = build_scheduler(settings_of(raw), max_epochs=10, param_space=SPACE)
    # Ray's algorithm itself, with the decision record a resumed sweep replays (and, for
    # PBT and PB2, a trial's last epoch left alone).
    bases = type(scheduler).__bases__
    assert bases[0] is ReplayGuard and bases[-1] is scheduler_class
    population = scheduler_class in (PopulationBasedTraining, PB2)
    assert bases[1:-1] == ((LastEpochLeftAlone,) if population else ())


def test_pbt_mutations_keep_categorical_values_inside_the_declared_set():
    mutations = pbt_mutations(["optimizer.lr", "batch_size"], SPACE)
    assert mutations["batch_size"] == [16, 32, 64]
    assert mutations["optimizer"]["lr"] is SPACE["optimizer"]["lr"]


def test_pbt_mutations_reject_a_parameter_that_is_not_tuned():
    with pytest.raises(ValueError, match=r"train.optimizer.momentum is not a tuned parameter"):
        pbt_mutations(["optimizer.momentum"], SPACE)


@pytest.mark.parametrize(
    ("raw", "searcher", "every", "fragment"),
    [
        (
            {"name": "pbt", "mutate": ["optimizer.lr"]},
            "hyperopt",
            1,
            "search.algorithm: grid, random",
        ),
        (
            {"name": "pbt", "perturbation_interval": 3, "mutate": ["x"]},
            "random",
            1,
            "needs checkpoint.every_epochs=3 (it is 1)",
        ),
        ({"name": "hyperband"}, "random", 2, "Set checkpoint.every_epochs: 1"),
        ({"name": "asha", "grace_period": 11}, "hyperopt", 1, "grace_period=11 exceeds max_t=10"),
        ({"name": "asha", "max_t": 20}, "random", 1, "max_t=20 exceeds train.epochs=10"),
    ],
)
def test_compatibility_errors_explain_what_to_change(raw, searcher, every, fragment):
    errors = compatibility_errors(
        settings_of(raw),
        searcher=searcher,
        checkpoint_every=every,
        checkpoints_kept=3,
        max_epochs=10,
    )
    assert any(fragment in e for e in errors), errors


@pytest.mark.parametrize(
    ("raw", "searcher"),
    [
        ({"name": "asha"}, "hyperopt"),
        ({"name": "fifo"}, "grid"),
        ({"name": "pbt", "perturbation_interval": 2, "mutate": ["x"]}, "random"),
    ],
)
def test_compatibility_errors_none_for_supported_pairs(raw, searcher):
    assert (
        compatibility_errors(
            settings_of(raw),
            searcher=searcher,
            checkpoint_every=2,
            checkpoints_kept=3,
            max_epochs=10,
        )
        == []
    )


def test_compatibility_errors_pbt_needs_enough_checkpoints_kept():
    settings = settings_of({"name": "pbt", "mutate": ["x"]})
    errors = compatibility_errors(
        settings, searcher="random", checkpoint_every=2, checkpoints_kept=2, max_epochs=10
    )
    assert errors == [
        "checkpoint.keep=2 is too few for PBT, which exploits other trials' recent checkpoints; "
        "set checkpoint.keep: 3 or more"
    ]


def test_clip_to_domains_keeps_mutated_values_in_their_declared_range():
    space = {
        "optimizer": {"lr": tune.loguniform(1e-4, 1e-1)},
        "model": {"dropout": tune.uniform(0.0, 0.5)},
        "width": tune.randint(8, 65),
    }
    clip = clip_to_domains(pbt_mutations(["optimizer.lr", "model.dropout", "width"], space))
    config = {"optimizer": {"lr": 0.5}, "model": {"dropout": -0.1}, "width": 70.4}
    assert clip(config) == {"optimizer": {"lr": 0.1}, "model": {"dropout": 0.0}, "width": 64}
    inside = {"optimizer": {"lr": 0.01}, "model": {"dropout": 0.2}, "width": 16}
    assert clip(dict(inside)) == inside


def test_pb2_needs_numeric_ranges_to_mutate():
    assert pb2_errors(["optimizer.lr"], SPACE) == []
    (error,) = pb2_errors(["batch_size"], SPACE)
    assert "train.batch_size" in error and "scheduler.name: pbt" in error


@pytest.mark.parametrize(
    ("name", "searcher", "fragment"),
    [("hyperband", "hyperopt", "scheduler.name: asha"), ("pb2", "hyperopt", "random or grid")],
)
def test_unsupported_pairs_say_what_to_use_instead(name, searcher, fragment):
    raw = {"name": name} if name == "hyperband" else {"name": name, "mutate": ["x"]}
    errors = compatibility_errors(
        settings_of(raw), searcher=searcher, checkpoint_every=1, checkpoints_kept=3, max_epochs=10
    )
    assert any(fragment in e for e in errors), errors
