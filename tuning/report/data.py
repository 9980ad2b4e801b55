"""What the report reads from a sweep folder, finished or still running.

Tune's own `ExperimentAnalysis` gives the trials (status, config, last result) from its
experiment state, with no running Ray; each trial's per-epoch rows come from its
progress.csv. summary.json, written once the sweep has finished, adds the test result and
is the source of how each trial ended, the best trial and the PBT lineage; before that,
the lineage is merged from each trial's latest checkpoint.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune
from ray.tune.experiment import Trial

from trainables import metrics as m
from trainables.checkpoint import load_checkpoint
from trainables.config import TrainConfig
from trainables.dotted import flatten
from trainables.lineage import merge_lineage
from tuning.continuation import Continuation
from tuning.diagnosis import Diagnosis, diagnose
from tuning.errors import ConfigError
from tuning.experiment import Experiment, validate_experiment
from tuning.extension import round_numbers
from tuning.history import best_epoch_of, epoch_rows
from tuning.layout import EXPERIMENT_FILE, PROGRESS_FILE, SUMMARY_FILE, extension_dirname
from tuning.results import classify_status
from tuning.status import TrialStatus
from tuning.summary import Summary
from tuning.tradeoffs import Constraint, trial_values
from tuning.values import is_finite
from tuning.yaml_io import parse_yaml_mapping

logger = logging.getLogger(__name__)

# Tune's states of a trial that has not ended, as the report names them.
_UNFINISHED = {
    "RUNNING": TrialStatus.running,
    "PENDING": TrialStatus.pending,
    "PAUSED": TrialStatus.paused,
}
# How each status reads in the report.
STATUS_LABELS: dict[str, str] = {  # keyed by TrialStatus (a str)
    TrialStatus.completed: "completed",
    TrialStatus.stopped_early: "stopped by scheduler",
    TrialStatus.patience_stopped: "stopped by its own patience",
    TrialStatus.diverged: "diverged",
    TrialStatus.error: "error",
    TrialStatus.infeasible: "infeasible",
    TrialStatus.running: "running",
    TrialStatus.pending: "pending",
    TrialStatus.paused: "paused",
}
# Statuses whose trials may lead the sweep (those that can win, plus unfinished ones:
# a PBT trial waiting its turn is "pending" with epochs behind it).
_ELIGIBLE = {status for status in TrialStatus if status.can_win} | set(_UNFINISHED.values())


@dataclass(frozen=True)
class TrialView:
    """One trial as the report shows it."""

    trial_id: str
    status: TrialStatus
    tuned: dict[str, Any]  # dotted path -> value, only the tuned parameters
    config: dict[str, Any]  # the whole training config, flattened to dotted paths
    history: list[dict[str, Any]]  # one row per epoch, in epoch order
    epochs: int
    planned_epochs: int
    best: float | None  # best finite metric over its epochs (None if diverged or none)
    best_epoch: int | None
    last: float | None  # the metric at its last epoch
    error: str | None
    diagnosis: Diagnosis


@dataclass(frozen=True)
class SweepView:
    """Everything the report shows about one sweep."""

    directory: Path
    experiment: Experiment
    trials: list[TrialView]  # the leaderboard: best first, trials without a metric last
    lineage: list[dict[str, Any]]  # PBT exploits: trial_id, donor, epoch, new_values
    summary: dict[str, Any] | None  # summary.json; None while the sweep runs

    @property
    def metric(self) -> str:
        return self.experiment.metric

    @property
    def mode(self) -> str:
        return self.experiment.resolved_mode

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def best(self) -> TrialView | None:
        """The summary's best trial, or while running the leader among eligible trials."""
        if self.summary is not None:
            wanted = self.summary.get("best", {}).get("trial_id")
            return next((t for t in self.trials if t.trial_id == wanted), None)
        constraints = self.experiment.outcome_constraints
        return next(
            (
                t
                for t in self.trials
                if t.best is not None
                and t.status in _ELIGIBLE
                and meets_constraints(t, constraints)
            ),
            None,
        )


def meets_constraints(trial: TrialView, constraints: Sequence[Constraint]) -> bool:
    """Whether the trial breaks none of the experiment's outcome constraints (so far)."""
    values = trial_values(trial.history, trial.best_epoch)
    return all(c.broken_by(values) is None for c in constraints)


@dataclass(frozen=True)
class LrBatchPoint:
    """A trial's learning rate and batch size at its last epoch (PBT mutates them)."""

    trial: TrialView
    lr: float
    batch_size: float


