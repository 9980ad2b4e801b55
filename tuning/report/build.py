"""`cnn-tune report DIR`: a self-contained HTML report (and its PNGs) for a sweep folder.

The report works on a finished sweep and on one still running: it reads Tune's
experiment state and each trial's progress.csv, plus summary.json once it exists. It
writes `index.html`, with plotly.js and every PNG inlined so it opens offline, and the
same PNGs as files beside it. A sweep in a bucket (s3://, gs://) is first copied to a
temporary folder, without the checkpoints other than each trial's latest.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tuning.errors import ConfigError
from tuning.layout import EXPERIMENT_FILE, FINAL_DIR, INDEX_FILE, REPORT_DIR
from tuning.report import html, interactive, plots
from tuning.report.analysis import (
    STOPPING_SCHEDULERS,
    Column,
    Importance,
    RungCount,
    decision_epochs,
    hyperparameter_importance,
    parameter_columns,
    rung_counts,
)
from tuning.report.data import SweepView, load_sweep
from tuning.report.parallel import parallel_coordinates_figure
from tuning.report.tradeoff import (
    TradeoffPoint,
    front_ids,
    tradeoff_figure,
    tradeoff_points,
    tradeoff_section,
)
from tuning.storage import (
    copy_files,
    is_remote,
    latest_checkpoints_only,
    list_files,
    read_text,
    resolve_location,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """A rendered report: the page, and the PNGs it embeds (also written beside it)."""

    html: str
    images: dict[str, bytes]  # file name -> PNG bytes


def write_report(directory: str | Path, output: str | Path | None = None) -> Path:
    """Write the report of the sweep at `directory`; return the path of index.html.

    Args:
        directory: a sweep, <storage>/<name>: a local folder or a storage URI.
        output: the local folder to write into; default `<directory>/report` for a local
            sweep and `./<name>-report` for one in a bucket.

    Raises:
        ConfigError: `directory` is not a folder, or not a cnn-tune sweep.
    """
    text = str(directory)
    if not is_remote(text):
        sweep_dir = _local_sweep_folder(text)
        return _write(sweep_dir, Path(output) if output else sweep_dir / REPORT_DIR)
    location = resolve_location(text)
    name = location.rsplit("/", 1)[-1]
    if read_text(location, EXPERIMENT_FILE) is None:
        raise ConfigError(
            f"report: {text!r} is not a cnn-tune sweep (no {EXPERIMENT_FILE} there); pass "
            "the <storage>/<name> that `cnn-tune run` printed"
        )
    with tempfile.TemporaryDirectory(prefix="cnn-tune-report-") as scratch:
        sweep_dir = Path(scratch) / name
        _copy_what_the_report_reads(location, sweep_dir)
        return _write(sweep_dir, Path(output) if output else Path(f"{name}-report"))


def _copy_what_the_report_reads(location: str, target: Path) -> None:
    """Everything but the final models, old reports, and all checkpoints but the latest."""
    files = list_files(location)
    wanted = [n for n in files if n.split("/", 1)[0] not in (REPORT_DIR, FINAL_DIR)]
    wanted = latest_checkpoints_only(wanted)
    megabytes = sum(files[n] for n in wanted) / 1e6
    logger.info("report: copying %d files (%.1f MB) of %s", len(wanted), megabytes, location)
    copy_files(location, wanted, target)


def _write(sweep_dir: Path, output: Path) -> Path:
    logger.info("report: reading %s", sweep_dir)
    report = render_report(load_sweep(sweep_dir))
    target = output.expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)
    for filename, data in report.images.items():
        (target / filename).write_bytes(data)
    index = target / INDEX_FILE
    index.write_text(report.html, encoding="utf-8")
    return index


def render_report(view: SweepView) -> Report:
    """Draw every figure of `view` and assemble the page."""
    derived = _derive(view)
    logger.info("report: drawing figures for %d trials", len(view.trials))
    images = _images(view, derived)
    return Report(
        html=_page(view, derived, images),
        images={i.filename: i.data for i in images.values() if i is not None},
    )


def _local_sweep_folder(text: str) -> Path:
    path = Path(text).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(
            f"report: {text!r} is not a folder; pass a sweep folder, <storage>/<name>, "
            "as printed by `cnn-tune run`"
        )
    return path


@dataclass(frozen=True)
class _Derived:
    """What several sections need, computed once."""

    milestones: list[int]  # the scheduler's decision epochs (ASHA rungs, median grace)
    columns: list[Column]  # tuned parameters, one value per leaderboard row
    scores: list[float | None]  # best metric per leaderboard row
    importance: Importance
    rungs: list[RungCount]
    tradeoffs: list[TradeoffPoint]  # trials with a score and a footprint
    front: list[str]  # the Pareto front of a multi-objective sweep


def _derive(view: SweepView) -> _Derived:
    milestones = decision_epochs(view.experiment.scheduler, view.experiment.max_epochs)
    columns = parameter_columns([t.tuned for t in view.trials])
    scores = [t.best for t in view.trials]
    tradeoffs = tradeoff_points(view)
    return _Derived(
        tradeoffs=tradeoffs,
        front=front_ids(view, tradeoffs),
        milestones=milestones,
        columns=columns,
        scores=scores,
        importance=hyperparameter_importance(columns, scores),
        rungs=rung_counts([(t.epochs, t.status) for t in view.trials], milestones),
    )


def _images(view: SweepView, derived: _Derived) -> dict[str, html.Image | None]:
    """Every PNG of the report, by name, drawn once."""
    test = (view.summary or {}).get("test") or {}
    best = view.best
    stopping = view.experiment.scheduler.name in STOPPING_SCHEDULERS
    figures = {
        "learning_curves": plots.learning_curves_figure(view, derived.milestones),
        "lr_batch_size": plots.lr_batch_figure(view),
        "parallel_coordinates": parallel_coordinates_figure(
            derived.columns, derived.scores, view.metric, view.mode, _best_row(view)
        ),
        "importance": plots.importance_figure(derived.importance, view.metric),
        "scheduler_stops": plots.scheduler_stops_figure(view, derived.milestones)
        if stopping
        else None,
        "pbt_lineage": plots.lineage_figure(view),
        "best_trial_curves": plots.best_trial_figure(best) if best is not None else None,
        "size_and_speed": tradeoff_figure(view, derived.tradeoffs, derived.front),
        "test_per_class": plots.per_class_figure(
            test["per_class_accuracy"], test["accuracy"], test.get("accuracy_ci95", [0, 0])
        )
        if test.get("per_class_accuracy")
        else None,
    }
    return {
        name: html.Image(f"{name}.png", plots.png_bytes(figure), name.replace("_", " "))
        if figure is not None
        else None
        for name, figure in figures.items()
    }


def _best_row(view: SweepView) -> int | None:
    """The best trial's row in the leaderboard (and so in the derived columns)."""
    best = view.best
    ids = [t.trial_id for t in view.trials]
    return ids.index(best.trial_id) if best is not None else None


