"""A real multi-objective sweep under a size constraint: footprint reported, constraint
obeyed, Pareto front in summary.json, the report and TensorBoard."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tuning.experiment import validate_experiment
from tuning.layout import SUMMARY_FILE
from tuning.report import write_report
from tuning.runner import run_sweep
from tuning.tradeoffs import dominates

pytestmark = pytest.mark.integration

# Depth-2 CNNs of 43,162, 438 and 5,178 parameters on 8x8 digits, trained one after the
# other: the widest, which scores best (0.96 against 0.92), ends first, so checkpoint
# retention must let it go rather than the winner's checkpoints.
WIDTHS = (48, 4, 16)
MAX_PARAMS = 10_000  # leaves out the widest


@pytest.fixture(scope="module")
def sweep(ray_two_cpus, small_experiment, tmp_path_factory):
    raw = small_experiment(
        search={"algorithm": "grid", "max_concurrent": 1},
        scheduler={"name": "fifo"},
        metric=["val_acc", "latency_ms"],
        constraints={"params": f"<= {MAX_PARAMS}"},
    )
    raw["train"]["epochs"] = 2
    raw["train"]["batch_size"] = 64
    raw["train"]["optimizer"]["lr"] = 1.0e-2
    raw["train"]["model"] = {"name": "cnn", "depth": 2, "width": {"grid": list(WIDTHS)}}
    storage = tmp_path_factory.mktemp("runs")
    return run_sweep(validate_experiment(raw), storage=str(storage), name="tradeoff")


def progress(trial_dir: Path) -> list[dict[str, str]]:
    with (trial_dir / "progress.csv").open() as f:
        return list(csv.DictReader(f))


def test_every_epoch_reports_the_models_footprint(sweep, digits_splits):
    params_by_width = {}
    for trial in sweep.summary["trials"]:
        rows = progress(sweep.experiment_dir / f"trial_{trial['trial_id']}")
        assert len(rows) == 2
        assert len({row["params"] for row in rows}) == 1  # measured once, reported each epoch
        assert all(float(row["flops"]) > 0 and float(row["latency_ms"]) > 0 for row in rows)
        batch = min(256, len(digits_splits.tuning.val))
        assert all(int(float(row["latency_batch_size"])) == batch for row in rows)
        assert float(rows[0]["latency_ms_batch"]) > float(rows[0]["latency_ms"])
        params_by_width[trial["tuned"]["model.width"]] = float(rows[0]["params"])
        assert trial["footprint"]["params"] == float(rows[0]["params"])
    assert params_by_width[4] < params_by_width[16] < MAX_PARAMS < params_by_width[48]


def test_a_trial_that_breaks_a_constraint_cannot_win(sweep):
    summary = json.loads((sweep.experiment_dir / SUMMARY_FILE).read_text())
    by_width = {t["tuned"]["model.width"]: t for t in summary["trials"]}
    widest = by_width[48]
    assert widest["broken_constraints"] == [
        f"params = {widest['footprint']['params']:.4g}, not <= {MAX_PARAMS}"
    ]
    assert summary["constraints"] == {"params": f"<= {MAX_PARAMS}"}
    assert summary["num_ineligible"] == 1
    eligible = [by_width[4], by_width[16]]
    assert summary["best"]["val_acc"] == max(t["best"] for t in eligible)
    assert widest["best"] > summary["best"]["val_acc"]  # the constraint decided
    assert summary["best"]["footprint"]["params"] <= MAX_PARAMS
    # The winner's checkpoints were kept (it was tested); the widest's were let go.
    assert list(Path(summary["best"]["path"]).glob("checkpoint_*"))
    assert not list((sweep.experiment_dir / f"trial_{widest['trial_id']}").glob("checkpoint_*"))


def test_summary_lists_the_pareto_front_and_tests_its_best_metric(sweep):
    summary = sweep.summary
    front = summary["pareto_front"]
    assert summary["objectives"] == {"val_acc": "max", "latency_ms": "min"}
    assert front[0]["trial_id"] == summary["best"]["trial_id"]
    assert "best first objective" in summary["pareto_rule"]
    records = {t["trial_id"]: t for t in summary["trials"]}
    eligible = [t for t in records.values() if not t["broken_constraints"]]
    on_front = {p["trial_id"] for p in front}
    assert on_front <= {t["trial_id"] for t in eligible}
    for point in front:
        record = records[point["trial_id"]]
        assert point["val_acc"] == record["best"]
        assert point["latency_ms"] == record["footprint"]["latency_ms"]
    # Nothing eligible dominates a front point; every eligible trial off it is dominated.
    values = {t["trial_id"]: (t["best"], t["footprint"]["latency_ms"]) for t in eligible}
    for trial_id, point in values.items():
        beaten = any(dominates(other, point, ["max", "min"]) for other in values.values())
        assert beaten is (trial_id not in on_front)


def test_report_and_tensorboard_show_size_and_speed(sweep):
    index = write_report(sweep.experiment_dir)
    page = index.read_text()
    assert "Accuracy against size and speed" in page and "Pareto front over" in page
    assert (index.parent / "size_and_speed.png").stat().st_size > 0
    trial_dir = sweep.experiment_dir / f"trial_{sweep.summary['best']['trial_id']}"
    run = EventAccumulator(str(trial_dir))
    run.Reload()
    latency = run.Scalars("latency_ms")
    assert [event.step for event in latency] == [1, 2]
    assert latency[0].value == pytest.approx(sweep.summary["best"]["footprint"]["latency_ms"])
