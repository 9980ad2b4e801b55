"""Export a real sweep's best model, then predict with it in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from trainables.checkpoint import load_checkpoint
from trainables.data import DataConfig, load_splits
from trainables.loop import model_from_state, normalizer_from_state
from tuning.cli import main
from tuning.experiment import validate_experiment
from tuning.export import MODEL_FILE, WEIGHTS_FILE, export_best
from tuning.layout import SUMMARY_FILE
from tuning.runner import SweepOutcome, run_sweep

pytestmark = pytest.mark.integration

NUM_IMAGES = 40
MODEL_KEYS = {"format", "config", "data_info", "preprocessing", "class_names", "source", "test"}
PREPROCESSING_KEYS = {"input_shape", "mean", "std", "pixel_scale", "resize"}


def cnn_tune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuning.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def sweep(ray_two_cpus, small_experiment, tmp_path_factory) -> SweepOutcome:
    raw = small_experiment()
    raw["train"]["epochs"] = 2
    storage = tmp_path_factory.mktemp("runs")
    return run_sweep(validate_experiment(raw), storage=str(storage), name="export")


@pytest.fixture(scope="module")
def model_dir(sweep) -> Path:
    return export_best(sweep.experiment_dir, None)


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory) -> tuple[list[Path], torch.Tensor]:
    """Test-split digits written as 8x8 grey PNGs, and the same uint8 images as NCHW."""
    images = load_splits(DataConfig()).test.images[:NUM_IMAGES]
    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for i, image in enumerate(images):
        path = folder / f"digit_{i:03d}.png"
        Image.fromarray(image[0].numpy()).save(path)  # uint8 H x W: a grey "L" PNG
        paths.append(path)
    return paths, images


def best_checkpoint_state(sweep: SweepOutcome) -> dict:
    best = sweep.summary["best"]
    for checkpoint_dir in Path(best["path"]).glob("checkpoint_*"):
        state = load_checkpoint(checkpoint_dir)
        if state["epoch"] == best["checkpoint_epoch"]:
            return state
    raise AssertionError("the sweep kept no best checkpoint")


def test_export_writes_weights_and_a_self_describing_model_json(sweep, model_dir):
    assert model_dir == sweep.experiment_dir / "model"
    weights = torch.load(model_dir / WEIGHTS_FILE, weights_only=True)
    state = best_checkpoint_state(sweep)
    assert weights.keys() == state["model"].keys()
    assert all(torch.equal(weights[k], state["model"][k]) for k in weights)
    description = json.loads((model_dir / MODEL_FILE).read_text())
    assert description.keys() >= MODEL_KEYS
    assert description["preprocessing"].keys() >= PREPROCESSING_KEYS
    assert description["preprocessing"]["input_shape"] == [1, 8, 8]
    assert description["class_names"] == [str(d) for d in range(10)]
    assert description["source"]["trial_id"] == sweep.summary["best"]["trial_id"]
    assert description["source"]["epoch"] == sweep.summary["best"]["checkpoint_epoch"]
    assert description["test"] == sweep.summary["test"]


def test_predict_in_a_fresh_process_matches_the_best_checkpoint(sweep, model_dir, digit_pngs):
    paths, images = digit_pngs
    state = best_checkpoint_state(sweep)
    model, normalize = model_from_state(state), normalizer_from_state(state)
    with torch.no_grad():
        expected = model(normalize(images)).argmax(1).tolist()

    result = cnn_tune("predict", str(model_dir), *map(str, paths), "--json")

    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert [p["image"] for p in predictions] == [str(p) for p in paths]
    assert [p["index"] for p in predictions] == expected
    assert [p["class"] for p in predictions] == [str(i) for i in expected]
    assert all(0.0 < p["probability"] <= 1.0 for p in predictions)


def test_predict_prints_path_class_probability_per_image(model_dir, digit_pngs, capsys):
    paths, _ = digit_pngs
    assert main(["predict", str(model_dir), str(paths[0]), str(paths[1])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(paths[0]), str(paths[1])]
    assert all(0.0 < float(line.split("\t")[2]) <= 1.0 for line in lines)


def test_export_to_output_folder(sweep, tmp_path, capsys):
    output = tmp_path / "exported"
    assert main(["export", str(sweep.experiment_dir), "--output", str(output)]) == 0
    assert capsys.readouterr().out.strip() == str(output)
    assert (output / WEIGHTS_FILE).is_file() and (output / MODEL_FILE).is_file()


def test_export_without_summary_exits_2_naming_the_folder(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert SUMMARY_FILE in error and str(tmp_path) in error


def test_predict_missing_image_exits_2_naming_it(model_dir, tmp_path, capsys):
    missing = tmp_path / "nope.png"
    assert main(["predict", str(model_dir), str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
