"""Fractional GPUs pack trials: one logical GPU (none needs to exist) runs 1/gpu trials at once."""

from __future__ import annotations

import pytest
from ray import tune

from tuning.experiment import validate_experiment
from tuning.runner import run_sweep

pytestmark = pytest.mark.integration


class ConcurrencyRecorder(tune.Callback):
    """Counts trials running at the same time and the resources each one reserved."""

    def __init__(self) -> None:
        self.running = 0
        self.most_at_once = 0
        self.reserved: list[dict[str, float]] = []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.reserved.append(trial.placement_group_factory.required_resources)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running -= 1

    on_trial_error = on_trial_complete


@pytest.mark.parametrize(("gpu", "expected_at_once"), [(0.25, 4), (0.5, 2)])
def test_fractional_gpu_runs_that_many_trials_at_once(
    ray_one_logical_gpu, small_experiment, tmp_path, gpu, expected_at_once
):
    raw = small_experiment(
        search={"algorithm": "random", "num_samples": 4, "seed": 0},
        resources={"cpu": 1, "gpu": gpu},
    )
    # Trials of several seconds: a trial must not end before the last one's worker has
    # started, however slowly 4 workers start on a small machine.
    raw["train"]["epochs"] = 10
    raw["train"]["batch_size"] = 32
    recorder = ConcurrencyRecorder()

    summary = run_sweep(
        validate_experiment(raw), storage=str(tmp_path), name="packing", callbacks=[recorder]
    ).summary

    assert recorder.most_at_once == expected_at_once
    assert all(r.get("GPU") == gpu and r.get("CPU") == 1 for r in recorder.reserved)
    # No CUDA here: the trials were given a GPU share by Ray and trained on the CPU.
    assert summary["num_errored"] == 0 and summary["num_trials"] == 4


def test_gpu_auto_without_any_gpu_runs_cpu_trials_and_says_so(
    ray_two_cpus, small_experiment, tmp_path, caplog
):
    raw = small_experiment(resources={"cpu": 1, "gpu": "auto"})
    raw["train"]["epochs"] = 1
    recorder = ConcurrencyRecorder()

    summary = run_sweep(
        validate_experiment(raw), storage=str(tmp_path), name="auto", callbacks=[recorder]
    ).summary

    assert summary["num_errored"] == 0
    assert all(r.get("GPU", 0) == 0 for r in recorder.reserved)
    assert "no GPU in the Ray cluster; trials run on the CPU" in caplog.text


def test_a_config_that_runs_out_of_memory_is_infeasible_once_and_the_next_trial_trains(
    ray_two_cpus, tmp_path
):
    # On the CPU a real allocation failure stands in for CUDA's: the first conv of width
    # 1024 on 512 px images wants ~70 GB at once, which the allocator refuses outright.
    raw = {
        "name": "oom",
        "dataset": {"name": "synthetic", "image_size": 512, "synthetic_examples": 100},
        "train": {
            "epochs": 2,
            "batch_size": 64,
            "model": {"name": "cnn", "depth": 1, "width": {"grid": [1024, 2]}},
            "optimizer": {"name": "sgd", "lr": 0.01},
        },
        "search": {"algorithm": "grid", "num_samples": 1, "max_concurrent": 1},
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": 1, "gpu": 0},
        "checkpoint": {"every_epochs": 1, "keep": 1},
    }

    outcome = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="oom")

    by_width = {t["tuned"]["model.width"]: t for t in outcome.summary["trials"]}
    too_large, small = by_width[1024], by_width[2]
    assert too_large["status"] == "infeasible" and "out of memory" in too_large["error"]
    assert "batch size 64" in too_large["error"]
    assert small["status"] == "completed" and small["epochs"] == 2
    rows = outcome.experiment_dir / f"trial_{too_large['trial_id']}" / "progress.csv"
    assert len(rows.read_text().splitlines()) == 2  # a header and one infeasible report
    assert outcome.summary["num_errored"] == 0
