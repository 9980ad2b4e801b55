"""The plain-PyTorch training loop: metrics, determinism, checkpoints, devices."""

from __future__ import annotations

import pytest
import torch

from trainables import metrics as m
from trainables.checkpoint import load_checkpoint, save_checkpoint
from trainables.config import TrainConfig
from trainables.loop import Trainer, fit, model_from_state, retrain
from trainables.optim import lr_at

FAST = {
    "epochs": 4,
    "batch_size": 64,
    "model": {"depth": 1, "width": 8},
    "optimizer": {"name": "adam", "lr": 3.0e-3},
}


def run(config: TrainConfig, data) -> list[dict[str, float]]:
    history: list[dict[str, float]] = []
    fit(config, data, on_epoch_end=history.append)
    return history


def test_fit_reports_every_epoch_metric_each_epoch(digits_splits):
    history = run(TrainConfig.model_validate(FAST), digits_splits.tuning)
    assert [h[m.EPOCH] for h in history] == [1, 2, 3, 4]
    assert all(set(h) == {*m.EPOCH_METRICS, m.EARLY_STOPPED, m.DIVERGED} for h in history)
    assert all(0.0 <= h[m.VAL_ACC] <= 1.0 and h[m.BATCH_SIZE] == 64 for h in history)


def test_fit_learns_digits(digits_splits):
    config = {**FAST, "epochs": 6, "model": {"depth": 2, "width": 16}}
    history = run(TrainConfig.model_validate(config), digits_splits.tuning)
    assert history[-1][m.VAL_ACC] > 0.9
    assert history[-1][m.TRAIN_LOSS] < history[0][m.TRAIN_LOSS]


def test_fit_is_deterministic_for_a_seed_on_cpu(digits_splits):
    config = TrainConfig.model_validate({**FAST, "model": {"depth": 1, "width": 8, "dropout": 0.3}})
    assert run(config, digits_splits.tuning) == run(config, digits_splits.tuning)


def test_fit_differs_across_seeds(digits_splits):
    a = run(TrainConfig.model_validate({**FAST, "seed": 1}), digits_splits.tuning)
    b = run(TrainConfig.model_validate({**FAST, "seed": 2}), digits_splits.tuning)
    assert a != b


def test_restored_trainer_continues_exactly_like_an_unbroken_one(digits_splits, tmp_path):
    config = TrainConfig.model_validate({**FAST, "model": {"depth": 1, "width": 8, "dropout": 0.2}})
    unbroken = run(config, digits_splits.tuning)

    first = Trainer(config, digits_splits.tuning)
    for _ in range(2):
        first.run_epoch()
    save_checkpoint(first.state_dict(), tmp_path)
    second = Trainer(config, digits_splits.tuning)
    second.load_state_dict(load_checkpoint(tmp_path))
    resumed = list(second.epochs())

    assert resumed == unbroken[2:]


def test_checkpoint_describes_itself_and_loads_with_weights_only(digits_splits, tmp_path):
    config = TrainConfig.model_validate({**FAST, "epochs": 1})
    trainer = fit(config, digits_splits.tuning)
    path = save_checkpoint(trainer.state_dict(), tmp_path)

    state = torch.load(path, weights_only=True)  # raises if anything needs unpickling code
    assert {"format", "config", "data_info", "epoch", "model", "optimizer", "torch_rng"} <= set(
        state
    )
    assert TrainConfig.model_validate(state["config"]) == config
    model = model_from_state(state)
    x = digits_splits.tuning.val.images[:5].float()
    trainer.model.eval()
    torch.testing.assert_close(model(x), trainer.model(x))


def test_load_checkpoint_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"state\.pt"):
        load_checkpoint(tmp_path)


def test_loaded_state_keeps_the_new_config_hyperparameters(digits_splits, tmp_path):
    """What PBT relies on: donor weights, but the mutated optimizer settings."""
    donor_config = {**FAST, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}}
    donor = Trainer(TrainConfig.model_validate(donor_config), digits_splits.tuning)
    donor.run_epoch()
    save_checkpoint(donor.state_dict(), tmp_path)
    mutated_config = TrainConfig.model_validate(
        {**FAST, "batch_size": 32, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.5}}
    )
    clone = Trainer(mutated_config, digits_splits.tuning)
    clone.load_state_dict(load_checkpoint(tmp_path))

    metrics = clone.run_epoch()
    assert metrics[m.EPOCH] == 2 and metrics[m.LR] == 0.05 and metrics[m.BATCH_SIZE] == 32
    assert all(g["momentum"] == 0.5 and g["lr"] == 0.05 for g in clone.optimizer.param_groups)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda_learns_digits(digits_splits):
    config = TrainConfig.model_validate({**FAST, "epochs": 5, "model": {"depth": 2, "width": 16}})
    history: list[dict[str, float]] = []
    trainer = fit(
        config, digits_splits.tuning, device=torch.device("cuda"), on_epoch_end=history.append
    )
    assert next(trainer.model.parameters()).is_cuda
    assert history[-1][m.VAL_ACC] > 0.9


