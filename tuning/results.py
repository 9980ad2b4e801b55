"""After the sweep: pick the best trial, make the final model, test it once, summarize.

The best trial is the one whose *best epoch* scores best on the experiment metric, among
trials that neither diverged nor errored and that meet every outcome constraint; ties go
to the better later objectives of a multi-objective sweep, whose Pareto front the
summary lists (tuning.tradeoffs: the winner is the front's point with the best metric).
The final model is that trial's best kept checkpoint, or the same configuration
retrained on train+val (see tuning.final); the test split is evaluated once per final
model. Every trial's curves get an over/underfitting diagnosis (tuning.diagnosis). The
summary schema is defined here and nowhere else.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from trainables import metrics as m
from trainables.checkpoint import load_checkpoint
from trainables.config import TrainConfig
from trainables.data import Splits
from trainables.lineage import merge_lineage
from trainables.transfer import StateDict
from tuning import space
from tuning.diagnosis import diagnose
from tuning.experiment import Experiment
from tuning.final import (
    FinalModel,
    HeldOutTest,
    best_checkpoint_model,
    evaluate_once,
    retrained_models,
    test_summary,
)
from tuning.history import best_epoch_of, epoch_rows
from tuning.layout import trial_id_of
from tuning.reevaluate import pick, reevaluate, top_trials
from tuning.status import TrialStatus
from tuning.tradeoffs import (
    PARETO_RULE,
    Constraint,
    lexicographic_key,
    pareto_front,
    trial_values,
)


class NoUsableTrialError(RuntimeError):
    """Every trial failed, diverged or produced no finite metric."""


@dataclass(frozen=True)
class FinalContext:
    """What making the final model needs besides the results: see tuning.final."""

    splits: Splits
    location: str  # the sweep's folder or URI; retrained weights are saved under it
    gpu: float  # GPUs per trial, and per retraining task
    pretrained: Mapping[str, StateDict | None]


@dataclass(frozen=True)
class Choice:
    """The sweep's winner, as `choose_best` picked it."""

    record: dict[str, Any]  # its trial record (see _trial_record)
    result: tune.Result
    reevaluation: dict[str, Any] | None  # summary.json's `reevaluation`, if asked for


def summarize(
    by_id: Mapping[str, tune.Result],
    experiment: Experiment,
    final: FinalContext,
    wall_seconds: float,
) -> dict[str, Any]:
    """Pick the best of the trials (by trial id), make the final model(s) and test each
    once on the test split."""
    trials, lineage = trial_records(by_id, experiment, final.splits.tuning.info.num_classes)
    choice = choose_best(trials, by_id, experiment, final)
    models = final_models(choice, experiment, final)
    held_out = HeldOutTest(final.splits.test, experiment.resources.cpu, final.gpu)
    test = test_summary(models, [evaluate_once(held_out, m, final.location) for m in models])
    return build_summary(experiment, trials, lineage, choice, models, test, wall_seconds)


