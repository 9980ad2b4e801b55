"""The report page: one self-contained HTML file, section by section.

Every section is a function from what the report read (and the figures already drawn) to
an HTML string; `page` joins them under a header with the inlined plotly.js and CSS.
Nothing on the page refers to the network.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from tuning.report.analysis import (
    STOPPING_SCHEDULERS,
    Importance,
    RungCount,
)
from tuning.report.data import STATUS_LABELS, SweepView, TrialView
from tuning.values import is_finite, short

RUNNING_NOTE = "sweep still running, no test result yet"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1300px; padding: 1em 2em; color: #1a202c; background: #fff; }
h1 { border-bottom: 3px solid #3182ce; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #cbd5e0; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0 1em; }
th, td { border: 1px solid #cbd5e0; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #edf2f7; }
tr.best td { background: #fefcbf; font-weight: bold; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status-completed { color: #2b6cb0; } .status-stopped_early { color: #4a5568; }
.status-diverged, .status-error, .status-infeasible { color: #c53030; font-weight: bold; }
.status-running, .status-paused, .status-pending { color: #2f855a; }
.verdict-overfitting, .verdict-underfitting, .verdict-diverged { color: #c05621; }
.verdict-healthy { color: #2f855a; }
.note { background: #ebf8ff; border-left: 4px solid #3182ce; padding: .5em 1em; }
.warn { background: #fffaf0; border-left: 4px solid #dd6b20; padding: .5em 1em; }
img { max-width: 100%; border: 1px solid #e2e8f0; }
.chart { border: 1px solid #e2e8f0; margin: .5em 0 1em; }
"""


@dataclass(frozen=True)
class Image:
    """A PNG written next to the page and embedded in it."""

    filename: str
    data: bytes
    alt: str

    def tag(self) -> str:
        encoded = base64.b64encode(self.data).decode("ascii")
        return (
            f'<figure><img src="data:image/png;base64,{encoded}" alt="{escape(self.alt)}">'
            f'<figcaption><a href="{escape(self.filename)}">{escape(self.filename)}</a>'
            "</figcaption></figure>"
        )


def page(title: str, plotly_js: str, sections: Iterable[str]) -> str:
    """The whole document: CSS and plotly.js inlined, then the sections."""
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style>"
        f"<script>{plotly_js}</script></head><body>"
        f"<h1>{escape(title)}</h1><p>Generated {escape(generated)} by cnn-tune report.</p>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


def overview_section(view: SweepView) -> str:
    """Experiment, scheduler, searcher, metric, trial counts, and whether it has finished."""
    e = view.experiment
    counts = Counter(t.status for t in view.trials)
    state = (
        f'<p class="note">Finished in {_duration(view.summary.get("wall_seconds"))}.</p>'
        if view.summary is not None
        else f'<p class="warn">No summary.json: {RUNNING_NOTE} (or it was interrupted; '
        f"finish it with <code>cnn-tune resume {escape(str(view.directory))}</code>).</p>"
    )
    facts = {
        "folder": str(view.directory),
        "description": e.description or "-",
        "dataset": e.dataset.name,
        "metric": f"{view.metric} ({view.mode})",
        "search": f"{e.search.algorithm}, {e.search.resolved_num_samples} samples",
        "scheduler": _settings_text(e.scheduler.model_dump(exclude_none=True)),
        "trials": ", ".join(f"{n} {STATUS_LABELS[s]}" for s, n in sorted(counts.items())),
    }
    return "<h2>Overview</h2>" + state + table(["", ""], [[k, v] for k, v in facts.items()])


def _duration(seconds: Any) -> str:
    """`wall_seconds` as 42.1 s, 12 min 5 s or 3 h 4 min."""
    if not is_finite(seconds):
        return "an unknown time"
    minutes, secs = divmod(round(float(seconds)), 60)
    if minutes == 0:
        return f"{float(seconds):.1f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


def _settings_text(settings: dict[str, Any]) -> str:
    """{"name": "asha", "grace_period": 2} as `asha (grace_period 2)`."""
    name = settings.pop("name")
    details = ", ".join(f"{key} {_setting_value(value)}" for key, value in settings.items())
    return f"{name} ({details})" if details else str(name)


def _setting_value(value: Any) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def leaderboard_section(view: SweepView) -> str:
    """Every trial, best first: tuned values, best and last metric, epochs, outcome, verdict."""
    names = sorted({key for t in view.trials for key in t.tuned})
    headers = [
        "#",
        "trial",
        "status",
        *names,
        f"best {view.metric}",
        "best epoch",
        f"last {view.metric}",
        "epochs",
        "diagnosis",
        "error",
    ]
    best = view.best
    rows, classes = [], []
    for rank, trial in enumerate(view.trials, start=1):
        plain = [
            *[short(trial.tuned.get(n, "-")) for n in names],
            short(trial.best),
            short(trial.best_epoch),
            short(trial.last),
            f"{trial.epochs} / {trial.planned_epochs}",
        ]
        rows.append(
            [
                str(rank),
                escape(trial.trial_id),
                _status_html(trial.status),
                *[escape(cell) for cell in plain],
                _verdict_html(trial.diagnosis.verdict),
                escape(trial.error or ""),
            ]
        )
        classes.append("best" if best is not None and trial.trial_id == best.trial_id else "")
    note = "<p>Best trial highlighted. Status: how each trial ended ("
    note += "stopped by scheduler = ASHA/median/HyperBand cut it at a rung).</p>"
    return "<h2>Leaderboard</h2>" + note + table(headers, rows, classes, escape_cells=False)


