"""The one module in trainables/ that imports Ray: the Tune trainable and the retrain task.

Per trial: validate the config Tune resolved, claim the trial's CPU and GPU share,
restore from `tune.get_checkpoint()` if there is one (a retried, resumed or
PBT-exploited trial), or else from the checkpoint `continue_from` names for its config (a
trial of an earlier round that `cnn-tune resume --set train.epochs=N` trains on), then
one `tune.report` per epoch, carrying the model's footprint (parameters, FLOPs,
latency; trainables.footprint, measured after the first epoch this run trains), with a
checkpoint every `checkpoint_every` epochs and at the last epoch.

A configuration that runs out of memory anywhere (uploading the data, restoring,
training, validating) is reported `infeasible` once and its memory given back, so the
next trial on this reused actor trains normally; retrying it would fail the same way.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ray
import torch
from ray import tune

from trainables import lineage
from trainables import metrics as m
from trainables.checkpoint import load_checkpoint, save_checkpoint
from trainables.compute import ComputeFormat
from trainables.config import TrainConfig
from trainables.data import ImageSplit, TuningData
from trainables.footprint import LARGE_BATCH, footprint_of
from trainables.gpu import claim_gpu_share, is_out_of_memory, pick_device, release_memory
from trainables.loop import (
    Trainer,
    largest_batch_size,
    model_from_state,
    normalizer_from_state,
    predict_split,
    retrain,
)
from trainables.transfer import StateDict


def train_trial(
    config: dict[str, Any],
    data: TuningData,
    checkpoint_every: int = 1,
    pretrained: Mapping[str, StateDict | None] | None = None,
    continue_from: Mapping[str, str] | None = None,
) -> None:
    """Tune entry point. `data` and the `pretrained` backbone weights arrive from the
    object store via `tune.with_parameters`: loaded once by the driver, never per trial.

    `continue_from`: checkpoint paths (or URIs) by `config_key` of the config that trains
    on from them; a trial whose config is not there starts from epoch 1."""
    # Ray logs one INFO line per persisted checkpoint from every trial process.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    train_config = TrainConfig.model_validate(config)
    assigned = ray.get_runtime_context().get_assigned_resources()
    gpus = assigned.get("GPU", 0.0)
    device, cap_bytes = _claim_resources(assigned.get("CPU", 1.0), gpus)
    epochs_done = [0]  # what the infeasible report counts from, kept past a failed Trainer
    try:
        start = (continue_from or {}).get(config_key(config))
        for metrics, checkpoint_state in _trial_epochs(
            train_config, data, device, cap_bytes, pretrained, checkpoint_every, epochs_done, start
        ):
            _report(metrics, checkpoint_state)
        return
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        # Only the reason leaves this block: the traceback holds the trial's tensors.
        reason = (
            f"out of memory at batch size {largest_batch_size(train_config)} "
            f"(eval {train_config.eval_batch_size}) with {gpus} of a GPU: "
            f"{str(error).splitlines()[0]}"
        )
    release_memory(device)
    tune.report({**m.WORST, m.EPOCH: epochs_done[0] + 1, m.INFEASIBLE: reason})


def _trial_epochs(
    config: TrainConfig,
    data: TuningData,
    device: torch.device,
    cap_bytes: int | None,
    pretrained: Mapping[str, StateDict | None] | None,
    checkpoint_every: int,
    epochs_done: list[int],
    start: str | None = None,
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Build the trainer, restore it, and yield each epoch's metrics and checkpoint state."""
    trainer = Trainer(config, data, device, pretrained, cap_bytes)
    trial_id = tune.get_context().get_trial_id()
    history: list[dict[str, Any]] = []  # PBT exploits this trial went through (lineage)
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and start is not None:
        checkpoint = tune.Checkpoint(start)
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory)
        trainer.load_state_dict(state)
        history = lineage.after_restore(state, trial_id, config)
        epochs_done[0] = trainer.epoch
    node_id = ray.get_runtime_context().get_node_id()
    footprint: dict[str, Any] = {}
    for metrics in trainer.epochs():
        epochs_done[0] = trainer.epoch
        # Measured once the first epoch has trained and validated, so the model is known
        # to fit: a larger model's measuring pass must not be what runs out of memory.
        footprint = footprint or _footprint(trainer, config, data)
        metrics.update(footprint)
        metrics[m.NODE_ID] = node_id
        metrics[m.DEVICE] = str(device)
        if device.type == "cuda":  # allocator statistics: read on the host, no sync
            metrics[m.GPU_MEMORY_PEAK_BYTES] = torch.cuda.max_memory_reserved(device)
            metrics[m.GPU_MEMORY_CAP_BYTES] = cap_bytes
        due = trainer.epoch % checkpoint_every == 0 or trainer.finished
        yield metrics, lineage.stamped(trainer.state_dict(), trial_id, history) if due else None


