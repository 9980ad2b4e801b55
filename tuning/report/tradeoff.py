"""The report's section on accuracy against size and speed: its points, figure and tables.

Every trial with a score and a footprint (trainables.footprint: parameters, FLOPs,
latency) is a point: its best metric against its latency at batch 1 and its parameter
count, or against each further objective of a multi-objective sweep. Trials that broke
an outcome constraint are drawn hollow with the constraint's bound; the Pareto front
(summary.json's, or while the sweep runs computed from its trials as tuning.results
would) is joined by a line; the tested trial is starred.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from trainables import metrics as m
from tuning.report.data import SweepView
from tuning.report.html import Image, table
from tuning.status import TrialStatus
from tuning.tradeoffs import PARETO_RULE, pareto_front, trial_values
from tuning.values import short

TABLE_ROWS = 30  # trials listed in the section's table, in leaderboard order
_UNFINISHED = {TrialStatus.running, TrialStatus.paused, TrialStatus.pending}
_LABELS = {
    m.PARAMS: "parameters",
    m.FLOPS: "FLOPs per image (multiply-add = 2)",
    m.LATENCY_MS: "latency at batch 1, ms",
    m.LATENCY_MS_BATCH: "latency of a large batch, ms",
}


@dataclass(frozen=True)
class TradeoffPoint:
    """One trial's best metric and footprint, and the constraints it broke."""

    trial_id: str
    best: float
    values: dict[str, float]  # footprint, and training metrics at its best epoch
    broken: list[str]  # e.g. "params = 2.1e+06, not <= 1e+06"
    may_win: bool  # ended well (or still running) and broke no constraint


def tradeoff_points(view: SweepView) -> list[TradeoffPoint]:
    """The trials that have a score and a footprint, in leaderboard order."""
    points = []
    for trial in view.trials:
        values = trial_values(trial.history, trial.best_epoch)
        if trial.best is None or m.PARAMS not in values:
            continue
        # Judged, as in tuning.results, only where they decide: on trials that could win.
        in_the_running = trial.status.can_win or trial.status in _UNFINISHED
        constraints = view.experiment.outcome_constraints if in_the_running else ()
        broken = [reason for c in constraints if (reason := c.broken_by(values)) is not None]
        points.append(
            TradeoffPoint(trial.trial_id, trial.best, values, broken, in_the_running and not broken)
        )
    return points


def x_metrics(view: SweepView) -> list[str]:
    """What the metric is drawn against: the further objectives (else latency), then the
    constrained footprint metrics and size; at most three panels."""
    experiment = view.experiment
    names = experiment.objective_names[1:] or [m.LATENCY_MS]
    names += [c.metric for c in experiment.outcome_constraints if c.metric in m.FOOTPRINT_METRICS]
    return list(dict.fromkeys([*names, m.PARAMS]))[:3]


def front_ids(view: SweepView, points: list[TradeoffPoint]) -> list[str]:
    """The Pareto front of a multi-objective sweep, best metric first; [] otherwise."""
    experiment = view.experiment
    if not experiment.multi_objective:
        return []
    if view.summary is not None and "pareto_front" in view.summary:
        return [point["trial_id"] for point in view.summary["pareto_front"]]
    names = experiment.objective_names
    candidates = {
        p.trial_id: [p.best, *(p.values[n] for n in names[1:])]
        for p in points
        if p.may_win and all(n in p.values for n in names[1:])
    }
    return pareto_front(candidates, experiment.objective_modes)


def tradeoff_figure(
    view: SweepView, points: list[TradeoffPoint], front: list[str]
) -> Figure | None:
    """The best metric against each of `x_metrics`, one panel each; None without points."""
    names = [n for n in x_metrics(view) if any(n in p.values for p in points)]
    if not points or not names:
        return None
    figure = Figure(figsize=(5.5 * len(names), 4.6))
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    best = view.best
    for ax, name in zip(axes, names, strict=True):
        _draw_panel(ax, view, points, front, name, best.trial_id if best else None)
    entries: dict[str, Artist] = {}  # label -> handle, once each over every panel
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    figure.legend(list(entries.values()), list(entries), fontsize=8, loc="lower center", ncol=4)
    figure.subplots_adjust(bottom=0.24)
    figure.suptitle(f"best {view.metric} against the model's size and speed")
    return figure


