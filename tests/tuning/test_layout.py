"""The sweep layout module names what Ray Tune names too, and stays free of Ray and torch."""

from __future__ import annotations

import subprocess
import sys

from ray.tune.result import EXPR_PROGRESS_FILE

from tuning import layout


def test_the_progress_file_is_the_one_ray_tune_writes():
    assert layout.PROGRESS_FILE == EXPR_PROGRESS_FILE


def test_trial_folder_names_round_trip():
    assert layout.trial_dirname("ab12c_00007") == "trial_ab12c_00007"
    assert layout.trial_id_of(layout.trial_dirname("ab12c_00007")) == "ab12c_00007"


def test_the_layout_imports_neither_ray_nor_torch():
    code = "import sys, tuning.layout; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