def lr_batch_points(trials: list[TrialView]) -> list[LrBatchPoint]:
    """Trials whose optimizer.lr and batch_size are both positive numbers."""
    points = []
    for trial in trials:
        lr, batch_size = trial.config.get("optimizer.lr"), trial.config.get(m.BATCH_SIZE)
        if is_finite(lr) and is_finite(batch_size) and min(lr, batch_size) > 0:
            points.append(LrBatchPoint(trial, float(lr), float(batch_size)))
    return points


def load_sweep(directory: Path) -> SweepView:
    """Read the sweep folder `directory` (local), raising ConfigError if it is not one."""
    experiment = _read_experiment(directory)
    # The sweep's own Tune experiment, then those of its extension rounds (tuning.extension).
    folders = [p.name for p in directory.iterdir() if p.is_dir()]
    rounds = [directory / extension_dirname(k) for k in round_numbers(folders)]
    # A round whose Tune has saved nothing yet has no trial to show.
    started = [r for r in rounds if any(r.glob("experiment_state-*.json"))]
    analyses = [_analysis(directory), *(_analysis(r) for r in started)]
    summary = _read_summary(directory)
    num_classes = _num_classes(summary, [t for a in analyses for t in a.trials])
    ended = {t["trial_id"]: t for t in (summary or {}).get("trials", [])}
    # A trial that a round trained for more epochs (tuning.continuation) is one trial.
    runs: dict[str, tuple[Trial, list[dict[str, Any]]]] = {}
    for folder, analysis in zip([directory, *started], analyses, strict=True):
        continuation = Continuation.load(str(folder))
        for trial in analysis.trials:
            rows = _progress_rows(trial, analysis)
            first = continuation.continued_id(trial.config or {}) if continuation else None
            if first is not None and first in runs:
                runs[first] = (trial, runs[first][1] + rows)
            else:
                runs[trial.trial_id] = (trial, rows)
    trials = [
        replace(_trial_view(trial, rows, experiment, num_classes), trial_id=trial_id)
        for trial_id, (trial, rows) in runs.items()
    ]
    # Tune's last saved state can still show a trial whose process died as pending or
    # running; the summary has how each trial ended, from the results Tune returned.
    trials = [_as_summarized(t, ended[t.trial_id]) if t.trial_id in ended else t for t in trials]
    lineage: list[dict[str, Any]] = []
    if experiment.scheduler.mutates_config:  # never extended: one Tune experiment
        lineage = summary["lineage"] if summary else _lineage(analyses[0].trials)
    best_id = (summary or {}).get("best", {}).get("trial_id")
    ranked = rank_trials(trials, experiment.resolved_mode, best_id)
    return SweepView(directory, experiment, ranked, lineage, summary)


def _read_experiment(directory: Path) -> Experiment:
    path = directory / EXPERIMENT_FILE
    if not path.is_file():
        raise ConfigError(
            f"report: {str(directory)!r} is not a cnn-tune sweep folder (no {EXPERIMENT_FILE}); "
            "pass the folder <storage>/<name> that `cnn-tune run` printed"
        )
    return validate_experiment(parse_yaml_mapping(path.read_text(), EXPERIMENT_FILE))


def _analysis(directory: Path) -> tune.ExperimentAnalysis:
    try:
        return tune.ExperimentAnalysis(str(directory))
    except ValueError as error:  # no experiment_state-*.json yet
        raise ConfigError(
            f"report: {str(directory)!r} holds no Ray Tune experiment state yet; wait until "
            "the sweep has started its first trial, or pass another sweep folder"
        ) from error


def _read_summary(directory: Path) -> dict[str, Any] | None:
    """summary.json as validated by its model (older spellings read as today's), or None."""
    path = directory / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        return Summary.read(path.read_text()).as_dict()
    except ValueError as error:  # cut short by a crash: the report shows a running sweep
        logger.warning("report: %s is incomplete, left out: %s", path, str(error).splitlines()[0])
        return None


