"""Warm start: earlier sweeps' finished trials seed a new sweep's searcher.

    search:
      algorithm: hyperopt            # or optuna: a searcher that learns from results
      warm_start: [runs/a, runs/b]   # finished sweeps (folders or URIs)

Each earlier trial becomes a point the searcher has already seen, with its best value
of the metric: HyperOpt gets it as a finished TPE trial, Optuna as a complete (or, if a
scheduler stopped it, pruned) trial of its study. No trial is run again.

A point is used only where it means the same thing in the new sweep:
  - the earlier sweep trained on the same dataset, for the same metric and mode, and
    did not mutate its trials as they trained (PBT, PB2);
  - the trial ended with a value (not diverged, errored or infeasible);
  - its configuration lies in the new space: each tuned value inside the new domain
    (a choice's option, a range's bounds, a step's multiple), and every other training
    setting equal to the new sweep's, defaults included.
Every other point is dropped with the reason; the sweep logs both lists and records
them in warm-start.json (and summary.json, key `warm_start`).

Imports neither Ray nor torch: the points are read and checked before Ray starts.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ValidationError

from trainables.config import TrainConfig
from trainables.dotted import flatten, set_path
from tuning import space
from tuning.errors import ConfigError
from tuning.experiment import Experiment, validate_experiment
from tuning.layout import EXPERIMENT_FILE, SUMMARY_FILE
from tuning.status import TrialStatus
from tuning.storage import read_text, resolve_location
from tuning.summary import Summary, TrialRecord
from tuning.values import short
from tuning.yaml_io import parse_yaml_mapping

SEARCHERS = ("hyperopt", "optuna")


@dataclass(frozen=True)
class KnownPoint:
    """An earlier trial as the new sweep's searcher sees it."""

    source: str  # <earlier sweep>/<trial id>
    value: float  # the trial's best value of the metric
    epochs: int  # the epochs it trained
    stopped_early: bool  # a scheduler stopped it (Optuna: PRUNED at `epochs`)
    hyperopt: dict[str, Any]  # HyperOpt label -> value (a choice's: the option's index)
    optuna: dict[str, Any]  # Optuna label -> value as its suggest_* returns it


@dataclass
class WarmStart:
    used: list[KnownPoint] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (source, why)

    def describe(self) -> dict[str, Any]:
        """What warm-start.json and summary.json record."""
        return {
            "used": [{"source": p.source, "value": p.value} for p in self.used],
            "dropped": [{"source": s, "reason": why} for s, why in self.dropped],
        }

    def to_json(self) -> str:
        return json.dumps({**self.describe(), "points": [asdict(p) for p in self.used]}) + "\n"

    def message(self) -> str:
        """What the sweep prints as it starts: counts, then each dropped point's reason."""
        lines = [
            f"warm start: {len(self.used)} earlier trial(s) seed the searcher, "
            f"{len(self.dropped)} dropped"
        ]
        lines += [f"  dropped {source}: {why}" for source, why in self.dropped]
        return "\n".join(lines)


def load(experiment: Experiment) -> WarmStart | None:
    """The points `experiment.search.warm_start` names, checked against its space.

    Raises:
        ConfigError: a listed folder is not a finished cnn-tune sweep.
    """
    if not experiment.search.warm_start:
        return None
    warm = WarmStart()
    problems = []
    for folder in experiment.search.warm_start:
        try:
            earlier, summary = _read_sweep(folder)
        except ConfigError as error:
            problems += error.messages
            continue
        name = folder.rstrip("/")
        why = _incompatible(earlier, experiment)
        if why is not None:
            warm.dropped += [(f"{name}/{t.trial_id}", why) for t in summary.trials]
            continue
        for record in summary.trials:
            source = f"{name}/{record.trial_id}"
            try:
                warm.used.append(_known_point(source, record, earlier, experiment))
            except Misfit as misfit:
                warm.dropped.append((source, str(misfit)))
    if problems:
        raise ConfigError(problems)
    return warm


def _read_sweep(folder: str) -> tuple[Experiment, Summary]:
    location = resolve_location(folder)
    config_text = read_text(location, EXPERIMENT_FILE)
    if config_text is None:
        raise ConfigError(
            f"search.warm_start: {folder!r} is not a cnn-tune sweep (no {EXPERIMENT_FILE}); "
            "list sweep folders <storage>/<name> that `cnn-tune run` printed"
        )
    summary_text = read_text(location, SUMMARY_FILE)
    if summary_text is None:
        raise ConfigError(
            f"search.warm_start: {folder!r} has not finished (no {SUMMARY_FILE}); finish it "
            f"with `cnn-tune resume {folder}` or leave it out"
        )
    try:
        earlier = validate_experiment(parse_yaml_mapping(config_text, EXPERIMENT_FILE))
        return earlier, Summary.read(summary_text)
    except (ConfigError, ValueError) as error:
        raise ConfigError(
            f"search.warm_start: {folder!r} holds a sweep this cnn-tune cannot read ({error}); "
            "leave it out"
        ) from error


def _incompatible(earlier: Experiment, experiment: Experiment) -> str | None:
    """Why none of `earlier`'s trials can seed `experiment`, or None if they may."""
    if earlier.scheduler.mutates_config:
        return (
            f"its scheduler ({earlier.scheduler.name}) changed trials' values as they trained, "
            "so a trial is not one point of the space"
        )
    there = flatten(earlier.dataset.model_dump(mode="json"))
    here = flatten(experiment.dataset.model_dump(mode="json"))
    if there != here:
        key = next(k for k in sorted(set(there) | set(here)) if there.get(k) != here.get(k))
        was, now = short(there.get(key)), short(here.get(key))
        return f"another dataset: dataset.{key} was {was} there, is {now} here"
    if (earlier.metric, earlier.resolved_mode) != (experiment.metric, experiment.resolved_mode):
        return (
            f"another objective: {earlier.metric} ({earlier.resolved_mode}) there, "
            f"{experiment.metric} ({experiment.resolved_mode}) here"
        )
    return None


