"""The experiment file: its model, its loading (YAML < --set), and every cross-check.

`load_experiment` either returns a valid `Experiment` or raises `ConfigError` listing
every problem; nothing in it starts Ray or touches the dataset files.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from schedulers.compatibility import compatibility_errors
from schedulers.settings import ASHASettings, PB2Settings, PBTSettings, SchedulerSettings
from trainables.config import StrictModel, TrainConfig
from trainables.data_config import DataConfig
from trainables.metrics import OPTIMIZABLE
from tuning import space
from tuning.errors import ConfigError, describe_validation_error
from tuning.sources import resolve_source
from tuning.tradeoffs import (
    OUTCOME_MODES,
    Constraint,
    footprint_as_the_metric,
    objectives_from_metric_list,
    parse_constraints,
    tradeoff_errors,
)
from tuning.yaml_io import apply_overrides, read_yaml_mapping

MAX_TRIALS = 10_000  # trials in one sweep: num_samples x grid points; beyond, a typo


class SearchSettings(StrictModel):
    """How configurations are proposed."""

    algorithm: Literal["grid", "random", "hyperopt", "optuna"] = "hyperopt"
    num_samples: int | None = Field(
        None,
        ge=1,
        description=f"trials; with grids, repeats of the grid (default 1); at most "
        f"{MAX_TRIALS} trials in all",
    )
    max_concurrent: int | None = Field(None, ge=1, description="trials at once; default: what fits")
    initial_points: int = Field(
        5, ge=1, description="hyperopt, optuna: random trials before TPE takes over"
    )
    seed: int = Field(0, ge=0)
    warm_start: list[str] = Field(
        default_factory=list,
        description="hyperopt, optuna: finished sweep folders whose trials seed the searcher",
    )

    @property
    def resolved_num_samples(self) -> int:
        """How many times Tune samples the space: 1 pass over a grid, else 16 trials."""
        if self.num_samples is not None:
            return self.num_samples
        return 1 if self.algorithm == "grid" else 16


class ResourceSettings(StrictModel):
    """What each trial reserves. A fractional gpu lets several trials share one GPU."""

    cpu: float = Field(1.0, gt=0.0, le=1024.0, description="CPU cores per trial")
    gpu: float | Literal["auto"] = Field(
        0.0,
        description="share of one GPU per trial, 0-1: 0.25 = four per GPU; auto = measure "
        "and pack (CPU if none)",
    )

    @model_validator(mode="after")
    def _gpu_share_makes_sense(self) -> ResourceSettings:
        if self.gpu == "auto":
            return self
        if not 0 <= self.gpu <= 1:
            # A trial is one process training on one device; it cannot use a second GPU.
            raise ValueError(
                f"gpu must be a share of one GPU between 0 and 1 (0.25 = four trials per "
                f"GPU) or 'auto', got {self.gpu}: a trial trains on a single GPU; to use "
                "more GPUs, run more trials at once (set resources.gpu=1 or lower)"
            )
        return self


class CheckpointSettings(StrictModel):
    every_epochs: int = Field(1, ge=1, description="epochs between checkpoints (and at the end)")
    keep: int = Field(2, ge=1, description="best checkpoints kept per trial, plus the latest")
    keep_trials: int = Field(
        3,
        ge=1,
        description=(
            "ended trials, the best ones, that keep their checkpoints: the final model comes "
            "from them, and `cnn-tune resume DIR --set train.epochs=N` continues them"
        ),
    )


class ReevaluateSettings(StrictModel):
    """Train the top configurations again with other seeds before the test split is used."""

    top_k: int = Field(3, ge=2, le=10, description="best configurations trained again")
    seeds: int = Field(3, ge=2, le=10, description="runs of each, seeds seed+1 ... seed+seeds")


class FinalSettings(StrictModel):
    """How the final model is made once the sweep has chosen its best configuration.

    Either way, the held-out test split is evaluated exactly once per final model.
    """

    protocol: Literal["best_checkpoint", "retrain"] = Field(
        "best_checkpoint",
        description=(
            "best_checkpoint: test the best trial's checkpoint from its best epoch; "
            "retrain: train the best configuration again on train+val for that many epochs"
        ),
    )
    seeds: int = Field(
        1, ge=1, le=32, description="retrain: models trained with seeds seed, seed+1, ..."
    )
    reevaluate: ReevaluateSettings | None = Field(
        None,
        description="pick the winner by its mean validation score over several seeds: "
        "{top_k: 3, seeds: 3} trains the 3 best configurations 3 more times each",
    )


class Experiment(StrictModel):
    """One sweep: data, the training space, search, scheduler, resources."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    description: str = ""
    dataset: DataConfig = DataConfig()
    train: dict[str, Any] = Field(
        default_factory=dict, description="TrainConfig; leaves may be domains"
    )
    search: SearchSettings = SearchSettings()
    scheduler: SchedulerSettings = ASHASettings(name="asha")
    metric: Literal["val_acc", "val_loss", "train_acc", "train_loss"] = "val_acc"
    mode: Literal["max", "min"] | None = Field(
        None, description="default: what is better for metric"
    )
    objectives: list[str] | None = Field(
        None,
        description="multi-objective: the metric first, then footprint metrics to trade it "
        "for (metric: [val_acc, latency_ms] says the same); see tuning.tradeoffs",
    )
    constraints: dict[str, Any] = Field(
        default_factory=dict,
        description='outcome limits a winner must meet, e.g. {params: "<= 1e6"}',
    )
    resources: ResourceSettings = ResourceSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    max_failures: int = Field(1, ge=0, le=100, description="Ray retries of a crashed trial")
    final: FinalSettings = FinalSettings()

    @property
    def resolved_mode(self) -> str:
        return self.mode or OPTIMIZABLE[self.metric]

    @property
    def objective_names(self) -> list[str]:
        """The metric, then what a multi-objective sweep trades it for (or just the metric)."""
        return list(self.objectives or [self.metric])

    @property
    def objective_modes(self) -> list[str]:
        return [self.resolved_mode, *(OUTCOME_MODES[n] for n in self.objective_names[1:])]

    @property
    def multi_objective(self) -> bool:
        return len(self.objective_names) > 1

    @cached_property
    def outcome_constraints(self) -> tuple[Constraint, ...]:
        """`constraints:` parsed once (validation has already refused bad entries)."""
        return tuple(parse_constraints(self.constraints)[0])

    @cached_property
    def search_space(self) -> space.SearchSpace:
        """`train:` parsed once (the model is frozen, so this never goes stale)."""
        return space.SearchSpace.parse(self.train)

    @property
    def num_trials(self) -> int:
        """Trials the sweep runs: num_samples passes over the grid (one point without grids)."""
        return self.search.resolved_num_samples * self.search_space.grid_size

    @property
    def max_epochs(self) -> int:
        return int(self.search_space.largest("epochs", TrainConfig().epochs))

    def param_space(self) -> dict[str, Any]:
        return dict(self.search_space.param_space())


