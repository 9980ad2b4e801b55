"""More epochs for a finished sweep: `cnn-tune resume DIR --set train.epochs=N`.

The trials that trained to the sweep's old budget, and whose latest checkpoint the sweep
kept (its `checkpoint.keep_trials` best: tuning.retention), train on from that
checkpoint to epoch N, each as a trial of a new round (tuning.extension) whose searcher
hands out exactly their configs. Nothing runs twice: a continued trial's first epoch is
the one after its last. The sweep's scheduler decides as before (ASHA counts epochs, so
its rungs above the old budget apply), and each learning-rate schedule is stretched to N
epochs from where the trial stands.

Afterwards each continuation and the trial it continues are one trial again
(`merged`): its rows, its best epoch, its latest checkpoint, under the first trial's id.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import pandas as pd
import pyarrow.fs
from ray import tune
from ray.tune.search import Searcher

from schedulers.snapshot import checkpoint_exists
from trainables import metrics as m
from trainables.tune_adapter import config_key
from tuning.results import result_trial_id
from tuning.storage import read_text, write_text

CONTINUED_FILE = "continued.json"  # in the round's folder: what it continues, from where


@dataclass(frozen=True)
class Continuation:
    """The trials a round continues: their configs (epochs raised) and checkpoints."""

    configs: dict[str, dict[str, Any]]  # by the id of the trial continued
    checkpoints: dict[str, str]  # path or URI, by the same id

    @cached_property
    def _ids_by_config(self) -> dict[str, str]:
        return {config_key(config): trial_id for trial_id, config in self.configs.items()}

    def checkpoint_by_config(self) -> dict[str, str]:
        """What the trainable looks its checkpoint up in (trainables.tune_adapter)."""
        return {key: self.checkpoints[t] for key, t in self._ids_by_config.items()}

    def continued_id(self, config: Mapping[str, Any]) -> str | None:
        """The trial a round's trial continues, found by its config."""
        return self._ids_by_config.get(config_key(config))

    def save(self, location: str) -> None:
        text = json.dumps({"configs": self.configs, "checkpoints": self.checkpoints}, indent=1)
        write_text(location, CONTINUED_FILE, text + "\n")

    @classmethod
    def load(cls, location: str) -> Continuation | None:
        text = read_text(location, CONTINUED_FILE)
        if text is None:
            return None
        record = json.loads(text)
        return cls(configs=record["configs"], checkpoints=record["checkpoints"])


def continuable(
    by_id: Mapping[str, tune.Result],
    old_epochs: int,
    new_epochs: int,
    best: tuple[set[str], int] | None = None,
) -> tuple[Continuation, dict[str, str]]:
    """The trials that can train on to `new_epochs`, and why each other trial cannot.

    `best`: the ids of the sweep's best trials and how many were asked for
    (`checkpoint.keep_trials`); each round keeps its own best trials' checkpoints, so
    after several rounds more trials have theirs than go on."""
    configs: dict[str, dict[str, Any]] = {}
    checkpoints: dict[str, str] = {}
    refused: dict[str, str] = {}
    seen: set[str] = set()  # a repeated grid point is continued once
    for trial_id, result in by_id.items():
        config = {**copy.deepcopy(result.config or {}), "epochs": new_epochs}
        reason = _why_not(result, old_epochs)
        if reason is None and best is not None and trial_id not in best[0]:
            reason = f"it is not among the sweep's {best[1]} best (checkpoint.keep_trials)"
        if reason is None and config_key(config) in seen:
            reason = "the same config as another trial that is continued"
        if reason is not None:
            refused[trial_id] = reason
            continue
        assert result.checkpoint is not None  # _why_not checked it
        configs[trial_id], checkpoints[trial_id] = config, _uri(result.checkpoint)
        seen.add(config_key(config))
    return Continuation(configs, checkpoints), refused


def _why_not(result: tune.Result, old_epochs: int) -> str | None:
    last = result.metrics or {}
    if result.error is not None:
        return "it ended with an error"
    if last.get(m.DIVERGED) or last.get(m.INFEASIBLE):
        return "it diverged or did not fit in memory"
    if last.get(m.EARLY_STOPPED):
        return "its early stopping ended it"
    epochs = int(last.get(m.EPOCH, 0))
    if epochs < old_epochs:
        return f"the scheduler stopped it at epoch {epochs}"
    checkpoint = result.checkpoint
    if checkpoint is None or not checkpoint_exists(checkpoint):
        return "its checkpoints were not kept (checkpoint.keep_trials: only the best keep theirs)"
    return None


def _uri(checkpoint: tune.Checkpoint) -> str:
    """Where a trial of another round finds `checkpoint`: its path, or on remote storage
    its URI (Tune's checkpoint paths leave the scheme out)."""
    filesystem = checkpoint.filesystem
    if filesystem is None or isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        return checkpoint.path
    scheme = {"gcs": "gs"}.get(filesystem.type_name, filesystem.type_name)
    return f"{scheme}://{checkpoint.path}"


def merged(first: tune.Result, then: tune.Result) -> tune.Result:
    """`first` and the trial that continued it as one trial: the rows of both, counted on
    from `first`'s epochs, the latest checkpoint of `then`, the best of either."""
    done = int((first.metrics or {}).get("training_iteration", 0))
    later = then.metrics_dataframe
    if later is not None:
        later = later.copy()
        later["training_iteration"] = later["training_iteration"] + done
    frames = [f for f in (first.metrics_dataframe, later) if f is not None]
    metrics = dict(then.metrics or {})
    metrics["training_iteration"] = done + int(metrics.get("training_iteration", 0))
    metrics["trial_id"] = result_trial_id(first)
    return replace(
        then,
        path=first.path,  # its id (tuning.results.result_trial_id) and its first rows' folder
        metrics=metrics,
        metrics_dataframe=pd.concat(frames, ignore_index=True) if frames else None,
        best_checkpoints=[*(first.best_checkpoints or []), *(then.best_checkpoints or [])],
    )


def gather_rounds(rounds: list[tuple[str, dict[str, tune.Result]]]) -> dict[str, tune.Result]:
    """The trials of every round (folder and results by trial id, first round first) as
    one sweep's, each continuation folded into the trial it continued."""
    gathered: dict[str, tune.Result] = {}
    for location, by_id in rounds:
        continuation = Continuation.load(location)
        for trial_id, result in by_id.items():
            continued = continuation.continued_id(result.config or {}) if continuation else None
            if continued is not None and continued in gathered:
                gathered[continued] = merged(gathered[continued], result)
            else:
                gathered[trial_id] = result
    return gathered


class GivenConfigs(Searcher):
    """Suggests the given configs, each once, in order; saved and restored with the sweep."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        super().__init__()
        self._configs = [copy.deepcopy(c) for c in configs]
        self._next = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._next >= len(self._configs):
            return Searcher.FINISHED  # type: ignore[return-value]  # Tune's own sentinel
        self._next += 1
        return copy.deepcopy(self._configs[self._next - 1])

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump({"configs": self._configs, "next": self._next}, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            state = pickle.load(file)
        self._configs, self._next = state["configs"], state["next"]
