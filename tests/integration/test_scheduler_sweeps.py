"""Schedulers on real sweeps: ASHA, HyperBand and median stopping stop hopeless learning
rates, PBT and PB2 exploit and mutate for real, and a diverged trial is never picked."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from tuning.experiment import validate_experiment
from tuning.report import write_report
from tuning.report.analysis import hyperband_milestones
from tuning.runner import run_sweep

pytestmark = pytest.mark.integration

# SGD at lr 10 with momentum 0.99 and no batch norm overflows to NaN in its first epoch.
DIVERGING = {"name": "sgd", "lr": 10.0, "momentum": 0.99}
# Adam's learning rates: two that learn digits in a few epochs, then two that learn nothing.
GOOD_THEN_HOPELESS = [1.0e-2, 3.0e-3, 1.0e-7, 3.0e-8]


def progress(experiment_dir: Path, trial_id: str) -> list[dict[str, str]]:
    with (experiment_dir / f"trial_{trial_id}" / "progress.csv").open() as f:
        return list(csv.DictReader(f))


def lr_grid(
    small_experiment, scheduler: dict[str, Any], lrs: list[float], epochs: int
) -> dict[str, Any]:
    """A grid over Adam's learning rate, run in the order given, under `scheduler`."""
    raw = small_experiment(search={"algorithm": "grid"}, scheduler=scheduler)
    raw["train"]["epochs"] = epochs
    raw["train"]["batch_size"] = 64
    raw["train"]["model"] = {"name": "cnn", "depth": 2, "width": 16}
    raw["train"]["optimizer"] = {"name": "adam", "lr": {"grid": lrs}}
    return raw


def test_asha_stops_hopeless_learning_rates_and_keeps_a_good_one(
    ray_two_cpus, small_experiment, tmp_path
):
    # Good rates first, so ASHA's rungs hold their results when the hopeless ones arrive.
    raw = lr_grid(
        small_experiment,
        {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        GOOD_THEN_HOPELESS,
        epochs=8,
    )

    summary = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="asha").summary

    epochs = {t["tuned"]["optimizer.lr"]: t["epochs"] for t in summary["trials"]}
    assert epochs[1.0e-7] < 8 and epochs[3.0e-8] < 8
    assert max(epochs[1.0e-2], epochs[3.0e-3]) == 8
    assert summary["best"]["config"]["optimizer"]["lr"] in (1.0e-2, 3.0e-3)
    compute = summary["compute"]
    assert compute["fifo_epochs"] == 32 and compute["epochs"] == sum(epochs.values()) < 32
    assert sum(compute["stopped_by_scheduler_at_epoch"].values()) == summary["num_stopped_early"]


def test_hyperband_pauses_and_resumes_trials_and_stops_the_worst_at_a_milestone(
    ray_two_cpus, small_experiment, tmp_path
):
    # Ray fills HyperBand's brackets in order: the first three trials go to the bracket
    # that runs all of them to max_t, the last three to the one that compares them at
    # epoch 2 and keeps two.
    lrs = [1.0e-2, 3.0e-3, 1.0e-3, 5.0e-3, 1.0e-7, 3.0e-8]
    raw = lr_grid(small_experiment, {"name": "hyperband", "reduction_factor": 2}, lrs, epochs=4)

    outcome = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="hyperband")

    summary = outcome.summary
    assert summary["num_trials"] == 6 and summary["num_errored"] == 0
    milestones = hyperband_milestones(4, 2)
    assert milestones == [1, 2, 4]
    stopped = [t for t in summary["trials"] if t["status"] == "stopped_early"]
    assert stopped and all(t["epochs"] in milestones[:-1] for t in stopped)
    assert {t["tuned"]["optimizer.lr"] for t in stopped} <= {1.0e-7, 3.0e-8}
    for trial in summary["trials"]:
        # Paused at each milestone and resumed from its checkpoint, no trial lost an epoch.
        epochs = [int(r["epoch"]) for r in progress(outcome.experiment_dir, trial["trial_id"])]
        assert sorted(set(epochs)) == list(range(1, trial["epochs"] + 1))
    assert summary["best"]["config"]["optimizer"]["lr"] not in (1.0e-7, 3.0e-8)

    html = write_report(outcome.experiment_dir).read_text()
    section = html.split("<h2>Scheduler decisions (hyperband)</h2>", 1)[1].split("<h2>", 1)[0]
    for epoch in milestones:
        assert f"<td>{epoch}</td>" in section


