"""After the sweep: pick the best trial, test it once, and write summary.json.

The best trial is the one whose *best epoch* scores best on the experiment metric, among
trials that neither diverged nor errored; the test split is evaluated on that trial's
best kept checkpoint, so the tested model is the one that earned the validation score.
The summary schema is defined here and nowhere else.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import tune

from trainables import metrics as m
from trainables.checkpoint import load_checkpoint
from trainables.config import TrainConfig
from trainables.data import ImageSplit
from trainables.loop import merge_lineage, model_from_state, normalizer_from_state, predict_split
from tuning import space
from tuning.experiment import Experiment

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
_ELIGIBLE = ("completed", "stopped_early", "early_stopped")  # may be the best trial


class NoUsableTrialError(RuntimeError):
    """Every trial failed, diverged or produced no finite metric."""


def summarize(
    results: tune.ResultGrid, experiment: Experiment, test: ImageSplit, wall_seconds: float
) -> dict[str, Any]:
    """Build the summary, evaluating the best checkpoint on `test` exactly once."""
    metric, mode = experiment.metric, experiment.resolved_mode
    tuned_paths = space.tuned_paths(experiment.train)
    by_id = {_trial_id(results[i]): results[i] for i in range(len(results))}
    trials = [_trial_record(result, metric, mode, tuned_paths) for result in by_id.values()]
    lineage: list[dict[str, Any]] = []
    if experiment.scheduler.name in ("pbt", "pb2"):
        lineage = merge_lineage(*(_lineage(result) for result in by_id.values()))
        for record in trials:
            record["lineage"] = [e for e in lineage if e["trial_id"] == record["trial_id"]]
    best_record = _best_trial(trials, mode)
    if best_record is None:
        statuses = Counter(t["status"] for t in trials)
        raise NoUsableTrialError(
            f"no trial can be tested: of {len(trials)}, {dict(statuses)}; see the trial "
            f"errors above, or widen the search space if every trial diverged"
        )
    best = by_id[best_record["trial_id"]]
    checkpoint = best.get_best_checkpoint(metric, mode) or best.checkpoint
    if checkpoint is None:
        raise NoUsableTrialError(f"trial {best_record['trial_id']} left no checkpoint to test")
    with checkpoint.as_directory() as directory:
        state = load_checkpoint(directory)
    test_result = _evaluate_state(state, test)
    status_counts = Counter(t["status"] for t in trials)
    return {
        "experiment": experiment.name,
        "metric": metric,
        "mode": mode,
        "num_trials": len(trials),
        "num_errored": status_counts["error"],
        "num_stopped_early": status_counts["stopped_early"],
        "num_early_stopped": status_counts["early_stopped"],
        "num_diverged": status_counts["diverged"],
        "num_infeasible": status_counts["infeasible"],
        "best": {
            "trial_id": best_record["trial_id"],
            "config": TrainConfig.model_validate(best.config).model_dump(mode="json"),
            metric: best_record["best"],
            "epochs": best_record["epochs"],
            "best_epoch": best_record["best_epoch"],
            "checkpoint_epoch": int(state["epoch"]),
            "path": best.path,
        },
        "test": test_result,
        "compute": _compute(trials),
        "wall_seconds": round(wall_seconds, 2),
        "trials": trials,
        "lineage": lineage,
    }


def _best_trial(trials: list[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    eligible = [t for t in trials if t["status"] in _ELIGIBLE and t["best"] is not None]
    if not eligible:
        return None
    pick = max if mode == "max" else min
    return pick(eligible, key=lambda t: t["best"])


def _compute(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Epochs spent against what FIFO would have spent on the same trials."""
    spent = sum(t["epochs"] for t in trials)
    fifo = sum(t["planned_epochs"] for t in trials)
    stopped_at = Counter(t["epochs"] for t in trials if t["status"] == "stopped_early")
    return {
        "epochs": spent,
        "fifo_epochs": fifo,
        "fraction_of_fifo": round(spent / fifo, 4) if fifo else None,
        "stopped_by_scheduler_at_epoch": {str(e): n for e, n in sorted(stopped_at.items())},
    }


def _evaluate_state(state: dict[str, Any], test: ImageSplit) -> dict[str, Any]:
    """The single evaluation of the test split in a sweep: accuracy with its 95% Wilson
    interval, loss, and accuracy per class."""
    model, normalize = model_from_state(state), normalizer_from_state(state)
    logger.info("evaluating the best checkpoint on %d held-out test examples", len(test))
    loss, predictions = predict_split(model, test, normalize, batch_size=1024)
    hits = predictions == test.labels
    names = state["data_info"]["class_names"]
    per_class = {
        str(name): round(float(hits[test.labels == i].float().mean()), 4)
        for i, name in enumerate(names)
        if bool((test.labels == i).any())
    }
    correct = int(hits.sum())
    return {
        "accuracy": correct / max(1, len(test)),
        "accuracy_ci95": wilson_interval(correct, len(test)),
        "loss": loss,
        "num_examples": len(test),
        "per_class_accuracy": per_class,
    }


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> list[float]:
    """The Wilson score interval of a binomial proportion (95% for the default z)."""
    if trials == 0:
        return [0.0, 1.0]
    p = successes / trials
    denominator = 1 + z**2 / trials
    center = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return [round(max(0.0, center - half), 4), round(min(1.0, center + half), 4)]


