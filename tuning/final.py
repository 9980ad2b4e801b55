"""The final model(s) of a sweep, and the only evaluations of the held-out test split.

Two protocols, chosen by the experiment's `final` section:

- `best_checkpoint`: the best trial's kept checkpoint from its best epoch, as tuned.
- `retrain`: the best configuration trained again on train+val, from scratch, for the
  epochs at which it scored best, once per seed (`final.seeds`). Each run is a Ray task
  with the share of CPUs and GPU a trial had; its weights are saved under
  `<sweep>/final/seed_<seed>/` and reused if the sweep is resumed.

`HeldOutTest` is the one holder of the test split in the driver: it evaluates each final
model once and refuses a second look. When the sweep's trials had GPUs, the evaluation
is a Ray task with a trial's share, on that GPU and in the trials' compute format, not
an fp32 pass on the driver's CPU.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray import tune

from schedulers.snapshot import checkpoint_exists
from trainables.checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    state_from_bytes,
    state_to_bytes,
)
from trainables.config import TrainConfig
from trainables.data import ImageSplit, TuningData
from trainables.loop import model_from_state, normalizer_from_state, predict_split
from trainables.transfer import StateDict
from trainables.tune_adapter import predict_task, remote_with_share, retrain_task
from tuning.experiment import Experiment
from tuning.layout import TEST_LOOKS_FILE, final_model_dir
from tuning.storage import read_bytes, write_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinalModel:
    """A model the test split is evaluated on, and how it was made."""

    name: str  # "best_checkpoint" or "seed_<seed>"
    state: dict[str, Any]  # a checkpoint state: config, data_info, epoch, model weights
    path: str  # best_checkpoint: the checkpoint folder; retrain: relative to the sweep
    trained_on: str  # "train" or "train+val"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": int(self.state["config"]["seed"]),
            "epochs": int(self.state["epoch"]),
            "trained_on": self.trained_on,
            "path": self.path,
            "diverged": bool(self.state.get("diverged", False)),
        }


def best_checkpoint_model(best: tune.Result, metric: str, mode: str) -> FinalModel:
    """The best trial's best kept checkpoint (its latest if none was scored).

    Tune lists every checkpoint a trial reported, also those tuning.retention deleted;
    the best trial keeps its best, so the pick is among those still there.
    """
    kept = [
        (checkpoint, metrics)
        for checkpoint, metrics in best.best_checkpoints or []
        if checkpoint_exists(checkpoint) and isinstance(metrics.get(metric), int | float)
    ]
    pick = max if mode == "max" else min
    checkpoint = pick(kept, key=lambda pair: pair[1][metric])[0] if kept else best.checkpoint
    if checkpoint is None:
        raise RuntimeError(f"the best trial {best.path} left no checkpoint to test")
    with checkpoint.as_directory() as directory:
        state = load_checkpoint(directory)
    return FinalModel("best_checkpoint", state, checkpoint.path, trained_on="train")


def retrained_models(
    experiment: Experiment,
    config: Mapping[str, Any],
    epochs: int,
    data: TuningData,
    location: str,
    gpu: float,
    pretrained: Mapping[str, StateDict | None],
) -> list[FinalModel]:
    """Retrain `config` on train+val for `epochs` epochs once per seed, as Ray tasks.

    Args:
        config: the best trial's training config (JSON types).
        epochs: the epoch at which the best trial scored best.
        location: the sweep's location; final weights are saved under it.
        gpu: GPUs per task, the share each trial had.
    """
    tuned = TrainConfig.model_validate(config)
    # As the retraining loop will hold it (no early stopping), so a saved state compares.
    configs = {
        f"seed_{seed}": tuned.model_copy(update={"seed": seed, "early_stopping": None}).model_dump(
            mode="json"
        )
        for seed in range(tuned.seed, tuned.seed + experiment.final.seeds)
    }
    states = {name: _saved_state(location, name, c, epochs) for name, c in configs.items()}
    missing = [name for name, state in states.items() if state is None]
    if missing:
        logger.info("retraining the best config on train+val for %d epochs: %s", epochs, missing)
        task = remote_with_share(
            retrain_task, experiment.resources.cpu, gpu, max_retries=experiment.max_failures
        )
        data_ref, pretrained_ref = ray.put(data), ray.put(dict(pretrained))
        refs = [task.remote(configs[name], data_ref, epochs, pretrained_ref) for name in missing]
        for name, state in zip(missing, ray.get(refs), strict=True):
            write_bytes(location, _state_file(name), state_to_bytes(state))
            states[name] = state
    return [
        FinalModel(name, state, final_model_dir(name), trained_on="train+val")
        for name, state in states.items()
        if state is not None
    ]


class HeldOutTest:
    """The test split, evaluated at most once per final model.

    It lives only in the driver: trials receive train and val alone. With `gpu` > 0 each
    evaluation runs as a Ray task holding `cpu` CPUs and `gpu` of a GPU, as a trial did.
    """

    def __init__(self, split: ImageSplit, cpu: float = 1.0, gpu: float = 0.0) -> None:
        self._split = split
        self._cpu, self._gpu = cpu, gpu
        self.evaluated: list[str] = []  # final model names, in evaluation order

    def evaluate(self, model: FinalModel) -> dict[str, Any]:
        """Accuracy with its 95% Wilson interval, loss, and accuracy per class."""
        if model.name in self.evaluated:
            raise RuntimeError(f"the test split was already evaluated on {model.name}")
        self.evaluated.append(model.name)
        split, state = self._split, model.state
        logger.info("evaluating %s on %d held-out test examples", model.name, len(split))
        loss, predictions = self._predict(state)
        hits = predictions == split.labels
        class_names = state["data_info"]["class_names"]
        per_class = {
            str(name): round(float(hits[split.labels == i].float().mean()), 4)
            for i, name in enumerate(class_names)
            if bool((split.labels == i).any())
        }
        correct = int(hits.sum())
        return {
            "accuracy": correct / max(1, len(split)),
            "accuracy_ci95": wilson_interval(correct, len(split)),
            "loss": loss,
            "num_examples": len(split),
            "per_class_accuracy": per_class,
        }

    def _predict(self, state: dict[str, Any]) -> tuple[float, torch.Tensor]:
        if self._gpu > 0:
            task = remote_with_share(predict_task, self._cpu, self._gpu)
            return ray.get(task.remote(state, self._split))
        batch_size = TrainConfig.model_validate(state["config"]).eval_batch_size
        return predict_split(
            model_from_state(state), self._split, normalizer_from_state(state), batch_size
        )


def evaluate_once(held_out: HeldOutTest, model: FinalModel, location: str) -> dict[str, Any]:
    """`model`'s test figures, evaluated once over every run of the sweep.

    The figures are saved under the sweep (`final/<name>/test.json`) as soon as they
    exist; a resumed sweep killed after that reads them back instead of looking at the
    test split again. A run killed during the evaluation saved nothing and was seen by
    no one; its resume evaluates.
    """
    record = f"{final_model_dir(model.name)}/test.json"
    identity = {
        "path": model.path,
        "epoch": int(model.state["epoch"]),
        "config": model.state["config"],
    }
    saved = read_bytes(location, record)
    if saved is not None:
        try:
            stored = json.loads(saved)
        except ValueError:  # cut short by a crash while it was written
            stored = {}
        if stored.get("model") == json.loads(json.dumps(identity)):
            logger.info("test figures of %s read from %s: no second evaluation", model.name, record)
            return dict(stored["test"])
    result = held_out.evaluate(model)
    looks = [*read_test_looks(location), {"name": model.name, **identity}]
    write_bytes(location, TEST_LOOKS_FILE, json.dumps(looks).encode())
    write_bytes(location, record, json.dumps({"model": identity, "test": result}).encode())
    return result


def read_test_looks(location: str) -> list[dict[str, Any]]:
    """Every final model the test split has scored in the sweep's life, in order: one
    per sweep, more if `cnn-tune resume --set search.num_samples` found a new best."""
    saved = read_bytes(location, TEST_LOOKS_FILE)
    try:
        return list(json.loads(saved)) if saved is not None else []
    except ValueError:  # cut short by a crash while it was written
        return []


def test_summary(models: list[FinalModel], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary's `test` section: one model's figures, or the mean over seeds.

    With several retrained seeds, `accuracy` is their mean and `accuracy_ci95` the Wilson
    interval of that mean on this test set's size (test-sampling uncertainty);
    `seed_spread` is the spread over seeds (training randomness).
    """
    n = results[0]["num_examples"]
    mean_accuracy = statistics.fmean(r["accuracy"] for r in results)
    classes = results[0]["per_class_accuracy"]
    summary: dict[str, Any] = {
        "accuracy": mean_accuracy,
        "accuracy_ci95": wilson_interval(round(mean_accuracy * n), n),
        "loss": statistics.fmean(r["loss"] for r in results),
        "num_examples": n,
        "per_class_accuracy": {
            c: round(statistics.fmean(r["per_class_accuracy"][c] for r in results), 4)
            for c in classes
        },
        "evaluations": len(results),
        "models": [{**m.describe(), **r} for m, r in zip(models, results, strict=True)],
    }
    if len(results) > 1:
        accuracies = [r["accuracy"] for r in results]
        summary["seed_spread"] = {
            "seeds": len(accuracies),
            "std": round(statistics.stdev(accuracies), 4),
            "min": min(accuracies),
            "max": max(accuracies),
        }
    return summary


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> list[float]:
    """The Wilson score interval of a binomial proportion (95% for the default z)."""
    if trials == 0:
        return [0.0, 1.0]
    p = successes / trials
    denominator = 1 + z**2 / trials
    center = (p + z**2 / (2 * trials)) / denominator
    half = z * (p * (1 - p) / trials + z**2 / (4 * trials**2)) ** 0.5 / denominator
    return [round(max(0.0, center - half), 4), round(min(1.0, center + half), 4)]


def load_final_state(location: str, name: str) -> dict[str, Any] | None:
    """A retrained final model's state saved under the sweep, or None."""
    data = read_bytes(location, _state_file(name))
    if data is None:
        return None
    return state_from_bytes(data, f"{location}/{_state_file(name)}")


def _saved_state(
    location: str, name: str, config: Mapping[str, Any], epochs: int
) -> dict[str, Any] | None:
    """The state a previous run of this sweep saved for the same config and epochs."""
    state = load_final_state(location, name)
    if state is None or state["config"] != dict(config) or int(state["epoch"]) != epochs:
        return None
    logger.info("reusing the final model saved in %s/%s", location, _state_file(name))
    return state


def _state_file(name: str) -> str:
    return f"{final_model_dir(name)}/{CHECKPOINT_FILE}"
