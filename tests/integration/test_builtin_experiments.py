"""Every built-in experiment validates and runs for one short trial on a real Ray."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torchvision import models

from tuning.experiment import load_experiment
from tuning.runner import run_sweep
from tuning.sources import builtin_names

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
    "mnist5k": ["dataset.max_train_examples=300", "train.model.width=8"],
    "image-folder": ["train.model.width=8", "scheduler.grace_period=1"],
    "regularization": ["scheduler.grace_period=1"],
    "mnist5k-pretrain": ["dataset.max_train_examples=300", "train.model.width=8"],
    "mnist5k-transfer": ["train.optimizer.lr=0.01"],  # 2 grid points: frozen, fine-tuned
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


TINTED_SIDE = 28  # pixels
TINTED_MAX_SHIFT = 3  # pixels, in each direction


def write_tinted_digits(root: Path, per_class: int | None = None, seed: int = 0) -> Path:
    """scikit-learn's 8x8 digits as 28x28 RGB PNGs in one folder per class.

    Each digit is upscaled, tinted with a random colour and shifted by up to 3 pixels
    each way: a small stand-in for a user's own photos of objects. `per_class` caps the
    images of each class (all 1,797 when None).
    """
    rng = np.random.default_rng(seed)
    digits = load_digits()
    written = np.zeros(10, dtype=np.int64)
    pad = TINTED_MAX_SHIFT
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        if per_class is not None and written[label] >= per_class:
            continue
        grey = Image.fromarray(np.uint8(np.rint(pixels * 255.0 / 16.0)))
        big = np.asarray(grey.resize((TINTED_SIDE, TINTED_SIDE), Image.Resampling.BILINEAR))
        framed = np.pad(big, pad)
        top, left = rng.integers(0, 2 * pad + 1, size=2)
        shifted = framed[top : top + TINTED_SIDE, left : left + TINTED_SIDE]
        colour = rng.integers(60, 256, size=3)  # a visible tint on the black background
        rgb = np.uint8(np.rint(shifted[..., None] * (colour / 255.0)))
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb, "RGB").save(root / str(label) / f"{index:04d}.png")
        written[label] += 1
    return root


@pytest.fixture(scope="module")
def local_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    write_tiny_cifar10(root)
    tinted = write_tinted_digits(root / "tinted", per_class=20)
    weights = root / "resnet18.pt"
    torch.save(models.resnet18(weights=None).state_dict(), weights)
    backbone = write_exported_cnn(root / "backbone")
    return {
        "cifar10": [
            f"dataset.root={root}",
            "dataset.verify_checksums=false",
            "dataset.val_fraction=0.2",
        ],
        "transfer": [f"train.model.weights={weights}"],
        "image-folder": [f"dataset.root={tinted}"],
        "mnist5k-transfer": [f"train.model.weights={backbone}"],
    }


def write_exported_cnn(folder: Path) -> Path:
    """A 3-block CNN for 28x28 grey images, in the folder layout `cnn-tune export` writes
    (tests/integration/test_offline_transfer.py exports a real one)."""
    from trainables.checkpoint import MODEL_FILE, WEIGHTS_FILE
    from trainables.models import ConvNet

    folder.mkdir()
    net = ConvNet(
        in_channels=1, image_size=28, num_classes=10, depth=3, width=32, batch_norm=True, dropout=0
    )
    torch.save(net.state_dict(), folder / WEIGHTS_FILE)
    description = {
        "config": {"model": {"name": "cnn"}},
        "preprocessing": {"input_shape": [1, 28, 28]},
    }
    (folder / MODEL_FILE).write_text(json.dumps(description))
    return folder


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
        "mnist5k",
        "image-folder",
        "mnist5k-pretrain",
        "mnist5k-transfer",
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


def test_image_folder_builtin_learns_tinted_shifted_digits(ray_two_cpus, tmp_path):
    """The built-in finds a model for a user's folder, on a reduced budget.

    At full length (all 1,797 images, the YAML's budget) it reaches >= 0.95; here 2
    trials of up to 10 epochs on 800 images, with the model, lr and batch size fixed
    and dropout and weight decay searched, must still clearly learn (chance is 0.1).
    """
    root = write_tinted_digits(tmp_path / "images", per_class=80)
    experiment = load_experiment(
        "image-folder",
        [
            f"dataset.root={root}",
            "search.num_samples=2",
            "search.initial_points=1",
            "train.epochs=10",
            "train.model.depth=4",  # the full sweep's pick; shallower ones learn slower
            "train.model.width=16",
            "train.batch_size=32",
            "train.optimizer.lr=3.0e-3",
            "resources.gpu=0",
        ],
    )

    summary = run_sweep(experiment, storage=str(tmp_path / "runs"), name="image-folder").summary

    assert summary["num_errored"] == 0, summary["trials"]
    assert summary["test"]["accuracy"] >= 0.85
