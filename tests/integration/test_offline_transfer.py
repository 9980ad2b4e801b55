"""Offline transfer on real sweeps: pretrain a CNN, `cnn-tune export` it, then tune a new
head on its frozen blocks; the trained transfer model tests, exports and predicts."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from trainables.checkpoint import WEIGHTS_FILE
from trainables.errors import WeightsError
from tuning.errors import ConfigError
from tuning.experiment import validate_experiment
from tuning.export import export_best, load_exported
from tuning.runner import run_sweep

pytestmark = pytest.mark.integration


def sweep(small_experiment, model: dict[str, Any], **train: Any) -> dict[str, Any]:
    raw = small_experiment(search={"algorithm": "grid"}, scheduler={"name": "fifo"})
    raw["train"].update(
        {"model": model, "epochs": 2, "batch_size": 32, **train},
        optimizer={"name": "adam", "lr": {"grid": [1.0e-2]}},
    )
    return raw


@pytest.fixture(scope="module")
def backbone(ray_two_cpus, small_experiment, tmp_path_factory):
    """A 2-block CNN trained on digits and exported: (the model folder, its weights)."""
    storage = tmp_path_factory.mktemp("pretrain")
    raw = sweep(small_experiment, {"name": "cnn", "depth": 2, "width": 8})
    run_sweep(validate_experiment(raw), storage=str(storage), name="pretrain")
    folder = export_best(storage / "pretrain")
    return folder, torch.load(folder / WEIGHTS_FILE, weights_only=True)


def test_a_frozen_exported_backbone_trains_a_new_head_and_keeps_its_weights(
    backbone, small_experiment, tmp_path
):
    folder, pretrained = backbone
    model = {"name": "transfer", "backbone": "cnn-tune", "weights": str(folder), "freeze": "all"}
    raw = sweep(small_experiment, model, epochs=6)  # a new head on 100 images: few steps
    raw["dataset"] = {"name": "digits", "max_train_examples": 100}

    outcome = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="transfer")

    summary = outcome.summary
    assert summary["num_errored"] == 0 and summary["test"]["accuracy"] > 0.3  # chance: 0.1
    exported = export_best(outcome.experiment_dir)
    weights = torch.load(exported / WEIGHTS_FILE, weights_only=True)
    # The frozen blocks are the pretrained ones to the bit; the head is new and trained.
    assert torch.equal(weights["backbone.0.0.weight"], pretrained["features.0.weight"])
    assert torch.equal(weights["backbone.1.1.running_mean"], pretrained["features.5.running_mean"])
    assert weights["head.1.weight"].shape == (10, 16)
    # The exported transfer model rebuilds from its own folder, backbone included.
    net, preprocess, classes = load_exported(exported)
    from PIL import Image

    image = Image.new("L", (8, 8))
    assert net(preprocess(image).unsqueeze(0)).shape == (1, 10) and len(classes) == 10


def test_a_backbone_folder_that_holds_no_export_is_refused_before_ray_starts(
    small_experiment, tmp_path
):
    model = {"name": "transfer", "backbone": "cnn-tune", "weights": str(tmp_path / "nothing")}
    with pytest.raises(WeightsError, match=r"is not an exported model .*cnn-tune export"):
        run_sweep(
            validate_experiment(sweep(small_experiment, model)),
            storage=str(tmp_path / "runs"),
            name="t",
        )
    with pytest.raises(ConfigError, match="backbone cnn-tune takes its weights from a model"):
        validate_experiment(sweep(small_experiment, {**model, "weights": "imagenet"}))
