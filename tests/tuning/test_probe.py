"""`cnn-tune probe`: the fixed config, the suggestions and their --set lines, real runs of
the command on digits and on an image folder, and bad input refused before anything runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tuning.cli import main
from tuning.errors import ConfigError
from tuning.experiment import load_experiment
from tuning.probe import ProbeOptions, option_errors
from tuning.probe_config import fix_tuned_values, middle_option, middle_value, output_folder
from tuning.probe_suggest import Suggestion, overrides_of, scale_lr_range

REPO = Path(__file__).resolve().parents[2]


# ----- the config a probe measures -----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "args", "expected"),
    [
        ("uniform", [0.0, 0.5], 0.25),
        ("loguniform", [1.0e-4, 1.0e-2], 1.0e-3),
        ("quniform", [16, 80, 16], 48),
        ("qloguniform", [1.0, 100.0, 5.0], 10.0),
        ("randint", [1, 4], 2),
        ("lograndint", [1, 101], 10),
    ],
)
def test_middle_value_is_the_centre_of_the_range_on_its_scale(kind, args, expected):
    value = middle_value(kind, args)

    assert value == pytest.approx(expected) and type(value) is type(expected)


@pytest.mark.parametrize(
    ("options", "expected"),
    [([16, 32, 64, 128], 32), ([128, 16, 64], 64), (["none", "linear", "sqrt"], "none")],
    ids=["even-count", "unsorted", "not-numbers"],
)
def test_middle_option_is_the_lower_median_of_numbers_else_the_first(options, expected):
    assert middle_option(options) == expected


def test_fix_tuned_values_fixes_every_domain_of_digits_to_its_middle():
    config, fixed = fix_tuned_values(load_experiment("digits").train)

    assert {f.path for f in fixed} == {
        "model.dropout",
        "optimizer.lr",
        "optimizer.weight_decay",
        "batch_size",
    }
    assert config.batch_size == 32 and config.model.dropout == pytest.approx(0.25)
    assert config.optimizer.lr == pytest.approx(math.sqrt(1.0e-4 * 3.0e-2))


def test_fix_tuned_values_refuses_a_choice_of_optimizers_with_a_working_fix():
    with pytest.raises(ConfigError) as error:
        fix_tuned_values(load_experiment("optimizers").train)

    message = error.value.messages[0]
    assert (
        "train.optimizer is a choice of 5 options (sgd, adam, adamw, rmsprop, adagrad)" in message
    )
    fix = message.split("pick one with ")[1].split(" (probe")[0]
    experiment = load_experiment("optimizers", overrides_of([fix]))
    config, _ = fix_tuned_values(experiment.train)
    assert config.optimizer.name == "sgd"


# ----- checks before anything runs -----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (ProbeOptions(min_lr=0.1, max_lr=0.01), "--min-lr 0.1 is not below --max-lr 0.01"),
        (ProbeOptions(max_lr=100.0), "--max-lr 100 is outside"),
        (ProbeOptions(min_lr=0.0), "--min-lr 0 is outside"),
        (ProbeOptions(min_lr=math.nan), "--min-lr nan is outside"),
    ],
    ids=["reversed", "above-10", "zero", "nan"],
)
def test_option_errors_name_the_flag_and_its_value(options, says):
    errors = option_errors(options)

    assert len(errors) == 1 and says in errors[0]


def test_option_errors_accept_the_defaults():
    assert option_errors(ProbeOptions()) == []


def test_output_folder_defaults_to_probe_name_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert output_folder(None, "digits") == tmp_path / "probe-digits"
    assert not (tmp_path / "probe-digits").exists()  # checked, not made


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda tmp: tmp / "taken", "is a file"),
        (lambda tmp: tmp / "taken" / "below", "is a file, so no folder can be made"),
    ],
    ids=["file", "under-a-file"],
)
def test_output_folder_refuses_a_file_in_the_way(tmp_path, make, says):
    (tmp_path / "taken").write_text("x")

    with pytest.raises(ConfigError, match=says):
        output_folder(str(make(tmp_path)), "digits")


# ----- suggestions as --set lines ------------------------------------------------------


def test_set_lines_are_accepted_by_cnn_tune_run_as_printed():
    suggestion = Suggestion(lr_range=(2.34e-4, 3.1e-2), batch_sizes=[128, 256, 512, 1024])

    lines = suggestion.set_lines()
    experiment = load_experiment("digits", overrides_of(lines))

    assert lines == [
        "--set train.optimizer.lr='{loguniform: [2.3e-04, 3.1e-02]}'",
        "--set train.batch_size='{choice: [128, 256, 512, 1024]}'",
    ]
    assert experiment.train["optimizer"]["lr"] == {"loguniform": [2.3e-4, 3.1e-2]}
    assert experiment.train["batch_size"] == {"choice": [128, 256, 512, 1024]}


def test_set_lines_with_batch_growth_cap_the_growth_and_validate():
    suggestion = Suggestion(lr_range=(1.0e-3, 1.0e-1), batch_sizes=[32, 64, 128, 256])

    lines = suggestion.set_lines(batch_growth=True)
    experiment = load_experiment("batch-growth", overrides_of(lines))

    assert lines[1] == "--set train.batch_growth.max_batch_size=256"
    assert experiment.train["batch_growth"]["max_batch_size"] == 256


@pytest.mark.parametrize(
    ("measured", "sizes", "expected"),
    [
        ((1.0e-4, 1.0e-2), [128, 256, 512, 1024], (4.0e-4, 0.32)),
        ((1.0e-4, 1.0e-2), [8, 16], (2.5e-5, 5.0e-3)),
        ((1.0e-2, 1.0), [1024], (0.32, 10.0)),
    ],
    ids=["larger", "smaller", "capped-at-10"],
)
def test_scale_lr_range_follows_the_batch_linearly_across_the_sizes(measured, sizes, expected):
    assert scale_lr_range(measured, 32, sizes) == pytest.approx(expected)


# ----- the command, for real -----------------------------------------------------------


def test_probe_digits_writes_json_png_and_prints_lines_that_run(tmp_path, capsys):
    output = tmp_path / "out"

    rc = main(["probe", "digits", "--output", str(output), "--steps", "120"])
    printed = capsys.readouterr().out

    assert rc == 0, printed
    result = json.loads((output / "probe.json").read_text())
    sweep, batch, suggested = result["lr_range_test"], result["batch_size"], result["suggested"]
    assert sweep["batch_size"] == 32 and len(sweep["lr"]) == sweep["steps_run"] <= 120
    assert sweep["points"]["steepest"]["lr"] < sweep["points"]["minimum"]["lr"]
    assert batch["largest"] == batch["limit"] and "train split" in batch["limited_by"]
    assert suggested["batch_sizes"][-1] <= batch["largest"]
    low, high = suggested["lr_range"]
    assert 0 < low < high <= 10 and not suggested["lr_scaled_with_batch"]
    assert all(line in printed for line in result["set_lines"])
    assert "the CPU has no per-trial memory share" in printed
    load_experiment("digits", overrides_of(result["set_lines"]))
    with Image.open(output / "probe.png") as image:
        assert image.size[0] > 800 and image.size[1] > 300


def test_probe_image_folder_with_scaling_scales_the_lr_range(tmp_path, capsys):
    write_image_folder(tmp_path / "images", {"cat": 20, "dog": 20})
    data = ["--set", f"dataset.root={tmp_path / 'images'}", "--set", "dataset.image_size=8"]
    argv = ["probe", "image-folder", *data, "--output", str(tmp_path / "out")]

    rc = main([*argv, "--steps", "60", "--max-batch-size", "16", "--scale-lr-with-batch"])
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "probe.json").read_text())

    batch, suggested = result["batch_size"], result["suggested"]
    assert rc == 0, printed
    assert batch["largest"] == 16 and "--max-batch-size 16" in batch["limited_by"]
    assert suggested["batch_sizes"] == [2, 4, 8, 16] and suggested["lr_scaled_with_batch"]
    unscaled_low, unscaled_high = suggested["lr_range_unscaled"]
    probed = result["lr_range_test"]["batch_size"]
    assert suggested["lr_range"][0] == pytest.approx(unscaled_low * 2 / probed)
    assert suggested["lr_range"][1] == pytest.approx(min(unscaled_high * 16 / probed, 10))
    assert "linear scaling rule" in printed
    load_experiment("image-folder", [*data[1::2], *overrides_of(result["set_lines"])])


def write_image_folder(root: Path, classes: dict[str, int]) -> None:
    """Classes of 8x8 RGB images told apart by brightness, with noise."""
    rng = np.random.default_rng(0)
    for label, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.clip(60 + 120 * label + rng.normal(0, 20, (8, 8, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")


# ----- bad input: exit 2, a message naming the value, nothing started ------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--set", "train.epoch=3"], "train.epoch"),
        (["--min-lr", "1", "--max-lr", "0.1"], "--min-lr 1 is not below --max-lr 0.1"),
        (["--max-lr", "50"], "--max-lr 50 is outside 1e-10..10"),
        (["--output", "{file}"], "is a file; give a folder"),
        (["--set", "train.optimizer={choice: [{name: sgd}, {name: adam}]}"], "pick one with"),
        (["--set", "dataset.name=image_folder", "--set", "dataset.root={tmp}/none"], "none"),
    ],
    ids=[
        "unknown-key",
        "reversed-lr",
        "lr-above-10",
        "output-is-a-file",
        "optimizer-choice",
        "missing-images",
    ],
)
def test_probe_refuses_bad_input_with_exit_2_before_writing(tmp_path, capsys, argv, says):
    (tmp_path / "file").write_text("x")
    argv = [
        a.replace("{file}", str(tmp_path / "file")).replace("{tmp}", str(tmp_path)) for a in argv
    ]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "out")]

    rc = main(["probe", "digits", *argv])

    assert rc == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["--steps", "5"], ["--max-batch-size", "1"]])
def test_probe_refuses_out_of_range_numbers_in_argparse(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["probe", "digits", *argv])

    assert exit.value.code == 2 and "is outside" in capsys.readouterr().err


def test_probe_refuses_bad_input_without_importing_torch():
    code = (
        "import sys\n"
        "from tuning.cli import main\n"
        "rc = main(['probe', 'digits', '--set', 'train.optimizer.lr=-1'])\n"
        "print(rc, 'torch' in sys.modules, 'ray' in sys.modules)"
    )
    process = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )

    assert process.stdout.split() == ["2", "False", "False"], process.stderr
