"""The report's arithmetic: scheduler rungs, tuned parameters as columns, importance,
learning-curve bands.

No plotting here, so each piece can be tested on plain numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from schedulers import ASHASettings, HyperBandSettings, MedianStoppingSettings, SchedulerSettings
from tuning.status import TrialStatus
from tuning.values import is_number

MIN_TRIALS_FOR_IMPORTANCE = 8  # fewer scored trials and a forest's importances are noise
# Schedulers that stop trials by comparing them (PBT-style ones: settings.mutates_config).
STOPPING_SCHEDULERS = ("asha", "hyperband", "median")
SCHEDULER_STOP = TrialStatus.stopped_early
# Above this many trials, learning curves are drawn as a band and the best few trials,
# not as one line per trial (a thousand overlapping lines say nothing).
CURVES_ONE_BY_ONE = 40
CURVES_TOP_DRAWN = 5


@dataclass(frozen=True)
class CurveBand:
    """Per epoch, over the trials that reached it: the quartiles of one metric."""

    epochs: list[int]
    low: list[float]  # 25th percentile
    median: list[float]
    high: list[float]  # 75th percentile
    trials: list[int]  # how many trials reported that epoch


def curve_band(series: Sequence[tuple[Sequence[float], Sequence[float]]]) -> CurveBand | None:
    """The quartiles per epoch of `series`, one (epochs, values) pair per trial."""
    by_epoch: dict[int, list[float]] = {}
    for epochs, values in series:
        for epoch, value in zip(epochs, values, strict=True):
            by_epoch.setdefault(int(epoch), []).append(float(value))
    if not by_epoch:
        return None
    reached = sorted(by_epoch)
    quartiles = [np.percentile(by_epoch[e], [25, 50, 75]) for e in reached]
    return CurveBand(
        epochs=reached,
        low=[float(q[0]) for q in quartiles],
        median=[float(q[1]) for q in quartiles],
        high=[float(q[2]) for q in quartiles],
        trials=[len(by_epoch[e]) for e in reached],
    )


def asha_milestones(
    grace_period: int, reduction_factor: float, max_t: int, brackets: int = 1
) -> list[int]:
    """Epochs at which ASHA compares trials: grace_period * reduction_factor**(k + s).

    Mirrors the rungs of Ray's ASHA brackets `s` = 0 .. brackets - 1: the milestones up to
    `max_t`, as whole epochs, sorted.

    Raises:
        ValueError: a non-positive grace period or max_t, or a reduction factor <= 1.
    """
    if grace_period < 1 or max_t < 1 or reduction_factor <= 1:
        raise ValueError(
            f"need grace_period >= 1, max_t >= 1 and reduction_factor > 1; got "
            f"{grace_period}, {max_t}, {reduction_factor}"
        )
    milestones: set[int] = set()
    for s in range(brackets):
        rungs = int(math.log(max_t / grace_period) / math.log(reduction_factor) - s + 1)
        # A fractional milestone (reduction_factor 1.5) is decided at the next whole epoch.
        milestones.update(
            math.ceil(grace_period * reduction_factor ** (k + s) - 1e-9) for k in range(rungs)
        )
    return sorted(t for t in milestones if t <= max_t)


def hyperband_milestones(max_t: int, reduction_factor: float) -> list[int]:
    """Epochs at which synchronous HyperBand compares the trials of a bracket.

    Mirrors Ray's HyperBandScheduler: bracket `s` = 0 .. s_max starts at
    r0 = int(max_t * reduction_factor**-s) epochs and multiplies by reduction_factor
    (capped at max_t, truncated to whole epochs) until max_t; a trial is placed in
    whichever bracket has room, so every bracket's milestones are listed, sorted.

    Raises:
        ValueError: a non-positive max_t, or a reduction factor <= 1.
    """
    if max_t < 1 or reduction_factor <= 1:
        raise ValueError(
            f"need max_t >= 1 and reduction_factor > 1; got {max_t}, {reduction_factor}"
        )
    brackets = round(math.log(max_t) / math.log(reduction_factor)) + 1
    milestones: set[int] = set()
    for s in range(brackets):
        r = int(max_t * reduction_factor ** (-s))
        while r >= 1 and r not in milestones | {max_t}:
            milestones.add(r)
            r = int(min(r * reduction_factor, max_t))
    return sorted(milestones | {max_t})


def decision_epochs(settings: SchedulerSettings, max_epochs: int) -> list[int]:
    """The epochs at which the scheduler may stop a trial, where they are fixed in advance.

    ASHA and HyperBand: their rung milestones; median stopping: its grace period;
    others: none.
    """
    if isinstance(settings, ASHASettings):
        max_t = settings.max_t or max_epochs
        return asha_milestones(
            settings.grace_period, settings.reduction_factor, max_t, settings.brackets
        )
    if isinstance(settings, HyperBandSettings):
        return hyperband_milestones(settings.max_t or max_epochs, settings.reduction_factor)
    if isinstance(settings, MedianStoppingSettings):
        return [settings.grace_period]
    return []


@dataclass(frozen=True)
class RungCount:
    """How many trials reached an epoch, and how many the scheduler stopped there."""

    epoch: int
    reached: int
    stopped: int


def rung_counts(trials: Sequence[tuple[int, str]], milestones: Sequence[int]) -> list[RungCount]:
    """Counts per milestone (or per epoch where trials were stopped, without milestones).

    Args:
        trials: (epochs run, status) per trial.
        milestones: the scheduler's decision epochs; empty to use the stop epochs.
    """
    stop_epochs = sorted({e for e, status in trials if status == SCHEDULER_STOP})
    epochs = sorted(set(milestones) | set(stop_epochs))
    return [
        RungCount(
            epoch=epoch,
            reached=sum(e >= epoch for e, _ in trials),
            stopped=sum(e == epoch and status == SCHEDULER_STOP for e, status in trials),
        )
        for epoch in epochs
    ]


@dataclass(frozen=True)
class Column:
    """One tuned parameter across trials: numbers, or categories encoded 0..n-1."""

    name: str
    values: list[float | None]  # None where a conditional parameter was not chosen
    categories: list[str] | None = None  # labels of the codes, for categorical columns
    log_scale: bool = False  # positive numbers spanning more than a decade

    @property
    def is_categorical(self) -> bool:
        return self.categories is not None


def parameter_columns(tuned: Sequence[Mapping[str, Any]]) -> list[Column]:
    """The union of every trial's tuned values as columns, one value per trial.

    Numbers stay numbers; strings, booleans and anything else become categories whose
    codes follow the sorted labels. A parameter a trial lacks is None in that row.
    """
    names = sorted({key for values in tuned for key in values})
    return [_column(name, [values.get(name) for values in tuned]) for name in names]


def _column(name: str, raw: list[Any]) -> Column:
    present = [v for v in raw if v is not None]
    if present and all(is_number(v) for v in present):
        numbers = [float(v) for v in present]
        log_scale = min(numbers) > 0 and max(numbers) / min(numbers) > 10
        return Column(name, [None if v is None else float(v) for v in raw], None, log_scale)
    labels = sorted({str(v) for v in present})
    codes = {label: float(i) for i, label in enumerate(labels)}
    return Column(name, [None if v is None else codes[str(v)] for v in raw], labels)


@dataclass(frozen=True)
class ParallelAxis:
    """A column as one parallel-coordinates axis over some trials, in axis units.

    Axis units are the value itself, its log10 on a log-scaled column, or the category
    code; a trial without the (conditional) parameter sits at `missing`, below `low`.
    """

    label: str  # the column's name, "(log)" appended for a log10 axis
    positions: list[float]  # one per chosen trial
    low: float  # the lowest value on the axis (category code 0 for categories)
    high: float  # the highest value (the last category's code)
    missing: float | None  # where the "n/a" tick goes; None when every trial has a value
    categories: list[str] | None = None
    log_scale: bool = False

    def value_text(self, position: float) -> str:
        """How a position on a numeric axis reads as the parameter's value."""
        return f"{10**position:.3g}" if self.log_scale else f"{position:.3g}"


