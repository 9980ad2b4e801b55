"""A noise-aware pick of the winner: the best few configurations trained again.

The best of many trials on a small validation split is partly luck: its score is the
largest of many noisy numbers. With `final.reevaluate: {top_k: 3, seeds: 3}` the `top_k`
best trials' configurations are each trained `seeds` more times, with seeds seed+1 ...
seed+seeds, exactly as a trial trains (the train split, validated every epoch, all its
epochs), as Ray tasks holding a trial's share. Each run scores its best validation value;
the configuration with the best mean over its new runs wins. The tuned run is left out of
the mean: it was chosen for being high, so it would favour the incumbent.

The test split is not touched here; the chosen configuration's trial then goes on to the
final model as usual (tuning.final). The runs' scores are saved in
`final/reevaluation.json`, so a resumed sweep does not train them again.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray

from trainables.config import TrainConfig
from trainables.data import TuningData
from trainables.transfer import StateDict
from trainables.tune_adapter import reevaluate_task, remote_with_share
from tuning.experiment import Experiment
from tuning.history import best_epoch_of, epoch_rows
from tuning.layout import REEVALUATION_FILE
from tuning.storage import read_bytes, write_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One of the top trials: its configuration and the scores of its runs again."""

    trial_id: str
    config: dict[str, Any]  # the trial's training config (JSON types)
    tuned: float  # its best value in the sweep
    scores: list[float | None]  # best value of each new run; None if it diverged

    def mean(self, mode: str) -> float:
        """The mean over the new runs; a diverged run counts as the worst possible."""
        worst = float("-inf") if mode == "max" else float("inf")
        return statistics.fmean(worst if s is None else s for s in self.scores)

    def describe(self, mode: str) -> dict[str, Any]:
        finite = [s for s in self.scores if s is not None]
        return {
            "trial_id": self.trial_id,
            "tuned": self.tuned,
            "scores": self.scores,
            "mean": self.mean(mode),
            "std": round(statistics.stdev(finite), 4) if len(finite) > 1 else None,
        }


def top_trials(eligible: list[dict[str, Any]], k: int, mode: str) -> list[dict[str, Any]]:
    """The `k` best of the trial records that may win, best first (ties keep their order)."""
    sign = -1.0 if mode == "max" else 1.0
    return sorted(eligible, key=lambda r: sign * r["best"])[:k]


def pick(candidates: list[Candidate], mode: str) -> Candidate:
    """The best mean; among equal means, the better-ranked candidate (the list's order)."""
    sign = -1.0 if mode == "max" else 1.0
    return min(enumerate(candidates), key=lambda ic: (sign * ic[1].mean(mode), ic[0]))[1]


def reevaluate(
    experiment: Experiment,
    top: list[dict[str, Any]],
    configs: Mapping[str, dict[str, Any]],
    data: TuningData,
    location: str,
    gpu: float,
    pretrained: Mapping[str, StateDict | None],
) -> list[Candidate]:
    """Train each of the `top` trials' configurations (`configs` by trial id) again."""
    settings = experiment.final.reevaluate
    assert settings is not None
    runs = {
        r["trial_id"]: [_with_seed(configs[r["trial_id"]], i) for i in range(settings.seeds)]
        for r in top
    }
    scores = _saved_scores(location, runs)
    if scores is None:
        logger.info(
            "reevaluating the %d best configurations with %d more seeds each",
            len(top),
            settings.seeds,
        )
        task = remote_with_share(
            reevaluate_task, experiment.resources.cpu, gpu, max_retries=experiment.max_failures
        )
        data_ref, pretrained_ref = ray.put(data), ray.put(dict(pretrained))
        refs = {
            trial_id: [task.remote(c, data_ref, pretrained_ref) for c in trial_runs]
            for trial_id, trial_runs in runs.items()
        }
        scores = {
            trial_id: [_best(rows, experiment) for rows in ray.get(trial_refs)]
            for trial_id, trial_refs in refs.items()
        }
        record = {"runs": runs, "scores": scores}
        write_bytes(location, REEVALUATION_FILE, json.dumps(record, indent=2).encode())
    return [
        Candidate(r["trial_id"], configs[r["trial_id"]], r["best"], scores[r["trial_id"]])
        for r in top
    ]


def _with_seed(config: dict[str, Any], run: int) -> dict[str, Any]:
    tuned = TrainConfig.model_validate(config)
    return tuned.model_copy(update={"seed": tuned.seed + 1 + run}).model_dump(mode="json")


def _best(rows: list[dict[str, Any]], experiment: Experiment) -> float | None:
    value, _ = best_epoch_of(epoch_rows(rows), experiment.metric, experiment.resolved_mode)
    return value


def _saved_scores(
    location: str, runs: dict[str, list[dict[str, Any]]]
) -> dict[str, list[float | None]] | None:
    """The scores an earlier run of this sweep saved for exactly these runs, or None."""
    saved = read_bytes(location, REEVALUATION_FILE)
    if saved is None:
        return None
    try:
        record = json.loads(saved)
    except ValueError:  # cut short by a crash while it was written
        return None
    if record.get("runs") != json.loads(json.dumps(runs)):
        return None
    logger.info("reevaluation scores read from %s: not trained again", REEVALUATION_FILE)
    return {trial_id: list(scores) for trial_id, scores in record["scores"].items()}
