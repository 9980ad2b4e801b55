"""The report's interactive charts, as plotly HTML fragments without plotly.js.

The page inlines plotly.js once (`plotly_js`); each fragment is a <div> plus the small
script that draws into it, so the report opens offline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from trainables import metrics as m
from tuning.history import finite_series
from tuning.report.analysis import (
    CURVES_ONE_BY_ONE,
    CURVES_TOP_DRAWN,
    Column,
    CurveBand,
    curve_band,
    parallel_axis,
)
from tuning.report.data import (
    STATUS_LABELS,
    SweepView,
    TrialView,
    lr_batch_points,
)
from tuning.status import TrialStatus
from tuning.values import short

# plotly marker symbols for a trial's last point, matching plots.END_MARKERS.
END_SYMBOLS: dict[str, str] = {
    TrialStatus.completed: "circle",
    TrialStatus.stopped_early: "x",
    TrialStatus.patience_stopped: "square-open",
    TrialStatus.diverged: "triangle-down",
    TrialStatus.error: "x-thin-open",
    TrialStatus.infeasible: "x-thin-open",
    TrialStatus.running: "triangle-right",
    TrialStatus.paused: "line-ns-open",
    TrialStatus.pending: "circle-open",
}
_CONFIG = {"displaylogo": False, "responsive": True}


def plotly_js() -> str:
    """plotly.js itself, to inline once in the page."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def fragment(figure: go.Figure, div_id: str, height_px: int = 460) -> str:
    """The figure as a <div> and its drawing script, without plotly.js."""
    return str(
        figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            config=_CONFIG,
            div_id=div_id,
            default_height=f"{height_px}px",
        )
    )