def parallel_axis(column: Column, rows: Sequence[int]) -> ParallelAxis:
    """The axis of `column` over the trials at `rows` (indices into its values)."""
    raw = [column.values[i] for i in rows]
    has_missing = any(v is None for v in raw)
    if column.is_categorical:
        top = float(len(column.categories or []) - 1)
        missing = -1.0 if has_missing else None
        positions = [-1.0 if v is None else v for v in raw]
        return ParallelAxis(column.name, positions, 0.0, top, missing, column.categories)
    scaled = [math.log10(v) if column.log_scale else v for v in raw if v is not None] or [0.0]
    low, high = min(scaled), max(scaled)
    gap = low - 0.15 * (high - low or 1.0)  # the n/a tick, a little below the lowest value
    positions = [gap if v is None else (math.log10(v) if column.log_scale else v) for v in raw]
    label = f"{column.name} (log)" if column.log_scale else column.name
    return ParallelAxis(
        label, positions, low, high, gap if has_missing else None, None, column.log_scale
    )


@dataclass(frozen=True)
class Importance:
    """Each tuned parameter's share of a random forest's impurity decrease, or why not."""

    shares: dict[str, float]  # parameter -> share, summing to 1; empty with a `note`
    note: str  # what was fitted, or why nothing was
    num_trials: int


