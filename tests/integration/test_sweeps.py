"""Real sweeps on a real 2-CPU Ray: ASHA + HyperOpt, PBT, grid; summary and TensorBoard."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainables.checkpoint import load_checkpoint
from tuning.experiment import validate_experiment
from tuning.export import MODEL_FILE, WEIGHTS_FILE, export_best
from tuning.layout import INDEX_FILE, SUMMARY_FILE
from tuning.report import write_report
from tuning.runner import run_sweep

pytestmark = pytest.mark.integration

SUMMARY_KEYS = {
    "experiment",
    "metric",
    "mode",
    "num_trials",
    "num_errored",
    "num_stopped_early",
    "best",
    "test",
    "wall_seconds",
}


def trial_dirs(experiment_dir: Path) -> list[Path]:
    return sorted(p for p in experiment_dir.iterdir() if p.is_dir() and p.name.startswith("trial_"))


def progress_rows(trial_dir: Path) -> list[dict[str, float]]:
    """The trial's progress.csv: one row per reported epoch, numbers as floats."""
    with (trial_dir / "progress.csv").open() as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def tensorboard_run(trial_dir: Path) -> EventAccumulator:
    """TensorBoard's own reader over every event file in a trial folder."""
    accumulator = EventAccumulator(str(trial_dir))
    accumulator.Reload()
    return accumulator


def val_acc_steps(trial_dir: Path) -> list[int]:
    return [event.step for event in tensorboard_run(trial_dir).Scalars("val_acc")]


def hparams_of(trial_dir: Path) -> dict[str, object]:
    """The kind of each value in the trial's HParams session: number_value, string_value..."""
    return {key: value.WhichOneof("kind") for key, value in session_values(trial_dir).items()}