def _trial_record(
    result: tune.Result, metric: str, mode: str, tuned_paths: list[str]
) -> dict[str, Any]:
    history = result.metrics_dataframe
    last = result.metrics or {}
    epochs = int(last.get("training_iteration", 0))
    best_value, best_epoch = None, None
    if history is not None and metric in history and not last.get(m.DIVERGED):
        finite = history[history[metric].map(_is_finite)]
        if len(finite):
            row = finite.loc[finite[metric].idxmax() if mode == "max" else finite[metric].idxmin()]
            best_value, best_epoch = float(row[metric]), int(row[m.EPOCH])
    planned = TrainConfig.model_validate(result.config).epochs if result.config else epochs
    return {
        "trial_id": _trial_id(result),
        "status": _status(result, epochs, planned),
        "epochs": epochs,
        "planned_epochs": planned,
        "best": best_value,
        "best_epoch": best_epoch,
        "tuned": space.tuned_values(result.config or {}, tuned_paths),
        "error": _error_text(result),
    }


def _status(result: tune.Result, epochs: int, planned: int) -> str:
    return classify_status(result.error is not None, result.metrics or {}, epochs, planned)


def classify_status(errored: bool, last: Mapping[str, Any], epochs: int, planned: int) -> str:
    """How a trial ended, from its last reported result and the epochs it ran of `planned`.

    One of: error, infeasible, diverged, early_stopped (its own patience ran out),
    stopped_early (the scheduler stopped it), completed.
    """
    if errored:
        return "error"
    if last.get(m.INFEASIBLE):
        return "infeasible"  # e.g. its batch did not fit its GPU share; see `error`
    if last.get(m.DIVERGED):
        return "diverged"  # a loss became NaN or infinite; the trial ended itself
    if last.get(m.EARLY_STOPPED):
        return "early_stopped"  # the trial's own patience ran out
    if epochs < planned:
        return "stopped_early"  # the scheduler (ASHA, median, HyperBand) stopped it
    return "completed"


def _error_text(result: tune.Result) -> str | None:
    if result.error is not None:
        return str(result.error).splitlines()[0][:300]
    reason = (result.metrics or {}).get(m.INFEASIBLE)
    return str(reason) if reason else None


def _lineage(result: tune.Result) -> list[dict[str, Any]]:
    """The PBT exploit events recorded in this trial's latest checkpoint."""
    if result.checkpoint is None:
        return []
    with result.checkpoint.as_directory() as directory:
        return list(load_checkpoint(directory).get("lineage", []))


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _trial_id(result: tune.Result) -> str:
    return str((result.metrics or {}).get("trial_id") or Path(result.path).name)


def format_summary(summary: dict[str, Any]) -> str:
    """The closing lines the CLI prints."""
    best, test, metric, compute = (
        summary["best"],
        summary["test"],
        summary["metric"],
        summary["compute"],
    )
    tuned: dict[str, Any] = next(
        (t["tuned"] for t in summary["trials"] if t["trial_id"] == best["trial_id"]), {}
    )
    lines = [
        f"Sweep {summary['experiment']!r}: {summary['num_trials']} trials, "
        f"{summary['num_stopped_early']} stopped early by the scheduler, "
        f"{summary['num_early_stopped']} by their own early stopping, "
        f"{summary['num_diverged']} diverged, {summary['num_errored']} errored, "
        f"{summary['wall_seconds']:.0f} s",
        f"Compute: {compute['epochs']} epochs, {compute['fraction_of_fifo']:.0%} of the "
        f"{compute['fifo_epochs']} a FIFO sweep of these trials would run",
        f"Best trial {best['trial_id']}: {metric}={best[metric]:.4f} at epoch {best['best_epoch']} "
        f"of {best['epochs']}",
    ]
    lines += [f"  {key} = {_fmt(value)}" for key, value in sorted(tuned.items())]
    if summary["lineage"]:
        lines.append(f"PBT exploits: {len(summary['lineage'])} (see lineage in summary.json)")
    low, high = test["accuracy_ci95"]
    lines.append(
        f"Test (held out, evaluated once): accuracy={test['accuracy']:.4f} "
        f"(95% CI {low:.3f}-{high:.3f}) loss={test['loss']:.4f} on {test['num_examples']} examples"
    )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