def test_section(view: SweepView, per_class_image: Image | None) -> str:
    """The held-out test result of the final model(s), or why there is none yet."""
    summary = view.summary or {}
    test = summary.get("test")
    if not test:
        return f'<h2>Test result</h2><p class="warn">{RUNNING_NOTE}.</p>'
    best = summary.get("best", {})
    low, high = test.get("accuracy_ci95", [float("nan")] * 2)
    lines = [
        f"Best trial <b>{escape(str(best.get('trial_id')))}</b>: {escape(view.metric)} = "
        f"{short(best.get(view.metric))} at epoch {short(best.get('best_epoch'))}.",
        escape(_final_model_text(summary.get("final"), best)),
        f"Test accuracy <b>{test['accuracy']:.4f}</b> (95% CI {low:.4f} - {high:.4f}), loss "
        f"{escape(short(test.get('loss')))}, "
        f"on {escape(short(test.get('num_examples')))} examples.",
    ]
    spread = test.get("seed_spread")
    if spread:
        lines.append(
            f"Over {spread['seeds']} seeds: std {short(spread['std'])}, min "
            f"{short(spread['min'])}, max {short(spread['max'])} (training randomness)."
        )
    html = "<h2>Test result</h2>" + "".join(f"<p>{line}</p>" for line in lines)
    html += _reevaluation_html(summary.get("reevaluation"), view.metric)
    html += _final_models_table(test.get("models") or [])
    per_class = test.get("per_class_accuracy") or {}
    if per_class:
        html += table(["class", "accuracy"], [[c, short(a)] for c, a in per_class.items()])
    extra = {k: v for k, v in test.items() if k not in _KNOWN_TEST_KEYS and _is_scalar(v)}
    if extra:
        html += table(["more test fields", ""], [[k, short(v)] for k, v in extra.items()])
    return html + (per_class_image.tag() if per_class_image else "")


_KNOWN_TEST_KEYS = {
    "accuracy",
    "accuracy_ci95",
    "loss",
    "num_examples",
    "per_class_accuracy",
    "models",
    "seed_spread",
}
_MODEL_COLUMNS = ("name", "seed", "epochs", "trained_on", "accuracy", "loss", "diverged")


def _reevaluation_html(section: Mapping[str, Any] | None, metric: str) -> str:
    """The top configurations trained again: each run's score, their mean and spread."""
    if not section:
        return ""
    candidates = section.get("candidates") or []
    intro = (
        f"<p>Chosen by reevaluation: the {len(candidates)} best configurations trained "
        f"{escape(short(section.get('seeds')))} more times each, before the test split was "
        f"used; the best mean {escape(metric)} of the new runs won.</p>"
    )
    rows = [
        [
            short(c.get("trial_id")),
            short(c.get("tuned")),
            ", ".join(short(score) for score in c.get("scores") or []),
            short(c.get("mean")),
            short(c.get("std")),
            "chosen" if c.get("trial_id") == section.get("chosen") else "",
        ]
        for c in candidates
    ]
    headers = ["trial", f"tuned {metric}", "new runs", "mean", "std", ""]
    return intro + table(headers, rows)


def _final_model_text(final: Mapping[str, Any] | None, best: Mapping[str, Any]) -> str:
    """Which model the test split scored: the best checkpoint, or retrained seeds."""
    models = (final or {}).get("models") or []
    if final and final.get("protocol") == "retrain" and models:
        seeds = ", ".join(str(m.get("seed")) for m in models)
        return (
            f"Final model: the best configuration retrained on train+val for "
            f"{models[0].get('epochs')} epochs, seed(s) {seeds}; each tested once."
        )
    epoch = models[0].get("epochs") if models else best.get("checkpoint_epoch")
    return f"Final model: the best trial's checkpoint of epoch {short(epoch)}, tested once."


def _final_models_table(models: Sequence[Mapping[str, Any]]) -> str:
    if len(models) < 2:
        return ""
    rows = [[short(model.get(column)) for column in _MODEL_COLUMNS] for model in models]
    return table(list(_MODEL_COLUMNS), rows)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def curves_section(image: Image | None, chart: str | None) -> str:
    html = "<h2>Learning curves</h2>"
    if image is None:
        return html + "<p>No trial has reported an epoch yet.</p>"
    html += (
        "<p>Each trial's last point shows how it ended: x = stopped by the scheduler, "
        "red triangle = diverged (at its last finite value), open square = its own early "
        "stopping, green arrow = still running. Dotted lines: scheduler rungs.</p>"
    )
    return html + image.tag() + _chart(chart)