def _page(view: SweepView, derived: _Derived, images: dict[str, html.Image | None]) -> str:
    charts = {
        "curves": interactive.curves_chart(view),
        "lr_batch": interactive.lr_batch_chart(view),
        "parallel": interactive.parallel_chart(
            derived.columns, derived.scores, view.metric, view.mode
        ),
    }
    fragments = {
        name: interactive.fragment(chart, f"chart-{name}") if chart is not None else None
        for name, chart in charts.items()
    }
    sections = [
        html.overview_section(view),
        html.leaderboard_section(view),
        html.test_section(view, images["test_per_class"]),
        tradeoff_section(view, derived.tradeoffs, derived.front, images["size_and_speed"]),
        html.curves_section(images["learning_curves"], fragments["curves"]),
        html.hyperparameter_section(
            images["lr_batch_size"],
            fragments["lr_batch"],
            images["parallel_coordinates"],
            fragments["parallel"],
            derived.importance,
            images["importance"],
        ),
        html.scheduler_section(
            view, images["scheduler_stops"], derived.rungs, images["pbt_lineage"]
        ),
        html.diagnosis_section(view, images["best_trial_curves"]),
    ]
    title = f"cnn-tune report: {view.experiment.name}"
    return html.page(title, interactive.plotly_js(), sections)
