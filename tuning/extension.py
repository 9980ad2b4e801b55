"""More trials for a finished sweep: `cnn-tune resume DIR --set search.num_samples=N`
(and the rounds that give its trials more epochs, `--set train.epochs=N`:
tuning.continuation).

Ray Tune cannot add trials to an experiment that has finished (ray-project/ray#42221),
so the extra trials run as a Tune experiment of their own inside the sweep's folder, a
round (`extension-<k>/`, with its own trials, Tune state and checkpoints). Nothing that
ran is run again or lost. Once the round has finished, the sweep's summary covers every
round: the best trial of all, its final model, and the test split evaluated again only
if that final model is a new one (`test.looks` counts the looks).

The round's searcher does not start from nothing:
  - hyperopt and optuna start warm from every trial the sweep has run (tuning.warm_start);
  - random search draws with the sweep's seed plus the round number, so it does not
    repeat the points it drew before; a grid is passed over again (num_samples repeats).

PBT and PB2 evolve one population over time: a later round would be a second population
that never met the first, so their sweeps are not extended.

Imports neither Ray nor torch.
"""

from __future__ import annotations

from typing import Any

from tuning.errors import ConfigError
from tuning.experiment import Experiment, validate_experiment
from tuning.layout import EXTENSION_PREFIX, extension_dirname
from tuning.space import is_domain
from tuning.yaml_io import apply_overrides

MORE_TRIALS, MORE_EPOCHS = "search.num_samples", "train.epochs"
EXTENDABLE = (MORE_TRIALS, MORE_EPOCHS)


def extension_key(changes: list[str]) -> str:
    """Which of EXTENDABLE the `--set` lines of `cnn-tune resume` change.

    Raises:
        ConfigError: another key, or both at once.
    """
    keys = [change.partition("=")[0].strip() for change in changes]
    problems = [
        f"resume --set {change!r}: a sweep that ran can only be given more trials "
        f"(--set {MORE_TRIALS}=N) or more epochs (--set {MORE_EPOCHS}=N); any other change "
        "needs a new sweep: `cnn-tune run` with search.warm_start: [DIR] starts it from this "
        "one's results"
        for change, key in zip(changes, keys, strict=True)
        if key not in EXTENDABLE
    ]
    if not problems and len(set(keys)) > 1:
        problems.append(
            f"resume --set {MORE_TRIALS}=... --set {MORE_EPOCHS}=...: one at a time; add the "
            "trials first, then resume again with more epochs (the new trials get them too)"
        )
    if problems:
        raise ConfigError(problems)
    return keys[-1]


def extended(experiment: Experiment, changes: list[str], trials_run: int) -> Experiment:
    """`experiment` with the `--set` lines of `cnn-tune resume` applied and checked.

    Raises:
        ConfigError: a key that cannot change after a sweep ran, or nothing to add.
    """
    key = extension_key(changes)
    raw = apply_overrides(experiment.model_dump(mode="json", exclude_none=True), changes)
    wanted = validate_experiment(raw)
    if wanted.scheduler.mutates_config:
        raise ConfigError(
            f"resume --set {key}: scheduler {wanted.scheduler.name} evolves one population, "
            "which later trials or epochs would never meet; start a new sweep instead"
        )
    if key == MORE_EPOCHS:
        if is_domain(experiment.train.get("epochs")) or is_domain(wanted.train.get("epochs")):
            raise ConfigError(
                f"resume --set {MORE_EPOCHS}: the sweep tunes train.epochs; give its trials "
                "more epochs as one number (--set train.epochs=N) only where it is fixed"
            )
        if wanted.max_epochs <= experiment.max_epochs:
            raise ConfigError(
                f"resume --set {MORE_EPOCHS}={wanted.max_epochs}: the sweep's trials already "
                f"train for {experiment.max_epochs} epochs; ask for more"
            )
        return wanted
    if wanted.num_trials <= trials_run:
        raise ConfigError(
            f"resume --set {MORE_TRIALS}={wanted.search.num_samples}: the sweep has "
            f"already run {trials_run} trials; ask for more (num_samples x grid points > "
            f"{trials_run})"
        )
    return wanted


def already_asked(experiment: Experiment, changes: list[str]) -> bool:
    """Whether `changes` leave `experiment` as it is (a repeated `resume --set`)."""
    extension_key(changes)
    raw = apply_overrides(experiment.model_dump(mode="json", exclude_none=True), changes)
    return validate_experiment(raw) == experiment


def longer_round(experiment: Experiment, trials: int, round_number: int) -> Experiment:
    """The experiment of a round that continues `trials` trials for more epochs: its
    searcher is given their configs (tuning.continuation); what is saved here is what
    the round counts, schedules and checks by."""
    raw = experiment.model_dump(mode="json", exclude_none=True)
    raw["train"] = _grid_as_choice(raw["train"])  # one trial per config, not a grid of them
    search = experiment.search
    raw["search"] = {
        "algorithm": "random",
        "num_samples": trials,
        "seed": search.seed + round_number,
    }
    if search.max_concurrent is not None:
        raw["search"]["max_concurrent"] = search.max_concurrent
    return validate_experiment(raw)


def _grid_as_choice(tree: Any) -> Any:
    if is_domain(tree) and "grid" in tree:
        return {"choice": [_grid_as_choice(option) for option in tree["grid"]]}
    if isinstance(tree, dict):
        return {key: _grid_as_choice(value) for key, value in tree.items()}
    return tree


def round_experiment(
    experiment: Experiment, location: str, trials_run: int, round_number: int
) -> Experiment:
    """The experiment of round `round_number`: the trials `experiment` has beyond the
    `trials_run` ones, with a searcher that knows or avoids what ran before."""
    grid = experiment.search_space.grid_size
    search: dict[str, Any] = {
        "num_samples": (experiment.num_trials - trials_run) // grid,
        "seed": experiment.search.seed + round_number,
    }
    if experiment.search.algorithm in ("hyperopt", "optuna"):
        search["warm_start"] = [location]  # its summary lists every trial of every round
    raw = experiment.model_dump(mode="json", exclude_none=True)
    raw["search"].update(search)
    return validate_experiment(raw)


def round_location(location: str, round_number: int) -> str:
    return f"{location.rstrip('/')}/{extension_dirname(round_number)}"


def round_numbers(folder_names: list[str]) -> list[int]:
    """The rounds among a sweep folder's sub-folders, in order."""
    return sorted(
        int(name.removeprefix(EXTENSION_PREFIX))
        for name in folder_names
        if name.startswith(EXTENSION_PREFIX) and name.removeprefix(EXTENSION_PREFIX).isdigit()
    )
