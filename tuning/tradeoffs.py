"""Accuracy against size and speed: outcome constraints, objectives and the Pareto front.

A constraint (`constraints: {params: "<= 1e6", latency_ms: "<= 2"}`) makes a trial that
breaks it ineligible to win; it is judged on the trial's outcome values (`trial_values`):
its footprint (trainables.footprint) and its training metrics at its best epoch.

A multi-objective sweep (`metric: [val_acc, latency_ms]`) optimizes its first objective
with Tune (schedulers and searchers take one metric) and, after the sweep, lists the
Pareto front of the eligible trials over every objective. The final test takes the
front's point with the best first objective, ties going to the better later objectives
in order (`lexicographic_key`): the single-objective winner under the constraints, which
is always on the front. A knee point would depend on how the axes are scaled and would
need every front trial's checkpoints kept; this rule needs only the winner's, as
tuning.retention keeps them.

Imports neither Ray nor torch: the experiment's validation uses it before Ray starts.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainables import metrics as m
from trainables.metrics import OPTIMIZABLE
from tuning.errors import ConfigError
from tuning.values import is_finite

# Lower is better for every footprint metric.
FOOTPRINT_MODES: dict[str, str] = {name: "min" for name in m.FOOTPRINT_METRICS}
# Every metric an objective or a constraint may name, and the direction that is better.
OUTCOME_MODES: dict[str, str] = {**OPTIMIZABLE, **FOOTPRINT_MODES}

PARETO_RULE = (
    "the front's point with the best first objective (ties: the better later objectives, "
    "in order), which is also the best trial under the constraints"
)

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_COMPARISON = re.compile(r"^\s*(<=|>=|<|>)\s*([^\s<>=]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """`metric op bound`, e.g. params <= 1e6: a trial whose value breaks it cannot win."""

    metric: str
    op: str
    bound: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"

    def holds(self, value: Any) -> bool:
        """Whether `value` meets the constraint; a missing or non-finite value does not."""
        if not is_finite(value):
            return False
        return _OPERATORS[self.op](float(value), self.bound)

    def broken_by(self, values: Mapping[str, Any]) -> str | None:
        """Why a trial with outcome `values` breaks this constraint, or None if it holds."""
        value = values.get(self.metric)
        if self.holds(value):
            return None
        shown = f"{float(value):.4g}" if is_finite(value) else "not measured"
        return f"{self.metric} = {shown}, not {self.op} {self.bound:g}"


def parse_constraints(raw: Mapping[str, Any]) -> tuple[list[Constraint], list[str]]:
    """The constraints of `constraints:`, and one error line per bad entry."""
    constraints, errors = [], []
    for key, text in raw.items():
        try:
            constraints.append(parse_constraint(str(key), text))
        except ValueError as error:
            errors.append(str(error))
    return constraints, errors


def parse_constraint(metric: str, text: Any) -> Constraint:
    """`constraints.<metric>: "<op> <number>"` as a Constraint; ValueError says the fix."""
    if metric not in OUTCOME_MODES:
        close = difflib.get_close_matches(metric, list(OUTCOME_MODES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"constraints: unknown metric {metric!r}; {hint}allowed: "
            f"{', '.join(OUTCOME_MODES)} (footprint metrics, and training metrics at the "
            "trial's best epoch)"
        )
    example = f'constraints.{metric}: "{_example(metric)}"'
    match = _COMPARISON.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"constraints.{metric}={text!r} is not a comparison; write an operator (<=, >=, "
            f"<, >) and a number, quoted in YAML, e.g. {example}"
        )
    op, number = match.groups()
    try:
        bound = float(number)
    except ValueError:
        bound = math.nan
    if not math.isfinite(bound):
        raise ValueError(
            f"constraints.{metric}={text!r}: {number!r} is not a finite number; e.g. {example}"
        )
    return Constraint(metric, op, bound)


def _example(metric: str) -> str:
    return {
        m.PARAMS: "<= 1e6",
        m.FLOPS: "<= 5e7",
        m.LATENCY_MS: "<= 2",
        m.LATENCY_MS_BATCH: "<= 50",
    }.get(metric, ">= 0.9" if OUTCOME_MODES.get(metric) == "max" else "<= 0.5")


def objective_errors(objectives: Sequence[str], metric: str) -> list[str]:
    """What is wrong with an objectives list whose first entry Tune optimizes as `metric`."""
    allowed = ", ".join(m.FOOTPRINT_METRICS)
    example = f"metric: [{metric}, {m.LATENCY_MS}]"
    if not objectives:
        return [f"objectives is empty; list the metric first, then what to trade it for: {example}"]
    errors = []
    if objectives[0] != metric:
        errors.append(
            f"objectives[0]={objectives[0]!r} differs from metric={metric!r}; the first "
            f"objective is the metric Tune optimizes: write it once, as {example}"
        )
    for name in objectives[1:]:
        if name not in FOOTPRINT_MODES:
            errors.append(
                f"objectives: {name!r} cannot be a further objective; after the metric, list "
                f"footprint metrics ({allowed}; lower is better for each), e.g. {example}"
            )
    repeated = sorted({name for name in objectives if objectives.count(name) > 1})
    if repeated:
        errors.append(f"objectives: {', '.join(repeated)} listed twice; list each once")
    return errors


def objectives_from_metric_list(raw: dict[str, Any]) -> dict[str, Any]:
    """The raw experiment with `metric: [val_acc, latency_ms]` read as `metric: val_acc`
    and those `objectives:`, and `objectives:` alone naming the metric too; everything
    else reads `metric` as one name."""
    metric, objectives = raw.get("metric"), raw.get("objectives")
    if isinstance(metric, list):
        if objectives is not None:
            raise ConfigError(
                f"metric={metric!r} is a list and objectives={objectives!r} is given too; "
                "give the objectives once: metric: [val_acc, latency_ms] or objectives: [...]"
            )
        first = metric[0] if metric else "val_acc"
        return {**raw, "metric": first, "objectives": metric}
    if metric is None and isinstance(objectives, list) and objectives:
        return {**raw, "metric": objectives[0]}
    return raw


def footprint_as_the_metric(loc: str, item: Mapping[str, Any]) -> str | None:
    """For a pydantic error item: a footprint metric where Tune's metric goes belongs
    after it, as an objective (None for any other error)."""
    value = item.get("input")
    if loc != "metric" or not isinstance(value, str) or value not in FOOTPRINT_MODES:
        return None
    return (
        f"metric={value!r}: the metric (the first objective) is what Tune optimizes each "
        f"epoch: one of {', '.join(OPTIMIZABLE)}; trade it for {value} with "
        f"metric: [val_acc, {value}]"
    )


def tradeoff_errors(
    constraints: Mapping[str, Any], objectives: list[str] | None, metric: str, *, reevaluate: bool
) -> list[str]:
    """Everything wrong with an experiment's constraints and objectives, and with what
    they cannot go with (`final.reevaluate` ranks by the metric alone)."""
    errors = parse_constraints(constraints)[1]
    if objectives is not None:
        errors += objective_errors(objectives, metric)
    if objectives is not None and len(objectives) > 1 and reevaluate:
        errors.append(
            f"final.reevaluate with objectives {objectives}: reevaluation ranks by the "
            "metric alone and could pick a trial off the Pareto front; drop "
            "final.reevaluate, or optimize the metric alone and bound the rest with constraints:"
        )
    return errors


def trial_values(history: Sequence[Mapping[str, Any]], best_epoch: int | None) -> dict[str, float]:
    """A trial's outcome values: footprint from its latest epoch that has one, training
    metrics from its best epoch (the epoch whose checkpoint is tested)."""
    values: dict[str, float] = {}
    measured = [row for row in history if is_finite(row.get(m.PARAMS))]
    if measured:
        values.update(footprint_of(measured[-1]))
    best_row = next((row for row in history if row.get(m.EPOCH) == best_epoch), None)
    if best_row is not None:
        values.update({k: float(best_row[k]) for k in OPTIMIZABLE if is_finite(best_row.get(k))})
    return values


def footprint_of(row: Mapping[str, Any]) -> dict[str, float]:
    """The footprint figures in one reported row (none if it has none)."""
    names = (*m.FOOTPRINT_METRICS, m.LATENCY_BATCH_SIZE)
    return {name: float(row[name]) for name in names if is_finite(row.get(name))}


def lexicographic_key(values: Sequence[float], modes: Sequence[str]) -> tuple[float, ...]:
    """A sort key under which larger is better on the first objective, then the next..."""
    return tuple(v if mode == "max" else -v for v, mode in zip(values, modes, strict=True))


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """Whether `a` is at least as good as `b` on every objective and better on one."""
    signed = [(x, y) if mode == "max" else (-x, -y) for x, y, mode in zip(a, b, modes, strict=True)]
    return all(x >= y for x, y in signed) and any(x > y for x, y in signed)


def pareto_front(points: Mapping[str, Sequence[float]], modes: Sequence[str]) -> list[str]:
    """The keys of the points no other point dominates, best first objective first.

    Points equal on every objective are all on the front. Quadratic in the number of
    points, which is fine for sweeps of up to a few thousand trials.
    """
    front = [
        key
        for key, values in points.items()
        if not any(dominates(other, values, modes) for other in points.values())
    ]
    return sorted(front, key=lambda key: lexicographic_key(points[key], modes), reverse=True)
