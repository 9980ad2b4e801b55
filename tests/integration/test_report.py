"""`cnn-tune report` on real sweeps: finished, still running, ASHA and PBT, in Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from ray import tune

from tuning.cli import main
from tuning.experiment import validate_experiment
from tuning.layout import INDEX_FILE, REPORT_DIR, SUMMARY_FILE
from tuning.report import write_report
from tuning.report.data import STATUS_LABELS, load_sweep
from tuning.report.html import RUNNING_NOTE
from tuning.runner import SweepOutcome, run_sweep
from tuning.storage import latest_checkpoints_only, list_files

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CHROMIUM", "chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: a script from a CDN would not load
    "--window-size=1400,2000",
    "--virtual-time-budget=5000",  # ms of page time for plotly to draw before the capture
]
ASHA_PNGS = {
    "learning_curves.png",
    "lr_batch_size.png",
    "parallel_coordinates.png",
    "scheduler_stops.png",
    "best_trial_curves.png",
    "test_per_class.png",
}


@pytest.fixture(scope="module")
def asha_sweep(ray_two_cpus, small_experiment, tmp_path_factory) -> SweepOutcome:
    """ASHA (grace 1) over a conditional optimizer choice: SGD has a momentum, Adam none."""
    raw = small_experiment(
        search={"algorithm": "random", "num_samples": 8, "seed": 1},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    raw["train"]["epochs"] = 6
    raw["train"]["optimizer"] = {
        "choice": [
            {"name": "adam", "lr": {"loguniform": [1.0e-4, 3.0e-2]}},
            {
                "name": "sgd",
                "lr": {"loguniform": [1.0e-3, 0.3]},
                "momentum": {"uniform": [0.5, 0.95]},
            },
        ]
    }
    raw["train"]["batch_size"] = {"choice": [16, 32, 64, 128]}
    storage = tmp_path_factory.mktemp("runs")
    return run_sweep(validate_experiment(raw), storage=str(storage), name="asha")


@pytest.fixture(scope="module")
def asha_report(asha_sweep) -> Path:
    return write_report(asha_sweep.experiment_dir)


class ReportMidSweep(tune.Callback):
    """Builds the report from inside the sweep, once `after_results` epochs are reported."""

    def __init__(self, location: str, output: Path, after_results: int) -> None:
        self.location, self.output, self.after_results = location, output, after_results
        self.results = 0
        self.html: str | None = None
        self.lineage: list[dict[str, Any]] = []
        self.error: Exception | None = None

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.results += 1
        if self.results != self.after_results:
            return
        try:
            self.html = write_report(self.location, self.output).read_text()
            self.lineage = load_sweep(Path(self.location)).lineage
        except Exception as error:  # kept for the test to report, not swallowed
            self.error = error


@pytest.fixture(scope="module")
def pbt_sweep(
    ray_two_cpus, small_pbt_experiment, tmp_path_factory
) -> Iterator[tuple[Path, ReportMidSweep]]:
    """4 trials, 6 epochs, exploits every 2; its report is also built mid-sweep."""
    raw = small_pbt_experiment()
    raw["train"]["optimizer"]["lr"] = {"loguniform": [1.0e-4, 3.0e-2]}
    storage = tmp_path_factory.mktemp("runs")
    mid = ReportMidSweep(str(storage / "pbt"), storage / "mid-report", after_results=13)
    # Tune snapshots its experiment state every 10 s by default; every step here, so the
    # mid-sweep report sees the trials as they are.
    previous = os.environ.get("TUNE_GLOBAL_CHECKPOINT_S")
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "0"
    try:
        outcome = run_sweep(
            validate_experiment(raw), storage=str(storage), name="pbt", callbacks=[mid]
        )
    finally:
        if previous is None:
            os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S")
        else:
            os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = previous
    write_report(outcome.experiment_dir)
    yield outcome.experiment_dir, mid


def leaderboard_rows(html: str) -> list[str]:
    section = html.split("<h2>Leaderboard</h2>", 1)[1].split("<h2>", 1)[0]
    return re.findall(r"<tr[^>]*>.*?</tr>", section.split("<tbody>", 1)[1])


def assert_png_shows_content(path: Path, min_size: tuple[int, int] = (300, 200)) -> None:
    """The file decodes as a PNG, is not tiny, and is not one flat colour."""
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_size[0] and image.height >= min_size[1], image.size
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert colours > 20, f"{path.name}: only {colours} colours"
    assert pixels.std() > 10, f"{path.name}: nearly blank (pixel std {pixels.std():.1f})"


def test_report_writes_index_and_pngs_into_the_sweeps_report_folder(asha_sweep, asha_report):
    assert asha_report == asha_sweep.experiment_dir / REPORT_DIR / INDEX_FILE
    written = {p.name for p in asha_report.parent.glob("*.png")}
    assert written >= ASHA_PNGS
    for png in asha_report.parent.glob("*.png"):
        assert_png_shows_content(png)


def test_report_embeds_every_png_and_plotly_once_and_fetches_nothing(asha_report):
    html = asha_report.read_text()
    for png in asha_report.parent.glob("*.png"):
        assert base64.b64encode(png.read_bytes()).decode("ascii") in html, png.name
    assert html.count("<script>") - html.count("Plotly.newPlot") <= 1  # plotly.js inlined once
    assert "Plotly.newPlot" in html
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.DOTALL)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", markup, re.IGNORECASE)
    assert "<script src" not in html and "<link" not in html
    assert "@import" not in html and "fonts.googleapis" not in html


def test_report_leaderboard_lists_every_trial_with_how_it_ended(asha_sweep, asha_report):
    rows = leaderboard_rows(asha_report.read_text())
    trials = asha_sweep.summary["trials"]
    assert len(rows) == len(trials) == 8
    for trial in trials:
        (row,) = [r for r in rows if trial["trial_id"] in r]
        assert STATUS_LABELS[trial["status"]] in row
    best_row = next(r for r in rows if 'class="best"' in r)
    assert asha_sweep.summary["best"]["trial_id"] in best_row
    assert any(t["status"] == "stopped_early" for t in trials)


def test_report_shows_the_test_result_with_its_interval_and_classes(asha_sweep, asha_report):
    html = asha_report.read_text()
    test = asha_sweep.summary["test"]
    low, high = test["accuracy_ci95"]
    assert f"{test['accuracy']:.4f}" in html and f"{low:.4f} - {high:.4f}" in html
    assert RUNNING_NOTE not in html


def test_report_shows_asha_rungs_importance_and_diagnosis(asha_sweep, asha_report):
    html = asha_report.read_text()
    assert "rung" in html and "stopped there by the scheduler" in html
    scored = sum(t["best"] is not None for t in asha_sweep.summary["trials"])
    assert ("random forest" in html) if scored >= 8 else ("too few trials" in html)
    assert "parallel" in html.lower() and "chart-parallel" in html
    assert "PBT lineage: not applicable" in html
    best = load_sweep(asha_sweep.experiment_dir).best
    assert best is not None and best.trial_id == asha_sweep.summary["best"]["trial_id"]
    assert f"<h3>Best trial {best.trial_id}: {best.diagnosis.verdict}</h3>" in html
    assert ("What to try next" in html) == bool(best.diagnosis.remedies)


def test_cli_report_exits_0_and_prints_the_index_path(asha_sweep, tmp_path, capsys):
    output = tmp_path / "elsewhere"
    assert main(["report", str(asha_sweep.experiment_dir), "--output", str(output)]) == 0
    assert capsys.readouterr().out.strip() == str(output / INDEX_FILE)
    assert {p.name for p in output.glob("*.png")} >= ASHA_PNGS


@pytest.mark.parametrize("make_folder", ["empty", "missing", "missing_uri"])
def test_cli_report_on_a_non_sweep_exits_2_naming_it(tmp_path, capsys, make_folder):
    target = {
        "empty": str(tmp_path),
        "missing": str(tmp_path / "nope"),
        "missing_uri": (tmp_path / "nope").as_uri(),
    }
    assert main(["report", target[make_folder]]) == 2
    error = capsys.readouterr().err
    assert target[make_folder] in error and "sweep" in error


def test_cli_report_on_an_unknown_storage_scheme_exits_2_naming_the_schemes(capsys):
    assert main(["report", "nosuch://bucket/sweep"]) == 2
    error = capsys.readouterr().err
    assert "nosuch://bucket/sweep" in error and "s3://" in error


def test_report_of_a_sweep_by_uri_is_written_to_a_local_name_report_folder(
    asha_sweep, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    index = write_report(asha_sweep.experiment_dir.as_uri())

    assert index == tmp_path / "asha-report" / INDEX_FILE
    assert {p.name for p in index.parent.glob("*.png")} >= ASHA_PNGS
    assert len(leaderboard_rows(index.read_text())) == 8


def test_a_bucket_sweep_is_read_with_each_trials_latest_checkpoint_only(pbt_sweep):
    source, _ = pbt_sweep  # PBT keeps several checkpoints per trial

    wanted = latest_checkpoints_only(list_files(source.as_uri()))

    checkpoints = {name.rsplit("/", 1)[0] for name in wanted if "/checkpoint_" in name}
    assert len(list(source.glob("trial_*/checkpoint_*"))) > len(checkpoints)
    for trial_dir in source.glob("trial_*"):
        newest = max(p.name for p in trial_dir.glob("checkpoint_*"))
        assert {c for c in checkpoints if c.startswith(trial_dir.name)} == {
            f"{trial_dir.name}/{newest}"
        }
        assert f"{trial_dir.name}/progress.csv" in wanted


def test_report_on_a_sweep_without_summary_says_it_is_still_running(asha_sweep, tmp_path):
    copy = tmp_path / "asha"
    shutil.copytree(asha_sweep.experiment_dir, copy, ignore=shutil.ignore_patterns(REPORT_DIR))
    (copy / SUMMARY_FILE).unlink()

    html = write_report(copy).read_text()

    assert RUNNING_NOTE in html
    rows = leaderboard_rows(html)
    assert len(rows) == 8
    for trial in asha_sweep.summary["trials"]:
        (row,) = [r for r in rows if trial["trial_id"] in r]
        assert STATUS_LABELS[trial["status"]] in row


def test_report_built_mid_sweep_shows_unfinished_trials(pbt_sweep):
    experiment_dir, mid = pbt_sweep
    assert mid.error is None, repr(mid.error)
    assert mid.html is not None, "the sweep ended before the mid-sweep report"
    assert RUNNING_NOTE in mid.html
    rows = leaderboard_rows(mid.html)
    assert len(rows) == 4
    unfinished = [s for s in ("running", "pending", "paused") if any(f">{s}<" in r for r in rows)]
    assert unfinished, rows
    assert 'class="best"' in rows[0]  # the leader so far, whatever its state
    final = {
        (e["trial_id"], e["donor"], e["epoch"])
        for e in json.loads((experiment_dir / SUMMARY_FILE).read_text())["lineage"]
    }
    assert {(e["trial_id"], e["donor"], e["epoch"]) for e in mid.lineage} <= final


def test_report_draws_the_pbt_lineage_and_lists_every_exploit(pbt_sweep):
    experiment_dir, _ = pbt_sweep
    lineage = json.loads((experiment_dir / SUMMARY_FILE).read_text())["lineage"]
    assert lineage, "PBT made no exploit in 6 epochs of 4 trials"
    report = experiment_dir / REPORT_DIR
    assert_png_shows_content(report / "pbt_lineage.png")
    html = (report / INDEX_FILE).read_text()
    table = html.split("<h3>PBT lineage</h3>", 1)[1].split("</table>", 1)[0]
    for event in lineage:
        assert re.search(
            rf"<td>{event['epoch']}</td><td>{event['donor']}</td><td>{event['trial_id']}</td>",
            table,
        )
    assert "too few trials" in html  # 4 trials: no importance figure pretending to know


def test_report_renders_in_headless_chromium(asha_report, tmp_path):
    chromium = shutil.which(CHROMIUM)
    if chromium is None:
        pytest.fail(
            f"{CHROMIUM!r} not found: the report test needs headless Chromium. Install it with "
            "`make browser` (Debian's chromium package), or point CHROMIUM at a Chrome binary"
        )
    screenshot = tmp_path / "report.png"
    run = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            "--dump-dom",
            asha_report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert screenshot.is_file(), run.stderr[-2000:]
    assert_png_shows_content(screenshot, min_size=(1400, 2000))
    charts = re.findall(r'class="plotly-graph-div', run.stdout)
    drawn = run.stdout.count('class="main-svg"')
    assert len(charts) == 3 and drawn >= len(charts), "plotly did not draw offline"
