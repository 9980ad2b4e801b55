"""The experiment file: its model, its loading (YAML < --set), and every cross-check.

`load_experiment` either returns a valid `Experiment` or raises `ConfigError` listing
every problem; nothing in it starts Ray or touches the dataset files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from schedulers import (
    ASHASettings,
    PB2Settings,
    PBTSettings,
    SchedulerSettings,
    compatibility_errors,
    pb2_errors,
    pbt_mutations,
)
from trainables.config import StrictModel, TrainConfig
from trainables.data import DataConfig
from trainables.metrics import OPTIMIZABLE
from tuning import space
from tuning.errors import ConfigError, describe_validation_error
from tuning.yaml_io import apply_overrides, read_yaml_mapping


class SearchSettings(StrictModel):
    """How configurations are proposed."""

    algorithm: Literal["grid", "random", "hyperopt"] = "hyperopt"
    num_samples: int | None = Field(
        None, ge=1, le=100_000, description="trials; with grids, repeats of the grid (default 1)"
    )
    max_concurrent: int | None = Field(None, ge=1, description="trials at once; default: what fits")
    initial_points: int = Field(
        5, ge=1, description="hyperopt: random trials before TPE takes over"
    )
    seed: int = Field(0, ge=0)

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
        description="GPUs per trial: 0.25 = four per GPU; auto = measure and pack (CPU if none)",
    )

    @model_validator(mode="after")
    def _gpu_share_makes_sense(self) -> ResourceSettings:
        if self.gpu == "auto":
            return self
        if not 0 <= self.gpu <= 64:
            raise ValueError(f"gpu must be between 0 and 64 GPUs or 'auto', got {self.gpu}")
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise ValueError(f"gpu above 1 must be a whole number of GPUs, got {self.gpu}")
        return self


class CheckpointSettings(StrictModel):
    every_epochs: int = Field(1, ge=1, description="epochs between checkpoints (and at the end)")
    keep: int = Field(2, ge=1, description="best checkpoints kept per trial, plus the latest")


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
    resources: ResourceSettings = ResourceSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    max_failures: int = Field(1, ge=0, le=100, description="Ray retries of a crashed trial")
    final: FinalSettings = FinalSettings()

    @property
    def resolved_mode(self) -> str:
        return self.mode or OPTIMIZABLE[self.metric]

    @property
    def max_epochs(self) -> int:
        return int(space.largest_value(self.train, "epochs", TrainConfig().epochs))

    def param_space(self) -> dict[str, Any]:
        return space.to_param_space(self.train)


BUILTIN_DIR = resources.files("tuning") / "experiments"


def builtin_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml") for p in BUILTIN_DIR.iterdir() if p.name.endswith(".yaml")
    )


def builtin_descriptions() -> dict[str, str]:
    """Name -> description of each built-in experiment, read without validating."""
    return {
        name: str(read_yaml_mapping(Path(str(BUILTIN_DIR / f"{name}.yaml"))).get("description", ""))
        for name in builtin_names()
    }


def load_experiment(source: str, overrides: list[str] | None = None) -> Experiment:
    """Read a built-in name or a YAML path, apply `--set` overrides, validate everything."""
    path = _resolve_source(source)
    raw = read_yaml_mapping(path)
    raw.setdefault("name", path.stem)
    raw = apply_overrides(raw, overrides or [])
    return validate_experiment(raw)


def validate_experiment(raw: dict[str, Any]) -> Experiment:
    raw = _early_stopping_watches_the_metric(raw)
    try:
        experiment = Experiment.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, Experiment)) from error
    errors = space.validation_errors(experiment.train, TrainConfig, prefix="train")
    if not errors:
        errors += _cross_errors(experiment)
    if errors:
        raise ConfigError(errors)
    return experiment


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
    algorithm, train = experiment.search.algorithm, experiment.train
    if algorithm == "hyperopt" and space.has_domain(train, ("grid",)):
        errors.append(
            "search.algorithm=hyperopt cannot search a {grid: [...]} domain; write it as "
            "{choice: [...]}, or use search.algorithm: grid"
        )
    if algorithm == "grid":
        sampled = [".".join(p) for p, kind, _ in space.iter_domains(train) if kind != "grid"]
        if sampled:
            errors.append(
                f"search.algorithm=grid needs every tuned value as {{grid: [...]}}; "
                f"train.{sampled[0]} is sampled. Use search.algorithm: random to mix both"
            )
    if not space.has_domain(train):
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
        try:
            pbt_mutations(experiment.scheduler.mutate, experiment.param_space())
        except ValueError as error:
            errors.append(str(error))
    if isinstance(experiment.scheduler, PB2Settings):
        errors += pb2_errors(experiment.scheduler.mutate, experiment.param_space())
    return errors + _final_errors(experiment)


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
        for c in space.representatives(experiment.train)
    }
    if "plateau" in schedules:
        errors.append(
            "final.protocol=retrain cannot replay train.lr_schedule.name=plateau: its decays "
            "follow validation scores, and retraining has no held-out data; use another "
            "schedule or final.protocol: best_checkpoint"
        )
    return errors


def _resolve_source(source: str) -> Path:
    candidate = Path(source).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise ConfigError(f"experiment file {str(candidate)!r} does not exist")
        return candidate.resolve()
    builtin = BUILTIN_DIR / f"{source}.yaml"
    if builtin.is_file():
        return Path(str(builtin))
    raise ConfigError(
        f"experiment {source!r} is neither a YAML file nor a built-in experiment; "
        f"built-ins: {', '.join(builtin_names())} (see `cnn-tune list`)"
    )