def test_median_stopping_stops_hopeless_rates_against_finished_good_ones(
    ray_two_cpus, small_experiment, tmp_path
):
    # One trial at a time, in grid order: the good rates end before the hopeless ones
    # start, so each hopeless one meets both good averages at its first epoch, and no
    # good one ever has two others to be compared with.
    raw = lr_grid(
        small_experiment,
        {"name": "median", "grace_period": 1, "min_samples_required": 2},
        GOOD_THEN_HOPELESS,
        epochs=4,
    )
    raw["search"]["max_concurrent"] = 1

    summary = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="median").summary

    by_lr = {t["tuned"]["optimizer.lr"]: t for t in summary["trials"]}
    assert by_lr[1.0e-2]["status"] == by_lr[3.0e-3]["status"] == "completed"
    assert {by_lr[1.0e-7]["status"], by_lr[3.0e-8]["status"]} == {"stopped_early"}
    assert by_lr[1.0e-7]["epochs"] == by_lr[3.0e-8]["epochs"] == 1
    assert summary["num_stopped_early"] == 2 and summary["num_errored"] == 0


# PB2's Gaussian process, fitted on a handful of points, may warn that a kernel parameter
# sits at its bound; that is expected with 4 trials.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pb2_sweep_finishes_and_records_its_exploits(ray_two_cpus, small_experiment, tmp_path):
    raw = small_experiment(
        search={"algorithm": "random", "num_samples": 4, "seed": 0},
        scheduler={"name": "pb2", "perturbation_interval": 2, "mutate": ["optimizer.lr"]},
        checkpoint={"every_epochs": 2, "keep": 3},
    )
    raw["train"]["epochs"] = 6
    raw["train"]["optimizer"] = {"name": "adam", "lr": {"loguniform": [1.0e-5, 1.0e-2]}}

    outcome = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="pb2")

    summary = outcome.summary
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0
    assert all(t["epochs"] == 6 for t in summary["trials"])
    assert summary["lineage"], "PB2 exploited no trial in 6 epochs at an interval of 2"
    for event in summary["lineage"]:
        assert 1.0e-5 <= event["new_values"].get("optimizer.lr", 1.0e-3) <= 1.0e-2


@pytest.fixture(scope="module")
def pbt_sweep(ray_two_cpus, small_experiment, tmp_path_factory):
    """A synchronous PBT population: at every interval the worst trial must exploit."""
    raw = small_experiment(
        search={"algorithm": "random", "num_samples": 4, "seed": 3},
        scheduler={
            "name": "pbt",
            "perturbation_interval": 2,
            "quantile_fraction": 0.25,
            "synch": True,
            "mutate": ["optimizer.lr", "batch_size", "model.dropout"],
        },
        checkpoint={"every_epochs": 2, "keep": 3},
    )
    raw["train"]["epochs"] = 6
    raw["train"]["model"] = {"depth": 2, "width": 16, "dropout": {"uniform": [0.0, 0.5]}}
    raw["train"]["optimizer"] = {"name": "sgd", "lr": {"loguniform": [1.0e-4, 1.0e-1]}}
    raw["train"]["batch_size"] = {"choice": [16, 32, 64, 128]}
    outcome = run_sweep(
        validate_experiment(raw), storage=str(tmp_path_factory.mktemp("pbt")), name="pbt"
    )
    return outcome


def test_pbt_clone_records_its_donor_and_continues_from_its_epoch(pbt_sweep):
    lineage = pbt_sweep.summary["lineage"]
    trial_ids = {t["trial_id"] for t in pbt_sweep.summary["trials"]}
    assert lineage, "a synchronous PBT population must exploit at least once"
    for event in lineage:
        assert event["donor"] in trial_ids and event["donor"] != event["trial_id"]
        assert event["epoch"] in (2, 4)
        rows = progress(pbt_sweep.experiment_dir, event["trial_id"])
        after = [r for r in rows if int(r["epoch"]) == event["epoch"] + 1]
        assert after, "the clone continues at the donor's epoch + 1"


