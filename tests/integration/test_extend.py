"""`cnn-tune resume DIR --set search.num_samples=N` (and `--set train.epochs=N`) on real
sweeps: a finished sweep gets more trials (or its best trials more epochs) in a round of
its own, nothing that ran is run again, the summary and the report cover every round,
and the test split is looked at again only for a new model."""

from __future__ import annotations

import json
import shutil

import pytest

from tuning.cli import main
from tuning.errors import ConfigError
from tuning.experiment import validate_experiment
from tuning.report.data import load_sweep
from tuning.resume import resume_sweep
from tuning.runner import run_sweep

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def extended(ray_two_cpus, small_experiment, tmp_path_factory):
    """A 2-trial HyperOpt sweep, then extended to 4 trials: (first summary, outcome)."""
    raw = small_experiment(search={"algorithm": "hyperopt", "num_samples": 2, "initial_points": 2})
    raw["train"]["epochs"] = 1
    storage = tmp_path_factory.mktemp("extend")
    first = run_sweep(validate_experiment(raw), storage=str(storage), name="sweep").summary
    outcome = resume_sweep(storage / "sweep", changes=["search.num_samples=4"])
    return first, outcome


def test_the_added_trials_run_in_a_round_and_the_summary_covers_both(extended):
    first, outcome = extended
    summary, sweep = outcome.summary, outcome.experiment_dir

    assert summary["num_trials"] == 4 and summary["extensions"] == 1
    before = {t["trial_id"]: t["best"] for t in first["trials"]}
    after = {t["trial_id"]: t["best"] for t in summary["trials"]}
    assert {k: after[k] for k in before} == before  # kept as they were, not run again
    added = set(after) - set(before)
    assert {p.name.removeprefix("trial_") for p in (sweep / "extension-1").glob("trial_*")} == added
    assert summary["best"]["trial_id"] == max(after, key=lambda t: after[t] or 0.0)
    # The round's HyperOpt started from the sweep's 2 trials.
    warm = json.loads((sweep / "extension-1" / "warm-start.json").read_text())
    assert len(warm["used"]) == 2 and warm["dropped"] == []
    # A new best means a new final model and a second look at the test split.
    new_best = summary["best"]["trial_id"] != first["best"]["trial_id"]
    assert summary["test"]["looks"] == 1 + new_best
    assert len(json.loads((sweep / "final" / "test-looks.json").read_text())) == 1 + new_best
    assert "num_samples: 4" in (sweep / "cnn-tune-experiment.yaml").read_text()


def test_the_report_shows_every_rounds_trials(extended):
    _, outcome = extended
    view = load_sweep(outcome.experiment_dir)
    assert {t.trial_id for t in view.trials} == {t["trial_id"] for t in outcome.summary["trials"]}
    assert view.best is not None and view.best.trial_id == outcome.summary["best"]["trial_id"]


def test_resume_again_leaves_the_extended_sweep_as_it_stands(extended):
    _, outcome = extended
    again = resume_sweep(outcome.experiment_dir)
    assert again.summary == outcome.summary


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("search.num_samples=3", "the sweep has already run 4 trials; ask for more"),
        ("train.epochs=1", "already train for 1 epochs; ask for more"),
        ("train.model.depth=2", "a sweep that ran can only be given more trials"),
        ("search.num_samples=5\x00train.epochs=2", "one at a time"),
        ("search.num_samples=many", "search.num_samples"),
    ],
)
def test_resume_refuses_a_change_it_cannot_make_before_anything_runs(extended, change, message):
    _, outcome = extended
    changes = change.split("\x00")
    with pytest.raises(ConfigError, match=message):
        resume_sweep(outcome.experiment_dir, changes=changes)
    flags = [arg for c in changes for arg in ("--set", c)]
    assert main(["resume", str(outcome.experiment_dir), *flags]) == 2
    assert not (outcome.experiment_dir / "extension-2").exists()


def test_more_epochs_where_no_checkpoint_was_kept_are_refused_before_ray(extended, tmp_path):
    """The sweep with every checkpoint gone (as `checkpoint.keep_trials` leaves the others).
    More epochs on a real sweep, killed and resumed: tests/integration/test_cli_resume.py."""
    _, outcome = extended
    copy = tmp_path / "sweep"
    shutil.copytree(outcome.experiment_dir, copy)
    for checkpoint in copy.rglob("checkpoint_*"):
        shutil.rmtree(checkpoint)
    with pytest.raises(ConfigError, match="checkpoints were not kept"):
        resume_sweep(copy, changes=["train.epochs=6"])
    assert main(["resume", str(copy), "--set", "train.epochs=6"]) == 2
    assert not (copy / "extension-2").exists()
    assert "epochs: 1" in (copy / "cnn-tune-experiment.yaml").read_text()
