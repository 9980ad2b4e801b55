"""The Optuna searcher, driven through Ray's Searcher hooks with results shaped as Tune's.

Tune calls `suggest(trial_id)`, then `on_trial_result(trial_id, result)` for each epoch it
lets through, then `on_trial_complete(trial_id, result=last result)` (or `error=True`).
When a scheduler stops a trial, that last result goes to `on_trial_complete` only.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from trainables.config import TrainConfig
from tuning import space
from tuning.experiment import SearchSettings
from tuning.searchers import build_searcher
from tuning.searchers_optuna import EpochwiseOptunaSearch, optuna_outcome

SPACE = {
    "epochs": 4,
    "model": {"name": "cnn", "depth": 1, "width": 8},
    "optimizer": {"name": "adam", "lr": {"loguniform": [1.0e-4, 1.0e-1]}},
    "batch_size": {"choice": [32, 64, 128]},
}
CONDITIONAL = {
    "epochs": 4,
    "optimizer": {
        "choice": [
            {
                "name": "sgd",
                "lr": {"loguniform": [1.0e-3, 1.0e-1]},
                "momentum": {"uniform": [0.5, 0.99]},
            },
            {
                "name": "adam",
                "lr": {"loguniform": [1.0e-4, 1.0e-2]},
                "beta1": {"uniform": [0.8, 0.95]},
            },
            {"name": "adagrad", "lr": {"loguniform": [1.0e-3, 1.0e-1]}},
        ]
    },
}
OWN_PARAMETERS = {"sgd": {"momentum"}, "adam": {"beta1"}, "adagrad": set()}


def searcher_for(tree: dict[str, Any], *, seed: int = 0, initial_points: int = 3, **kw: Any):
    searcher = build_searcher(
        SearchSettings(algorithm="optuna", seed=seed, initial_points=initial_points)
    )
    assert isinstance(searcher, EpochwiseOptunaSearch)
    metric, mode = kw.get("metric", "val_acc"), kw.get("mode", "max")
    assert searcher.set_search_properties(metric, mode, space.to_param_space(tree))
    return searcher


def epoch_result(epoch: int, val_acc: float, **flags: Any) -> dict[str, Any]:
    """One epoch's result as Tune hands it to a searcher (flattened, config included)."""
    return {
        "epoch": epoch,
        "training_iteration": epoch,
        "val_acc": val_acc,
        "val_loss": 1.0 - val_acc,
        "train_acc": val_acc,
        "train_loss": 1.0 - val_acc,
        "lr": 0.01,
        "batch_size": 64,
        "diverged": False,
        "early_stopped": False,
        "config/epochs": 4,
        "done": False,
        **flags,
    }


def run_trial(searcher, trial_id: str, accuracies: list[float], *, stopped: bool) -> None:
    """Report one result per epoch; a stopped trial's last one goes only to on_trial_complete."""
    searcher.suggest(trial_id)
    results = [epoch_result(e, a) for e, a in enumerate(accuracies, start=1)]
    for result in results[:-1] if stopped else results:
        searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result={**results[-1], "done": True})


def optuna_trial(searcher, trial_id: str):
    (trial,) = [t for t in searcher.study.trials if t.user_attrs["ray_trial_id"] == trial_id]
    return trial


@pytest.mark.parametrize(
    ("result", "error", "expected"),
    [
        (epoch_result(2, 0.3), False, "PRUNED"),  # a scheduler stopped it at epoch 2 of 4
        (epoch_result(4, 0.9), False, "COMPLETE"),
        (epoch_result(3, 0.8, early_stopped=True), False, "COMPLETE"),  # it ended itself
        (epoch_result(2, 0.0, diverged=True, val_loss=math.inf), False, "COMPLETE"),
        (epoch_result(1, 0.0, infeasible="batch does not fit"), False, "COMPLETE"),
        (None, True, "FAIL"),
        (epoch_result(2, 0.3), True, "FAIL"),
        (None, False, "FAIL"),  # removed before it reported: it tells nothing
        (epoch_result(2, math.nan), False, "FAIL"),
    ],
    ids=[
        "stopped",
        "finished",
        "early-stopped",
        "diverged",
        "infeasible",
        "error",
        "error-with-result",
        "never-reported",
        "nan",
    ],
)
def test_optuna_outcome_is_pruned_only_for_a_trial_stopped_before_its_last_epoch(
    result, error, expected
):
    assert optuna_outcome(result, error, planned_epochs=4, metric="val_acc") == expected


def test_optuna_searcher_tells_stopped_trials_as_pruned_with_every_epoch():
    searcher = searcher_for(SPACE)
    run_trial(searcher, "finished", [0.5, 0.7, 0.8, 0.9], stopped=False)
    run_trial(searcher, "stopped", [0.2, 0.25], stopped=True)
    searcher.suggest("crashed")
    searcher.on_trial_result("crashed", epoch_result(1, 0.4))
    searcher.on_trial_complete("crashed", error=True)

    finished, stopped = optuna_trial(searcher, "finished"), optuna_trial(searcher, "stopped")
    assert finished.state.name == "COMPLETE" and finished.value == 0.9
    assert finished.intermediate_values == {1: 0.5, 2: 0.7, 3: 0.8, 4: 0.9}
    assert stopped.state.name == "PRUNED"
    # The epoch the scheduler stopped it on counts too, though only on_trial_complete saw it.
    assert stopped.intermediate_values == {1: 0.2, 2: 0.25}
    crashed = optuna_trial(searcher, "crashed")
    assert crashed.state.name == "FAIL" and crashed.intermediate_values == {1: 0.4}


