"""search.warm_start: which earlier trials fit a new space, and the searchers that take them.

The points are checked without Ray; the searchers are Ray's HyperOpt and Optuna classes
(ours), given Tune's param_space as Tune gives it. tests/integration/test_warm_start.py
runs the whole thing on real sweeps.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trainables.config import TrainConfig
from tuning.experiment import validate_experiment
from tuning.searchers import WARM_START_ATTR, build_searcher
from tuning.summary import TrialRecord
from tuning.warm_start import KnownPoint, Misfit, _incompatible, _known_point

TRAIN = {
    "epochs": 2,
    "model": {"name": "cnn", "depth": {"choice": [1, 2]}, "width": 8},
    "optimizer": {
        "choice": [
            {"name": "sgd", "lr": {"loguniform": [1.0e-3, 1.0e-1]}, "momentum": 0.9},
            {"name": "adam", "lr": {"loguniform": [1.0e-4, 1.0e-2]}},
        ]
    },
    "batch_size": {"quniform": [32, 128, 32]},
}


def experiment(**changes: Any) -> Any:
    raw: dict[str, Any] = {
        "name": "warm",
        "train": copy.deepcopy(TRAIN),
        "search": {"algorithm": "hyperopt", "num_samples": 4},
        "scheduler": {"name": "fifo"},
    }
    for section, value in changes.items():
        raw[section] = value
    return validate_experiment(raw)


def record(tuned: dict[str, Any], best: float | None = 0.9, status: str = "completed") -> Any:
    return TrialRecord(
        trial_id="t1", status=status, epochs=2, planned_epochs=2, best=best, tuned=tuned
    )


ADAM = {
    "model.depth": 2,
    "optimizer": {"name": "adam", "lr": 1.0e-3},
    "batch_size": 64,
}


def test_a_trial_inside_the_space_becomes_a_point_labelled_as_each_searcher_labels_it():
    sweep = experiment()

    point = _known_point("runs/a/t1", record(ADAM), sweep, sweep)

    assert point.value == 0.9 and not point.stopped_early
    # HyperOpt stores a choice as the option's index; Optuna a plain choice as its value.
    assert point.hyperopt == {
        "model/depth": 1,
        "optimizer": 1,
        "optimizer/1/lr": 1.0e-3,
        "batch_size": 64,
    }
    assert point.optuna == {**point.hyperopt, "model/depth": 2}


@pytest.mark.parametrize(
    ("tuned", "train_change", "reason"),
    [
        ({**ADAM, "batch_size": 48}, {}, "train.batch_size=48 is outside {quniform"),
        ({**ADAM, "model.depth": 3}, {}, "train.model.depth=3 is none of the choices"),
        (
            {**ADAM, "optimizer": {"name": "adam", "lr": 0.05}},
            {},
            "train.optimizer.lr=0.05 is outside {loguniform: [0.0001, 0.01]}",
        ),
        (ADAM, {"epochs": 3}, "train.epochs was 2 there, this sweep fixes 3"),
        # A default the earlier tree left out is compared like any other setting.
        (ADAM, {"label_smoothing": 0.1}, "train.label_smoothing was 0 there, this sweep fixes 0.1"),
    ],
)
def test_a_trial_outside_the_new_space_is_dropped_with_the_setting_that_differs(
    tuned, train_change, reason
):
    earlier = experiment()
    now = experiment(train={**copy.deepcopy(TRAIN), **train_change})

    with pytest.raises(Misfit) as caught:
        _known_point("runs/a/t1", record(tuned), earlier, now)

    assert reason in str(caught.value)


def test_a_trial_without_a_value_is_dropped():
    sweep = experiment()
    with pytest.raises(Misfit, match="it ended diverged without a usable val_acc"):
        _known_point("runs/a/t1", record(ADAM, best=None, status="diverged"), sweep, sweep)


def test_a_sweep_on_other_data_or_for_another_metric_or_under_pbt_gives_no_point():
    now = experiment()
    assert "dataset.name was mnist5k there, is digits here" in str(
        _incompatible(experiment(dataset={"name": "mnist5k"}), now)
    )
    assert "val_loss (min) there, val_acc (max) here" in str(
        _incompatible(experiment(metric="val_loss"), now)
    )
    pbt = {"name": "pbt", "perturbation_interval": 2, "mutate": ["batch_size"]}
    random = {"algorithm": "random", "num_samples": 4}
    assert "changed trials' values" in str(
        _incompatible(
            experiment(scheduler=pbt, search=random, checkpoint={"every_epochs": 2, "keep": 3}),
            now,
        )
    )


def test_warm_start_needs_a_searcher_that_learns(tmp_path):
    from tuning.errors import ConfigError

    with pytest.raises(ConfigError, match=r"search\.warm_start needs a searcher that learns"):
        experiment(search={"algorithm": "random", "warm_start": [str(tmp_path)]})


def points(sweep: Any) -> list[KnownPoint]:
    good = _known_point("runs/a/t1", record(ADAM, best=0.95), sweep, sweep)
    sgd = {**ADAM, "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9}, "model.depth": 1}
    stopped = _known_point("runs/a/t2", record(sgd, best=0.4, status="stopped_early"), sweep, sweep)
    return [good, stopped]


def test_hyperopt_counts_the_known_points_as_finished_trials_and_suggests_inside_the_space():
    sweep = experiment()
    searcher = build_searcher(sweep.search, points(sweep))
    searcher.set_search_properties("val_acc", "max", sweep.param_space())

    trials = searcher._hpopt_trials  # hyperopt's own record, which TPE reads
    assert [t["result"]["loss"] for t in trials.trials] == [-0.95, -0.4]
    assert all(t["state"] == 2 for t in trials.trials)  # JOB_STATE_DONE
    for index in range(3):
        config = searcher.suggest(f"trial_{index}")
        TrainConfig.model_validate(config)  # a configuration a trial can train
        assert config["batch_size"] in (32, 64, 96, 128)
        assert config["optimizer"]["name"] in ("sgd", "adam")


def test_optuna_adds_each_point_to_its_study_complete_or_pruned():
    from optuna.trial import TrialState

    sweep = experiment(search={"algorithm": "optuna", "num_samples": 4})
    searcher = build_searcher(sweep.search, points(sweep))
    searcher.set_search_properties("val_acc", "max", sweep.param_space())

    study = searcher.study
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert study.trials[0].value == 0.95
    assert study.trials[0].params["optimizer/1/lr"] == pytest.approx(1.0e-3)
    assert study.trials[1].intermediate_values == {2: 0.4}
    assert [t.user_attrs[WARM_START_ATTR] for t in study.trials] == ["runs/a/t1", "runs/a/t2"]
    assert searcher.suggest("next")["optimizer"]["name"] in ("sgd", "adam")
