"""The report's static figures, drawn with matplotlib's Agg renderer into PNG bytes.

Each `*_figure` function takes what the report read and returns a Figure, or None when
there is nothing to draw; `png_bytes` renders one. Figures are built on
`matplotlib.figure.Figure` directly, never through pyplot's global state, so building a
report from a thread or a Tune callback is safe and needs no display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatterSciNotation, NullLocator

from trainables import metrics as m
from tuning.history import finite_series
from tuning.report.analysis import (
    CURVES_ONE_BY_ONE,
    CURVES_TOP_DRAWN,
    CurveBand,
    Importance,
    curve_band,
)
from tuning.report.data import (
    STATUS_LABELS,
    SweepView,
    TrialView,
    lr_batch_points,
)
from tuning.status import TrialStatus

# Marker at a trial's last point, by how it ended: (marker, colour, size).
END_MARKERS: dict[str, tuple[str, str, float]] = {
    TrialStatus.completed: ("o", "#2b6cb0", 5),
    TrialStatus.stopped_early: ("x", "black", 9),
    TrialStatus.patience_stopped: ("s", "#805ad5", 7),
    TrialStatus.diverged: ("v", "#e53e3e", 9),
    TrialStatus.error: ("X", "#e53e3e", 9),
    TrialStatus.infeasible: ("X", "#dd6b20", 9),
    TrialStatus.running: (">", "#38a169", 8),
    TrialStatus.paused: ("|", "#38a169", 10),
    TrialStatus.pending: (".", "grey", 5),
}
_DPI = 110


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def learning_curves_figure(view: SweepView, milestones: Sequence[int]) -> Figure | None:
    """val_acc and val_loss against epoch, each end marked by its status: every trial, or
    for a large sweep the quartile band over all trials and the best few trials."""
    trials = [t for t in view.trials if t.history]
    if not trials:
        return None
    figure = Figure(figsize=(12, 4.8))
    axes = figure.subplots(1, 2)
    best = view.best
    summarised = len(trials) > CURVES_ONE_BY_ONE
    drawn = trials[:CURVES_TOP_DRAWN] if summarised else trials  # the leaderboard's top
    if summarised:
        for ax, key in zip(axes, (m.VAL_ACC, m.VAL_LOSS), strict=True):
            _draw_band(ax, curve_band([finite_series(t.history, key) for t in trials]))
    colours = _trial_colours(len(drawn))
    for trial, colour in zip(drawn, colours, strict=True):
        is_best = best is not None and trial.trial_id == best.trial_id
        for ax, key in zip(axes, (m.VAL_ACC, m.VAL_LOSS), strict=True):
            epochs, values = finite_series(trial.history, key)
            ax.plot(
                epochs,
                values,
                color=colour,
                lw=2.6 if is_best else 1.1,
                alpha=1.0 if is_best else 0.75,
                zorder=3 if is_best else 2,
                label=f"{trial.trial_id}{' (best)' if is_best else ''}",
            )
            _mark_where_it_ended(ax, trial, epochs, values, zorder=4)
    for ax, key in zip(axes, (m.VAL_ACC, m.VAL_LOSS), strict=True):
        _draw_milestones(ax, milestones)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    scope = f" ({len(trials)} trials: quartiles, and the best {len(drawn)})" if summarised else ""
    axes[0].set_title(f"validation accuracy{scope}")
    axes[1].set_title("validation loss")
    if _spans_a_decade(trials, m.VAL_LOSS):
        axes[1].set_yscale("log")
    figure.legend(handles=_status_handles(drawn), loc="lower center", ncol=6, frameon=False)
    if len(drawn) <= 16:
        axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="trial")
    figure.subplots_adjust(bottom=0.2)
    return figure


def _draw_band(ax: Axes, band: CurveBand | None) -> None:
    if band is None:
        return
    ax.fill_between(band.epochs, band.low, band.high, color="grey", alpha=0.25, lw=0, zorder=1)
    ax.plot(band.epochs, band.median, color="grey", lw=1.5, ls="--", zorder=1, label="median")


def lr_batch_figure(view: SweepView) -> Figure | None:
    """Learning rate (log) against batch size, each trial coloured by its best metric."""
    points = lr_batch_points(view.trials)
    if not points:
        return None
    figure = Figure(figsize=(7.5, 5))
    ax = figure.subplots()
    rng = np.random.default_rng(0)  # a little vertical jitter so equal batch sizes don't hide
    y = {p.trial.trial_id: p.batch_size * float(2 ** rng.uniform(-0.12, 0.12)) for p in points}
    scored = [p for p in points if p.trial.best is not None]
    unscored = [p for p in points if p.trial.best is None]
    if scored:
        dots = ax.scatter(
            [p.lr for p in scored],
            [y[p.trial.trial_id] for p in scored],
            c=[float(p.trial.best or 0.0) for p in scored],
            cmap="viridis" if view.mode == "max" else "viridis_r",
            s=70,
            edgecolors="black",
            linewidths=0.5,
            zorder=3,
        )
        figure.colorbar(dots, ax=ax, label=f"best {view.metric}")
    if unscored:
        ax.scatter(
            [p.lr for p in unscored],
            [y[p.trial.trial_id] for p in unscored],
            facecolors="none",
            edgecolors="grey",
            s=70,
            label="no score (diverged, error, pending)",
        )
    best = next((p for p in points if view.best and p.trial.trial_id == view.best.trial_id), None)
    if best is not None:
        ax.scatter(
            [best.lr],
            [y[best.trial.trial_id]],
            marker="*",
            s=380,
            facecolors="none",
            edgecolors="#e53e3e",
            linewidths=1.8,
            label=f"best trial {best.trial.trial_id}",
            zorder=4,
        )
    _lr_batch_axes(ax, sorted({p.batch_size for p in points}), view.metric)
    return figure


def _lr_batch_axes(ax: Axes, batch_sizes: list[float], metric: str) -> None:
    ax.set_xscale("log")
    # Label the minor ticks too when the learning rates span less than two decades.
    ax.xaxis.set_minor_formatter(
        LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 1))
    )
    ax.set_yscale("log", base=2)
    ax.set_yticks(batch_sizes, [str(int(s)) for s in batch_sizes])
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("learning rate (optimizer.lr, log scale)")
    ax.set_ylabel("batch size")
    ax.set_title(f"learning rate x batch size, coloured by best {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)


def importance_figure(importance: Importance, metric: str) -> Figure | None:
    """Horizontal bars of each parameter's importance share; None without shares."""
    if not importance.shares:
        return None
    names = list(importance.shares)[::-1]
    figure = Figure(figsize=(7, 0.5 * len(names) + 1.5))
    ax = figure.subplots()
    ax.barh(names, [importance.shares[n] for n in names], color="#3182ce")
    ax.set_xlabel(f"share of the explained variation in best {metric}")
    ax.set_xlim(0, 1)
    ax.set_title(f"hyperparameter importance ({importance.num_trials} trials)")
    ax.grid(axis="x", alpha=0.3)
    return figure


