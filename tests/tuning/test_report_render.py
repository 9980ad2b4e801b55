"""Rendering the report from a sweep view built by hand: every status, no Ray needed."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from PIL import Image

from tuning.diagnosis import diagnose
from tuning.experiment import validate_experiment
from tuning.history import best_epoch_of
from tuning.report.analysis import parameter_columns
from tuning.report.build import Report, render_report
from tuning.report.data import STATUS_LABELS, SweepView, TrialView, rank_trials
from tuning.report.html import RUNNING_NOTE
from tuning.report.interactive import parallel_chart
from tuning.report.parallel import parallel_coordinates_figure

EPOCHS = 6


def history(val_accs: list[float], diverged_at: int | None = None) -> list[dict[str, Any]]:
    rows = []
    for epoch, acc in enumerate(val_accs, start=1):
        rows.append(
            {
                "epoch": epoch,
                "train_acc": min(1.0, acc + 0.02),
                "val_acc": acc,
                "train_loss": 2.3 * (1 - acc) + 0.05,
                "val_loss": 2.3 * (1 - acc) + 0.08,
                "diverged": False,
            }
        )
    if diverged_at is not None:
        rows.append(
            {
                "epoch": diverged_at,
                "train_acc": 0.0,
                "val_acc": 0.0,
                "train_loss": math.inf,
                "val_loss": math.inf,
                "diverged": True,
            }
        )
    return rows


def trial(
    trial_id: str, status: str, rows: list[dict[str, Any]], tuned: dict[str, Any]
) -> TrialView:
    best, best_epoch = best_epoch_of(rows, "val_acc", "max")
    finite_last = rows[-1]["val_acc"] if rows and not rows[-1]["diverged"] else None
    return TrialView(
        trial_id=trial_id,
        status=status,
        tuned=tuned,
        config={"optimizer.lr": tuned["optimizer.lr"], "batch_size": tuned["batch_size"], **tuned},
        history=rows,
        epochs=len(rows),
        planned_epochs=EPOCHS,
        best=best,
        best_epoch=best_epoch,
        last=finite_last,
        error="RuntimeError: boom" if status == "error" else None,
        diagnosis=diagnose(rows, num_classes=10),
    )


def sgd(lr: float, batch_size: int, momentum: float) -> dict[str, Any]:
    return {
        "optimizer.name": "sgd",
        "optimizer.lr": lr,
        "optimizer.momentum": momentum,
        "batch_size": batch_size,
    }


def adam(lr: float, batch_size: int) -> dict[str, Any]:
    return {"optimizer.name": "adam", "optimizer.lr": lr, "batch_size": batch_size}


@pytest.fixture(scope="module")
def view(small_experiment) -> SweepView:
    raw = small_experiment(scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2})
    raw["train"]["epochs"] = EPOCHS
    trials = [
        trial("t_completed", "completed", history([0.3, 0.5, 0.7, 0.8, 0.85, 0.9]), adam(3e-3, 64)),
        trial("t_stopped", "stopped_early", history([0.2, 0.3]), sgd(1e-2, 32, 0.9)),
        trial("t_patience", "patience_stopped", history([0.1, 0.1, 0.1]), adam(1e-5, 128)),
        trial("t_diverged", "diverged", history([0.2], diverged_at=2), sgd(3.0, 16, 0.5)),
        trial("t_error", "error", [], adam(1e-3, 16)),
        trial("t_running", "running", history([0.3, 0.6, 0.7, 0.75]), sgd(5e-2, 64, 0.8)),
        trial("t_paused", "paused", history([0.25, 0.4]), adam(2e-3, 32)),
        trial("t_pending", "pending", [], sgd(1e-3, 128, 0.6)),
    ]
    ranked = sorted(trials, key=lambda t: (t.best is None, -(t.best or 0.0)))
    return SweepView(Path("/nowhere/sweep"), validate_experiment(raw), ranked, [], None)


@pytest.fixture(scope="module")
def report(view) -> Report:
    return render_report(view)


def test_render_report_draws_every_figure_of_a_running_sweep_with_every_status(report):
    assert set(report.images) == {
        "learning_curves.png",
        "lr_batch_size.png",
        "parallel_coordinates.png",
        "scheduler_stops.png",
        "best_trial_curves.png",
    }
    for name, data in report.images.items():
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=float)
        assert pixels.std() > 10, name


def test_render_report_lists_every_status_and_says_there_is_no_test_result_yet(report):
    html = report.html

    assert RUNNING_NOTE in html
    for status in (
        "completed",
        "stopped_early",
        "patience_stopped",
        "diverged",
        "error",
        "running",
        "paused",
        "pending",
    ):
        assert f'class="status-{status}">{STATUS_LABELS[status]}</span>' in html
    assert "RuntimeError: boom" in html
    assert "too few trials" in html  # 6 scored trials


def test_overview_names_the_scheduler_with_its_settings_and_the_sweeps_duration(view, report):
    assert "<td>scheduler</td><td>asha (grace_period 1, reduction_factor 2.0, brackets 1)</td>" in (
        report.html
    )
    done = SweepView(view.directory, view.experiment, view.trials, [], {"wall_seconds": 725.2})
    assert "Finished in 12 min 5 s." in render_report(done).html


def test_render_report_highlights_the_leader_of_a_running_sweep(report):
    html = report.html
    assert '<tr class="best"><td>1</td><td>t_completed</td>' in html
    assert "<h3>Best trial t_completed:" in html


def test_render_report_escapes_values_into_html(view):
    hostile = trial("t_<b>", "completed", history([0.1, 0.2, 0.3]), adam(1e-3, 64))
    hostile.tuned["optimizer.name"] = "<script>alert(1)</script>"
    html = render_report(SweepView(view.directory, view.experiment, [hostile], [], None)).html
    assert "<script>alert(1)</script>" not in html and "t_&lt;b&gt;" in html


def test_parallel_chart_puts_missing_conditionals_on_an_n_a_tick(view):
    columns = parameter_columns([t.tuned for t in view.trials])
    figure = parallel_chart(columns, [t.best for t in view.trials], "val_acc", "max")

    assert figure is not None
    dimensions = {d.label: d for d in figure.data[0].dimensions}
    assert "n/a" in dimensions["optimizer.momentum"].ticktext
    assert list(dimensions["optimizer.name"].ticktext) == ["adam", "sgd"]
    assert dimensions["optimizer.lr (log)"].values is not None


def test_parallel_chart_without_scored_trials_is_none():
    columns = parameter_columns([{"lr": 0.1}])
    assert parallel_chart(columns, [None], "val_acc", "max") is None


def test_parallel_coordinates_figure_labels_each_axis_and_draws_the_best_trial_on_top(view):
    columns = parameter_columns([t.tuned for t in view.trials])
    scores = [t.best for t in view.trials]

    figure = parallel_coordinates_figure(columns, scores, "val_acc", "max", best_row=0)

    assert figure is not None
    ax, colorbar = figure.axes
    assert colorbar.get_ylabel() == "best val_acc"
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [
        "batch_size",
        "optimizer.lr\n(log)",
        "optimizer.momentum",
        "optimizer.name",
        "best val_acc",
    ]
    ticks = {t.get_text() for t in ax.texts}
    assert {"n/a", "adam", "sgd"} <= ticks  # momentum is n/a for Adam; names are categories
    # min and max of the scored trials: batch size, lr, momentum, val_acc
    assert {"32", "128", "1e-05", "0.05", "0.8", "0.9", "0.1"} <= ticks
    (best,) = [line for line in ax.get_lines() if line.get_linewidth() > 3]
    (others,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert best.get_zorder() > others.get_zorder()
    assert np.asarray(best.get_ydata())[-1] == 1.0  # the best score tops the metric axis
    assert len(others.get_segments()) == sum(s is not None for s in scores)


@pytest.mark.parametrize(
    ("tuned", "scores"),
    [([{"lr": 0.1}], [None]), ([{}], [0.5]), ([{"lr": 0.1}], [math.nan])],
    ids=["no score", "nothing tuned", "nan score"],
)
def test_parallel_coordinates_figure_without_a_scored_tuned_trial_is_none(tuned, scores):
    assert parallel_coordinates_figure(parameter_columns(tuned), scores, "val_acc", "max") is None


def tie(trial_id: str, val_accs: list[float]) -> TrialView:
    return trial(trial_id, "completed", history(val_accs), adam(1e-3, 64))


TIES = [
    tie("t_a", [0.5, 0.6, 0.8]),  # 0.8 at epoch 3
    tie("t_b", [0.5, 0.8, 0.8]),  # 0.8 at epoch 2
    tie("t_c", [0.5, 0.6, 0.7, 0.8]),  # 0.8 at epoch 4
    tie("t_low", [0.5, 0.7]),
    trial("t_diverged", "diverged", history([0.9], diverged_at=2), adam(1.0, 64)),
]


@pytest.mark.parametrize(
    ("best_trial_id", "expected"),
    [
        (None, ["t_b", "t_a", "t_c", "t_low", "t_diverged"]),
        ("t_c", ["t_c", "t_b", "t_a", "t_low", "t_diverged"]),
        ("t_a", ["t_a", "t_b", "t_c", "t_low", "t_diverged"]),
    ],
)
def test_rank_trials_lists_the_summarys_best_first_among_ties_then_earlier_epochs(
    best_trial_id, expected
):
    ranked = rank_trials(TIES[::-1], "max", best_trial_id)
    assert [t.trial_id for t in ranked] == expected


def test_leaderboard_highlights_a_tied_summary_best_at_rank_1(view):
    summary = {"best": {"trial_id": "t_c", "val_acc": 0.8, "best_epoch": 4}}
    ranked = rank_trials(TIES, "max", "t_c")
    html = render_report(SweepView(view.directory, view.experiment, ranked, [], summary)).html
    assert '<tr class="best"><td>1</td><td>t_c</td>' in html


def finished(view: SweepView, final: dict[str, Any], test: dict[str, Any]) -> SweepView:
    best = view.trials[0]
    summary = {
        "best": {"trial_id": best.trial_id, "val_acc": best.best, "best_epoch": best.best_epoch},
        "final": final,
        "test": {
            "accuracy": 0.9,
            "accuracy_ci95": [0.85, 0.93],
            "loss": 0.3,
            "num_examples": 270,
            "per_class_accuracy": {"0": 0.95, "1": 0.85},
            **test,
        },
    }
    return SweepView(view.directory, view.experiment, view.trials, [], summary)


def test_test_section_names_the_best_checkpoint_it_tested(view):
    model = {"name": "best_checkpoint", "seed": 0, "epochs": 5, "trained_on": "train"}
    report = render_report(finished(view, {"protocol": "best_checkpoint", "models": [model]}, {}))

    assert "Final model: the best trial&#x27;s checkpoint of epoch 5, tested once." in report.html
    assert "0.9000</b> (95% CI 0.8500 - 0.9300)" in report.html
    assert RUNNING_NOTE not in report.html and "test_per_class.png" in report.images


def test_test_section_lists_every_retrained_seed_and_their_spread(view):
    models = [
        {"name": f"retrain_seed{s}", "seed": s, "epochs": 6, "trained_on": "train+val"}
        for s in (0, 1)
    ]
    test = {
        "models": [
            {**m, "accuracy": a, "loss": 0.3} for m, a in zip(models, (0.88, 0.92), strict=True)
        ],
        "seed_spread": {"seeds": 2, "std": 0.0283, "min": 0.88, "max": 0.92},
        "evaluations": 2,
    }
    html = render_report(finished(view, {"protocol": "retrain", "models": models}, test)).html

    assert "retrained on train+val for 6 epochs, seed(s) 0, 1" in html
    assert "<td>retrain_seed1</td><td>1</td><td>6</td><td>train+val</td><td>0.92</td>" in html
    assert "Over 2 seeds: std 0.0283" in html
    assert "<td>evaluations</td><td>2</td>" in html


def test_learning_curves_of_a_large_sweep_are_a_band_and_the_best_few(view):
    from tuning.report.analysis import CURVES_TOP_DRAWN
    from tuning.report.interactive import curves_chart
    from tuning.report.plots import learning_curves_figure

    rng = np.random.default_rng(0)
    many = [
        trial(
            f"t{i:03d}",
            "completed",
            history(list(np.sort(rng.uniform(0.1, 0.95, 4)))),
            adam(1e-3, 64),
        )
        for i in range(300)
    ]
    ranked = rank_trials(many, "max")
    large = SweepView(view.directory, view.experiment, ranked, [], None)

    figure = learning_curves_figure(large, [])
    accuracy_axes = figure.axes[0]
    # The band (one PolyCollection) and the median, then one line per drawn trial.
    trial_lines = [line for line in accuracy_axes.get_lines() if line.get_label().startswith("t")]
    assert {line.get_label().removesuffix(" (best)") for line in trial_lines} == {
        t.trial_id for t in ranked[:CURVES_TOP_DRAWN]
    }
    assert len(accuracy_axes.collections) == 1
    assert "300 trials" in accuracy_axes.get_title()

    chart = curves_chart(large)
    names = {trace.name for trace in chart.data}
    assert names == {t.trial_id for t in ranked[:CURVES_TOP_DRAWN]} | {
        "all 300 trials: 25-75%",
        "all 300 trials: median",
    }


def test_curve_band_gives_the_quartiles_per_epoch_over_the_trials_that_reached_it():
    from tuning.report.analysis import curve_band

    band = curve_band([([1, 2], [0.1, 0.5]), ([1, 2, 3], [0.3, 0.7, 0.9]), ([1], [0.2])])
    assert band is not None
    assert band.epochs == [1, 2, 3] and band.trials == [3, 2, 1]
    assert band.median == pytest.approx([0.2, 0.6, 0.9])
    assert band.low == pytest.approx([0.15, 0.55, 0.9])
    assert band.high == pytest.approx([0.25, 0.65, 0.9])
    assert curve_band([]) is None
