"""One trial's epoch rows as read back from Tune: what the summary and the report share.

A trial can report the same epoch twice: a resumed or retried trial trains again the
epochs after its last registered checkpoint, and a PBT trial that exploits a donor behind
it retrains epochs the donor had. progress.csv keeps every row; the trial's history is the
latest row of each epoch, the one its final weights went through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from trainables import metrics as m
from tuning.values import is_finite, is_true


def epoch_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch, in epoch order, keeping the latest row of a repeated epoch."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for row in rows:
        epoch = row.get(m.EPOCH)
        if is_finite(epoch):
            by_epoch[int(epoch)] = dict(row)
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def best_epoch_of(
    history: list[dict[str, Any]], metric: str, mode: str
) -> tuple[float | None, int | None]:
    """The best finite value of `metric` and its (earliest) epoch; (None, None) if diverged."""
    if any(is_true(row.get(m.DIVERGED)) for row in history):
        return None, None
    scored = [
        (float(row[metric]), int(row[m.EPOCH])) for row in history if is_finite(row.get(metric))
    ]
    if not scored:
        return None, None
    sign = 1.0 if mode == "max" else -1.0
    value, epoch = max(scored, key=lambda pair: (sign * pair[0], -pair[1]))
    return value, epoch


def finite_series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of `key` for plotting: non-finite values and diverged epochs left out."""
    pairs = [
        (float(row[m.EPOCH]), float(row[key]))
        for row in history
        if is_finite(row.get(key)) and not is_true(row.get(m.DIVERGED))
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]