def _mark_where_it_ended(
    ax: Axes, trial: TrialView, epochs: Any, values: Any, zorder: int, enlarge: float = 0
) -> None:
    """The trial's last point, marked by how it ended (END_MARKERS)."""
    if not len(epochs):
        return
    marker, colour, size = END_MARKERS[trial.status]
    face = "none" if marker == "s" else colour
    ax.plot(
        epochs[-1],
        values[-1],
        marker=marker,
        color=colour,
        ms=size + enlarge,
        mfc=face,
        ls="none",
        zorder=zorder,
    )


def scheduler_stops_figure(view: SweepView, milestones: Sequence[int]) -> Figure | None:
    """Each trial's metric at its last epoch against that epoch, rung milestones drawn."""
    trials = [t for t in view.trials if t.history]
    if not trials:
        return None
    figure = Figure(figsize=(9, 5))
    ax = figure.subplots()
    for trial in trials:
        epochs, values = finite_series(trial.history, view.metric)
        ax.plot(epochs, values, color="grey", lw=0.8, alpha=0.35, zorder=1)
        _mark_where_it_ended(ax, trial, epochs, values, zorder=3, enlarge=2)
    _draw_milestones(ax, milestones, label=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel(view.metric)
    ax.set_title(
        f"where each trial ended ({view.experiment.scheduler.name}); x = stopped by the scheduler"
    )
    ax.grid(alpha=0.3)
    ax.legend(handles=_status_handles(trials), fontsize=8, loc="best")
    return figure


def lineage_figure(view: SweepView) -> Figure | None:
    """The PBT lineage: one lane per trial over epochs, donor -> recipient arrows."""
    if not view.lineage:
        return None
    ids = sorted(t.trial_id for t in view.trials)
    lane = {trial_id: i for i, trial_id in enumerate(ids)}
    epochs = {t.trial_id: t.epochs for t in view.trials}
    best = view.best
    figure = Figure(figsize=(11, 1.0 * len(ids) + 1.8))
    ax = figure.subplots()
    for trial_id in ids:
        is_best = best is not None and trial_id == best.trial_id
        ax.plot(
            [0, epochs[trial_id]],
            [lane[trial_id]] * 2,
            color="#e53e3e" if is_best else "#4a5568",
            lw=3 if is_best else 1.5,
            solid_capstyle="butt",
        )
    for event in view.lineage:
        if event["trial_id"] not in lane or event["donor"] not in lane:
            continue
        x, donor, recipient = event["epoch"], lane[event["donor"]], lane[event["trial_id"]]
        ax.annotate(
            "",
            xy=(x, recipient),
            xytext=(x, donor),
            arrowprops={"arrowstyle": "-|>", "color": "#3182ce", "lw": 1.6},
        )
        ax.annotate(
            _new_values_text(event.get("new_values", {})),
            xy=(x, recipient),
            xytext=(4, 6 if recipient > donor else -12),
            textcoords="offset points",
            fontsize=7,
            color="#2c5282",
        )
    ax.set_yticks(
        range(len(ids)), [f"{i}{' (best)' if best and i == best.trial_id else ''}" for i in ids]
    )
    ax.set_ylim(-0.7, len(ids) - 0.3)
    ax.set_xlim(0, max(epochs.values(), default=1) + 0.8)
    ax.set_xlabel("epoch")
    ax.set_title(
        "PBT lineage: arrows from donor to recipient at the exploit epoch, "
        "labelled with the new values"
    )
    ax.grid(axis="x", alpha=0.3)
    return figure


def best_trial_figure(trial: TrialView) -> Figure | None:
    """Train against validation loss and accuracy of one trial, best epoch marked."""
    if not trial.history:
        return None
    figure = Figure(figsize=(11, 4.2))
    axes = figure.subplots(1, 2)
    pairs = (((m.TRAIN_LOSS, m.VAL_LOSS), "loss"), ((m.TRAIN_ACC, m.VAL_ACC), "accuracy"))
    for ax, (keys, title) in zip(axes, pairs, strict=True):
        for key, style in zip(keys, ("--", "-"), strict=True):
            epochs, values = finite_series(trial.history, key)
            ax.plot(epochs, values, style, marker="o", ms=3, label=key)
        if trial.best_epoch is not None:
            ax.axvline(
                trial.best_epoch, color="grey", ls=":", label=f"best epoch {trial.best_epoch}"
            )
        ax.set_xlabel("epoch")
        ax.set_title(f"{title}: train vs validation")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(f"trial {trial.trial_id}: {trial.diagnosis.verdict}")
    return figure


def per_class_figure(per_class: dict[str, float], accuracy: float, ci95: Sequence[float]) -> Figure:
    """Test accuracy per class, with the overall accuracy and its 95% interval."""
    figure = Figure(figsize=(max(6.0, 0.45 * len(per_class) + 2), 3.8))
    ax = figure.subplots()
    names = list(per_class)
    positions = list(range(len(names)))  # class names like "0" must stay labels, not numbers
    ax.bar(positions, [per_class[n] for n in names], color="#3182ce")
    ax.set_xticks(positions, names)
    ax.axhspan(ci95[0], ci95[1], color="#e53e3e", alpha=0.15, label="overall, 95% CI")
    ax.axhline(accuracy, color="#e53e3e", lw=1.2, label=f"overall {accuracy:.3f}")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("class")
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy per class")
    ax.tick_params(axis="x", labelrotation=90 if len(names) > 12 else 0)
    ax.legend(fontsize=8, loc="lower right")
    return figure


def _draw_milestones(ax: Axes, milestones: Sequence[int], label: bool = False) -> None:
    for k, epoch in enumerate(milestones):
        ax.axvline(epoch, color="#dd6b20", ls=":", lw=1, zorder=0)
        if label:
            ax.annotate(
                f"rung {k}: epoch {epoch}",
                xy=(epoch, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -10),
                textcoords="offset points",
                fontsize=7,
                color="#c05621",
            )


def _status_handles(trials: Sequence[TrialView]) -> list[Line2D]:
    statuses = [s for s in END_MARKERS if any(t.status == s for t in trials)]
    return [
        Line2D(
            [],
            [],
            marker=END_MARKERS[s][0],
            color=END_MARKERS[s][1],
            ls="none",
            mfc="none" if END_MARKERS[s][0] == "s" else END_MARKERS[s][1],
            label=STATUS_LABELS[s],
        )
        for s in statuses
    ]


def _trial_colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab20"] if count > 10 else colormaps["tab10"]
    return [palette(i % palette.N) for i in range(count)]


def _new_values_text(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{key.rsplit('.', 1)[-1]}={value:.3g}"
        if isinstance(value, float)
        else f"{key.rsplit('.', 1)[-1]}={value}"
        for key, value in sorted(values.items())
    )


def _spans_a_decade(trials: Sequence[TrialView], key: str) -> bool:
    """Positive values whose largest is over ten times the smallest: a log axis reads better."""
    values = [v for t in trials for v in finite_series(t.history, key)[1]]
    return bool(values) and min(values) > 0 and max(values) > 10 * min(values)