def _trial_view(
    trial: Trial, rows: list[dict[str, Any]], experiment: Experiment, num_classes: int | None
) -> TrialView:
    metric, mode = experiment.metric, experiment.resolved_mode
    history = epoch_rows(rows)
    last_result = trial.last_result or {}
    # The config of its last epoch, as in summary.json: PBT can exploit at a trial's last
    # epoch and leave trial.config with values it never trained with.
    trained_with = last_result.get("config")
    config = dict(trained_with if isinstance(trained_with, dict) else trial.config or {})
    epochs = len(history)
    planned = TrainConfig.model_validate(config).epochs if config else experiment.max_epochs
    status = _UNFINISHED.get(trial.status) or classify_status(
        trial.status == "ERROR", last_result, epochs, planned
    )
    best, best_epoch = best_epoch_of(history, metric, mode)
    last = history[-1].get(metric) if history else None
    last_value = float(last) if last is not None and is_finite(last) else None
    return TrialView(
        trial_id=trial.trial_id,
        status=status,
        tuned=experiment.search_space.tuned_values(config),
        config=flatten(config),
        history=history,
        epochs=epochs,
        planned_epochs=planned,
        best=best,
        best_epoch=best_epoch,
        last=last_value,
        error=_error_text(trial, last_result),
        diagnosis=diagnose(history, num_classes),
    )


def _as_summarized(trial: TrialView, record: dict[str, Any]) -> TrialView:
    """`trial` with the status and error that summary.json recorded for it; a trial that
    broke an outcome constraint says which in place of an error (why it did not win)."""
    status = TrialStatus.read(record["status"])  # also an older sweep's spelling
    broken = "; ".join(record.get("broken_constraints") or [])
    error = record.get("error") or trial.error or (f"may not win: {broken}" if broken else None)
    return replace(trial, status=status, error=error)


def _progress_rows(trial: Trial, analysis: tune.ExperimentAnalysis) -> list[dict[str, Any]]:
    """The trial's rows from its progress.csv, read now.

    Tune snapshots its experiment state every ~10 s and its dataframes skip trials with
    no result in that snapshot; the CSV is written with every epoch, so a running sweep's
    curves are current. Tune's dataframe is the fallback when there is no CSV.
    """
    path = Path(trial.path or "") / PROGRESS_FILE
    if trial.path and path.is_file():
        try:
            frame = pd.read_csv(path, dtype={"trial_id": str})
        except (pd.errors.EmptyDataError, pd.errors.ParserError):  # being written right now
            frame = pd.DataFrame()
    else:
        frame = analysis.trial_dataframes.get(trial.trial_id, pd.DataFrame())
    rows: list[dict[str, Any]] = frame.to_dict("records")
    return rows


def rank_trials(
    trials: list[TrialView], mode: str, best_trial_id: str | None = None
) -> list[TrialView]:
    """The leaderboard order: best metric first, trials without one (or diverged) last.

    Among equal metrics the summary's best trial (`best_trial_id`) comes first, then the
    trial that reached the value at the earlier epoch, then trial id order; so the
    highlighted best trial is never listed behind a trial it ties with.
    """
    sign = -1.0 if mode == "max" else 1.0
    return sorted(
        trials,
        key=lambda t: (
            t.best is None or t.status == TrialStatus.diverged,
            sign * (t.best or 0.0),
            t.trial_id != best_trial_id,
            t.best_epoch if t.best_epoch is not None else math.inf,
            t.trial_id,
        ),
    )


def _error_text(trial: Trial, last_result: dict[str, Any]) -> str | None:
    """The last line of the trial's error.txt, or why it was infeasible."""
    if last_result.get(m.INFEASIBLE):
        return str(last_result[m.INFEASIBLE])
    name = trial.run_metadata.error_filename
    path = Path(trial.path or "") / name if name else None
    if path is None or not path.is_file():
        return "failed (no error file)" if trial.status == "ERROR" else None
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else None


def _num_classes(summary: dict[str, Any] | None, trials: list[Trial]) -> int | None:
    """Classes of the dataset: from the test result, else from any trial's checkpoint."""
    per_class = (summary or {}).get("test", {}).get("per_class_accuracy")
    if per_class:
        return len(per_class)
    for trial in trials:
        state = _latest_state(trial)
        if state is not None:
            return int(state["data_info"]["num_classes"])
    return None


def _lineage(trials: list[Trial]) -> list[dict[str, Any]]:
    """PBT exploits of a running sweep, merged from every trial's latest checkpoint."""
    states = [_latest_state(trial) for trial in trials]
    return merge_lineage(*(list(s.get("lineage", [])) for s in states if s is not None))


def _latest_state(trial: Trial) -> dict[str, Any] | None:
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return None
    try:
        return load_checkpoint(checkpoint.path)
    except FileNotFoundError:  # deleted: the trial cannot be the best (tuning.retention)
        return None
    except (ValueError, RuntimeError) as error:  # written right now
        logger.warning("report: skipping checkpoint %s: %s", checkpoint.path, error)
        return None
