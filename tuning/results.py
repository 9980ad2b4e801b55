"""After the sweep: pick the best trial, test it once, and write summary.json.

The best trial is the one whose *best epoch* scores best on the experiment metric
(Ray's scope="all"), and the test split is evaluated on that trial's best kept
checkpoint, so the tested model is the one that earned the validation score.
The summary schema is defined here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from ray import tune

from trainables import metrics as m
from trainables.checkpoint import load_checkpoint
from trainables.config import TrainConfig
from trainables.data import ImageSplit
from trainables.loop import evaluate, model_from_state, normalizer_from_state
from tuning import space
from tuning.experiment import Experiment

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


class NoUsableTrialError(RuntimeError):
    """Every trial failed or produced no finite metric."""


def summarize(
    results: tune.ResultGrid, experiment: Experiment, test: ImageSplit, wall_seconds: float
) -> dict[str, Any]:
    """Build the summary, evaluating the best checkpoint on `test` exactly once."""
    metric, mode = experiment.metric, experiment.resolved_mode
    tuned_paths = space.tuned_paths(experiment.train)
    trials = [_trial_record(results[i], metric, mode, tuned_paths) for i in range(len(results))]
    try:
        best = results.get_best_result(metric, mode, scope="all", filter_nan_and_inf=True)
    except RuntimeError as error:
        raise NoUsableTrialError(
            f"no trial reported a finite {metric}; {results.num_errors} of {len(results)} errored. "
            "See the trial errors above."
        ) from error
    best_record = next(t for t in trials if t["trial_id"] == _trial_id(best))
    checkpoint = best.get_best_checkpoint(metric, mode) or best.checkpoint
    if checkpoint is None:
        raise NoUsableTrialError(f"trial {best_record['trial_id']} left no checkpoint to test")
    with checkpoint.as_directory() as directory:
        state = load_checkpoint(directory)
    test_loss, test_acc = _evaluate_state(state, test)
    return {
        "experiment": experiment.name,
        "metric": metric,
        "mode": mode,
        "num_trials": len(trials),
        "num_errored": sum(t["status"] == "error" for t in trials),
        "num_stopped_early": sum(t["status"] == "stopped_early" for t in trials),
        "num_early_stopped": sum(t["status"] == "early_stopped" for t in trials),
        "best": {
            "trial_id": best_record["trial_id"],
            "config": TrainConfig.model_validate(best.config).model_dump(mode="json"),
            metric: best_record["best"],
            "epochs": best_record["epochs"],
            "best_epoch": best_record["best_epoch"],
            "checkpoint_epoch": int(state["epoch"]),
            "path": best.path,
        },
        "test": {"accuracy": test_acc, "loss": test_loss, "num_examples": len(test)},
        "wall_seconds": round(wall_seconds, 2),
        "trials": trials,
    }


def _evaluate_state(state: dict[str, Any], test: ImageSplit) -> tuple[float, float]:
    """The single evaluation of the test split in a sweep."""
    model, normalize = model_from_state(state), normalizer_from_state(state)
    logger.info("evaluating the best checkpoint on %d held-out test examples", len(test))
    return evaluate(model, test, normalize, batch_size=1024)


def _trial_record(
    result: tune.Result, metric: str, mode: str, tuned_paths: list[str]
) -> dict[str, Any]:
    history = result.metrics_dataframe
    epochs = int(result.metrics.get("training_iteration", 0)) if result.metrics else 0
    best_value, best_epoch = None, None
    if history is not None and metric in history:
        finite = history[
            history[metric].map(lambda v: isinstance(v, int | float) and math.isfinite(v))
        ]
        if len(finite):
            row = finite.loc[finite[metric].idxmax() if mode == "max" else finite[metric].idxmin()]
            best_value, best_epoch = float(row[metric]), int(row[m.EPOCH])
    planned = TrainConfig.model_validate(result.config).epochs if result.config else epochs
    if result.error is not None:
        status = "error"
    elif (result.metrics or {}).get(m.EARLY_STOPPED):
        status = "early_stopped"  # the trial's own patience ran out
    elif epochs < planned:  # the scheduler (ASHA, ...) stopped it
        status = "stopped_early"
    else:
        status = "completed"
    return {
        "trial_id": _trial_id(result),
        "status": status,
        "epochs": epochs,
        "best": best_value,
        "best_epoch": best_epoch,
        "tuned": space.tuned_values(result.config or {}, tuned_paths),
        "error": None if result.error is None else str(result.error).splitlines()[0][:300],
    }


def _trial_id(result: tune.Result) -> str:
    return str((result.metrics or {}).get("trial_id") or Path(result.path).name)


def write_summary(summary: dict[str, Any], experiment_dir: Path) -> Path:
    path = experiment_dir / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return path


def format_summary(summary: dict[str, Any]) -> str:
    """The closing lines the CLI prints."""
    best, test, metric = summary["best"], summary["test"], summary["metric"]
    tuned: dict[str, Any] = next(
        (t["tuned"] for t in summary["trials"] if t["trial_id"] == best["trial_id"]), {}
    )
    lines = [
        f"Sweep {summary['experiment']!r}: {summary['num_trials']} trials, "
        f"{summary['num_stopped_early']} stopped early by the scheduler, "
        f"{summary['num_early_stopped']} by their own early stopping, "
        f"{summary['num_errored']} errored, "
        f"{summary['wall_seconds']:.0f} s",
        f"Best trial {best['trial_id']}: {metric}={best[metric]:.4f} at epoch {best['best_epoch']} "
        f"of {best['epochs']}",
    ]
    lines += [f"  {key} = {_fmt(value)}" for key, value in sorted(tuned.items())]
    lines.append(
        f"Test (held out, evaluated once): accuracy={test['accuracy']:.4f} "
        f"loss={test['loss']:.4f} on {test['num_examples']} examples"
    )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
