"""The report's arithmetic: ASHA and HyperBand rungs, rung counts, columns, importance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from schedulers import (
    ASHASettings,
    FIFOSettings,
    HyperBandSettings,
    MedianStoppingSettings,
    PBTSettings,
)
from tuning.history import best_epoch_of, epoch_rows
from tuning.report.analysis import (
    MIN_TRIALS_FOR_IMPORTANCE,
    RungCount,
    decision_epochs,
    hyperparameter_importance,
    parallel_axis,
    parameter_columns,
    rung_counts,
)


@pytest.mark.parametrize(
    ("settings", "max_epochs", "expected"),
    [
        (ASHASettings(name="asha", grace_period=1, reduction_factor=2), 6, [1, 2, 4]),
        (ASHASettings(name="asha", grace_period=2, reduction_factor=3), 15, [2, 6]),
        (ASHASettings(name="asha", grace_period=1, reduction_factor=2), 8, [1, 2, 4, 8]),
        (ASHASettings(name="asha", grace_period=1, reduction_factor=2, max_t=4), 20, [1, 2, 4]),
        (ASHASettings(name="asha", grace_period=1, reduction_factor=4, brackets=2), 16, [1, 4, 16]),
        (ASHASettings(name="asha", grace_period=1, reduction_factor=1.5), 4, [1, 2, 3, 4]),
        # Ray's brackets start at int(max_t / 3**s) epochs: 81, 27, 9, 3, 1 (its docstring's
        # example); with max_t 10 at 10, 3 and 1, then x3 capped at max_t: 3, 9, 10.
        (HyperBandSettings(name="hyperband", reduction_factor=3), 81, [1, 3, 9, 27, 81]),
        (HyperBandSettings(name="hyperband", reduction_factor=3), 10, [1, 3, 9, 10]),
        (
            HyperBandSettings(name="hyperband", reduction_factor=2, max_t=20),
            6,
            [1, 2, 4, 5, 8, 10, 16, 20],
        ),
        (MedianStoppingSettings(name="median", grace_period=3), 10, [3]),
        (FIFOSettings(name="fifo"), 10, []),
        (PBTSettings(name="pbt", mutate=["optimizer.lr"]), 10, []),
    ],
)
def test_decision_epochs_are_the_schedulers_rungs(settings, max_epochs, expected):
    assert decision_epochs(settings, max_epochs) == expected


def test_rung_counts_count_trials_reaching_and_stopped_at_each_milestone():
    trials = [(1, "stopped_early"), (1, "stopped_early"), (2, "stopped_early"), (6, "completed")]
    assert rung_counts(trials, [1, 2, 4]) == [
        RungCount(epoch=1, reached=4, stopped=2),
        RungCount(epoch=2, reached=2, stopped=1),
        RungCount(epoch=4, reached=1, stopped=0),
    ]


def test_rung_counts_without_milestones_use_the_stop_epochs():
    trials = [(3, "stopped_early"), (5, "stopped_early"), (9, "completed"), (2, "diverged")]
    assert [r.epoch for r in rung_counts(trials, [])] == [3, 5]


# Tuned values of three trials with a conditional parameter (momentum only with sgd).
CONDITIONAL_TUNED = [
    {"optimizer.name": "sgd", "optimizer.lr": 0.1, "optimizer.momentum": 0.9},
    {"optimizer.name": "adam", "optimizer.lr": 0.001},
    {"optimizer.name": "sgd", "optimizer.lr": 0.01, "optimizer.momentum": 0.5},
]


def test_parameter_columns_encode_categories_and_leave_missing_conditionals_empty():
    columns = {c.name: c for c in parameter_columns(CONDITIONAL_TUNED)}
    assert columns["optimizer.name"].categories == ["adam", "sgd"]
    assert columns["optimizer.name"].values == [1.0, 0.0, 1.0]
    assert columns["optimizer.momentum"].values == [0.9, None, 0.5]
    assert not columns["optimizer.momentum"].is_categorical
    assert columns["optimizer.lr"].log_scale and not columns["optimizer.momentum"].log_scale


def test_parallel_axis_uses_log10_categories_and_an_n_a_position_below_the_values():
    columns = {c.name: c for c in parameter_columns(CONDITIONAL_TUNED)}

    lr = parallel_axis(columns["optimizer.lr"], [0, 1, 2])
    name = parallel_axis(columns["optimizer.name"], [0, 1])
    momentum = parallel_axis(columns["optimizer.momentum"], [0, 1, 2])
    present = parallel_axis(columns["optimizer.momentum"], [0, 2])

    assert lr.label == "optimizer.lr (log)" and lr.missing is None
    assert lr.positions == pytest.approx([-1.0, -3.0, -2.0])
    assert (lr.value_text(lr.low), lr.value_text(lr.high)) == ("0.001", "0.1")
    assert name.positions == [1.0, 0.0] and name.categories == ["adam", "sgd"]
    assert momentum.missing is not None and momentum.missing < momentum.low == 0.5
    assert momentum.positions[1] == momentum.missing
    assert present.missing is None and present.value_text(present.high) == "0.9"


def test_importance_below_the_minimum_says_too_few_trials():
    columns = parameter_columns([{"lr": float(i)} for i in range(MIN_TRIALS_FOR_IMPORTANCE - 1)])
    importance = hyperparameter_importance(
        columns, [0.1 * i for i in range(len(columns[0].values))]
    )
    assert importance.shares == {} and "too few trials" in importance.note


def test_importance_leaves_out_unscored_trials_before_counting():
    tuned = [{"lr": float(i)} for i in range(MIN_TRIALS_FOR_IMPORTANCE)]
    scores = [0.5] * (MIN_TRIALS_FOR_IMPORTANCE - 1) + [None]
    assert "too few trials" in hyperparameter_importance(parameter_columns(tuned), scores).note


def test_importance_of_equal_scores_has_nothing_to_explain():
    tuned = [{"lr": float(i)} for i in range(12)]
    importance = hyperparameter_importance(parameter_columns(tuned), [0.7] * 12)
    assert importance.shares == {} and "same" in importance.note


def test_importance_ranks_the_parameter_that_drives_the_score_first():
    rng = np.random.default_rng(0)
    tuned = [
        {
            "lr": float(10 ** rng.uniform(-4, -1)),
            "dropout": float(rng.uniform(0, 0.5)),
            "optimizer.name": str(rng.choice(["adam", "sgd", "rmsprop"])),
        }
        for _ in range(40)
    ]
    scores = [-abs(math.log10(t["lr"]) + 2.5) + 0.01 * rng.normal() for t in tuned]

    importance = hyperparameter_importance(parameter_columns(tuned), scores)

    assert (
        max(importance.shares, key=importance.shares.__getitem__) == "lr"
        and importance.shares["lr"] > 0.6
    )
    assert set(importance.shares) == {"lr", "dropout", "optimizer.name"}  # one-hot summed back
    assert sum(importance.shares.values()) == pytest.approx(1.0)


def test_importance_tolerates_conditional_parameters_missing_for_some_trials():
    tuned = [{"a": float(i), **({"b": 1.0} if i % 2 else {})} for i in range(10)]
    importance = hyperparameter_importance(parameter_columns(tuned), [float(i) for i in range(10)])
    assert set(importance.shares) == {"a", "b"}


def test_epoch_rows_keep_the_latest_row_of_a_repeated_epoch_in_epoch_order():
    rows = [
        {"epoch": 1, "v": "a"},
        {"epoch": 2, "v": "b"},
        {"epoch": 2, "v": "c"},
        {"epoch": 3, "v": "d"},
    ]
    assert [r["v"] for r in epoch_rows(rows)] == ["a", "c", "d"]


@pytest.mark.parametrize(("mode", "expected"), [("max", (0.9, 2)), ("min", (0.5, 1))])
def test_best_epoch_of_follows_the_mode_and_skips_non_finite_values(mode, expected):
    history = [
        {"epoch": 1, "val_acc": 0.5},
        {"epoch": 2, "val_acc": 0.9},
        {"epoch": 3, "val_acc": float("nan")},
    ]
    assert best_epoch_of(history, "val_acc", mode) == expected


def test_best_epoch_of_a_diverged_trial_is_none():
    history = [
        {"epoch": 1, "val_acc": 0.5, "diverged": False},
        {"epoch": 2, "val_acc": 0.0, "diverged": True},
    ]
    assert best_epoch_of(history, "val_acc", "max") == (None, None)
