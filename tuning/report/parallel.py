"""The report's parallel-coordinates PNG, drawn on a bare matplotlib Figure (no pyplot).

A companion to plots.py (kept apart so each module stays small): one vertical axis
per tuned parameter, laid out by `analysis.parallel_axis` exactly as the
interactive plotly chart is, and the metric as the last axis. Every axis is scaled to
0..1 on the page and labelled at its own ends, categories and "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps, patheffects
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from tuning.report.analysis import Column, ParallelAxis, parallel_axis

_AXIS_COLOUR = "#4a5568"


def parallel_coordinates_figure(
    columns: Sequence[Column],
    scores: Sequence[float | None],
    metric: str,
    mode: str,
    best_row: int | None = None,
) -> Figure | None:
    """One vertical axis per tuned parameter, the metric last; a line per scored trial.

    Args:
        columns: the tuned parameters, one value per trial (`parameter_columns`).
        scores: each trial's best metric; trials without a finite one are left out.
        metric: the metric's name, for the last axis and the colour bar.
        mode: "max" or "min"; better trials are drawn over worse ones.
        best_row: the best trial's index into `scores`, drawn on top and thicker.

    Returns:
        The figure, or None without tuned parameters or without a scored trial.
    """
    rows = [i for i, s in enumerate(scores) if s is not None and math.isfinite(s)]
    if not columns or not rows:
        return None
    values = [float(scores[i]) for i in rows]  # type: ignore[arg-type]
    axes = [parallel_axis(column, rows) for column in columns]
    # heights[axis, trial]: every axis scaled to 0..1, the metric's axis last.
    heights = np.array([*(_unit_heights(a) for a in axes), _unit(values, *_span(values))])
    figure = Figure(figsize=(max(7.0, 1.9 * len(heights) + 1.5), 5.2))
    ax = figure.subplots()
    best = rows.index(best_row) if best_row in rows else None
    _draw_trials(figure, ax, heights, values, mode, best, metric)
    for x, ticks in enumerate([_axis_ticks(a) for a in axes] + [_metric_ticks(values)]):
        _draw_axis(ax, x, ticks)
    names = [a.label.replace(" (log)", "\n(log)") for a in axes] + [f"best {metric}"]
    ax.set_xticks(range(len(names)), names, rotation=20 if len(names) > 6 else 0)
    ax.tick_params(axis="x", length=0)
    ax.set_yticks([])
    ax.set_xlim(-0.6, len(names) - 0.8)
    ax.set_ylim(-0.06, 1.06)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"parallel coordinates: {len(rows)} scored trials; thick line = best trial")
    return figure


def _draw_trials(
    figure: Figure,
    ax: Axes,
    heights: np.ndarray,
    values: list[float],
    mode: str,
    best: int | None,
    metric: str,
) -> None:
    """A line per trial coloured by its score with a colour bar, the best one outlined."""
    order = np.argsort(values) if mode == "max" else np.argsort(values)[::-1]  # best last
    cmap = colormaps["viridis" if mode == "max" else "viridis_r"]
    norm = Normalize(*_span(values))
    lines = LineCollection(
        [list(enumerate(heights[:, k])) for k in order],
        cmap=cmap,
        norm=norm,
        # Many trials: thinner, fainter lines, so where they crowd shows as density.
        linewidths=1.3 if len(values) <= 100 else 0.6,
        alpha=0.85 if len(values) <= 100 else max(0.15, 0.85 * 100 / len(values)),
        zorder=2,
    )
    lines.set_array(np.asarray(values)[order])
    ax.add_collection(lines)
    figure.colorbar(lines, ax=ax, label=f"best {metric}", pad=0.02)
    if best is not None:
        ax.plot(
            range(len(heights)),
            heights[:, best],
            color=cmap(norm(values[best])),
            lw=3.4,
            zorder=4,
            path_effects=[patheffects.withStroke(linewidth=5.5, foreground="black")],
        )


def _unit_heights(axis: ParallelAxis) -> list[float]:
    """The axis positions scaled to 0..1, the n/a position (if any) at the bottom."""
    return _unit(axis.positions, _bottom(axis), axis.high)


def _axis_ticks(axis: ParallelAxis) -> list[tuple[float, str]]:
    """(height, label) of each tick: n/a, then every category or the min and max."""
    if axis.categories is not None:
        ticks = [(float(i), name) for i, name in enumerate(axis.categories)]
    else:
        ends = [axis.low, axis.high] if axis.high > axis.low else [axis.low]
        ticks = [(p, axis.value_text(p)) for p in ends]
    if axis.missing is not None:
        ticks.insert(0, (axis.missing, "n/a"))
    heights = _unit([p for p, _ in ticks], _bottom(axis), axis.high)
    return [(h, text) for h, (_, text) in zip(heights, ticks, strict=True)]


def _metric_ticks(values: Sequence[float]) -> list[tuple[float, str]]:
    low, high = _span(values)
    return [(0.0, f"{low:.4g}"), (1.0, f"{high:.4g}")] if high > low else [(0.5, f"{low:.4g}")]


def _draw_axis(ax: Axes, x: int, ticks: Sequence[tuple[float, str]]) -> None:
    """A vertical axis at `x` with short tick marks, labelled on its left."""
    ax.axvline(x, color=_AXIS_COLOUR, lw=1.0, zorder=1)
    for height, text in ticks:
        ax.plot([x - 0.04, x], [height, height], color=_AXIS_COLOUR, lw=1.0, zorder=1)
        ax.annotate(
            text,
            xy=(x, height),
            xytext=(-6, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=8,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )


def _bottom(axis: ParallelAxis) -> float:
    return axis.low if axis.missing is None else axis.missing


def _span(values: Sequence[float]) -> tuple[float, float]:
    return min(values), max(values)


def _unit(positions: Sequence[float], bottom: float, top: float) -> list[float]:
    """Positions scaled so `bottom` is 0 and `top` is 1; all at 0.5 when they are equal."""
    if top <= bottom:
        return [0.5] * len(positions)
    return [(p - bottom) / (top - bottom) for p in positions]