def _draw_panel(
    ax: Axes,
    view: SweepView,
    points: list[TradeoffPoint],
    front: list[str],
    name: str,
    best_id: str | None,
) -> None:
    drawn = [p for p in points if name in p.values]
    open_ = [p for p in drawn if p.may_win]
    shut = [p for p in drawn if not p.may_win]
    ax.scatter(
        [p.values[name] for p in open_],
        [p.best for p in open_],
        color="#3182ce",
        s=40,
        zorder=3,
        label="may win",
    )
    if shut:
        ax.scatter(
            [p.values[name] for p in shut],
            [p.best for p in shut],
            facecolors="none",
            edgecolors="grey",
            s=40,
            zorder=3,
            label="broke a constraint, or ended badly",
        )
    by_id = {p.trial_id: p for p in drawn}
    on_front = sorted((by_id[i] for i in front if i in by_id), key=lambda p: p.values[name])
    if on_front:
        # Joined only along an objective: on any other axis the front is no curve.
        ax.plot(
            [p.values[name] for p in on_front],
            [p.best for p in on_front],
            color="#e53e3e",
            marker="o",
            lw=1.5 if name in view.experiment.objective_names else 0,
            zorder=4,
            label="Pareto front",
        )
    if best_id in by_id:
        star = by_id[best_id]
        ax.scatter(
            [star.values[name]],
            [star.best],
            marker="*",
            s=320,
            facecolors="none",
            edgecolors="#e53e3e",
            linewidths=1.6,
            zorder=5,
            label=f"tested: {best_id}",
        )
    _draw_bounds(ax, view, name)
    values = [p.values[name] for p in drawn]
    if min(values) > 0 and max(values) > 10 * min(values):
        ax.set_xscale("log")
    ax.set_xlabel(_LABELS.get(name, name))
    ax.set_ylabel(f"best {view.metric}")
    ax.grid(alpha=0.3)


def _draw_bounds(ax: Axes, view: SweepView, name: str) -> None:
    """Each constraint on this panel's axes as a dashed line at its bound."""
    for constraint in view.experiment.outcome_constraints:
        if constraint.metric == name:
            ax.axvline(constraint.bound, color="#dd6b20", ls="--", lw=1, label=str(constraint))
        elif constraint.metric == view.metric:
            ax.axhline(constraint.bound, color="#dd6b20", ls="--", lw=1, label=str(constraint))


def tradeoff_section(
    view: SweepView, points: list[TradeoffPoint], front: list[str], image: Image | None
) -> str:
    """What the constraints excluded, the Pareto front, and every trial's footprint."""
    if not points:
        return ""
    html = "<h2>Accuracy against size and speed</h2><p>" + escape(
        f"Each trial's model measured once as it started, on its device, in eval mode: "
        f"parameters, FLOPs per image (a multiply-add counts 2), and milliseconds per "
        f"forward pass at batch 1 and at a large batch. Drawn against best {view.metric}."
    )
    html += "</p>"
    constraints = view.experiment.outcome_constraints
    if constraints:
        broke = sum(bool(p.broken) for p in points)
        html += (
            f"<p>Constraints {escape(', '.join(map(str, constraints)))}: {broke} of "
            f"{len(points)} trials broke one and could not win.</p>"
        )
    if view.experiment.multi_objective:
        html += _front_html(view, points, front)
    return html + (image.tag() if image else "") + _footprint_table(view, points, set(front))


def _front_html(view: SweepView, points: list[TradeoffPoint], front: list[str]) -> str:
    names = view.experiment.objective_names
    modes = dict(zip(names, view.experiment.objective_modes, strict=True))
    rule = (view.summary or {}).get("pareto_rule") or PARETO_RULE
    by_id = {p.trial_id: p for p in points}
    best = view.best
    rows = [
        [
            trial_id,
            *(
                short(by_id[trial_id].best if n == names[0] else by_id[trial_id].values.get(n))
                for n in names
            ),
            "tested" if best is not None and best.trial_id == trial_id else "",
        ]
        for trial_id in front
        if trial_id in by_id
    ]
    heading = ", ".join(f"{n} ({modes[n]})" for n in names)
    intro = (
        f"<p>Pareto front over {escape(heading)}: {len(rows)} trial(s), none of which another "
        f"eligible trial beats on every objective. The final test took {escape(rule)}.</p>"
    )
    return intro + table(["trial", *names, ""], rows)


def _footprint_table(view: SweepView, points: list[TradeoffPoint], front: set[str]) -> str:
    """Every trial's footprint, in leaderboard order (the first TABLE_ROWS)."""
    shown = points[:TABLE_ROWS]
    rows = [
        [
            p.trial_id,
            short(p.best),
            f"{p.values.get(m.PARAMS, 0):,.0f}",
            short(p.values.get(m.FLOPS, 0) / 1e6),
            short(p.values.get(m.LATENCY_MS)),
            short(p.values.get(m.LATENCY_MS_BATCH)),
            short(p.values.get(m.LATENCY_BATCH_SIZE)),
            "yes" if p.trial_id in front else "",
            "; ".join(p.broken),
        ]
        for p in shown
    ]
    headers = [
        "trial",
        f"best {view.metric}",
        "params",
        "MFLOPs/image",
        "ms, batch 1",
        "ms, large batch",
        "large batch",
        "on front",
        "broke",
    ]
    more = f"<p>The first {TABLE_ROWS} of {len(points)} trials.</p>"
    return table(headers, rows) + (more if len(points) > TABLE_ROWS else "")