def hyperparameter_section(
    lr_batch: Image | None,
    lr_batch_chart: str | None,
    parallel_image: Image | None,
    parallel: str | None,
    importance: Importance,
    importance_image: Image | None,
) -> str:
    html = "<h2>Hyperparameters</h2><h3>Learning rate x batch size</h3>"
    html += (lr_batch.tag() + _chart(lr_batch_chart)) if lr_batch else "<p>No trial to show.</p>"
    html += "<h3>Parallel coordinates</h3>"
    if parallel_image is None and parallel is None:
        html += "<p>No scored trial with tuned parameters yet.</p>"
    else:
        html += (parallel_image.tag() if parallel_image else "") + _chart(parallel)
    html += "<h3>Hyperparameter importance</h3>"
    html += f'<p class="note">{escape(importance.note)}</p>'
    if importance.shares:
        html += table(
            ["parameter", "share"], [[k, f"{v:.3f}"] for k, v in importance.shares.items()]
        )
    return html + (importance_image.tag() if importance_image else "")


def scheduler_section(
    view: SweepView, stops: Image | None, rungs: Sequence[RungCount], lineage: Image | None
) -> str:
    """Where the scheduler stopped trials (stopping schedulers) and the PBT lineage."""
    name = view.experiment.scheduler.name
    html = f"<h2>Scheduler decisions ({escape(name)})</h2>"
    if name in STOPPING_SCHEDULERS:
        html += stops.tag() if stops else "<p>No trial has reported an epoch yet.</p>"
        html += table(
            ["epoch", "trials that reached it", "stopped there by the scheduler"],
            [[str(r.epoch), str(r.reached), str(r.stopped)] for r in rungs],
        )
    else:
        html += (
            f"<p>{escape(name)} stops no trial by comparing it with others: no rungs to show.</p>"
        )
    if view.experiment.scheduler.mutates_config:
        html += "<h3>PBT lineage</h3>" + _lineage_html(view.lineage, lineage)
    else:
        html += "<p>PBT lineage: not applicable (the sweep does not use pbt or pb2).</p>"
    return html


def _lineage_html(events: Sequence[Mapping[str, Any]], image: Image | None) -> str:
    if not events:
        return "<p>No exploit yet: no trial has copied another's weights.</p>"
    rows = [
        [
            str(e["epoch"]),
            str(e["donor"]),
            str(e["trial_id"]),
            ", ".join(f"{k} = {short(v)}" for k, v in sorted(e.get("new_values", {}).items())),
        ]
        for e in events
    ]
    events_table = table(["exploit epoch", "donor", "recipient", "new values"], rows)
    return (image.tag() if image else "") + events_table


def diagnosis_section(view: SweepView, best_image: Image | None) -> str:
    """The best trial's verdict with its curves, then every trial's verdict and remedies."""
    html = "<h2>Over- and underfitting</h2>"
    best = view.best
    if best is not None:
        html += f"<h3>Best trial {escape(best.trial_id)}: {escape(best.diagnosis.verdict)}</h3>"
        html += _diagnosis_lists(best) + (best_image.tag() if best_image else "")
    rows = [
        [
            escape(t.trial_id),
            _verdict_html(t.diagnosis.verdict),
            "<br>".join(escape(r) for r in t.diagnosis.reasons),
            "<br>".join(escape(r) for r in t.diagnosis.remedies),
        ]
        for t in view.trials
    ]
    return (
        html
        + "<h3>Every trial</h3>"
        + table(["trial", "verdict", "evidence", "remedies"], rows, escape_cells=False)
    )


def _diagnosis_lists(trial: TrialView) -> str:
    reasons = "".join(f"<li>{escape(r)}</li>" for r in trial.diagnosis.reasons)
    remedies = "".join(f"<li>{escape(r)}</li>" for r in trial.diagnosis.remedies)
    html = f"<p>Evidence:</p><ul>{reasons}</ul>"
    return html + (f"<p>What to try next:</p><ul>{remedies}</ul>" if remedies else "")


def _status_html(status: str) -> str:
    return f'<span class="status-{status}">{escape(STATUS_LABELS[status])}</span>'


def _verdict_html(verdict: str) -> str:
    return f'<span class="verdict-{escape(verdict)}">{escape(verdict)}</span>'


def _chart(fragment: str | None) -> str:
    return f'<div class="chart">{fragment}</div>' if fragment else ""


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    row_classes: Sequence[str] | None = None,
    escape_cells: bool = True,
) -> str:
    """An HTML table; cells are escaped unless `escape_cells` is False (already HTML)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(f"<td>{escape(c) if escape_cells else c}</td>" for c in row)
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