def load_experiment(source: str, overrides: list[str] | None = None) -> Experiment:
    """Read a built-in name or a YAML path, apply `--set` overrides, validate everything."""
    path = resolve_source(source)
    raw = read_yaml_mapping(path)
    raw.setdefault("name", path.stem)
    raw = apply_overrides(raw, overrides or [])
    return validate_experiment(raw)


def validate_experiment(raw: dict[str, Any]) -> Experiment:
    raw = _early_stopping_watches_the_metric(objectives_from_metric_list(raw))
    raw = _pbt_checkpoints_at_perturbations(raw)
    try:
        experiment = Experiment.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, Experiment, explain=_explain)) from error
    errors = space.validation_errors(experiment.train, TrainConfig, prefix="train")
    if not errors:
        errors += _cross_errors(experiment)
    if errors:
        raise ConfigError(errors)
    return experiment


def _explain(loc: str, item: dict[str, Any]) -> str | None:
    return _domain_outside_train(loc, item) or footprint_as_the_metric(loc, item)


def _domain_outside_train(loc: str, item: dict[str, Any]) -> str | None:
    """A search domain where only one value is allowed (dataset, search, resources...)."""
    value: Any = item.get("input")
    if not space.is_domain(value):
        return None
    kind = next(iter(value))
    return (
        f"{loc}: a search domain ({{{kind}: ...}}) can tune only values under train:; "
        f"give {loc} one value (run one sweep per {loc.rsplit('.', 1)[-1]} to compare them)"
    )


