"""The helper scripts: job submission's command line, and its refusal of bad input."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_submit_entrypoint_ships_the_experiment_folder_and_runs_on_the_cluster(tmp_path):
    experiment = tmp_path / "my sweep.yaml"
    entrypoint, working_dir = load("submit_sweep").build_entrypoint(
        str(experiment), ["search.num_samples=64"], "/mnt/shared/runs", "lr-study"
    )
    assert working_dir == str(tmp_path)
    assert shlex.split(entrypoint) == [
        "cnn-tune",
        "run",
        "my sweep.yaml",
        "--storage",
        "/mnt/shared/runs",
        "--address",
        "auto",
        "--name",
        "lr-study",
        "--set",
        "search.num_samples=64",
    ]


def test_submit_entrypoint_for_a_builtin_ships_nothing():
    entrypoint, working_dir = load("submit_sweep").build_entrypoint("digits", [], "/shared", None)
    assert working_dir is None and entrypoint.startswith("cnn-tune run digits ")


def test_submit_refuses_bad_input_before_contacting_any_cluster(capsys):
    code = load("submit_sweep").main(
        [
            "digits",
            "--storage",
            "/shared",
            "--set",
            "train.optimizer.lr=-1",
            "--address",
            "http://192.0.2.1:8265",
        ]
    )
    assert code == 2
    assert "train.optimizer.lr" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["bench_overhead", "bench_schedulers", "bench_gpu", "bench_final"])
def test_benchmark_scripts_import_without_side_effects(name):
    assert callable(load(name).main)
