"""The final model of a sweep: best checkpoint or retrained on train+val, tested once each."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import tuning.final
from trainables.checkpoint import CHECKPOINT_FILE
from trainables.config import TrainConfig
from trainables.data import ImageSplit
from tuning.experiment import validate_experiment
from tuning.export import WEIGHTS_FILE, export_best
from tuning.final import FinalModel, HeldOutTest, load_final_state, retrained_models
from tuning.results import format_summary
from tuning.runner import resume_sweep, run_sweep

pytestmark = pytest.mark.integration

TEST_EXAMPLES = 270  # digits' held-out test split


class SplitLookCounter:
    """Counts how often the driver predicts on a split of the test split's size."""

    def __init__(self) -> None:
        self.count = 0

    def wrap(self, predict_split: Any) -> Any:
        def counting(model, split: ImageSplit, *args: Any, **kwargs: Any):
            if len(split) == TEST_EXAMPLES:
                self.count += 1
            return predict_split(model, split, *args, **kwargs)

        return counting


@pytest.fixture(scope="module")
def sweep_with_counted_test_looks(ray_two_cpus, small_experiment, tmp_path_factory):
    """Runs sweeps with every driver-side prediction on the test split counted."""

    def run(final: dict[str, Any], name: str) -> tuple[Any, int]:
        raw = small_experiment(
            search={"algorithm": "random", "num_samples": 3, "seed": 2},
            scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
            final=final,
        )
        raw["train"]["epochs"] = 4
        raw["train"]["model"] = {"name": "cnn", "depth": 2, "width": 16}
        looks = SplitLookCounter()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tuning.final, "predict_split", looks.wrap(tuning.final.predict_split))
            outcome = run_sweep(validate_experiment(raw), storage=str(storage), name=name)
        return outcome, looks.count

    storage = tmp_path_factory.mktemp("runs")
    return run


@pytest.fixture(scope="module")
def checkpoint_sweep(sweep_with_counted_test_looks):
    return sweep_with_counted_test_looks({"protocol": "best_checkpoint"}, "checkpoint")


@pytest.fixture(scope="module")
def retrain_sweep(sweep_with_counted_test_looks):
    return sweep_with_counted_test_looks({"protocol": "retrain", "seeds": 2}, "retrain")


def test_best_checkpoint_protocol_looks_at_the_test_split_once(checkpoint_sweep):
    outcome, looks = checkpoint_sweep
    summary = outcome.summary

    assert looks == 1 and summary["test"]["evaluations"] == 1
    (model,) = summary["final"]["models"]
    assert summary["final"]["protocol"] == "best_checkpoint"
    assert model["trained_on"] == "train"
    assert model["epochs"] == summary["best"]["checkpoint_epoch"]
    assert summary["test"]["models"][0]["accuracy"] == summary["test"]["accuracy"]
    assert "seed_spread" not in summary["test"]


def test_retrain_protocol_trains_each_seed_on_train_and_val_and_tests_each_once(retrain_sweep):
    outcome, looks = retrain_sweep
    summary = outcome.summary
    best_epoch = summary["best"]["best_epoch"]

    assert looks == 2 and summary["test"]["evaluations"] == 2
    models = summary["final"]["models"]
    assert [m["seed"] for m in models] == [0, 1]
    assert all(m["trained_on"] == "train+val" and m["epochs"] == best_epoch for m in models)
    for model in models:
        state = torch.load(
            outcome.experiment_dir / model["path"] / CHECKPOINT_FILE, weights_only=True
        )
        tuned = TrainConfig.model_validate(summary["best"]["config"])
        assert state["config"] == tuned.model_copy(
            update={"seed": model["seed"], "early_stopping": None}
        ).model_dump(mode="json")


def test_retrain_protocol_reports_the_mean_with_its_interval_and_the_seed_spread(retrain_sweep):
    test = retrain_sweep[0].summary["test"]
    accuracies = [m["accuracy"] for m in test["models"]]

    assert test["accuracy"] == pytest.approx(sum(accuracies) / 2)
    low, high = test["accuracy_ci95"]
    assert low <= test["accuracy"] <= high
    spread = test["seed_spread"]
    assert spread["seeds"] == 2 and spread["min"] == min(accuracies)
    assert spread["std"] >= 0 and test["accuracy"] > 0.8
    assert set(test["per_class_accuracy"]) == {str(d) for d in range(10)}