def _early_stopping_watches_the_metric(raw: dict[str, Any]) -> dict[str, Any]:
    """`train.early_stopping` without a metric watches the experiment's metric."""
    train = raw.get("train")
    if not isinstance(train, dict):
        return raw
    stopping = train.get("early_stopping")
    if not isinstance(stopping, dict) or "metric" in stopping:
        return raw
    metric = raw.get("metric", "val_acc")
    return {**raw, "train": {**train, "early_stopping": {**stopping, "metric": metric}}}


def _pbt_checkpoints_at_perturbations(raw: dict[str, Any]) -> dict[str, Any]:
    """PBT and PB2 checkpoint at each perturbation (schedulers.compatibility): where the
    experiment leaves `checkpoint.every_epochs` out, it is the perturbation interval."""
    scheduler, checkpoint = raw.get("scheduler"), raw.get("checkpoint", {})
    if not isinstance(scheduler, dict) or not isinstance(checkpoint, dict):
        return raw
    if scheduler.get("name") not in ("pbt", "pb2") or "every_epochs" in checkpoint:
        return raw
    interval = scheduler.get("perturbation_interval")
    if interval is None:
        settings = PBTSettings if scheduler["name"] == "pbt" else PB2Settings
        interval = settings.model_fields["perturbation_interval"].default
    return {**raw, "checkpoint": {**checkpoint, "every_epochs": interval}}


def _cross_errors(experiment: Experiment) -> list[str]:
    """Checks that span sections: metric vs mode, searcher vs space, scheduler vs the rest."""
    errors = []
    better = OPTIMIZABLE[experiment.metric]
    if experiment.mode is not None and experiment.mode != better:
        errors.append(
            f"mode={experiment.mode!r} with metric={experiment.metric!r} would pick the worst "
            f"trial; {experiment.metric} is better "
            f"when {'higher' if better == 'max' else 'lower'}: "
            f"set mode: {better} or leave mode out"
        )
    stopping = experiment.train.get("early_stopping")
    if (
        isinstance(stopping, dict)
        and stopping.get("metric", experiment.metric) != experiment.metric
    ):
        errors.append(
            f"train.early_stopping.metric={stopping['metric']!r} differs from "
            f"metric={experiment.metric!r}; early stopping watches the metric the sweep "
            "optimizes: drop train.early_stopping.metric"
        )
    algorithm, tree = experiment.search.algorithm, experiment.search_space
    if algorithm in ("hyperopt", "optuna") and tree.has(("grid",)):
        errors.append(
            f"search.algorithm={algorithm} cannot search a {{grid: [...]}} domain; write it as "
            "{choice: [...]}, or use search.algorithm: grid"
        )
    if experiment.search.warm_start and algorithm not in ("hyperopt", "optuna"):
        errors.append(
            f"search.warm_start needs a searcher that learns from results, not "
            f"search.algorithm={algorithm}: set search.algorithm: hyperopt (or optuna), or "
            "drop search.warm_start"
        )
    if algorithm == "grid":
        sampled = [d.path for d in tree.domains if d.kind != "grid"]
        if sampled:
            errors.append(
                f"search.algorithm=grid needs every tuned value as {{grid: [...]}}; "
                f"train.{sampled[0]} is sampled. Use search.algorithm: random to mix both"
            )
    if not tree.has():
        errors.append(
            "train: nothing to tune; give at least one value a domain such as {choice: [...]}"
        )
    errors += compatibility_errors(
        experiment.scheduler,
        searcher=algorithm,
        checkpoint_every=experiment.checkpoint.every_epochs,
        checkpoints_kept=experiment.checkpoint.keep,
        max_epochs=experiment.max_epochs,
    )
    if isinstance(experiment.scheduler, PBTSettings | PB2Settings):
        # Mutation domains are Ray's: only a PBT or PB2 experiment imports Ray to check them.
        from schedulers.build import pb2_errors, pbt_mutations

        try:
            pbt_mutations(experiment.scheduler.mutate, experiment.param_space())
        except ValueError as error:
            errors.append(str(error))
    if isinstance(experiment.scheduler, PB2Settings):
        errors += pb2_errors(experiment.scheduler.mutate, experiment.param_space())
    return (
        errors
        + tradeoff_errors(
            experiment.constraints,
            experiment.objectives,
            experiment.metric,
            reevaluate=experiment.final.reevaluate is not None,
        )
        + _final_errors(experiment)
        + _reevaluate_errors(experiment)
        + _trial_count_errors(experiment)
    )