def test_optuna_searcher_keeps_the_first_value_of_an_epoch_reported_again():
    searcher = searcher_for(SPACE)
    searcher.suggest("t")
    for epoch, acc in [(1, 0.5), (2, 0.6), (2, 0.1), (1, 0.1), (3, 0.7)]:  # restored at 1
        searcher.on_trial_result("t", epoch_result(epoch, acc))
    searcher.on_trial_complete("t", result=epoch_result(4, 0.8, done=True))
    assert optuna_trial(searcher, "t").intermediate_values == {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8}


@pytest.mark.parametrize(
    ("metric", "mode", "direction"),
    [("val_acc", "max", "MAXIMIZE"), ("val_loss", "min", "MINIMIZE")],
)
def test_optuna_searcher_takes_metric_and_mode_from_tune(metric, mode, direction):
    searcher = searcher_for(SPACE, metric=metric, mode=mode)
    assert searcher.metric == metric and searcher.study.direction.name == direction


def proposals(seed: int, count: int = 8) -> list[dict[str, Any]]:
    """The first `count` configs, each trial told a result that depends on its config."""
    searcher = searcher_for(SPACE, seed=seed, initial_points=3)
    configs = []
    for i in range(count):  # past the 3 random start-up trials, TPE proposes from its model
        config = searcher.suggest(f"t{i}")
        configs.append(config)
        accuracy = 1.0 - abs(math.log10(config["optimizer"]["lr"]) + 2.5) / 3
        run_trial(searcher, f"t{i}", [accuracy / 2, accuracy], stopped=i % 2 == 1)
    return configs


def test_optuna_searcher_with_the_same_seed_proposes_the_same_configs():
    assert proposals(seed=7) == proposals(seed=7)
    assert proposals(seed=7) != proposals(seed=8)


def test_optuna_searcher_resolves_only_the_chosen_branch_of_a_conditional_choice():
    searcher = searcher_for(CONDITIONAL, initial_points=5)
    names = set()
    for i in range(40):
        config = searcher.suggest(f"t{i}")
        optimizer = config["optimizer"]
        names.add(optimizer["name"])
        assert set(optimizer) == {"name", "lr"} | OWN_PARAMETERS[optimizer["name"]], optimizer
        TrainConfig.model_validate(config)
        run_trial(searcher, f"t{i}", [0.1 * (i % 7)], stopped=False)
    assert names == set(OWN_PARAMETERS)
    # Each branch's lr is its own Optuna parameter, labelled by the branch's index.
    labels = set().union(*(t.params for t in searcher.study.trials))
    assert {"optimizer", "optimizer/0/lr", "optimizer/0/momentum", "optimizer/2/lr"} <= labels


DOMAINS = [  # (domain, the type of its values)
    ({"qloguniform": [1.0e-4, 1.0e-2, 1.0e-4]}, float),
    ({"qloguniform": [16, 256, 16]}, int),
    ({"quniform": [16, 64, 16]}, int),
    ({"quniform": [0.0, 0.5, 0.1]}, float),
    ({"lograndint": [16, 256]}, int),
    ({"randint": [1, 4]}, int),
    ({"loguniform": [1.0e-4, 1.0e-1]}, float),
]


@pytest.mark.parametrize(("domain", "kind"), DOMAINS, ids=[str(d) for d, _ in DOMAINS])
def test_optuna_searcher_samples_quantized_and_log_domains_inside_their_bounds(domain, kind):
    name, (low, high, *step) = next(iter(domain.items()))
    searcher = searcher_for({"epochs": 2, "x": domain, "batch_size": 64}, initial_points=2)
    for i in range(12):
        value = searcher.suggest(f"t{i}")["x"]
        assert isinstance(value, kind) and low <= value <= high, value
        if name in ("randint", "lograndint"):
            assert value < high, value  # Tune's rule: high is excluded
        if step:  # a multiple of the step, up to float rounding
            assert abs(value / step[0] - round(value / step[0])) < 1e-6, value
        run_trial(searcher, f"t{i}", [0.5, (i % 5) / 5], stopped=False)


def test_optuna_searcher_refuses_a_grid_naming_it():
    searcher = build_searcher(SearchSettings(algorithm="optuna"))
    tree = {"optimizer": {"choice": [{"name": "sgd", "lr": {"grid": [0.1, 0.01]}}]}}
    with pytest.raises(ValueError, match=r"optuna cannot search a \{grid.*train\.optimizer\.lr"):
        searcher.set_search_properties("val_acc", "max", space.to_param_space(tree))


def test_optuna_searcher_restored_from_its_save_goes_on_as_the_original(tmp_path):
    original = searcher_for(SPACE, seed=3, initial_points=2)
    for i in range(3):
        run_trial(original, f"t{i}", [0.3 * i, 0.3 * i + 0.1], stopped=i == 1)
    original.suggest("running")
    original.on_trial_result("running", epoch_result(1, 0.6))
    original.save(str(tmp_path / "searcher.pkl"))

    restored = build_searcher(SearchSettings(algorithm="optuna"))
    restored.restore(str(tmp_path / "searcher.pkl"))

    assert [t.state for t in restored.study.trials] == [t.state for t in original.study.trials]
    run_trial(restored, "running", [0.6, 0.7], stopped=True)
    run_trial(original, "running", [0.6, 0.7], stopped=True)
    assert optuna_trial(restored, "running").intermediate_values == {1: 0.6, 2: 0.7}
    assert restored.suggest("next") == original.suggest("next")
