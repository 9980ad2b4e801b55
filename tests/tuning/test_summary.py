"""summary.json's model: old sweeps read, newer keys kept, incomplete files refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tuning.status import TrialStatus
from tuning.summary import Summary
from tuning.summary_text import format_summary


def old_summary() -> dict[str, Any]:
    """A summary as cnn-tune wrote it before the patience status was renamed."""
    diagnosis = {"verdict": "healthy", "reasons": ["close"], "remedies": []}
    return {
        "experiment": "digits",
        "metric": "val_acc",
        "mode": "max",
        "num_trials": 2,
        "num_errored": 0,
        "num_stopped_early": 0,
        "num_early_stopped": 1,
        "best": {
            "trial_id": "a_00000",
            "config": {"epochs": 3},
            "val_acc": 0.97,
            "epochs": 3,
            "best_epoch": 2,
            "checkpoint_epoch": 2,
            "path": "/runs/digits/trial_a_00000",
            "diagnosis": diagnosis,
        },
        "final": {
            "protocol": "best_checkpoint",
            "models": [{"name": "best_checkpoint", "epochs": 2, "path": "x"}],
        },
        "test": {
            "accuracy": 0.96,
            "accuracy_ci95": [0.93, 0.98],
            "loss": 0.1,
            "num_examples": 270,
            "per_class_accuracy": {"0": 1.0},
        },
        "wall_seconds": 12.5,
        "trials": [
            {
                "trial_id": "a_00000",
                "status": "completed",
                "epochs": 3,
                "planned_epochs": 3,
                "best": 0.97,
            },
            {
                "trial_id": "a_00001",
                "status": "early_stopped",
                "epochs": 2,
                "planned_epochs": 3,
                "best": 0.5,
            },
        ],
        "a_key_from_a_newer_version": {"kept": True},
    }


def test_an_older_summary_reads_with_todays_statuses_and_keeps_unknown_keys():
    summary = Summary.read(json.dumps(old_summary()))

    assert summary.best_value() == 0.97
    assert [t.status for t in summary.trials] == [
        TrialStatus.completed,
        TrialStatus.patience_stopped,
    ]
    written = json.loads(summary.to_json())
    assert written["a_key_from_a_newer_version"] == {"kept": True}
    assert written["best"]["val_acc"] == 0.97 and "reevaluation" not in written
    assert "Sweep 'digits': 2 trials" in format_summary(summary)


def test_a_summary_cut_short_is_refused():
    text = json.dumps(old_summary())
    with pytest.raises(ValueError):
        Summary.read(text[: len(text) // 2])
    incomplete = old_summary()
    del incomplete["test"]
    with pytest.raises(ValueError, match="test"):
        Summary.model_validate(incomplete)