def _trial_count_errors(experiment: Experiment) -> list[str]:
    """A sweep of more than MAX_TRIALS trials is a typo, not a plan (num_samples x grid)."""
    if experiment.num_trials <= MAX_TRIALS:
        return []
    return [
        f"{trial_count_text(experiment)}, more than the {MAX_TRIALS} one sweep may run; lower "
        "search.num_samples"
        + (
            " (with grids, 1 runs each grid point once) or shrink the grids"
            if _grids(experiment)
            else ""
        )
    ]


def _grids(experiment: Experiment) -> list[tuple[str, int]]:
    """(dotted key, number of values) of every grid in the training space."""
    return [
        (f"train.{d.path}", len(d.args))
        for d in experiment.search_space.domains
        if d.kind == "grid"
    ]


def trial_count_text(experiment: Experiment) -> str:
    """How the trial count comes about, e.g. `search.num_samples=10 x 18 grid points
    (train.lr 3 x train.batch_size 6) = 180 trials`."""
    samples = experiment.search.resolved_num_samples
    grids = _grids(experiment)
    if not grids:
        return f"search.num_samples={samples} trials"
    product = " x ".join(f"{key} {count}" for key, count in grids)
    return (
        f"search.num_samples={samples} x {experiment.search_space.grid_size} grid points "
        f"({product}) = {experiment.num_trials} trials"
    )


def _final_errors(experiment: Experiment) -> list[str]:
    """A retrained final model must be reproducible from a fixed config and epoch count."""
    final = experiment.final
    if final.protocol == "best_checkpoint":
        if final.seeds > 1:
            return [
                f"final.seeds={final.seeds} applies to final.protocol: retrain (the best "
                "checkpoint is one model); set final.protocol: retrain, or drop final.seeds"
            ]
        return []
    errors = []
    if isinstance(experiment.scheduler, PBTSettings | PB2Settings):
        errors.append(
            f"final.protocol=retrain with scheduler {experiment.scheduler.name}: the best PBT "
            "model was trained under a schedule of mutated configs, not one config; use "
            "final.protocol: best_checkpoint"
        )
    schedules = {
        TrainConfig.model_validate(c).lr_schedule.name
        for c in experiment.search_space.representatives
    }
    if "plateau" in schedules:
        errors.append(
            "final.protocol=retrain cannot replay train.lr_schedule.name=plateau: its decays "
            "follow validation scores, and retraining has no held-out data; use another "
            "schedule or final.protocol: best_checkpoint"
        )
    return errors


def _reevaluate_errors(experiment: Experiment) -> list[str]:
    """Re-running a configuration needs one fixed configuration per trial, and trials."""
    reevaluate = experiment.final.reevaluate
    if reevaluate is None:
        return []
    if isinstance(experiment.scheduler, PBTSettings | PB2Settings):
        return [
            f"final.reevaluate with scheduler {experiment.scheduler.name}: a PBT trial's "
            "configuration changes as it trains, so there is no one configuration to train "
            "again; drop final.reevaluate"
        ]
    if reevaluate.top_k > experiment.num_trials:
        return [
            f"final.reevaluate.top_k={reevaluate.top_k} is more than the sweep's "
            f"{experiment.num_trials} trials; lower top_k or raise search.num_samples"
        ]
    return []
