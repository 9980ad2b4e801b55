"""`scripts/gpu_check.py --dry-run`: the GPU check runs end to end on logical GPUs, so it
cannot rot between the sessions that have a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def test_gpu_check_dry_run_passes_every_row_and_writes_its_figures(tmp_path):
    output = tmp_path / "gpu-check.json"

    done = subprocess.run(
        [sys.executable, "scripts/gpu_check.py", "--dry-run", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(output.read_text())
    statuses = {row["check"]: row["status"] for row in report["checks"]}
    assert statuses == {
        "environment": "PASS",
        "gpu tests": "PASS",
        "packing": "PASS",
        "infeasible": "PASS",
        "auto share": "PASS",
        "trials/hour": "PASS",
        "syncs/step": "SKIP",  # needs CUDA
        "data path": "PASS",
    }
    figures = {row["check"]: row["figures"] for row in report["checks"]}
    assert figures["packing"]["trials_at_once"] == 4
    assert figures["infeasible"]["same_process"]  # the next trial reused the actor
    assert figures["trials/hour"]["0.5"]["finished"] == 2