def test_pbt_mutations_are_applied_and_stay_in_their_domains(pbt_sweep):
    for event in pbt_sweep.summary["lineage"]:
        rows = progress(pbt_sweep.experiment_dir, event["trial_id"])
        # An epoch the trial ran before the exploit took effect may be logged too, so
        # look for the epoch trained with the clone's new values.
        resumed = [r for r in rows if int(r["epoch"]) == event["epoch"] + 1]
        new = event["new_values"]
        if "optimizer.lr" in new:
            assert 1.0e-4 <= new["optimizer.lr"] <= 1.0e-1
            assert any(float(r["lr"]) == pytest.approx(new["optimizer.lr"]) for r in resumed)
        if "batch_size" in new:
            assert new["batch_size"] in (16, 32, 64, 128)
            assert any(int(r["batch_size"]) == new["batch_size"] for r in resumed)
        if "model.dropout" in new:
            assert 0.0 <= new["model.dropout"] <= 0.5
    for trial in pbt_sweep.summary["trials"]:
        rows = progress(pbt_sweep.experiment_dir, trial["trial_id"])
        assert all(r["epoch"] == r["training_iteration"] for r in rows)
        assert all(int(r["batch_size"]) in (16, 32, 64, 128) for r in rows)


def test_pbt_leaves_a_trials_last_epoch_alone(ray_two_cpus, small_experiment, tmp_path):
    # A synchronous pair meets at epoch 2, its last. Ray's PBT would make the worse trial
    # exploit there: restored from the donor's final checkpoint with nothing left to
    # train, it would end as a copy of the donor, its own last epoch gone from its record.
    pbt = {"name": "pbt", "perturbation_interval": 2, "quantile_fraction": 0.5, "synch": True}
    raw = lr_grid(small_experiment, {**pbt, "mutate": ["model.dropout"]}, [1.0e-2, 1.0e-7], 2)
    raw["search"] = {"algorithm": "random", "num_samples": 1, "seed": 0}  # each lr once
    raw["train"]["model"]["dropout"] = {"uniform": [0.0, 0.1]}
    raw["checkpoint"] = {"every_epochs": 2, "keep": 3}

    summary = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="pbt").summary

    assert summary["lineage"] == []
    by_lr = {t["tuned"]["optimizer.lr"]: t for t in summary["trials"]}
    assert set(by_lr) == {1.0e-2, 1.0e-7}
    assert by_lr[1.0e-7]["best"] < 0.5 < by_lr[1.0e-2]["best"]
    assert all(t["epochs"] == 2 and t["status"] == "completed" for t in summary["trials"])


@pytest.mark.parametrize("scheduler", ["fifo", "pbt"])
def test_diverged_trial_stops_at_once_and_is_never_picked(
    scheduler, ray_two_cpus, small_experiment, tmp_path
):
    schedulers = {
        "fifo": {"name": "fifo"},
        "pbt": {
            "name": "pbt",
            "perturbation_interval": 1,
            "synch": True,
            "mutate": ["model.dropout"],
        },
    }
    raw = small_experiment(
        search={"algorithm": "grid"},
        scheduler=schedulers[scheduler],
        checkpoint={"every_epochs": 1, "keep": 3},
    )
    raw["train"]["epochs"] = 4
    raw["train"]["batch_size"] = 32
    raw["train"]["model"] = {"depth": 4, "width": 64, "batch_norm": False, "dropout": 0.0}
    if scheduler == "pbt":
        raw["search"] = {"algorithm": "random", "num_samples": 1, "seed": 0}
        raw["train"]["model"]["dropout"] = {"uniform": [0.0, 0.1]}
    raw["train"]["optimizer"] = {**DIVERGING, "lr": {"grid": [10.0, 0.01, 0.02]}}

    outcome = run_sweep(validate_experiment(raw), storage=str(tmp_path), name=scheduler)

    summary = outcome.summary
    (diverged,) = [t for t in summary["trials"] if t["status"] == "diverged"]
    assert diverged["tuned"]["optimizer.lr"] == 10.0
    assert diverged["epochs"] == 1 and diverged["best"] is None
    (row,) = progress(outcome.experiment_dir, diverged["trial_id"])
    assert row["diverged"] == "True" and float(row["val_acc"]) == 0.0
    assert summary["best"]["trial_id"] != diverged["trial_id"]
    assert summary["num_diverged"] == 1
    assert all(event["donor"] != diverged["trial_id"] for event in summary["lineage"])
    if scheduler == "pbt":
        assert summary["lineage"], "the population exploited without the diverged trial"
