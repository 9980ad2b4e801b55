"""summary.json, typed: what a finished sweep says about itself. The schema lives here.

`tuning.results` builds it, `tuning.runner` writes it, and the CLI's summary
(tuning.summary_text), `cnn-tune export` and the report read it through `Summary.read`.
Keys are only ever added (the contract in ../shared/DESIGN.md); every model allows extra
keys, so a summary written by a newer cnn-tune still reads. Imports neither Ray nor torch.

    {
      "experiment", "metric", "mode", "wall_seconds",
      "num_trials", "num_errored", "num_stopped_early",   # by the scheduler
      "num_early_stopped",                                # by their own patience
      "num_diverged", "num_infeasible",
      "best": {"trial_id", "config", "<metric>", "epochs", "best_epoch",
               "checkpoint_epoch", "path", "diagnosis", "footprint"},
      "constraints"?: {"<metric>": "<= 1e+06"}, "num_ineligible"?,   # if constrained
      "objectives"?: {"<name>": "max" | "min"},                      # if multi-objective
      "pareto_front"?: [{"trial_id", "<objective>": value, ...}], "pareto_rule"?,
      "final": {"protocol", "models": [{"name", "seed", "epochs", "trained_on", "path", ...}]},
      "test": {"accuracy", "accuracy_ci95", "loss", "num_examples", "per_class_accuracy",
               "evaluations", "models", "seed_spread"?, "looks"},
      "reevaluation"?: {"top_k", "seeds", "candidates", "chosen", "changed_pick"},
      "compute": {"epochs", "fifo_epochs", "fraction_of_fifo", "stopped_by_scheduler_at_epoch"},
      "trials": [{"trial_id", "status", "epochs", "planned_epochs", "best", "best_epoch",
                  "tuned", "error", "diagnosis", "node_id", "nodes", "lineage"?,
                  "footprint": {"params", "flops", "latency_ms", "latency_ms_batch",
                                "latency_batch_size"} | null, "broken_constraints"}],
      "lineage": [{"trial_id", "donor", "epoch", "new_values"}],   # PBT exploits
      "warm_start"?: {"used": [{"source", "value"}], "dropped": [{"source", "reason"}]},
      "extensions"?: rounds added by `cnn-tune resume DIR --set search.num_samples=N`
    }
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from tuning.status import TrialStatus


class _Open(BaseModel):
    """Fields as listed; any other key is kept as it is."""

    model_config = ConfigDict(extra="allow")


class Diagnosis(_Open):
    verdict: str
    reasons: list[str] = []
    remedies: list[str] = []


class BestTrial(_Open):
    """The winner; its best value sits under the metric's own name (`best.value(metric)`)."""

    trial_id: str
    config: dict[str, Any]
    epochs: int
    best_epoch: int | None = None
    checkpoint_epoch: int | None = None
    path: str
    diagnosis: Diagnosis
    footprint: dict[str, float] | None = None

    def value(self, metric: str) -> float:
        return float((self.model_extra or {})[metric])


class FinalModelRecord(_Open):
    name: str
    epochs: int
    path: str
    seed: int | None = None
    trained_on: str | None = None


class Final(_Open):
    protocol: str = "best_checkpoint"
    models: list[FinalModelRecord] = []


class SeedSpread(_Open):
    seeds: int
    std: float
    min: float
    max: float


class TestResult(_Open):
    accuracy: float
    accuracy_ci95: list[float]
    loss: float
    num_examples: int
    per_class_accuracy: dict[str, float] = {}
    evaluations: int = 1
    looks: int = 1  # final models the test split has scored in the sweep's life
    models: list[dict[str, Any]] = []
    seed_spread: SeedSpread | None = None


class Compute(_Open):
    epochs: int
    fifo_epochs: int
    fraction_of_fifo: float | None = None
    stopped_by_scheduler_at_epoch: dict[str, int] = {}


class TrialRecord(_Open):
    trial_id: str
    status: TrialStatus
    epochs: int
    planned_epochs: int
    best: float | None = None
    best_epoch: int | None = None
    tuned: dict[str, Any] = {}
    error: str | None = None
    diagnosis: Diagnosis | None = None
    footprint: dict[str, float] | None = None  # trainables.footprint's figures
    broken_constraints: list[str] = []  # why it may not win, e.g. "params = 2e6, not <= 1e6"

    @field_validator("status", mode="before")
    @classmethod
    def _older_spelling(cls, value: Any) -> Any:
        return TrialStatus.read(value) if isinstance(value, str) else value


class ParetoPoint(_Open):
    """A trial on the Pareto front; its value of each objective sits under the objective's
    own name (`point.value(name)`)."""

    trial_id: str

    def value(self, name: str) -> float:
        return float((self.model_extra or {})[name])


class Summary(_Open):
    experiment: str
    metric: str
    mode: str
    num_trials: int
    num_errored: int
    num_stopped_early: int
    num_early_stopped: int = 0
    num_diverged: int = 0
    num_infeasible: int = 0
    best: BestTrial
    final: Final = Final()
    test: TestResult
    reevaluation: dict[str, Any] | None = None
    constraints: dict[str, str] = {}  # metric -> "<= 1e+06"
    num_ineligible: int = 0  # trials that could have won but broke a constraint
    objectives: dict[str, str] = {}  # multi-objective: name -> mode, the metric first
    pareto_front: list[ParetoPoint] = []  # best metric first
    pareto_rule: str | None = None  # which front point the final test took
    compute: Compute | None = None
    wall_seconds: float
    trials: list[TrialRecord] = []
    lineage: list[dict[str, Any]] = []
    warm_start: dict[str, Any] | None = None  # search.warm_start (tuning.warm_start)
    extensions: int = 0  # rounds of trials added by `resume --set` (tuning.extension)

    @classmethod
    def read(cls, text: str) -> Summary:
        """Parse summary.json's text (ValueError if it is not a summary)."""
        return cls.model_validate(json.loads(text))

    def to_json(self) -> str:
        """summary.json's text: the keys set when it was built, in their order."""
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON types (what `cnn-tune run` returns to library callers)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def best_value(self) -> float:
        return self.best.value(self.metric)

    def record_of(self, trial_id: str) -> TrialRecord | None:
        return next((t for t in self.trials if t.trial_id == trial_id), None)
