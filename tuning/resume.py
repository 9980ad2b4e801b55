"""`cnn-tune resume DIR [--set search.num_samples=N]`: what a sweep folder needs next.

A sweep folder says how far it got: no summary.json (interrupted: Tune continues it),
a summary with every trial the experiment asks for (finished: it stands), or fewer
(more were asked for: the rest run as an extension round, tuning.extension). The
runner builds and runs the Tuners; this module only decides which.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from ray import tune

from tuning import extension, preflight
from tuning.continuation import continuable, gather_rounds
from tuning.errors import ConfigError
from tuning.experiment import Experiment, validate_experiment
from tuning.layout import EXPERIMENT_FILE, SUMMARY_FILE
from tuning.results import results_by_id
from tuning.runner import (
    SweepOutcome,
    experiment_yaml,
    fit,
    fit_and_summarize,
    new_tuner,
    summarize_sweep,
    tuner_to_resume,
)
from tuning.storage import read_text, resolve_location, write_text
from tuning.summary import Summary
from tuning.yaml_io import parse_yaml_mapping

logger = logging.getLogger(__name__)


def resume_sweep(
    directory: str | Path, *, address: str | None = None, changes: list[str] | None = None
) -> SweepOutcome:
    """Finish an interrupted sweep from whatever state a crash left it in, or give a
    finished one more trials (`changes`: `search.num_samples=N`, tuning.extension).

    - finished (summary.json exists) with every trial it asks for: returned as it
      stands, the test split untouched;
    - finished with fewer trials than it now asks for (`changes`, or an extension that
      was interrupted): the others run as a round of their own, then the summary covers
      every round;
    - Tune had saved no state yet (killed in its first seconds): started afresh from
      the experiment saved with it, in the same folder;
    - otherwise: finished trials are kept, the others continue from their checkpoints,
      and the scheduler carries on from its saved state (schedulers.snapshot).
    """
    preflight.check_resume(directory, address=address)
    location = resolve_location(str(directory))
    config_text = read_text(location, EXPERIMENT_FILE)
    if config_text is None:
        raise ConfigError(
            f"{location!r} is not a cnn-tune sweep: it has no {EXPERIMENT_FILE}; pass the "
            "folder <storage>/<name> that `cnn-tune run` printed. A run killed before it "
            "saved its experiment left nothing to resume: run it again with the same --name"
        )
    experiment = validate_experiment(parse_yaml_mapping(config_text, EXPERIMENT_FILE))
    finished = _finished_summary(location)
    # Checked before anything runs; an interrupted sweep will have run all its trials.
    trials_run = len(finished["trials"]) if finished is not None else experiment.num_trials
    if finished is not None and _round_pending(location, finished):
        # Killed in a round: it continues as planned (also when the same --set is repeated).
        if changes and not extension.already_asked(experiment, changes):
            raise ConfigError(
                f"{location} has an extension round that was stopped before it finished: "
                f"run `cnn-tune resume {location}` without --set to finish it first"
            )
        return _extend(experiment, location, finished, address)
    wanted = extension.extended(experiment, changes, trials_run) if changes else experiment
    if finished is None:
        tuner, final = tuner_to_resume(experiment, location, address)
        outcome = fit_and_summarize(tuner, experiment, final)
        if wanted is experiment:
            return outcome
        finished, trials_run = outcome.summary, experiment.num_trials
    elif wanted.num_trials <= trials_run and wanted.max_epochs <= experiment.max_epochs:
        # The test split was looked at when the sweep finished; another look would be a
        # second one for the same final model.
        logger.info("%s has finished: its summary stands, the test split is not touched", location)
        return SweepOutcome(summary=finished, location=location)
    return _extend(wanted, location, finished, address, was=experiment)


def _extend(
    experiment: Experiment,
    location: str,
    finished: dict[str, Any],
    address: str | None,
    was: Experiment | None = None,
) -> SweepOutcome:
    """Run the next round: the trials `experiment` asks for beyond the finished ones, or,
    if it has more epochs than the sweep as it `was`, its trials trained on; then
    summarize every round into the sweep's folder (tuning.extension, .continuation).

    The sweep's experiment file changes only once the round is planned and saved: a kill
    before leaves the sweep as it was, a kill after leaves a round that resume finishes."""
    trials_run, merged = len(finished["trials"]), int(finished.get("extensions", 0))
    number = merged + 1
    round_dir = extension.round_location(location, number)
    earlier = [location, *(extension.round_location(location, k) for k in range(1, number))]
    rounds = [(where, results_by_id(_results(where))) for where in earlier]
    saved = read_text(round_dir, EXPERIMENT_FILE)
    if saved is not None:  # an interrupted extension: its round continues as planned
        planned = validate_experiment(parse_yaml_mapping(saved, EXPERIMENT_FILE))
        logger.info("continuing the extension of %s in %s", location, round_dir)
        tuner, final = tuner_to_resume(planned, round_dir, address)
    elif was is not None and experiment.max_epochs > was.max_epochs:
        old, new = was.max_epochs, experiment.max_epochs
        keep = was.checkpoint.keep_trials
        best = _best_trials(finished["trials"], was.resolved_mode, keep)
        chosen, refused = continuable(gather_rounds(rounds), old, new, (best, keep))
        if not chosen.configs:
            raise ConfigError(_nothing_to_continue(location, refused, old))
        planned = extension.longer_round(experiment, len(chosen.configs), number)
        logger.info(
            "training %d trials of %s on from epoch %d to %d in %s (%d others cannot: %s)",
            len(chosen.configs), location, old, new, round_dir, len(refused),
            "; ".join(sorted(set(refused.values()))) or "-",
        )  # fmt: skip
        tuner, final = new_tuner(
            planned, round_dir, address, [], save_experiment=True, continuation=chosen
        )
    else:
        planned = extension.round_experiment(experiment, location, trials_run, number)
        logger.info("extending %s by %d trials in %s", location, planned.num_trials, round_dir)
        tuner, final = new_tuner(planned, round_dir, address, [], save_experiment=True)
    if was is not None and was is not experiment:
        write_text(location, EXPERIMENT_FILE, experiment_yaml(experiment))
    results, seconds = fit(tuner, planned, round_dir)
    by_id = gather_rounds([*rounds, (round_dir, results_by_id(results))])
    return summarize_sweep(
        by_id,
        experiment,
        replace(final, location=location),
        float(finished["wall_seconds"]) + seconds,
        {"extensions": number},
    )


def _results(location: str) -> tune.ResultGrid:
    return tune.ResultGrid(tune.ExperimentAnalysis(location))


def _best_trials(trials: list[dict[str, Any]], mode: str, count: int) -> set[str]:
    """The ids of the `count` best trials by their best value, and any tied with the last."""
    sign = 1.0 if mode == "max" else -1.0
    scored = [(sign * t["best"], t["trial_id"]) for t in trials if t.get("best") is not None]
    scores = sorted((score for score, _ in scored), reverse=True)
    if not scores:
        return set()
    cutoff = scores[min(count, len(scores)) - 1]
    return {trial_id for score, trial_id in scored if score >= cutoff}


def _round_pending(location: str, finished: dict[str, Any]) -> bool:
    """Whether an extension round was planned (its experiment saved) but not summarized."""
    number = int(finished.get("extensions", 0)) + 1
    return read_text(extension.round_location(location, number), EXPERIMENT_FILE) is not None


def _nothing_to_continue(location: str, refused: dict[str, str], old_epochs: int) -> str:
    reasons = "; ".join(f"{trial}: {why}" for trial, why in sorted(refused.items())[:5])
    return (
        f"resume --set train.epochs: no trial of {location} can train on past epoch "
        f"{old_epochs} ({reasons}). A trial trains on from its latest checkpoint, which the "
        "sweep keeps for its best checkpoint.keep_trials trials that ran every epoch; start "
        "a new sweep (search.warm_start: [DIR]) instead"
    )


def _finished_summary(location: str) -> dict[str, Any] | None:
    """The sweep's summary, or None if it has none (or only a part of one, cut by a crash)."""
    text = read_text(location, SUMMARY_FILE)
    if text is None:
        return None
    try:
        return Summary.read(text).as_dict()
    except ValueError:  # also pydantic's ValidationError
        logger.warning("%s/%s is incomplete: summarizing again", location, SUMMARY_FILE)
        return None
