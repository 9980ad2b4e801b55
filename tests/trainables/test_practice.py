"""The knobs of good practice do what they say: augmentation, plateau decay, batch growth,
early stopping."""

from __future__ import annotations

import pytest
import torch

from trainables import metrics as m
from trainables.augment import Augmenter
from trainables.config import AugmentationConfig, TrainConfig
from trainables.loop import Trainer, evaluate, fit

BASE = {
    "epochs": 3,
    "batch_size": 64,
    "model": {"depth": 1, "width": 8},
    "optimizer": {"name": "adam", "lr": 3.0e-3},
}


def images(n: int = 16, side: int = 8, channels: int = 1) -> torch.Tensor:
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(0))


def test_augmentation_preset_none_is_the_identity():
    x = images()
    assert torch.equal(Augmenter(AugmentationConfig())(x), x)


def test_augmentation_explicit_knob_overrides_its_preset():
    config = AugmentationConfig(preset="standard", flip=False)
    assert (
        config.flip is False
        and config.rotation_degrees == 10.0
        and config.crop_padding_fraction == 0.125
    )


def test_augmentation_crop_shifts_each_example_by_whole_pixels():
    x = images(n=64)
    out = Augmenter(AugmentationConfig(crop_padding_fraction=0.25))(x)  # up to 2 px of 8
    matched = 0
    for original, shifted in zip(x, out, strict=True):
        candidates = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                moved = torch.zeros_like(original)
                src = original[:, max(0, dy) : 8 + min(0, dy), max(0, dx) : 8 + min(0, dx)]
                moved[:, max(0, -dy) : 8 + min(0, -dy), max(0, -dx) : 8 + min(0, -dx)] = src
                candidates.append(moved)
        matched += any(torch.allclose(shifted, c, atol=1e-5) for c in candidates)
    assert matched == 64
    assert not all(torch.equal(a, b) for a, b in zip(x, out, strict=True)), (
        "every example unshifted"
    )


def test_augmentation_flip_mirrors_about_half_the_examples():
    x = images(n=200)
    out = Augmenter(AugmentationConfig(flip=True))(x)
    flipped = [torch.allclose(o, i.flip(-1), atol=1e-5) for i, o in zip(x, out, strict=True)]
    kept = [torch.allclose(o, i, atol=1e-5) for i, o in zip(x, out, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 60 < sum(flipped) < 140


@pytest.mark.parametrize("knob", [{"rotation_degrees": 20.0}, {"color_jitter": 0.3}])
def test_augmentation_draws_parameters_per_example(knob):
    x = images(n=8).expand(8, 1, 8, 8).clone()  # eight copies of one image
    x[:] = x[0]
    out = Augmenter(AugmentationConfig(**knob))(x)
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8


def test_augmentation_changes_training_batches_and_never_eval_batches(digits_splits):
    config = TrainConfig.model_validate(
        {**BASE, "epochs": 1, "augmentation": {"preset": "standard"}}
    )
    trainer = Trainer(config, digits_splits.tuning)
    seen: list[torch.Tensor] = []
    trainer.model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    plain = {
        tuple(trainer.normalize(x).flatten().tolist())
        for x in digits_splits.tuning.train.images.split(1)
    }

    trainer.run_epoch()
    train_inputs = torch.cat(seen)
    seen.clear()
    evaluate(trainer.model, digits_splits.tuning.val, trainer.normalize, 512)
    eval_inputs = torch.cat(seen)

    changed = sum(tuple(x.flatten().tolist()) not in plain for x in train_inputs.split(1))
    assert changed > 0.8 * len(train_inputs)
    torch.testing.assert_close(eval_inputs, trainer.normalize(digits_splits.tuning.val.images))


def run(config: dict, data) -> list[dict]:
    history: list[dict] = []
    fit(TrainConfig.model_validate(config), data, on_epoch_end=history.append)
    return history


def test_batch_growth_follows_the_configured_sequence_and_scales_lr(digits_splits):
    config = {
        **BASE,
        "epochs": 7,
        "batch_size": 16,
        "optimizer": {"name": "sgd", "lr": 0.01},
        "batch_growth": {
            "factor": 2,
            "every_epochs": 2,
            "max_batch_size": 64,
            "lr_scaling": "linear",
        },
    }
    history = run(config, digits_splits.tuning)
    assert [h[m.BATCH_SIZE] for h in history] == [16, 16, 32, 32, 64, 64, 64]
    assert [h[m.LR] for h in history] == pytest.approx([0.01, 0.01, 0.02, 0.02, 0.04, 0.04, 0.04])


def test_batch_growth_sqrt_scaling(digits_splits):
    growth = {"factor": 4, "every_epochs": 1, "max_batch_size": 256, "lr_scaling": "sqrt"}
    config = {
        **BASE,
        "epochs": 3,
        "batch_size": 16,
        "optimizer": {"name": "sgd", "lr": 0.01},
        "batch_growth": growth,
    }
    history = run(config, digits_splits.tuning)
    assert [h[m.BATCH_SIZE] for h in history] == [16, 64, 256]
    assert [h[m.LR] for h in history] == pytest.approx([0.01, 0.02, 0.04])


def test_plateau_schedule_decays_after_patience_epochs_without_improvement(digits_splits):
    # An lr this small learns nothing: val_loss never improves after the first epoch.
    schedule = {
        "name": "plateau",
        "gamma": 0.5,
        "plateau_patience": 2,
        "plateau_metric": "val_loss",
    }
    config = {
        **BASE,
        "epochs": 6,
        "optimizer": {"name": "sgd", "lr": 1.0e-9, "momentum": 0.0},
        "lr_schedule": schedule,
    }
    history = run(config, digits_splits.tuning)
    # Epochs 2 and 3 bring no improvement: the decay applies from epoch 4, again from 6.
    assert [h[m.LR] / 1.0e-9 for h in history] == pytest.approx([1, 1, 1, 0.5, 0.5, 0.25])


def test_early_stopping_ends_a_stalled_trial_at_its_patience(digits_splits):
    config = {
        **BASE,
        "epochs": 20,
        "optimizer": {"name": "sgd", "lr": 1.0e-9, "momentum": 0.0},
        "early_stopping": {"metric": "val_acc", "patience": 3},
    }
    history = run(config, digits_splits.tuning)
    assert len(history) == 4  # epoch 1 sets the best; 2, 3, 4 bring nothing
    assert [h[m.EARLY_STOPPED] for h in history] == [False, False, False, True]


def test_early_stopping_leaves_an_improving_trial_alone(digits_splits):
    config = {
        **BASE,
        "epochs": 5,
        "model": {"depth": 2, "width": 16},
        "early_stopping": {"metric": "val_loss", "patience": 2},
    }
    history = run(config, digits_splits.tuning)
    assert len(history) == 5 and not any(h[m.EARLY_STOPPED] for h in history)