def trial_records(
    by_id: Mapping[str, tune.Result], experiment: Experiment, num_classes: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every trial's record for summary.json, and PBT's merged lineage (empty otherwise)."""
    metric, mode = experiment.metric, experiment.resolved_mode
    constraints = experiment.outcome_constraints
    trials = [
        _trial_record(result, metric, mode, experiment.search_space, num_classes, constraints)
        for result in by_id.values()
    ]
    lineage: list[dict[str, Any]] = []
    if experiment.scheduler.mutates_config:
        lineage = merge_lineage(*(_lineage(result) for result in by_id.values()))
        for record in trials:
            record["lineage"] = [e for e in lineage if e["trial_id"] == record["trial_id"]]
    return trials, lineage


def choose_best(
    trials: list[dict[str, Any]],
    by_id: Mapping[str, tune.Result],
    experiment: Experiment,
    final: FinalContext,
) -> Choice:
    """The best trial by its best epoch, or by reevaluation when final.reevaluate asks."""
    best_record = _best_trial(trials, experiment.objective_names, experiment.objective_modes)
    if best_record is None:
        statuses = Counter(t["status"] for t in trials)
        broken = sum(bool(t["broken_constraints"]) for t in trials)
        bounds = ", ".join(map(str, experiment.outcome_constraints))
        because = (
            f"; {broken} broke a constraint ({bounds}): loosen the experiment's constraints, "
            "or search models that can meet them"
            if broken
            else ""
        )
        raise NoUsableTrialError(
            f"no trial can be tested: of {len(trials)}, {dict(statuses)}{because}; see the "
            f"trial errors above, or widen the search space if every trial diverged"
        )
    reevaluation = None
    if experiment.final.reevaluate is not None:
        best_record, reevaluation = _reevaluated_best(trials, by_id, experiment, final)
    return Choice(best_record, by_id[best_record["trial_id"]], reevaluation)


def final_models(choice: Choice, experiment: Experiment, final: FinalContext) -> list[FinalModel]:
    """The model(s) the test split will score, as final.protocol says (tuning.final)."""
    if experiment.final.protocol == "best_checkpoint":
        return [best_checkpoint_model(choice.result, experiment.metric, experiment.resolved_mode)]
    return retrained_models(
        experiment,
        _json_config(choice.result),
        choice.record["best_epoch"],
        final.splits.tuning,
        final.location,
        final.gpu,
        final.pretrained,
    )


def build_summary(
    experiment: Experiment,
    trials: list[dict[str, Any]],
    lineage: list[dict[str, Any]],
    choice: Choice,
    models: list[FinalModel],
    test: dict[str, Any],
    wall_seconds: float,
) -> dict[str, Any]:
    """summary.json: the keys of the contract in ../shared/DESIGN.md, and more."""
    metric, best = experiment.metric, choice.record
    # The epoch of the checkpoint tested, or (retrain) of the one the trial kept.
    checkpoint_model = (
        models[0]
        if experiment.final.protocol == "best_checkpoint"
        else best_checkpoint_model(choice.result, metric, experiment.resolved_mode)
    )
    status_counts = Counter(t["status"] for t in trials)
    tradeoffs = _tradeoff_sections(experiment, trials)
    return {
        "experiment": experiment.name,
        "metric": metric,
        "mode": experiment.resolved_mode,
        "num_trials": len(trials),
        "num_errored": status_counts[TrialStatus.error],
        "num_stopped_early": status_counts[TrialStatus.stopped_early],
        # Stopped by their own patience; the key predates the status's new name.
        "num_early_stopped": status_counts[TrialStatus.patience_stopped],
        "num_diverged": status_counts[TrialStatus.diverged],
        "num_infeasible": status_counts[TrialStatus.infeasible],
        "best": {
            "trial_id": best["trial_id"],
            "config": _json_config(choice.result),
            metric: best["best"],
            "epochs": best["epochs"],
            "best_epoch": best["best_epoch"],
            "checkpoint_epoch": int(checkpoint_model.state["epoch"]),
            "path": choice.result.path,
            "diagnosis": best["diagnosis"],
            "footprint": best["footprint"],
        },
        **tradeoffs,
        "final": {
            "protocol": experiment.final.protocol,
            "models": [model.describe() for model in models],
        },
        "test": test,
        **({"reevaluation": choice.reevaluation} if choice.reevaluation is not None else {}),
        "compute": _compute(trials),
        "wall_seconds": round(wall_seconds, 2),
        "trials": trials,
        "lineage": lineage,
    }


def _json_config(result: tune.Result) -> dict[str, Any]:
    return TrainConfig.model_validate(result.config).model_dump(mode="json")


def _eligible(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials that may win: ended well, scored, and broke no outcome constraint."""
    return [
        t
        for t in trials
        if TrialStatus(t["status"]).can_win
        and t["best"] is not None
        and not t["broken_constraints"]
    ]


def _objective_values(trial: dict[str, Any], objectives: list[str]) -> list[float] | None:
    """The trial's best metric and its footprint figures, in `objectives` order."""
    values = [trial["best"], *((trial["footprint"] or {}).get(n) for n in objectives[1:])]
    return None if any(v is None for v in values) else [float(v) for v in values]


def _tradeoff_sections(experiment: Experiment, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """summary.json's constraints and Pareto front keys, for sweeps that asked for them."""
    sections: dict[str, Any] = {}
    if experiment.constraints:
        sections["constraints"] = {
            c.metric: f"{c.op} {c.bound:g}" for c in experiment.outcome_constraints
        }
        sections["num_ineligible"] = sum(bool(t["broken_constraints"]) for t in trials)
    if experiment.multi_objective:
        objectives = experiment.objective_names
        points = {
            t["trial_id"]: values
            for t in _eligible(trials)
            if (values := _objective_values(t, objectives)) is not None
        }
        sections["objectives"] = dict(zip(objectives, experiment.objective_modes, strict=True))
        sections["pareto_front"] = [
            {"trial_id": trial_id, **dict(zip(objectives, points[trial_id], strict=True))}
            for trial_id in pareto_front(points, experiment.objective_modes)
        ]
        sections["pareto_rule"] = PARETO_RULE
    return sections


def _reevaluated_best(
    trials: list[dict[str, Any]],
    by_id: Mapping[str, tune.Result],
    experiment: Experiment,
    final: FinalContext,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The winner by mean validation score over new seeds (tuning.reevaluate)."""
    settings = experiment.final.reevaluate
    assert settings is not None
    mode = experiment.resolved_mode
    top = top_trials(_eligible(trials), settings.top_k, mode)
    configs = {r["trial_id"]: dict(by_id[r["trial_id"]].config or {}) for r in top}
    candidates = reevaluate(
        experiment, top, configs, final.splits.tuning, final.location, final.gpu, final.pretrained
    )
    chosen = pick(candidates, mode)
    section = {
        "top_k": settings.top_k,
        "seeds": settings.seeds,
        "candidates": [c.describe(mode) for c in candidates],
        "chosen": chosen.trial_id,
        "changed_pick": chosen.trial_id != top[0]["trial_id"],
    }
    return next(t for t in trials if t["trial_id"] == chosen.trial_id), section


def _best_trial(
    trials: list[dict[str, Any]], objectives: list[str], modes: list[str]
) -> dict[str, Any] | None:
    """The eligible trial with the best metric; ties go to the better later objectives
    (so a multi-objective sweep's winner is on its Pareto front), then to the first."""
    eligible = _eligible(trials)
    if not eligible:
        return None

    def key(trial: dict[str, Any]) -> tuple[float, ...]:
        values = _objective_values(trial, objectives)
        if values is None:  # not measured: only the metric counts, behind any measured tie
            worst = [math.inf if mode == "min" else -math.inf for mode in modes[1:]]
            values = [trial["best"], *worst]
        return lexicographic_key(values, modes)

    return max(eligible, key=key)


def _compute(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Epochs spent against what FIFO would have spent on the same trials."""
    spent = sum(t["epochs"] for t in trials)
    fifo = sum(t["planned_epochs"] for t in trials)
    stopped_at = Counter(t["epochs"] for t in trials if t["status"] == TrialStatus.stopped_early)
    return {
        "epochs": spent,
        "fifo_epochs": fifo,
        "fraction_of_fifo": round(spent / fifo, 4) if fifo else None,
        "stopped_by_scheduler_at_epoch": {str(e): n for e, n in sorted(stopped_at.items())},
    }


def _trial_record(
    result: tune.Result,
    metric: str,
    mode: str,
    search_space: space.SearchSpace,
    num_classes: int,
    constraints: tuple[Constraint, ...] = (),
) -> dict[str, Any]:
    frame = result.metrics_dataframe
    history = epoch_rows([] if frame is None else frame.to_dict("records"))
    last = result.metrics or {}
    epochs = int(last.get("training_iteration", 0))
    best_value, best_epoch = best_epoch_of(history, metric, mode)
    planned = TrainConfig.model_validate(result.config).epochs if result.config else epochs
    values = trial_values(history, best_epoch)
    footprint = {k: v for k, v in values.items() if k not in m.OPTIMIZABLE}
    status = _status(result, epochs, planned)
    # Constraints are judged only where they decide: on trials that could otherwise win.
    judged = constraints if status.can_win and best_value is not None else ()
    return {
        "trial_id": result_trial_id(result),
        "status": status,
        "epochs": epochs,
        "planned_epochs": planned,
        "best": best_value,
        "best_epoch": best_epoch,
        "tuned": search_space.tuned_values(result.config or {}),
        "error": _error_text(result),
        "diagnosis": diagnose(history, num_classes).to_dict(),
        "node_id": last.get(m.NODE_ID),  # the Ray node of its last epoch
        "nodes": _nodes_in_order(history),  # more than one if it moved (a node was lost)
        "footprint": footprint or None,  # params, flops, latency (trainables.footprint)
        "broken_constraints": [
            reason for c in judged if (reason := c.broken_by(values)) is not None
        ],
    }


def _nodes_in_order(history: list[dict[str, Any]]) -> list[str]:
    """The Ray nodes a trial's epochs ran on, each once, in the order it first used them."""
    nodes = (row.get(m.NODE_ID) for row in history)
    return list(dict.fromkeys(n for n in nodes if isinstance(n, str) and n))


def _status(result: tune.Result, epochs: int, planned: int) -> TrialStatus:
    return classify_status(result.error is not None, result.metrics or {}, epochs, planned)


def classify_status(
    errored: bool, last: Mapping[str, Any], epochs: int, planned: int
) -> TrialStatus:
    """How a trial ended, from its last reported result and the epochs it ran of `planned`."""
    if errored:
        return TrialStatus.error
    if last.get(m.INFEASIBLE):
        return TrialStatus.infeasible
    if last.get(m.DIVERGED):
        return TrialStatus.diverged
    if last.get(m.EARLY_STOPPED):  # the metric flag keeps its old name in progress.csv
        return TrialStatus.patience_stopped
    if epochs < planned:
        return TrialStatus.stopped_early
    return TrialStatus.completed


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


def results_by_id(results: tune.ResultGrid) -> dict[str, tune.Result]:
    """Tune's results keyed by their trials' own ids."""
    return {result_trial_id(results[i]): results[i] for i in range(len(results))}


def result_trial_id(result: tune.Result) -> str:
    """The trial's own id, from its folder `trial_<id>` (see the runner's trial names).

    Not the last result's `trial_id`: after a PBT exploit that names the donor.
    """
    return trial_id_of(Path(result.path).name)
