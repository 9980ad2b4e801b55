"""Over/underfitting diagnosis: on real training runs, and rule by rule on written curves."""

from __future__ import annotations

from typing import Any

import pytest

from trainables.config import TrainConfig
from trainables.data import DataConfig, load_splits
from trainables.loop import fit
from tuning.diagnosis import OVERFITTING_REMEDIES, UNDERFITTING_REMEDIES, diagnose

TINY_CNN = {"name": "cnn", "depth": 2, "width": 16}

# Each case is a real digits training run chosen to show one behaviour.
TRAINING_RUNS = {
    # 20 training images (2 per class), no regularization, 80 epochs: memorizes them.
    "overfitting": (
        {"max_train_examples": 20},
        {"epochs": 80, "model": TINY_CNN, "optimizer": {"name": "adam", "lr": 3.0e-3}},
    ),
    # A learning rate 1000x too small for 4 epochs: barely moves from chance.
    "underfitting": (
        {},
        {"epochs": 4, "model": TINY_CNN, "optimizer": {"name": "sgd", "lr": 1.0e-5}},
    ),
    # All 1257 training images, a good Adam learning rate, trained to convergence.
    "healthy": (
        {},
        {"epochs": 15, "model": TINY_CNN, "optimizer": {"name": "adam", "lr": 3.0e-3}},
    ),
}


def train_history(data: dict[str, Any], train: dict[str, Any]) -> list[dict[str, Any]]:
    splits = load_splits(DataConfig(name="digits", **data))
    rows: list[dict[str, Any]] = []
    fit(
        TrainConfig.model_validate({"batch_size": 16, **train}),
        splits.tuning,
        on_epoch_end=rows.append,
    )
    return rows


@pytest.mark.parametrize("expected", list(TRAINING_RUNS))
def test_diagnose_names_the_behaviour_of_a_real_training_run(expected):
    history = train_history(*TRAINING_RUNS[expected])

    diagnosis = diagnose(history, num_classes=10)

    assert diagnosis.verdict == expected, diagnosis.reasons
    assert diagnosis.reasons
    remedies = {
        "overfitting": OVERFITTING_REMEDIES,
        "underfitting": UNDERFITTING_REMEDIES,
        "healthy": [],
    }
    assert diagnosis.remedies == remedies[expected]


def curve(train_acc, val_acc, val_loss, train_loss=None):
    """Epoch rows from per-epoch lists, as progress.csv holds them."""
    train_loss = train_loss or [max(0.01, 1.0 - a) for a in train_acc]
    return [
        {"epoch": i + 1, "train_acc": ta, "val_acc": va, "val_loss": vl, "train_loss": tl}
        for i, (ta, va, vl, tl) in enumerate(
            zip(train_acc, val_acc, val_loss, train_loss, strict=True)
        )
    ]


def test_diagnose_flags_a_moderate_gap_once_val_loss_turns_up():
    rising = curve([0.9, 0.95, 0.98, 0.99], [0.90, 0.92, 0.92, 0.92], [0.30, 0.25, 0.29, 0.33])

    diagnosis = diagnose(rising)

    assert diagnosis.verdict == "overfitting"
    assert any("val_loss rose" in reason for reason in diagnosis.reasons)


def test_diagnose_accepts_a_moderate_gap_while_val_loss_still_falls():
    falling = curve([0.9, 0.95, 0.98, 0.99], [0.90, 0.91, 0.92, 0.92], [0.30, 0.27, 0.26, 0.25])

    assert diagnose(falling).verdict == "healthy"


def test_diagnose_calls_a_run_still_climbing_fast_underfitted():
    climbing = curve(
        [0.82, 0.87, 0.91, 0.94, 0.96, 0.97],
        [0.80, 0.85, 0.89, 0.92, 0.94, 0.96],
        [0.6, 0.5, 0.4, 0.3, 0.2, 0.15],
    )

    diagnosis = diagnose(climbing)

    assert diagnosis.verdict == "underfitting"
    assert any("still improving" in reason for reason in diagnosis.reasons)


@pytest.mark.parametrize(
    "row", [{"diverged": True}, {"train_loss": float("nan")}, {"val_loss": float("inf")}]
)
def test_diagnose_reports_divergence_before_anything_else(row):
    history = curve([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], [1.0, 0.9, 0.8])
    history[-1].update(row)

    assert diagnose(history).verdict == "diverged"


def test_diagnose_refuses_to_judge_fewer_than_three_epochs():
    stopped_at_first_rung = curve([0.3, 0.5], [0.3, 0.5], [2.0, 1.5])

    diagnosis = diagnose(stopped_at_first_rung)

    assert diagnosis.verdict == "too_short" and diagnosis.remedies == []


def test_diagnosis_round_trips_to_a_json_ready_dict():
    diagnosis = diagnose(curve([0.99] * 4, [0.98] * 4, [0.1] * 4))

    assert diagnosis.to_dict()["verdict"] == "healthy"
    assert set(diagnosis.to_dict()) == {"verdict", "reasons", "remedies", "evidence"}