def config_key(config: Mapping[str, Any]) -> str:
    """A trial config as one string: what `continue_from` is looked up by."""
    return json.dumps(config, sort_keys=True, default=str)


def _footprint(trainer: Trainer, config: TrainConfig, data: TuningData) -> dict[str, Any]:
    """The model's size and speed (trainables.footprint), looked up once per run of the
    trial (a restart after an exploit or a failure may bring another config or device)
    and measured once per architecture in this process.
    The throughput batch is no larger than the trial's eval batch, which fits its memory."""
    batch = max(1, min(LARGE_BATCH, config.eval_batch_size, len(data.val)))
    footprint = footprint_of(trainer.model, data.info.input_shape, trainer.compute, batch)
    return footprint.metrics()


def _report(metrics: dict[str, Any], checkpoint_state: dict[str, Any] | None) -> None:
    if checkpoint_state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        save_checkpoint(checkpoint_state, directory)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def retrain_task(
    config: dict[str, Any],
    data: TuningData,
    epochs: int,
    pretrained: Mapping[str, StateDict | None] | None = None,
) -> dict[str, Any]:
    """A Ray task: retrain `config` on train+val for `epochs` epochs; returns its state.

    Run through `remote_with_share`, with the share a trial had. The returned state is a
    checkpoint state without the optimizer, its tensors on the CPU.
    """
    assigned = ray.get_runtime_context().get_assigned_resources()
    device, cap_bytes = _claim_resources(assigned.get("CPU", 1.0), assigned.get("GPU", 0.0))
    train_config = TrainConfig.model_validate(config)
    trainer = retrain(train_config, data, epochs, device, pretrained, cap_bytes)
    # The optimizer state is left out: a final model is evaluated and exported, never
    # trained further, and CUDA tensors in it would not unpickle on a CPU-only driver.
    state = {key: value for key, value in trainer.state_dict().items() if key != "optimizer"}
    state["model"] = {key: value.cpu() for key, value in state["model"].items()}
    state["cuda_rng"] = None
    state["diverged"] = trainer.diverged
    return state


def reevaluate_task(
    config: dict[str, Any],
    data: TuningData,
    pretrained: Mapping[str, StateDict | None] | None = None,
) -> list[dict[str, Any]]:
    """A Ray task: train `config` as a trial would (train split, validated each epoch);
    returns its epoch rows. Run through `remote_with_share`, with a trial's share."""
    assigned = ray.get_runtime_context().get_assigned_resources()
    device, cap_bytes = _claim_resources(assigned.get("CPU", 1.0), assigned.get("GPU", 0.0))
    trainer = Trainer(TrainConfig.model_validate(config), data, device, pretrained, cap_bytes)
    return [
        {key: value for key, value in row.items() if isinstance(value, int | float | bool)}
        for row in trainer.epochs()
    ]


def predict_task(state: dict[str, Any], split: ImageSplit) -> tuple[float, torch.Tensor]:
    """A Ray task: the mean loss and predicted classes of a final model on `split`.

    Runs where the trials ran, on the device and in the compute format (bf16,
    channels-last) they trained with, at their eval batch size; the predictions come
    back on the CPU.
    """
    assigned = ray.get_runtime_context().get_assigned_resources()
    device, _ = _claim_resources(assigned.get("CPU", 1.0), assigned.get("GPU", 0.0))
    config = TrainConfig.model_validate(state["config"])
    loss, predictions = predict_split(
        model_from_state(state, device),
        split,
        normalizer_from_state(state, device),
        config.eval_batch_size,
        ComputeFormat.for_config(config, device),
    )
    return loss, predictions.cpu()


def remote_with_share(
    function: Callable[..., Any], cpu: float, gpu: float, max_retries: int = 0
) -> Any:
    """`function` as a Ray task holding a trial's share of CPUs and GPU.

    A task that touched a GPU leaves its worker process with a CUDA context on that GPU
    and an allocator cap; `max_calls=1` retires the worker so the next task gets a fresh
    process on the GPU Ray assigns it. Ray accepts `max_calls` only here, in
    `ray.remote(...)`: `.options()` refuses it, and `ray.remote(f).options(num_gpus=...)`
    keeps reusing workers.
    """
    options: dict[str, Any] = {"num_cpus": cpu, "num_gpus": gpu, "max_retries": max_retries}
    if gpu > 0:
        options["max_calls"] = 1
    return ray.remote(**options)(function)


def _claim_resources(cpus: float, gpus: float) -> tuple[torch.device, int | None]:
    """Use as many CPU threads as the trial reserved, and no more GPU memory than its share.

    Several trials sharing a GPU each cap their own allocator at their fraction (less
    the CUDA context), so one trial's large batch cannot starve the others: it fails
    alone, with a clear reason. Returns the device and its memory cap in bytes.
    """
    torch.set_num_threads(max(1, int(cpus)))
    device = pick_device(gpus)
    return device, claim_gpu_share(device, min(gpus, 1.0))