def test_restoring_another_runs_checkpoint_records_an_exploit_in_the_lineage(
    digits_splits, tmp_path
):
    from trainables import lineage

    donor = Trainer(TrainConfig.model_validate({**FAST, "seed": 1}), digits_splits.tuning)
    donor.run_epoch()
    save_checkpoint(lineage.stamped(donor.state_dict(), "donor", []), tmp_path)
    clone_config = TrainConfig.model_validate({**FAST, "batch_size": 32})
    clone = Trainer(clone_config, digits_splits.tuning)
    state = load_checkpoint(tmp_path)

    clone.load_state_dict(state)
    history = lineage.after_restore(state, "clone", clone_config)

    assert history == [
        {
            "trial_id": "clone",
            "donor": "donor",
            "epoch": 1,
            "new_values": {"batch_size": 32, "seed": 0},
        }
    ]
    # Carried forward in the clone's checkpoints, and not recorded twice on its restore.
    again = lineage.stamped(clone.state_dict(), "clone", history)
    assert lineage.after_restore(again, "clone", clone_config) == history


def test_restoring_ones_own_checkpoint_is_no_exploit(digits_splits):
    from trainables import lineage

    trainer = Trainer(TrainConfig.model_validate(FAST), digits_splits.tuning)
    trainer.run_epoch()
    state = lineage.stamped(trainer.state_dict(), "same", [])
    assert lineage.after_restore(state, "same", trainer.config) == []
    assert "run_id" not in trainer.state_dict()  # the loop itself knows no trials


def test_a_trial_whose_loss_overflows_reports_divergence_with_the_worst_metrics(digits_splits):
    config = TrainConfig.model_validate(
        {
            "epochs": 5,
            "batch_size": 32,
            "model": {"depth": 4, "width": 64, "batch_norm": False},
            "optimizer": {"name": "sgd", "lr": 10.0, "momentum": 0.99},
        }
    )
    history = run(config, digits_splits.tuning)
    assert len(history) == 1 and history[0][m.DIVERGED] is True
    assert history[0][m.VAL_ACC] == 0.0 and history[0][m.VAL_LOSS] == float("inf")


@pytest.mark.parametrize(
    ("precision", "channels_last"), [("bf16", "off"), ("fp32", "on"), ("bf16", "on")]
)
def test_bf16_autocast_and_channels_last_still_learn_on_cpu(
    digits_splits, precision, channels_last
):
    config = {**FAST, "epochs": 4, "model": {"depth": 2, "width": 16}}
    config.update(precision=precision, channels_last=channels_last)
    trainer = Trainer(TrainConfig.model_validate(config), digits_splits.tuning)
    assert trainer.compute.bf16 == (precision == "bf16")
    assert trainer.compute.channels_last == (channels_last == "on")
    history = list(trainer.epochs())
    assert history[-1][m.VAL_ACC] > 0.8


def test_auto_precision_is_plain_fp32_on_cpu(digits_splits):
    trainer = Trainer(TrainConfig.model_validate(FAST), digits_splits.tuning)
    assert not trainer.compute.bf16 and not trainer.compute.channels_last


def test_pooled_data_trains_on_train_and_val_and_keeps_the_statistics(digits_splits):
    data = digits_splits.tuning
    pooled = data.pooled()
    assert len(pooled.train) == len(data.train) + len(data.val)
    assert torch.equal(pooled.train.labels[len(data.train) :], data.val.labels)
    assert pooled.info == data.info


def test_retrain_runs_exactly_the_epochs_asked_with_the_tuned_schedule(digits_splits):
    config = TrainConfig.model_validate(
        {
            **FAST,
            "epochs": 8,
            "lr_schedule": {"name": "cosine"},
            "early_stopping": {"metric": "val_acc", "patience": 1, "min_delta": 0.5},
        }
    )
    tuned = run(config, digits_splits.tuning)  # patience 1 with an impossible min_delta

    trainer = retrain(config, digits_splits.tuning, epochs=5)

    assert len(tuned) == 2 and tuned[-1][m.EARLY_STOPPED]
    assert trainer.epoch == 5 and trainer.config.early_stopping is None
    assert len(trainer.train_feed) == len(digits_splits.tuning.train) + len(
        digits_splits.tuning.val
    )
    # The cosine schedule still spans the tuned 8 epochs: epoch 5 is not its end.
    lr_of_epoch_5 = lr_at(config.lr_schedule, 3.0e-3, epoch=4, total_epochs=8)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr_of_epoch_5)
    assert lr_of_epoch_5 > lr_at(config.lr_schedule, 3.0e-3, epoch=4, total_epochs=5)


def test_validation_metrics_of_an_epoch_equal_a_plain_evaluation(digits_splits):
    from trainables.compute import Normalizer
    from trainables.loop import evaluate

    config = TrainConfig.model_validate({**FAST, "epochs": 1, "eval_batch_size": 7})
    trainer = Trainer(config, digits_splits.tuning)

    metrics = trainer.run_epoch()

    normalize = Normalizer.for_model(config.model, digits_splits.tuning.info, torch.device("cpu"))
    loss, accuracy = evaluate(trainer.model, digits_splits.tuning.val, normalize, batch_size=500)
    assert metrics[m.VAL_ACC] == pytest.approx(accuracy)
    assert metrics[m.VAL_LOSS] == pytest.approx(loss, rel=1e-5)


def test_the_checkpoint_codec_refuses_another_format_with_the_file_named(tmp_path):
    import pytest
    import torch

    from trainables.checkpoint import (
        CHECKPOINT_FILE,
        load_checkpoint,
        state_from_bytes,
        state_to_bytes,
    )

    state = {"epoch": 3, "model": {"w": torch.ones(2)}}
    assert state_from_bytes(state_to_bytes(state), "x")["epoch"] == 3
    torch.save({"format": 99, **state}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ValueError, match=rf"{CHECKPOINT_FILE}: checkpoint format 99"):
        load_checkpoint(tmp_path)
