"""The one module in trainables/ that imports Ray: the Tune trainable and the retrain task.

Per trial: validate the config Tune resolved, claim the trial's CPU and GPU share,
restore from `tune.get_checkpoint()` if there is one (a retried, resumed or
PBT-exploited trial), then one `tune.report` per epoch, with a checkpoint every
`checkpoint_every` epochs and at the last epoch.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from typing import Any

import ray
import torch
from ray import tune

from trainables import metrics as m
from trainables.checkpoint import load_checkpoint, save_checkpoint
from trainables.config import TrainConfig
from trainables.data import TuningData
from trainables.loop import Trainer, pick_device, retrain
from trainables.transfer import StateDict


def train_trial(
    config: dict[str, Any],
    data: TuningData,
    checkpoint_every: int = 1,
    pretrained: Mapping[str, StateDict | None] | None = None,
) -> None:
    """Tune entry point. `data` and the `pretrained` backbone weights arrive from the
    object store via `tune.with_parameters`: loaded once by the driver, never per trial."""
    # Ray logs one INFO line per persisted checkpoint from every trial process.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    train_config = TrainConfig.model_validate(config)
    assigned = ray.get_runtime_context().get_assigned_resources()
    device = _claim_resources(assigned.get("CPU", 1.0), assigned.get("GPU", 0.0))
    trainer = Trainer(train_config, data, device, pretrained)
    trainer.run_id = tune.get_context().get_trial_id()

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.load_state_dict(load_checkpoint(directory))

    try:
        for metrics in trainer.epochs():
            metrics[m.NODE_ID] = ray.get_runtime_context().get_node_id()
            if trainer.epoch % checkpoint_every == 0 or trainer.finished:
                with tempfile.TemporaryDirectory() as directory:
                    save_checkpoint(trainer.state_dict(), directory)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
            else:
                tune.report(metrics)
    except torch.cuda.OutOfMemoryError as error:
        # Retrying would fail the same way: report the configuration as infeasible.
        reason = (
            f"CUDA out of memory at batch size {train_config.batch_size} with "
            f"{assigned.get('GPU', 0.0)} of a GPU: {str(error).splitlines()[0]}"
        )
        tune.report({**m.WORST, m.EPOCH: trainer.epoch + 1, m.INFEASIBLE: reason})


def retrain_task(
    config: dict[str, Any],
    data: TuningData,
    epochs: int,
    pretrained: Mapping[str, StateDict | None] | None = None,
) -> dict[str, Any]:
    """A Ray task: retrain `config` on train+val for `epochs` epochs; returns its state.

    Run with `ray.remote(retrain_task).options(num_cpus=..., num_gpus=...)`, the same
    share a trial had. The returned state is a checkpoint state without the optimizer,
    its tensors on the CPU.
    """
    assigned = ray.get_runtime_context().get_assigned_resources()
    device = _claim_resources(assigned.get("CPU", 1.0), assigned.get("GPU", 0.0))
    trainer = retrain(TrainConfig.model_validate(config), data, epochs, device, pretrained)
    # The optimizer state is left out: a final model is evaluated and exported, never
    # trained further, and CUDA tensors in it would not unpickle on a CPU-only driver.
    state = {key: value for key, value in trainer.state_dict().items() if key != "optimizer"}
    state["model"] = {key: value.cpu() for key, value in state["model"].items()}
    state["diverged"] = trainer.diverged
    return state


def _claim_resources(cpus: float, gpus: float) -> torch.device:
    """Use as many CPU threads as the trial reserved, and no more GPU memory than its share.

    Several trials sharing a GPU each cap their own allocator at their fraction, so one
    trial's large batch cannot starve the others: it fails alone, with a clear reason.
    """
    torch.set_num_threads(max(1, int(cpus)))
    device = pick_device(gpus)
    if device.type == "cuda" and 0 < gpus < 1:
        torch.cuda.set_per_process_memory_fraction(gpus, device)
    return device