def curves_chart(view: SweepView) -> go.Figure | None:
    """val_acc and val_loss per epoch for every trial (click a legend entry to hide one);
    for a large sweep, the quartile band over all trials and the best few trials."""
    trials = [t for t in view.trials if t.history]
    if not trials:
        return None
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=("validation accuracy", "validation loss")
    )
    summarised = len(trials) > CURVES_ONE_BY_ONE
    if summarised:
        for col, key in ((1, m.VAL_ACC), (2, m.VAL_LOSS)):
            band = curve_band([finite_series(t.history, key) for t in trials])
            for trace in _band_traces(band, len(trials), showlegend=col == 1):
                figure.add_trace(trace, row=1, col=col)
    best = view.best
    for trial in trials[:CURVES_TOP_DRAWN] if summarised else trials:
        is_best = best is not None and trial.trial_id == best.trial_id
        for col, key in ((1, m.VAL_ACC), (2, m.VAL_LOSS)):
            epochs, values = finite_series(trial.history, key)
            symbols = ["circle"] * (len(epochs) - 1) + [END_SYMBOLS[trial.status]]
            figure.add_trace(
                go.Scatter(
                    x=epochs,
                    y=values,
                    mode="lines+markers",
                    name=trial.trial_id,
                    legendgroup=trial.trial_id,
                    showlegend=col == 1,
                    line={"width": 4 if is_best else 1.5},
                    marker={"symbol": symbols, "size": [4] * (len(epochs) - 1) + [11]},
                    hovertemplate=f"{trial.trial_id} ({STATUS_LABELS[trial.status]})<br>"
                    f"epoch %{{x}}<br>{key} %{{y:.4f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(title_text=m.VAL_ACC, row=1, col=1)
    figure.update_yaxes(title_text=m.VAL_LOSS, type="log", row=1, col=2)
    figure.update_layout(margin={"t": 40, "b": 40}, legend={"title": {"text": "trial"}})
    return figure


def _band_traces(band: CurveBand | None, count: int, showlegend: bool) -> list[go.Scatter]:
    """The interquartile range (a filled band) and the median of `count` trials."""
    if band is None:
        return []
    name = f"all {count} trials"
    hover = [
        f"epoch {e}: median %{{y:.4f}}, quartiles {lo:.4f} to {hi:.4f} ({n} trials)<extra></extra>"
        for e, lo, hi, n in zip(band.epochs, band.low, band.high, band.trials, strict=True)
    ]
    return [
        go.Scatter(
            x=band.epochs + band.epochs[::-1],
            y=band.high + band.low[::-1],
            fill="toself",
            fillcolor="rgba(128,128,128,0.25)",
            line={"width": 0},
            hoverinfo="skip",
            name=f"{name}: 25-75%",
            legendgroup="band",
            showlegend=showlegend,
        ),
        go.Scatter(
            x=band.epochs,
            y=band.median,
            mode="lines",
            line={"color": "grey", "dash": "dash"},
            name=f"{name}: median",
            legendgroup="band",
            showlegend=showlegend,
            hovertemplate=hover,
        ),
    ]


def lr_batch_chart(view: SweepView) -> go.Figure | None:
    """Learning rate against batch size, coloured by best metric, hover shows the trial."""
    points = lr_batch_points(view.trials)
    if not points:
        return None
    figure = go.Figure(
        go.Scatter(
            x=[p.lr for p in points],
            y=[p.batch_size for p in points],
            mode="markers",
            marker={
                "size": 14,
                "color": [p.trial.best if p.trial.best is not None else math.nan for p in points],
                "colorscale": "Viridis",
                "reversescale": view.mode == "min",
                "showscale": True,
                "colorbar": {"title": {"text": f"best {view.metric}"}},
                "line": {"width": 1, "color": "black"},
            },
            text=[_hover(p.trial, view.metric) for p in points],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    figure.update_xaxes(type="log", title_text="learning rate (optimizer.lr)")
    figure.update_yaxes(
        type="log", title_text="batch size", tickvals=sorted({p.batch_size for p in points})
    )
    figure.update_layout(margin={"t": 30, "b": 40})
    return figure


def parallel_chart(
    columns: Sequence[Column], scores: Sequence[float | None], metric: str, mode: str
) -> go.Figure | None:
    """Parallel coordinates over every tuned parameter, coloured by the best metric.

    Categories appear as labelled ticks; a conditional parameter a trial lacks sits on an
    "n/a" tick below the others; trials without a score are left out.
    """
    rows = [i for i, s in enumerate(scores) if s is not None and math.isfinite(s)]
    if not columns or not rows:
        return None
    dimensions = [_dimension(column, rows) for column in columns]
    values = [float(scores[i]) for i in rows]  # type: ignore[arg-type]
    dimensions.append({"label": f"best {metric}", "values": values})
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": values,
                "colorscale": "Viridis",
                "reversescale": mode == "min",
                "showscale": True,
                "colorbar": {"title": {"text": metric}},
            },
            dimensions=dimensions,
        )
    )
    figure.update_layout(margin={"t": 60, "l": 60, "r": 60, "b": 30})
    return figure


def _dimension(column: Column, rows: list[int]) -> dict[str, Any]:
    """One parcoords axis: log10 for wide positive ranges, ticks for categories and n/a."""
    axis = parallel_axis(column, rows)
    na_tick = [] if axis.missing is None else [axis.missing]
    na_text = [] if axis.missing is None else ["n/a"]
    if axis.categories is not None:
        ticks = na_tick + [float(i) for i in range(len(axis.categories))]
        return {
            "label": axis.label,
            "values": axis.positions,
            "tickvals": ticks,
            "ticktext": na_text + list(axis.categories),
            "range": [min(ticks) - 0.2, len(axis.categories) - 0.8],
        }
    low, high = axis.low, axis.high
    ticks = [low + (high - low) * k / 4 for k in range(5)] if high > low else [low]
    return {
        "label": axis.label,
        "values": axis.positions,
        "tickvals": na_tick + ticks,
        "ticktext": na_text + [axis.value_text(t) for t in ticks],
    }


def _hover(trial: TrialView, metric: str) -> str:
    score = f"{trial.best:.4f}" if trial.best is not None else "none"
    tuned = "<br>".join(f"{k} = {short(v)}" for k, v in sorted(trial.tuned.items()))
    return f"{trial.trial_id} ({STATUS_LABELS[trial.status]})<br>best {metric} {score}<br>{tuned}"
