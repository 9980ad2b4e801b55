"""Transfer learning from a weights file the test writes: frozen blocks stay bit-identical."""

from __future__ import annotations

import pytest
import torch
from torchvision import models

from trainables.config import TrainConfig, TransferConfig
from trainables.data import DataConfig, load_splits
from trainables.loop import Trainer
from trainables.models import input_stats
from trainables.transfer import IMAGENET_MEAN, TransferNet, WeightsError, load_pretrained


@pytest.fixture(scope="module")
def small_digits():
    return load_splits(DataConfig(name="digits", max_train_examples=200)).tuning


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory):
    """A torchvision resnet18 state dict on disk, as a user would have saved it."""
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(models.resnet18(weights=None).state_dict(), path)
    return path


def transfer_trainer(data, weights, freeze, epochs=1) -> Trainer:
    config = TrainConfig.model_validate(
        {
            "epochs": epochs,
            "batch_size": 50,
            "model": {
                "name": "transfer",
                "backbone": "resnet18",
                "weights": str(weights),
                "freeze": freeze,
                "input_size": 32,
            },
            "optimizer": {"name": "sgd", "lr": 0.05},
        }
    )
    return Trainer(config, data)


def backbone_tensors(model: TransferNet) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


def test_frozen_backbone_is_bit_identical_to_the_loaded_weights_after_training(
    small_digits, resnet18_weights
):
    trainer = transfer_trainer(small_digits, resnet18_weights, freeze="all")
    loaded = torch.load(resnet18_weights, weights_only=True)
    head_before = trainer.model.head[-1].weight.clone()

    trainer.run_epoch()

    after = trainer.model.backbone.state_dict()
    # backbone.0 is the stem (conv1, bn1); backbone.1..4 are layer1..layer4.
    names = {
        "0.0.": "conv1.",
        "0.1.": "bn1.",
        "1.": "layer1.",
        "2.": "layer2.",
        "3.": "layer3.",
        "4.": "layer4.",
    }
    for key, tensor in after.items():
        prefix = next(p for p in names if key.startswith(p))
        original = loaded[names[prefix] + key[len(prefix) :]]
        assert torch.equal(tensor, original), key
    assert not torch.equal(trainer.model.head[-1].weight, head_before)


def test_unfrozen_backbone_trains_too(small_digits, resnet18_weights):
    trainer = transfer_trainer(small_digits, resnet18_weights, freeze="none")
    before = backbone_tensors(trainer.model)
    trainer.run_epoch()
    after = trainer.model.backbone.state_dict()
    assert not torch.equal(after["1.0.conv1.weight"], before["1.0.conv1.weight"])
    assert not torch.equal(after["0.1.running_mean"], before["0.1.running_mean"])


def test_freezing_the_first_k_blocks_freezes_exactly_those(small_digits, resnet18_weights):
    trainer = transfer_trainer(small_digits, resnet18_weights, freeze=2)
    before = backbone_tensors(trainer.model)
    trainer.run_epoch()
    after = trainer.model.backbone.state_dict()
    for key, tensor in after.items():
        block = int(key.split(".")[0])
        changed = not torch.equal(tensor, before[key])
        if block < 2:
            assert not changed, key
    assert not torch.equal(after["2.0.conv1.weight"], before["2.0.conv1.weight"])


def test_backbone_learns_at_its_own_lr(small_digits, resnet18_weights):
    config = TrainConfig.model_validate(
        {
            "model": {
                "name": "transfer",
                "backbone": "resnet18",
                "weights": str(resnet18_weights),
                "freeze": "none",
                "backbone_lr_factor": 0.1,
                "input_size": 32,
            },
            "optimizer": {"name": "sgd", "lr": 0.05},
        }
    )
    trainer = Trainer(config, small_digits)
    trainer.run_epoch()
    backbone_ids = {id(p) for p in trainer.model.backbone.parameters()}
    for group in trainer.optimizer.param_groups:
        in_backbone = {id(p) in backbone_ids for p in group["params"]}
        assert len(in_backbone) == 1
        assert group["lr"] == pytest.approx(0.005 if in_backbone.pop() else 0.05)


def test_pretrained_inputs_use_imagenet_normalization():
    config = TransferConfig(name="transfer", backbone="resnet18", weights="imagenet")
    info = load_splits(DataConfig(name="digits")).tuning.info
    mean, _ = input_stats(config, info)
    assert mean == (pytest.approx(sum(IMAGENET_MEAN) / 3),)  # grey digits: the RGB average


@pytest.mark.parametrize(
    "backbone", ["resnet18", "resnet50", "vgg16", "mobilenet_v3_small", "efficientnet_b0"]
)
def test_every_backbone_builds_resizes_and_classifies(backbone):
    from trainables.models import build_model

    config = TransferConfig(
        name="transfer", backbone=backbone, weights="none", freeze=1, input_size=32
    )
    info = load_splits(DataConfig(name="digits", max_train_examples=20)).tuning.info
    model = build_model(config, info).eval()
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    frozen = [p.requires_grad for p in model.backbone[0].parameters()]
    assert frozen and not any(frozen)


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [("/nonexistent/resnet18.pt", "is not a file"), ("__EMPTY__", "cannot read it")],
)
def test_bad_weights_file_is_a_clear_error(tmp_path, weights, fragment):
    if weights == "__EMPTY__":
        weights = str(tmp_path / "empty.pt")
        (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(WeightsError, match=fragment):
        load_pretrained(TransferConfig(name="transfer", backbone="resnet18", weights=weights))


def test_weights_of_another_architecture_are_refused(tmp_path, small_digits):
    path = tmp_path / "mobilenet.pt"
    torch.save(models.mobilenet_v3_small(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit"):
        transfer_trainer(small_digits, path, freeze="all")