def hyperparameter_importance(
    columns: Sequence[Column], scores: Sequence[float | None], seed: int = 0
) -> Importance:
    """How much each parameter explains the trials' scores, from a random forest.

    Categorical parameters are one-hot encoded and their features' importances summed
    back into the parameter; a missing conditional value is its own category (or, for
    a number, a value below the observed range). Trials without a score are left out.
    """
    rows = [i for i, score in enumerate(scores) if score is not None and math.isfinite(score)]
    if not columns:
        return Importance({}, "no parameter was tuned", len(rows))
    if len(rows) < MIN_TRIALS_FOR_IMPORTANCE:
        return Importance(
            {},
            f"too few trials: {len(rows)} with a score, importance needs at least "
            f"{MIN_TRIALS_FOR_IMPORTANCE}",
            len(rows),
        )
    y = np.array([scores[i] for i in rows], dtype=float)
    if np.ptp(y) == 0:
        return Importance({}, "every trial scored the same; nothing to explain", len(rows))
    features, owners = _design_matrix(columns, rows)
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=1, random_state=seed)
    forest.fit(features, y)
    shares = {column.name: 0.0 for column in columns}
    for owner, share in zip(owners, forest.feature_importances_, strict=True):
        shares[owner] += float(share)
    note = (
        f"random forest (200 trees) on {len(rows)} trials' best scores; impurity-based "
        "shares, a rough guide that grows more reliable with more trials"
    )
    return Importance(dict(sorted(shares.items(), key=lambda kv: -kv[1])), note, len(rows))


def _design_matrix(columns: Sequence[Column], rows: list[int]) -> tuple[np.ndarray, list[str]]:
    """Feature matrix over `rows`, and the parameter that owns each feature."""
    features: list[list[float]] = []
    owners: list[str] = []
    for column in columns:
        values = [column.values[i] for i in rows]
        if column.is_categorical:
            codes = sorted({-1.0 if v is None else v for v in values})
            for code in codes:
                features.append([float((-1.0 if v is None else v) == code) for v in values])
                owners.append(column.name)
        else:
            present = [v for v in values if v is not None]
            low, high = (min(present), max(present)) if present else (0.0, 0.0)
            missing = low - (high - low) - 1.0
            features.append([missing if v is None else v for v in values])
            owners.append(column.name)
    return np.array(features, dtype=float).T, owners
