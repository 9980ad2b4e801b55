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
from tuning.resume import resume_sweep
from tuning.runner import run_sweep
from tuning.summary_text import format_summary

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
    from tuning.layout import EXPERIMENT_FILE
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


@pytest.fixture(scope="module")
def reevaluate_sweep(sweep_with_counted_test_looks):
    return sweep_with_counted_test_looks(
        {"protocol": "best_checkpoint", "reevaluate": {"top_k": 2, "seeds": 2}}, "reevaluate"
    )


def test_reevaluation_trains_the_top_configurations_again_and_picks_by_their_mean(
    reevaluate_sweep,
):
    outcome, looks = reevaluate_sweep
    summary = outcome.summary
    section = summary["reevaluation"]
    eligible = [t for t in summary["trials"] if t["best"] is not None]
    top_two = sorted(eligible, key=lambda t: -t["best"])[:2]
    assert [c["trial_id"] for c in section["candidates"]] == [t["trial_id"] for t in top_two]
    assert [c["tuned"] for c in section["candidates"]] == [t["best"] for t in top_two]
    for candidate in section["candidates"]:
        assert len(candidate["scores"]) == 2 and all(0 < s <= 1 for s in candidate["scores"])
        assert candidate["mean"] == pytest.approx(sum(candidate["scores"]) / 2)
    chosen = max(section["candidates"], key=lambda c: c["mean"])
    assert section["chosen"] == chosen["trial_id"] == summary["best"]["trial_id"]
    assert section["changed_pick"] == (chosen["trial_id"] != top_two[0]["trial_id"])
    # The chosen trial kept its checkpoint (tuning.retention keeps the top_k), and the
    # test split was looked at once, after the reevaluation.
    assert list((outcome.experiment_dir / f"trial_{chosen['trial_id']}").glob("checkpoint_*"))
    assert looks == 1 and summary["test"]["evaluations"] == 1
    printed = format_summary(summary)
    assert "Reevaluated the 2 best configurations with 2 more seeds each" in printed
    assert f"{chosen['trial_id']}: tuned" in printed and "<- chosen" in printed


def test_reevaluation_scores_are_read_back_when_the_sweep_is_summarized_again(
    reevaluate_sweep, digits_splits
):
    import json

    from tuning.layout import REEVALUATION_FILE
    from tuning.reevaluate import reevaluate

    outcome, _ = reevaluate_sweep
    record = outcome.experiment_dir / REEVALUATION_FILE
    written = record.stat().st_mtime_ns
    saved = json.loads(record.read_text())
    section = outcome.summary["reevaluation"]
    trials = {t["trial_id"]: t for t in outcome.summary["trials"]}
    top = [trials[c["trial_id"]] for c in section["candidates"]]
    # Each candidate's own config: its first run's, one seed earlier.
    configs = {
        trial_id: {**runs[0], "seed": runs[0]["seed"] - 1}
        for trial_id, runs in saved["runs"].items()
    }
    experiment = validate_experiment(_experiment_of(outcome))

    again = reevaluate(experiment, top, configs, digits_splits.tuning, outcome.location, 0.0, {})

    assert [c.scores for c in again] == [c["scores"] for c in section["candidates"]]
    assert record.stat().st_mtime_ns == written  # read back, nothing trained again


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            {"scheduler": {"name": "pbt", "perturbation_interval": 1, "mutate": ["optimizer.lr"]}},
            "PBT trial's configuration changes",
        ),
        (
            {"search": {"algorithm": "random", "num_samples": 2, "seed": 0}},
            "more than the sweep's 2 trials",
        ),
    ],
)
def test_reevaluate_refuses_what_it_cannot_rerun(small_experiment, change, says):
    from tuning.errors import ConfigError

    raw = {**small_experiment(), "final": {"reevaluate": {"top_k": 3, "seeds": 2}}, **change}
    if change.get("scheduler"):
        raw["checkpoint"] = {"every_epochs": 1, "keep": 3}
        raw["search"] = {"algorithm": "random", "num_samples": 4, "seed": 0}
    with pytest.raises(ConfigError, match=says):
        validate_experiment(raw)


def test_report_shows_the_reevaluation_runs_and_their_spread(reevaluate_sweep):
    from tuning.report import write_report

    outcome, _ = reevaluate_sweep
    page = write_report(outcome.experiment_dir).read_text()
    chosen = outcome.summary["reevaluation"]["chosen"]
    assert "Chosen by reevaluation: the 2 best configurations trained 2 more times" in page
    assert f"<td>{chosen}</td>" in page and "<td>chosen</td>" in page
