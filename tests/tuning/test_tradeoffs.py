"""Outcome constraints, objectives and the Pareto front: parsing, judging, the front."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tuning.errors import ConfigError
from tuning.experiment import validate_experiment
from tuning.summary import Summary
from tuning.summary_text import format_summary
from tuning.tradeoffs import (
    Constraint,
    dominates,
    objective_errors,
    pareto_front,
    parse_constraint,
    trial_values,
)


@pytest.mark.parametrize(
    ("text", "op", "bound"),
    [
        ("<= 1e6", "<=", 1e6),
        (">=0.9", ">=", 0.9),
        ("  < 2.5 ", "<", 2.5),
        ("> 1_000", ">", 1000.0),
    ],
)
def test_parse_constraint_reads_an_operator_and_a_number(text: str, op: str, bound: float) -> None:
    assert parse_constraint("params", text) == Constraint("params", op, bound)


@pytest.mark.parametrize(
    ("metric", "text", "says"),
    [
        ("params", "1e6", "is not a comparison"),
        ("params", 1e6, "quoted in YAML"),
        ("params", "=< 5", "is not a comparison"),
        ("params", "== 5", "is not a comparison"),
        ("latency_ms", "<= fast", "'fast' is not a finite number"),
        ("latency_ms", "<= inf", "'inf' is not a finite number"),
        ("latency", "<= 2", "did you mean 'latency_ms'?"),
        ("accuracy", ">= 0.9", "allowed: val_acc"),
    ],
)
def test_parse_constraint_refuses_bad_input_saying_how_to_fix_it(
    metric: str, text: Any, says: str
) -> None:
    with pytest.raises(ValueError, match=r"constraints") as error:
        parse_constraint(metric, text)
    assert says in str(error.value)


@pytest.mark.parametrize(
    ("value", "holds"),
    [(999_999.0, True), (1e6, True), (1_000_001.0, False), (None, False), (math.nan, False)],
)
def test_constraint_holds_only_for_a_measured_value_within_its_bound(
    value: float | None, holds: bool
) -> None:
    constraint = Constraint("params", "<=", 1e6)
    assert constraint.holds(value) is holds
    assert (constraint.broken_by({"params": value}) is None) is holds


def test_constraint_says_which_value_broke_it() -> None:
    assert Constraint("params", "<=", 1e6).broken_by({"params": 2e6}) == (
        "params = 2e+06, not <= 1e+06"
    )
    assert "not measured" in (Constraint("latency_ms", "<", 2).broken_by({}) or "")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0.9, 1.0), (0.8, 2.0), True),  # better on both
        ((0.9, 2.0), (0.8, 2.0), True),  # better on one, equal on the other
        ((0.9, 1.0), (0.9, 1.0), False),  # equal: neither dominates
        ((0.9, 3.0), (0.8, 2.0), False),  # a trade-off
    ],
)
def test_dominates_needs_no_worse_everywhere_and_better_somewhere(
    a: tuple[float, float], b: tuple[float, float], expected: bool
) -> None:
    assert dominates(a, b, ["max", "min"]) is expected


def test_pareto_front_keeps_the_trade_offs_best_metric_first() -> None:
    points = {
        "big": [0.97, 5.0],
        "mid": [0.95, 2.0],
        "small": [0.90, 1.0],
        "worse": [0.89, 2.5],  # beaten by mid on both
        "tie": [0.95, 2.0],  # equal to mid: both stay
    }
    assert pareto_front(points, ["max", "min"]) == ["big", "mid", "tie", "small"]


def test_pareto_front_of_losses_minimizes_every_objective() -> None:
    points = {"a": [0.1, 10.0], "b": [0.2, 5.0], "c": [0.3, 6.0]}
    assert pareto_front(points, ["min", "min"]) == ["a", "b"]


@pytest.mark.parametrize(
    ("objectives", "says"),
    [
        ([], "objectives is empty"),
        (["val_loss", "params"], "objectives[0]='val_loss' differs from metric='val_acc'"),
        (["val_acc", "train_acc"], "'train_acc' cannot be a further objective"),
        (["val_acc", "params", "params"], "params listed twice"),
    ],
)
def test_objective_errors_name_the_entry_and_the_fix(objectives: list[str], says: str) -> None:
    errors = objective_errors(objectives, "val_acc")
    assert any(says in e for e in errors), errors


def test_objective_errors_accept_the_metric_then_footprint_metrics() -> None:
    assert objective_errors(["val_acc", "latency_ms", "params"], "val_acc") == []


def test_trial_values_take_training_metrics_at_the_best_epoch_and_the_latest_footprint() -> None:
    history = [
        {"epoch": 1, "val_acc": 0.5, "val_loss": 1.0, "params": 100, "latency_ms": 0.3},
        {"epoch": 2, "val_acc": 0.9, "val_loss": 0.4, "params": 100, "latency_ms": 0.2},
        {"epoch": 3, "val_acc": 0.8, "val_loss": 0.5, "params": 100, "latency_ms": 0.25},
    ]
    values = trial_values(history, best_epoch=2)
    assert values["val_acc"] == 0.9 and values["val_loss"] == 0.4
    assert values["params"] == 100 and values["latency_ms"] == 0.25


def experiment_raw(small_experiment: Any, **top: Any) -> dict[str, Any]:
    raw = small_experiment()
    raw.update(top)
    return raw


@pytest.mark.parametrize(
    "top",
    [
        {"metric": ["val_acc", "latency_ms"]},
        {"objectives": ["val_acc", "latency_ms"]},
        {"metric": "val_acc", "objectives": ["val_acc", "latency_ms"]},
    ],
    ids=["metric list", "objectives alone", "both, agreeing"],
)
def test_experiment_reads_objectives_keeping_metric_the_first(
    small_experiment: Any, top: dict[str, Any]
) -> None:
    experiment = validate_experiment(experiment_raw(small_experiment, **top))
    assert experiment.metric == "val_acc" and experiment.multi_objective
    assert experiment.objective_names == ["val_acc", "latency_ms"]
    assert experiment.objective_modes == ["max", "min"]
    again = validate_experiment(experiment.model_dump(mode="json", exclude_none=True))
    assert again.objective_names == experiment.objective_names


def test_experiment_parses_constraints_once(small_experiment: Any) -> None:
    raw = experiment_raw(small_experiment, constraints={"params": "<= 1e6", "val_acc": "> 0.5"})
    experiment = validate_experiment(raw)
    assert experiment.outcome_constraints == (
        Constraint("params", "<=", 1e6),
        Constraint("val_acc", ">", 0.5),
    )
    assert not experiment.multi_objective


@pytest.mark.parametrize(
    ("top", "says"),
    [
        ({"metric": ["val_acc", "params"], "objectives": ["val_acc"]}, "give the objectives once"),
        ({"metric": ["latency_ms", "val_acc"]}, "trade it for latency_ms"),
        ({"constraints": {"params": "1e6"}}, "constraints.params='1e6' is not a comparison"),
        (
            {"metric": ["val_acc", "params"], "final": {"reevaluate": {"top_k": 2}}},
            "final.reevaluate with objectives",
        ),
    ],
)
def test_experiment_refuses_bad_objectives_and_constraints(
    small_experiment: Any, top: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as error:
        validate_experiment(experiment_raw(small_experiment, **top))
    assert says in str(error.value)


def test_format_summary_prints_constraints_and_the_front_marking_the_tested_trial() -> None:
    summary = Summary.model_validate(
        {
            "experiment": "digits",
            "metric": "val_acc",
            "mode": "max",
            "num_trials": 3,
            "num_errored": 0,
            "num_stopped_early": 0,
            "best": {
                "trial_id": "t1",
                "config": {},
                "val_acc": 0.96,
                "epochs": 2,
                "path": "/x",
                "diagnosis": {"verdict": "healthy"},
                "footprint": {"params": 346.0, "flops": 9e3, "latency_ms": 0.2},
            },
            "test": {
                "accuracy": 0.95,
                "accuracy_ci95": [0.9, 0.97],
                "loss": 0.2,
                "num_examples": 270,
            },
            "wall_seconds": 10.0,
            "constraints": {"params": "<= 500"},
            "num_ineligible": 1,
            "objectives": {"val_acc": "max", "latency_ms": "min"},
            "pareto_front": [
                {"trial_id": "t1", "val_acc": 0.96, "latency_ms": 0.2},
                {"trial_id": "t0", "val_acc": 0.9, "latency_ms": 0.1},
            ],
            "pareto_rule": "the front's point with the best first objective",
        }
    )
    text = format_summary(summary)
    assert "346 params" in text
    assert "Constraints params <= 500: 1 of 3 trials broke one" in text
    assert "Pareto front over val_acc (max), latency_ms (min): 2 trial(s)" in text
    tested = [line for line in text.splitlines() if "<- tested" in line]
    assert len(tested) == 1 and "t1" in tested[0]


def trial_record(trial_id: str, best: float, footprint: dict[str, float], broken: list[str]):
    return {
        "trial_id": trial_id,
        "status": "completed",
        "best": best,
        "footprint": footprint,
        "broken_constraints": broken,
    }


def test_choose_best_breaks_a_tie_on_the_metric_by_the_next_objective(small_experiment) -> None:
    from tuning.results import choose_best

    raw = experiment_raw(small_experiment, metric=["val_acc", "latency_ms"])
    slow = trial_record("slow", 0.9, {"latency_ms": 2.0}, [])
    fast = trial_record("fast", 0.9, {"latency_ms": 1.0}, [])
    best = trial_record("big", 0.95, {"latency_ms": 9.0}, ["params = 2e+06, not <= 1e+06"])
    results = {"slow": "result of slow", "fast": "result of fast", "big": "result of big"}

    choice = choose_best([slow, best, fast], results, validate_experiment(raw), final=None)

    assert choice.record["trial_id"] == "fast" and choice.result == "result of fast"


def test_choose_best_says_when_the_constraints_left_no_trial_to_test(small_experiment) -> None:
    from tuning.results import NoUsableTrialError, choose_best

    experiment = validate_experiment(
        experiment_raw(small_experiment, constraints={"params": "<= 10"})
    )
    record = trial_record("a", 0.9, {"params": 94.0}, ["params = 94, not <= 10"])

    with pytest.raises(NoUsableTrialError, match=r"1 broke a constraint \(params <= 10\)"):
        choose_best([record], {}, experiment, final=None)