def test_retrained_models_are_reused_when_the_sweep_is_summarized_again(
    retrain_sweep, digits_splits
):
    outcome, _ = retrain_sweep
    summary, location = outcome.summary, outcome.location
    files = [
        outcome.experiment_dir / m["path"] / CHECKPOINT_FILE for m in summary["final"]["models"]
    ]
    written = [f.stat().st_mtime_ns for f in files]
    experiment = validate_experiment(
        {**_experiment_of(outcome), "final": {"protocol": "retrain", "seeds": 2}}
    )

    again = retrained_models(
        experiment,
        summary["best"]["config"],
        summary["best"]["best_epoch"],
        digits_splits.tuning,
        location,
        gpu=0.0,
        pretrained={},
    )

    assert [f.stat().st_mtime_ns for f in files] == written
    assert [m.name for m in again] == ["seed_0", "seed_1"]
    saved = load_final_state(location, "seed_0")
    assert saved is not None
    assert all(torch.equal(saved["model"][k], v) for k, v in again[0].state["model"].items())


@pytest.mark.parametrize("address", ["folder", "uri"])
def test_export_writes_the_retrained_model_the_summary_tested(retrain_sweep, tmp_path, address):
    outcome, _ = retrain_sweep
    sweep = outcome.experiment_dir
    source = {"folder": str(sweep), "uri": sweep.as_uri()}[address]

    model_dir = export_best(source, tmp_path / "model")

    weights = torch.load(model_dir / WEIGHTS_FILE, weights_only=True)
    saved = load_final_state(outcome.location, "seed_0")
    assert saved is not None
    assert weights.keys() == saved["model"].keys()
    assert all(torch.equal(weights[k], saved["model"][k]) for k in weights)


def test_held_out_test_refuses_a_second_look_at_the_same_model(checkpoint_sweep, digits_splits):
    outcome, _ = checkpoint_sweep
    state = load_state_of_best_checkpoint(outcome)
    model = FinalModel("best_checkpoint", state, path="x", trained_on="train")
    held_out = HeldOutTest(digits_splits.test)

    first = held_out.evaluate(model)

    assert first["num_examples"] == TEST_EXAMPLES
    with pytest.raises(RuntimeError, match="already evaluated on best_checkpoint"):
        held_out.evaluate(model)


def load_state_of_best_checkpoint(outcome: Any) -> dict[str, Any]:
    from trainables.checkpoint import load_checkpoint

    epoch = outcome.summary["best"]["checkpoint_epoch"]
    for directory in sorted((outcome.experiment_dir).glob("trial_*/checkpoint_*")):
        state = load_checkpoint(directory)
        if directory.parent.name.endswith(outcome.summary["best"]["trial_id"]) and (
            state["epoch"] == epoch
        ):
            return state
    raise AssertionError("no best checkpoint")


def _experiment_of(outcome: Any) -> dict[str, Any]:
    from tuning.runner import EXPERIMENT_FILE
    from tuning.yaml_io import parse_yaml_mapping

    text = (outcome.experiment_dir / EXPERIMENT_FILE).read_text()
    return parse_yaml_mapping(text, EXPERIMENT_FILE)


def test_printed_summary_names_the_protocol_the_seed_spread_and_each_class(retrain_sweep):
    summary = retrain_sweep[0].summary

    text = format_summary(summary)

    assert "retrained on train+val" in text and "over 2 seeds: std" in text
    assert "per class: 0 " in text and " 9 " in text


def test_printed_summary_lists_only_the_worst_classes_of_many(retrain_sweep):
    summary = copy.deepcopy(retrain_sweep[0].summary)
    summary["test"]["per_class_accuracy"] = {f"c{i}": 1.0 - i / 100 for i in range(12)}

    last_line = format_summary(summary).splitlines()[-1]

    assert "the 10 worst of 12" in last_line
    assert "c11 0.890" in last_line and "c0 " not in last_line and "c1 " not in last_line


def test_resuming_a_finished_sweep_keeps_its_summary_and_leaves_the_test_split_alone(
    checkpoint_sweep, monkeypatch
):
    outcome, _ = checkpoint_sweep
    looks = SplitLookCounter()
    monkeypatch.setattr(tuning.final, "predict_split", looks.wrap(tuning.final.predict_split))

    again = resume_sweep(outcome.location)

    assert looks.count == 0
    assert again.summary == outcome.summary
