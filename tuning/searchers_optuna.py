"""Optuna's TPE told every epoch of every trial, the ones a scheduler stopped included.

Imported only when an optuna sweep starts (tuning.searchers.build_searcher).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized

from trainables import metrics as m
from trainables.config import TrainConfig
from tuning.results import classify_status
from tuning.searchers import TRIAL_ID_ATTR, WARM_START_ATTR
from tuning.status import TrialStatus
from tuning.warm_start import KnownPoint

if TYPE_CHECKING:  # optuna itself is imported when the searcher is built
    import optuna

DEFAULT_EPOCHS: int = TrainConfig.model_fields["epochs"].default
OptunaOutcome = Literal["COMPLETE", "PRUNED", "FAIL"]


class EpochwiseOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch (Optuna's TPE) told every epoch and how each trial ended.

    What differs from Ray's class, whose study and trial map (`_ot_study`, `_ot_trials`,
    `_completed_trials`) it shares, and which saves and restores them all with the sweep:

    - Every epoch's metric is an intermediate value at step = epoch, the epoch on which a
      scheduler stopped the trial included (Tune hands that result only to
      `on_trial_complete`).
    - A trial a scheduler stopped before its last epoch is PRUNED, not COMPLETE with an
      early, low value: TPE ranks pruned trials after complete ones, by the epoch they
      reached, then by their value there. A trial that errored, or never reported, is FAIL.
    - The space is sampled define-by-run from Tune's own domains: a choice among
      sub-configurations samples only the chosen branch's parameters, labelled
      "optimizer/<branch>/lr" as in ConditionalHyperOptSearch, and a log domain with a step
      is sampled on the log scale and rounded, as hyperopt's qloguniform does (an Optuna
      distribution has a step or a log scale, not both).

    Metric and mode come from TuneConfig through `set_search_properties`.
    """

    def __init__(self, *, initial_points: int, seed: int, known: Sequence[KnownPoint] = ()) -> None:
        import optuna

        # Optuna logs every trial at INFO; the CLI's progress line already tells the user.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(n_startup_trials=initial_points, seed=seed)
        super().__init__(sampler=sampler)
        self._planned_epochs: dict[str, int] = {}
        self._last_epoch: dict[str, int] = {}
        self._known = list(known)

    @property
    def study(self) -> optuna.Study | None:
        """The Optuna study: one trial per Tune trial (user attribute `ray_trial_id`)."""
        return self._ot_study

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        if self._ot_study is not None:
            return False
        grid = _first_grid(config, ())
        if grid is not None:
            raise ValueError(
                f"search.algorithm=optuna cannot search a {{grid: [...]}} domain "
                f"(train.{grid}); write it as {{choice: [...]}}, or use search.algorithm: "
                "grid or random"
            )
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        if not self._metric or not self._mode:
            raise ValueError(
                f"{type(self).__name__} needs the sweep's metric and mode: give them to "
                f"TuneConfig (got metric={self._metric!r}, mode={self._mode!r})"
            )
        self._space = config  # Tune's domains, sampled by `suggest`
        self._setup_study(self._mode)
        self._tell_known()
        return True

    def _tell_known(self) -> None:
        """Each known point (search.warm_start) as a trial of the study: asked with its
        values fixed, sampled through the same labels as any trial, then told its value."""
        from optuna.trial import TrialState

        assert self._ot_study is not None and isinstance(self._space, dict)
        for point in self._known:
            self._ot_study.enqueue_trial(point.optuna)
            trial = self._ot_study.ask()
            trial.set_user_attr(WARM_START_ATTR, point.source)
            _sample_tree(trial, self._space, "")
            if point.stopped_early:
                trial.report(point.value, point.epochs)
                self._ot_study.tell(trial, state=TrialState.PRUNED)
            else:
                self._ot_study.tell(trial, point.value)

    def suggest(self, trial_id: str) -> dict | None:
        if self._ot_study is None or not isinstance(self._space, dict):
            raise RuntimeError(
                f"{type(self).__name__} has no search space: Tune passes it in "
                "set_search_properties, from Tuner(param_space=...)"
            )
        if trial_id not in self._ot_trials:
            trial = self._ot_study.ask()
            trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
            self._ot_trials[trial_id] = trial
        config = _sample_tree(self._ot_trials[trial_id], self._space, "")
        self._planned_epochs[trial_id] = int(config.get("epochs", DEFAULT_EPOCHS))
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._report_epoch(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials:
            return
        if result:
            self._report_epoch(trial_id, result)
        planned = self._planned_epochs.get(trial_id, DEFAULT_EPOCHS)
        outcome = optuna_outcome(result, error, planned, str(self._metric))
        value = result[self._metric] if outcome == "COMPLETE" and result else None
        from optuna.trial import TrialState

        assert self._ot_study is not None, "a trial completed before any was suggested"
        self._ot_study.tell(self._ot_trials[trial_id], value, state=TrialState[outcome])
        self._completed_trials.add(trial_id)

    def _report_epoch(self, trial_id: str, result: Mapping[str, Any]) -> None:
        epoch, value = result.get(m.EPOCH), result.get(str(self._metric))
        if trial_id in self._completed_trials or epoch is None or value is None:
            return
        # After a restore from a checkpoint, epochs already reported are trained and
        # reported again; Optuna keeps the first value of a step.
        if epoch <= self._last_epoch.get(trial_id, 0):
            return
        self._ot_trials[trial_id].report(float(value), int(epoch))
        self._last_epoch[trial_id] = int(epoch)


def optuna_outcome(
    result: Mapping[str, Any] | None, error: bool, planned_epochs: int, metric: str
) -> OptunaOutcome:
    """How a trial that ended is told to Optuna, from its last result.

    FAIL: it errored, or has no usable value (TPE ignores it). PRUNED: a scheduler stopped
    it before its `planned_epochs`. COMPLETE: it trained to the end, or ended itself (early
    stopping, divergence, infeasible: those report their last or worst value).
    """
    if error or not result:
        return "FAIL"
    value = result.get(metric)
    if value is None or math.isnan(float(value)):
        return "FAIL"
    epochs = int(result.get(m.EPOCH, 0))
    if classify_status(False, result, epochs, planned_epochs) == TrialStatus.stopped_early:
        return "PRUNED"
    return "COMPLETE"


def _sample_tree(trial: optuna.Trial, spec: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """One configuration from Tune's `spec`, every domain sampled through `trial`."""
    config: dict[str, Any] = {}
    for key, value in spec.items():
        label = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Categorical) and not all(map(_is_plain, value.categories)):
            # Options that are sub-configurations (or lists): Optuna picks an option's index.
            index = trial.suggest_categorical(label, list(range(len(value.categories))))
            chosen = value.categories[index]
            is_branch = isinstance(chosen, dict)
            config[key] = _sample_tree(trial, chosen, f"{label}/{index}") if is_branch else chosen
        elif isinstance(value, Domain):
            config[key] = _suggest(trial, label, value)
        elif isinstance(value, dict):
            config[key] = _sample_tree(trial, value, label)
        else:
            config[key] = value
    return config


def _is_plain(option: Any) -> bool:
    return option is None or isinstance(option, str | int | float | bool)


def _suggest(trial: optuna.Trial, label: str, domain: Domain) -> Any:
    """One value of `domain`, with the Optuna distribution Ray converts it to."""
    import optuna

    sampler = domain.get_sampler()
    if (
        isinstance(domain, Float | Integer)
        and isinstance(sampler, Quantized)
        and isinstance(sampler.sampler, LogUniform)
    ):
        raw = trial.suggest_float(label, float(domain.lower), float(domain.upper), log=True)
        return _rounded_to_step(raw, sampler.q, domain)
    distribution = OptunaSearch.convert_search_space({"x": domain})["x"]
    if isinstance(distribution, optuna.distributions.FloatDistribution):
        return trial.suggest_float(
            label, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return trial.suggest_int(
            label, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    return trial.suggest_categorical(label, list(distribution.choices))


def _rounded_to_step(value: float, step: float, domain: Float | Integer) -> float | int:
    """`value` rounded to a multiple of `step` inside the domain's bounds."""
    lowest = math.ceil(domain.lower / step) * step
    highest = math.floor(domain.upper / step) * step
    rounded = min(max(round(value / step) * step, lowest), highest)
    return int(rounded) if isinstance(domain, Integer) else rounded


def _first_grid(spec: Any, path: tuple[str, ...]) -> str | None:
    """The dotted path of the first grid in a Tune spec, choices' options included."""
    if isinstance(spec, dict):
        if set(spec) == {"grid_search"}:
            return ".".join(path)
        for key, value in spec.items():
            found = _first_grid(value, (*path, str(key)))
            if found is not None:
                return found
    if isinstance(spec, Categorical):
        for option in spec.categories:
            found = _first_grid(option, path)
            if found is not None:
                return found
    return None
