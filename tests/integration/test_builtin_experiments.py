"""Every built-in experiment validates and runs for one short trial on a real Ray."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torchvision import models

from tuning.experiment import builtin_names, load_experiment
from tuning.runner import run_sweep

pytestmark = pytest.mark.integration

SHORT = ["search.num_samples=1", "train.epochs=2", "resources.gpu=0"]
# Grids run every point whatever num_samples says: shrink them to two points.
SHRINK = {
    "digits-grid": [
        "train.batch_size=64",
        "train.optimizer.lr=0.05",
        "train.model.width={grid: [8, 16]}",
    ],
    "batch-size-grid": ["train.batch_size=64", "train.optimizer.lr={grid: [0.01, 0.05]}"],
    "batch-growth": ["train.batch_growth.lr_scaling=linear"],
    "transfer": [
        "train.model.freeze={grid: [all, 2]}",
        "train.optimizer.lr=0.05",
        "dataset.max_train_examples=100",
    ],
    "cifar10": ["scheduler.grace_period=1"],
    "regularization": ["scheduler.grace_period=1"],
}


def write_tiny_cifar10(root) -> None:
    """CIFAR-10's python-pickle layout with 10 images per batch file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
            "labels": list(range(10)),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


@pytest.fixture(scope="module")
def local_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    write_tiny_cifar10(root)
    weights = root / "resnet18.pt"
    torch.save(models.resnet18(weights=None).state_dict(), weights)
    return {
        "cifar10": [
            f"dataset.root={root}",
            "dataset.verify_checksums=false",
            "dataset.val_fraction=0.2",
        ],
        "transfer": [f"train.model.weights={weights}"],
    }


def test_the_builtins_cover_every_scenario():
    assert set(builtin_names()) >= {
        "digits",
        "digits-pbt",
        "digits-grid",
        "cifar10",
        "optimizers",
        "lr-schedules",
        "batch-size-grid",
        "batch-growth",
        "regularization",
        "transfer",
        "early-stopping",
    }


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_experiment_runs_one_short_trial(name, ray_two_cpus, local_inputs, tmp_path):
    overrides = SHORT + SHRINK.get(name, []) + local_inputs.get(name, [])
    experiment = load_experiment(name, overrides)

    summary = run_sweep(experiment, storage=str(tmp_path), name=name).summary

    assert summary["num_errored"] == 0, summary["trials"]
    assert summary["num_trials"] >= 1
    assert 0.0 <= summary["test"]["accuracy"] <= 1.0
    assert summary["test"]["evaluations"] == experiment.final.seeds