class Misfit(ValueError):
    """An earlier trial's configuration is not a point of the new space (says why)."""


def _known_point(
    source: str, record: TrialRecord, earlier: Experiment, experiment: Experiment
) -> KnownPoint:
    status = TrialStatus(record.status)
    if record.best is None or not math.isfinite(record.best) or not status.can_win:
        raise Misfit(f"it ended {status.value} without a usable {experiment.metric}")
    trained = _trained_config(record, earlier)
    labels = Labels()
    filled = _fill(experiment.search_space.tree, trained, "", "", labels)
    try:
        wanted = TrainConfig.model_validate(filled).model_dump(mode="json")
    except ValidationError as error:  # cannot happen for a point inside the space
        raise Misfit(f"its values make no valid configuration here: {error}") from error
    there, here = flatten(trained), flatten(wanted)
    for key in sorted(set(there) | set(here)):
        if there.get(key) != here.get(key):
            raise Misfit(
                f"train.{key} was {short(there.get(key))} there, this sweep fixes "
                f"{short(here.get(key))}"
            )
    return KnownPoint(
        source=source,
        value=float(record.best),
        epochs=record.epochs,
        stopped_early=status == TrialStatus.stopped_early,
        hyperopt=labels.hyperopt,
        optuna=labels.optuna,
    )


def _trained_config(record: TrialRecord, earlier: Experiment) -> dict[str, Any]:
    """The earlier trial's whole training config: its sweep's tree at its tuned values."""
    tree = copy.deepcopy(earlier.search_space.tree)
    for path, value in record.tuned.items():
        set_path(tree, path, value)
    return TrainConfig.model_validate(tree).model_dump(mode="json")


@dataclass
class Labels:
    """The searchers' names for a point's values (tuning.searchers labels them alike:
    `optimizer/lr`, and `optimizer/<option>/lr` inside a choice of sub-configurations)."""

    hyperopt: dict[str, Any] = field(default_factory=dict)
    optuna: dict[str, Any] = field(default_factory=dict)

    def add(self, label: str, hyperopt: Any, optuna: Any) -> None:
        self.hyperopt[label], self.optuna[label] = hyperopt, optuna


def _fill(tree: Any, value: Any, path: str, label: str, labels: Labels) -> Any:
    """`tree` with each domain replaced by the earlier trial's `value` there.

    Raises:
        Misfit: a value lies outside its domain, or no option of a choice matches.
    """
    if space.is_domain(tree):
        kind, args = next(iter(tree.items()))
        if kind == "choice":
            return _fill_choice(args, value, path, label, labels)
        if kind == "grid":
            raise Misfit(f"train.{path} is a grid, which {'/'.join(SEARCHERS)} cannot search")
        problem = _outside(kind, args, value)
        if problem:
            raise Misfit(f"train.{path}={short(value)} is outside {{{kind}: {args}}}: {problem}")
        labels.add(label, value, value)
        return value
    if isinstance(tree, dict):
        inner = value if isinstance(value, dict) else {}
        return {
            key: _fill(sub, inner.get(key), _join(path, key, "."), _join(label, key, "/"), labels)
            for key, sub in tree.items()
        }
    return tree


def _fill_choice(options: list[Any], value: Any, path: str, label: str, labels: Labels) -> Any:
    plain = all(o is None or isinstance(o, str | int | float | bool) for o in options)
    if plain:
        for index, option in enumerate(options):
            if _same(option, value):
                labels.add(label, index, option)
                return option
        raise Misfit(f"train.{path}={short(value)} is none of the choices {short(options)}")
    for index, option in enumerate(options):
        if not _constants_agree(option, value):
            continue  # another option (`name: sgd` for an adam trial)
        branch = Labels()
        filled = _fill(option, value, path, f"{label}/{index}", branch)  # or why it misfits
        labels.add(label, index, index)
        labels.hyperopt.update(branch.hyperopt)
        labels.optuna.update(branch.optuna)
        return filled
    raise Misfit(f"train.{path} matches none of the choice's {len(options)} options")


def _constants_agree(tree: Any, value: Any) -> bool:
    """Whether every fixed setting of a choice's option equals the earlier value's."""
    if space.is_domain(tree):
        return True
    if isinstance(tree, dict):
        return isinstance(value, dict) and all(
            _constants_agree(sub, value.get(key)) for key, sub in tree.items()
        )
    return _same(tree, value)


def _outside(kind: str, args: list[Any], value: Any) -> str | None:
    """What puts `value` outside a range domain, or None if it lies inside."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "not a number"
    low, high, *step = args
    if kind in ("randint", "lograndint"):
        inside = value == int(value) and low <= value < high
        return None if inside else f"not an integer in [{low}, {high})"
    if step:
        q = step[0]
        if abs(value / q - round(value / q)) > 1e-6:
            return f"not a multiple of {q}"
        low, high = round(low / q) * q, round(high / q) * q
    return None if low <= value <= high * (1 + 1e-9) else f"not in [{low}, {high}]"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9)
    return bool(a == b)


def _join(prefix: str, key: str, sep: str) -> str:
    return f"{prefix}{sep}{key}" if prefix else str(key)
