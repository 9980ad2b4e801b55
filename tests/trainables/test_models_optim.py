"""Model builders, optimizers, learning-rate schedules and regularization."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.config import CNNConfig, LRScheduleConfig, ResNet18Config, TrainConfig
from trainables.data import DatasetInfo
from trainables.loop import fit
from trainables.models import build_model
from trainables.optim import build_optimizer, decayed_parameters, lr_at


def info(shape: tuple[int, int, int], classes: int = 10) -> DatasetInfo:
    names = tuple(map(str, range(classes)))
    return DatasetInfo("t", classes, shape, names, (0.5,) * shape[0], (0.25,) * shape[0])


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (1, 28, 28), (3, 5, 7)])
@pytest.mark.parametrize("config", [CNNConfig(depth=4), ResNet18Config(name="resnet18")])
def test_build_model_fits_any_input_shape(config, shape):
    model = build_model(config, info(shape, classes=7)).eval()
    assert model(torch.zeros(2, *shape)).shape == (2, 7)


@pytest.mark.parametrize(("depth", "width"), [(1, 8), (3, 16)])
def test_cnn_head_width_follows_depth_and_width(depth, width):
    model = build_model(CNNConfig(depth=depth, width=width), info((1, 8, 8)))
    convs = [layer for layer in model.features if isinstance(layer, torch.nn.Conv2d)]
    assert len(convs) == depth
    assert model.head[-1].in_features == width * 2 ** (depth - 1)


def test_dropout_changes_training_outputs_but_not_eval_outputs():
    model = build_model(CNNConfig(depth=1, width=16, dropout=0.5), info((1, 8, 8)))
    x = torch.randn(8, 1, 8, 8)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize(
    ("optimizer", "torch_class"),
    [
        ("sgd", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("rmsprop", torch.optim.RMSprop),
        ("adagrad", torch.optim.Adagrad),
    ],
)
def test_build_optimizer_by_name_decays_only_weight_tensors(optimizer, torch_class):
    model = build_model(CNNConfig(depth=2, width=8), info((1, 8, 8)))
    config = TrainConfig.model_validate({"optimizer": {"name": optimizer, "weight_decay": 0.01}})
    built = build_optimizer(config.optimizer, model)
    assert type(built) is torch_class
    decayed, rest = built.param_groups
    assert decayed["weight_decay"] == 0.01 and rest["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(p) for p in decayed_parameters(model)}
    assert all(p.ndim == 1 for p in rest["params"])


BASE = 0.1


def _cosine(e: int, span: int, floor: float = 0.0) -> float:
    return BASE * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * e / span)))


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"name": "constant"}, [BASE] * 6),
        ({"name": "exponential", "gamma": 0.5}, [BASE * 0.5**e for e in range(6)]),
        (
            {"name": "step", "gamma": 0.1, "step_epochs": 2},
            [BASE, BASE, BASE / 10, BASE / 10, BASE / 100, BASE / 100],
        ),
        (
            {"name": "multistep", "gamma": 0.1, "milestones": [1, 4]},
            [BASE, BASE / 10, BASE / 10, BASE / 10, BASE / 100, BASE / 100],
        ),
        ({"name": "cosine"}, [_cosine(e, 5) for e in range(6)]),
        (
            # Milestones count from the first epoch, warmup included (as torch's MultiStepLR).
            {"name": "multistep", "gamma": 0.1, "milestones": [3], "warmup_epochs": 2},
            [BASE * 0.1, BASE * 0.55, BASE, BASE / 10, BASE / 10, BASE / 10],
        ),
        (
            {"name": "constant", "warmup_epochs": 2, "warmup_start_factor": 0.1},
            [BASE * 0.1, BASE * 0.55, BASE, BASE, BASE, BASE],
        ),
        (
            {"name": "cosine", "warmup_epochs": 1, "min_factor": 0.1},
            [BASE * 0.1] + [_cosine(e, 4, 0.1) for e in range(5)],
        ),
    ],
    ids=[
        "constant",
        "exponential",
        "step",
        "multistep",
        "cosine",
        "warmup-multistep",
        "warmup",
        "warmup-cosine",
    ],
)
def test_lr_at_follows_the_schedule_formula(schedule, expected):
    config = LRScheduleConfig.model_validate(schedule)
    assert [lr_at(config, BASE, e, total_epochs=6) for e in range(6)] == pytest.approx(expected)


def test_reported_lr_is_the_scheduled_lr(digits_splits):
    config = TrainConfig.model_validate(
        {
            "epochs": 4,
            "model": {"depth": 1, "width": 8},
            "optimizer": {"name": "sgd", "lr": 0.1},
            "lr_schedule": {"name": "step", "gamma": 0.5, "step_epochs": 1},
        }
    )
    history: list[dict[str, float]] = []
    fit(config, digits_splits.tuning, on_epoch_end=history.append)
    assert [h["lr"] for h in history] == pytest.approx([0.1, 0.05, 0.025, 0.0125])


@torch.no_grad()
def _weight_norm(model: torch.nn.Module, order: int) -> float:
    return float(sum(p.abs().pow(order).sum() for p in decayed_parameters(model)))


@pytest.mark.parametrize(
    ("regularized", "order"),
    [({"l1": 1.0e-3}, 1), ({"optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 5.0e-2}}, 2)],
    ids=["l1", "l2"],
)
def test_regularization_shrinks_its_weight_norm(digits_splits, regularized, order):
    base = {
        "epochs": 3,
        "model": {"depth": 1, "width": 8},
        "optimizer": {"name": "sgd", "lr": 0.05},
    }
    plain = fit(TrainConfig.model_validate(base), digits_splits.tuning).model
    shrunk = fit(TrainConfig.model_validate({**base, **regularized}), digits_splits.tuning).model
    assert _weight_norm(shrunk, order) < _weight_norm(plain, order)