def session_values(trial_dir: Path) -> dict[str, Any]:
    """The trial's HParams session values (google.protobuf.Value), as TensorBoard reads them."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = tensorboard_run(trial_dir).PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return dict(data.session_start_info.hparams)


@pytest.fixture(scope="module")
def asha_sweep(ray_two_cpus, small_experiment, tmp_path_factory):
    """HyperOpt + ASHA over lr, including learning rates too small to learn anything."""
    raw = small_experiment(
        search={"algorithm": "hyperopt", "num_samples": 8, "initial_points": 3, "seed": 1},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    raw["train"]["epochs"] = 6
    raw["train"]["model"] = {"name": "cnn", "depth": 2, "width": 16}
    raw["train"]["optimizer"]["lr"] = {"loguniform": [1.0e-7, 1.0e-2]}
    storage = tmp_path_factory.mktemp("runs")
    return run_sweep(validate_experiment(raw), storage=str(storage), name="asha")


def test_asha_sweep_writes_the_summary_schema(asha_sweep):
    summary = json.loads((asha_sweep.experiment_dir / SUMMARY_FILE).read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert {"trial_id", "config", "val_acc", "epochs"} <= set(summary["best"])
    assert {"accuracy", "loss", "num_examples"} <= set(summary["test"])
    assert summary["num_trials"] == 8 and summary["num_errored"] == 0
    assert summary["test"]["num_examples"] == 270
    low, high = summary["test"]["accuracy_ci95"]
    assert low <= summary["test"]["accuracy"] <= high
    assert set(summary["test"]["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert summary == asha_sweep.summary


def test_asha_sweep_stops_weak_trials_before_max_t_and_keeps_the_best(asha_sweep):
    summary = asha_sweep.summary
    epochs = {t["trial_id"]: t["epochs"] for t in summary["trials"]}
    assert all(1 <= e <= 6 for e in epochs.values())
    assert summary["num_stopped_early"] == sum(e < 6 for e in epochs.values()) >= 1
    assert max(t["best"] for t in summary["trials"]) == summary["best"]["val_acc"]
    assert summary["best"]["val_acc"] > 0.8 and summary["test"]["accuracy"] > 0.8


def test_asha_sweep_logs_curves_and_hparams_per_trial_to_tensorboard(asha_sweep):
    dirs = trial_dirs(asha_sweep.experiment_dir)
    epochs = {t["trial_id"]: t["epochs"] for t in asha_sweep.summary["trials"]}
    assert len(dirs) == 8
    for trial_dir in dirs:
        trial_id = trial_dir.name.removeprefix("trial_")
        assert val_acc_steps(trial_dir) == list(range(1, epochs[trial_id] + 1))
        kinds = hparams_of(trial_dir)
        assert kinds == {"optimizer.lr": "number_value", "batch_size": "number_value"}


def test_asha_sweep_tested_the_best_trials_kept_checkpoint(asha_sweep):
    best = asha_sweep.summary["best"]
    assert 1 <= best["checkpoint_epoch"] <= best["epochs"]
    assert Path(best["path"]).is_dir()


def test_pbt_sweep_runs_with_checkpoints_aligned_to_its_interval(
    ray_two_cpus, small_pbt_experiment, tmp_path
):
    raw = small_pbt_experiment()

    outcome = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="pbt")

    summary = outcome.summary
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0
    assert all(t["epochs"] == 6 for t in summary["trials"])
    tuned = {t["trial_id"]: t["tuned"] for t in summary["trials"]}
    for trial_dir in trial_dirs(outcome.experiment_dir):
        rows = progress_rows(trial_dir)
        # The epoch counter continues through exploits: it always equals Tune's iteration.
        assert all(r["epoch"] == r["training_iteration"] for r in rows)
        assert all(r["batch_size"] in (32, 64, 128) for r in rows)
        # Every reported epoch reaches TensorBoard, across PBT's pauses and restarts (a
        # trial that exploits a donor behind it repeats the donor's later epochs).
        assert val_acc_steps(trial_dir) == [r["epoch"] for r in rows]
        # The session holds the values the trial ended with, after PBT's mutations.
        values = {k: v.number_value for k, v in session_values(trial_dir).items()}
        assert values == pytest.approx(tuned[trial_dir.name.removeprefix("trial_")])
        assert rows[-1]["batch_size"] == values["batch_size"]
    assert (outcome.experiment_dir / "pbt_global.txt").exists()


def test_grid_sweep_runs_every_grid_point_once(ray_two_cpus, small_experiment, tmp_path):
    raw = small_experiment(search={"algorithm": "grid"}, scheduler={"name": "fifo"})
    raw["train"]["epochs"] = 2
    raw["train"]["optimizer"]["lr"] = {"grid": [1.0e-3, 1.0e-2]}
    raw["train"]["batch_size"] = {"grid": [64, 128]}

    summary = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="grid").summary

    points = {(t["tuned"]["optimizer.lr"], t["tuned"]["batch_size"]) for t in summary["trials"]}
    assert points == {(1.0e-3, 64), (1.0e-3, 128), (1.0e-2, 64), (1.0e-2, 128)}
    assert summary["num_trials"] == 4 and summary["num_stopped_early"] == 0


def test_summary_names_trials_that_stopped_themselves_early(
    ray_two_cpus, small_experiment, tmp_path
):
    raw = small_experiment(search={"algorithm": "grid"}, scheduler={"name": "fifo"})
    raw["train"]["epochs"] = 12
    raw["train"]["batch_size"] = 64
    # lr 1e-9 learns nothing, so val_acc stalls at once; 1e-2 keeps improving for a while.
    raw["train"]["optimizer"] = {"name": "sgd", "momentum": 0.0, "lr": {"grid": [1.0e-9, 1.0e-2]}}
    raw["train"]["early_stopping"] = {"patience": 2}

    summary = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="es").summary

    by_lr = {t["tuned"]["optimizer.lr"]: t for t in summary["trials"]}
    assert by_lr[1.0e-9]["status"] == "patience_stopped" and by_lr[1.0e-9]["epochs"] == 3
    assert summary["num_early_stopped"] >= 1
    assert summary["num_stopped_early"] == 0  # FIFO stops nothing itself


@pytest.fixture(scope="module")
def uri_sweep(ray_two_cpus, small_experiment, tmp_path_factory) -> tuple[str, Path]:
    """A sweep written through a storage URI: (the URI, the folder it names)."""
    raw = small_experiment(search={"algorithm": "random", "num_samples": 2, "seed": 0})
    raw["train"]["epochs"] = 2
    storage = tmp_path_factory.mktemp("bucket")
    outcome = run_sweep(validate_experiment(raw), storage=storage.as_uri(), name="uri")
    return outcome.location, storage / "uri"


def test_sweep_to_a_storage_uri_writes_everything_there(uri_sweep):
    """A bucket URI (s3://, gs://) takes the same code path as this file:// one."""
    location, written = uri_sweep

    assert location == written.as_uri()
    summary = json.loads((written / SUMMARY_FILE).read_text())
    assert summary["num_trials"] == 2
    assert (written / "cnn-tune-experiment.yaml").is_file()
    assert len(trial_dirs(written)) == 2
    assert all(list(d.glob("events.out.tfevents.*")) for d in trial_dirs(written))
    assert list(written.glob("events.out.tfevents.*"))  # the HParams experiment, at the root


def test_report_and_export_read_a_sweep_by_its_uri(uri_sweep, tmp_path, monkeypatch):
    """Through a scratch copy: the paths summary.json records are not on this machine."""
    _, written = uri_sweep
    elsewhere = tmp_path / "bucket" / "uri"
    elsewhere.parent.mkdir()
    monkeypatch.chdir(tmp_path)
    written.rename(elsewhere)  # the sweep is now reachable only through its new URI
    try:
        index = write_report(elsewhere.as_uri())
        model = export_best(elsewhere.as_uri())
    finally:
        elsewhere.rename(written)

    assert index == tmp_path / "uri-report" / INDEX_FILE and "Leaderboard" in index.read_text()
    assert model == tmp_path / "uri-model"
    assert json.loads((model / MODEL_FILE).read_text())["source"]["sweep"] == elsewhere.as_uri()
    best = json.loads((written / SUMMARY_FILE).read_text())["best"]
    trial_dir = written / Path(best["path"]).name
    states = [load_checkpoint(c) for c in trial_dir.glob("checkpoint_*")]
    (state,) = [s for s in states if s["epoch"] == best["checkpoint_epoch"]]
    weights = torch.load(model / WEIGHTS_FILE, weights_only=True)
    assert weights.keys() == state["model"].keys()
    assert all(torch.equal(weights[k], state["model"][k]) for k in weights)


def test_asha_sweep_keeps_checkpoints_only_where_they_pay(asha_sweep):
    """tuning.retention: only the best trials (`checkpoint.keep_trials`, 3 by default, and
    any tied with the third) keep checkpoints, and those keep their best
    (`checkpoint.keep: 1`) and their latest."""
    summary = asha_sweep.summary
    bests = sorted((t["best"] for t in summary["trials"] if t["best"] is not None), reverse=True)
    cutoff = bests[2]
    holders = {}
    for trial_dir in trial_dirs(asha_sweep.experiment_dir):
        kept = sorted(trial_dir.glob("checkpoint_*"))
        if kept:
            holders[trial_dir.name.removeprefix("trial_")] = kept
    record = {t["trial_id"]: t for t in summary["trials"]}
    assert summary["best"]["trial_id"] in holders
    assert all(record[trial_id]["best"] >= cutoff for trial_id in holders)
    assert len(holders) >= 3
    for kept in holders.values():
        epochs = [load_checkpoint(path)["epoch"] for path in kept]
        assert 1 <= len(kept) <= 2, epochs
    best_kept = holders[summary["best"]["trial_id"]]
    best_epochs = {load_checkpoint(path)["epoch"] for path in best_kept}
    best = summary["best"]
    # Every epoch is checkpointed (every_epochs: 1), so the best epoch's is the one tested.
    assert best["checkpoint_epoch"] == best["best_epoch"] and best["best_epoch"] in best_epochs
    assert best["epochs"] in best_epochs  # and the latest
    # Ray's record of every trial, as its experiment state saved it, names only those
    # still on disk, each with only the metric (tuning.retention, tuning.runner.fit).
    records = ray_checkpoint_records(asha_sweep.experiment_dir)
    assert set(records) == {t["trial_id"] for t in summary["trials"]}
    for trial_id, named in records.items():
        assert sorted(named) == [path.name for path in holders.get(trial_id, [])], trial_id
        assert all(set(metrics) == {summary["metric"]} for metrics in named.values())


def ray_checkpoint_records(experiment_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Per trial id, the checkpoints Ray's saved state lists (folder name: metrics)."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    state = json.loads(max(experiment_dir.glob("experiment_state-*.json")).read_text())
    records = {}
    for trial_json, metadata_json in state["trial_data"]:
        manager = _TrainingRunMetadata.from_json_state(metadata_json).checkpoint_manager
        records[json.loads(trial_json)["trial_id"]] = {
            Path(result.checkpoint.path).name: result.metrics
            for result in manager._checkpoint_results
        }
    return records
