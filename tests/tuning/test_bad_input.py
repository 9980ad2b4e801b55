"""Every bad input is refused before Ray starts, with exit code 2 and a message that
names the key, the value and what is allowed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

from tuning.cli import EXIT_BAD_INPUT, main
from tuning.errors import ConfigError
from tuning.experiment import validate_experiment

BAD_OVERRIDES = [
    # (--set overrides, fragments the message must contain)
    (["train.optimizer.lr={loguniform: [0, 0.1]}"], ["train.optimizer.lr", "low > 0"]),
    (["train.optimizer.lr=-0.5"], ["train.optimizer.lr", "greater than 0", "-0.5"]),
    (["train.epcohs=3"], ["train.epcohs", "unknown key", "did you mean 'epochs'"]),
    (["train.optimizer.name=adamax"], ["train.optimizer", "adamax", "'sgd'"]),
    (
        ["train.batch_size={choice: [32, 0]}"],
        ["train.batch_size", "greater than or equal to 1", "0"],
    ),
    (["train.model.dropout={uniform: [0.5, 0.2]}"], ["train.model.dropout", "low < high"]),
    (["train.model.depth={randint: [1.5, 3]}"], ["train.model.depth", "integer bounds"]),
    (["train.batch_size={choice: []}"], ["train.batch_size", "non-empty list"]),
    (["search.algorithm=bayes"], ["search.algorithm", "'hyperopt'", "bayes"]),
    (["search.num_samples=0"], ["search.num_samples", "greater than or equal to 1"]),
    (
        ["scheduler={name: pbt, mutate: [optimizer.lr]}"],
        ["pbt", "search.algorithm='hyperopt'", "random"],
    ),
    (
        ["search.algorithm=random", "scheduler={name: pbt, mutate: [model.width]}"],
        ["train.model.width is not a tuned"],
    ),
    (
        [
            "search.algorithm=random",
            "scheduler={name: pbt, perturbation_interval: 3, mutate: [optimizer.lr]}",
            "checkpoint.every_epochs=2",
        ],
        [
            "perturbation_interval=3",
            "needs checkpoint.every_epochs=3 (it is 2)",
            "checkpoint.keep=1 is too few",
        ],
    ),
    (["scheduler.grace_period=40"], ["scheduler.grace_period=40", "max_t=15"]),
    (["scheduler.reduction_factor=1"], ["scheduler.reduction_factor", "greater than 1"]),
    (["metric=val_f1"], ["metric", "val_f1", "'val_acc'"]),
    (["mode=min"], ["mode='min'", "set mode: max"]),
    (["resources.gpu=1.5"], ["resources", "single GPU"]),
    (["resources.gpu=2"], ["resources", "between 0 and 1"]),
    (["resources.cpu=0"], ["resources.cpu", "greater than 0"]),
    (["checkpoint.every_epochs=0"], ["checkpoint.every_epochs"]),
    (["dataset.name=mnist"], ["dataset", "needs dataset.root"]),
    (
        ["dataset.name=cifar10", "dataset.root=/nonexistent/cifar"],
        ["dataset.root", "/nonexistent/cifar", "not a folder"],
    ),
    (["dataset.val_fraction=0.9"], ["dataset.val_fraction", "less than 0.5"]),
    (["train.optimizer={grid: [{name: sgd}, {name: adam}]}"], ["hyperopt", "grid"]),
    (["final.protocol=latest"], ["final.protocol", "latest", "'retrain'"]),
    (["final.seeds=3"], ["final.seeds=3", "final.protocol: retrain"]),
    (
        ["final.protocol=retrain", "train.lr_schedule={name: plateau}"],
        ["final.protocol=retrain", "plateau", "best_checkpoint"],
    ),
    (
        [
            "final.protocol=retrain",
            "search.algorithm=random",
            "scheduler={name: pbt, mutate: [optimizer.lr]}",
            "checkpoint.keep=3",
        ],
        ["final.protocol=retrain with scheduler pbt", "best_checkpoint"],
    ),
    (["train.model.width=wide"], ["train.model.width", "valid integer", "wide"]),
    (["train"], ["--set 'train'", "KEY=VALUE"]),
    (["train.epochs.max=1"], ["train.epochs is 15", "not a mapping"]),
    (["gpus=1"], ["gpus", "unknown key"]),
]


@pytest.mark.parametrize(
    ("overrides", "fragments"), BAD_OVERRIDES, ids=[" ".join(o[0]) for o in BAD_OVERRIDES]
)
def test_run_rejects_bad_override_before_ray_starts(overrides, fragments, capsys, tmp_path):
    args = ["run", "digits", "--storage", str(tmp_path)]
    for override in overrides:
        args += ["--set", override]

    code = main(args)

    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    for fragment in fragments:
        assert fragment in err
    assert not ray.is_initialized()
    assert not any(tmp_path.iterdir()), "nothing may be written for bad input"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("name: x\ntrain: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "top level must be a mapping"),
        (
            "name: x\ntrain:\n  optimizer: {lr: {loguniform: [1.0e-3, 1.0e-2], grid: [1]}}\n",
            "exactly one key",
        ),
        ("name: 'bad name!'\ntrain: {batch_size: {choice: [32]}}\n", "name"),
        ("name: x\ntrain: {epochs: 3}\n", "nothing to tune"),
    ],
)
def test_run_rejects_bad_yaml_file(content, fragment, tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(content)

    code = main(["run", str(path), "--storage", str(tmp_path / "runs")])

    assert code == EXIT_BAD_INPUT
    assert fragment in capsys.readouterr().err
    assert not ray.is_initialized()


def test_run_rejects_unknown_experiment_name_listing_builtins(capsys):
    assert main(["run", "digitz"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "digitz" in err and "digits-pbt" in err


def test_run_rejects_missing_experiment_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.yaml")]) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err


def test_run_refuses_to_overwrite_an_existing_sweep(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "summary.json").write_text("{}")

    code = main(["run", "digits", "--storage", str(tmp_path), "--name", "taken"])

    assert code == EXIT_BAD_INPUT
    assert "cnn-tune resume" in capsys.readouterr().err


def test_run_rejects_gpu_trials_on_a_machine_without_cuda(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = main(["run", "digits", "--storage", str(tmp_path), "--set", "resources.gpu=0.25"])

    assert code == EXIT_BAD_INPUT
    assert "resources.gpu=0.25" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_resume_rejects_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "is not a cnn-tune sweep" in capsys.readouterr().err


def test_yaml_accepts_exponent_floats_without_a_dot(tmp_path):
    from tuning.experiment import load_experiment

    path = tmp_path / "exp.yaml"
    path.write_text(
        yaml.safe_dump({"name": "x", "train": {"batch_size": {"choice": [32, 64]}}})
        + "scheduler: {name: fifo}\n"
        + "search: {algorithm: random}\n"
    )
    experiment = load_experiment(str(path), ["train.optimizer={name: adam, lr: 1e-4}"])

    assert experiment.train["optimizer"]["lr"] == pytest.approx(1e-4)


def test_overrides_take_precedence_over_yaml_over_defaults():
    from tuning.experiment import load_experiment

    default = load_experiment("digits")
    overridden = load_experiment("digits", ["search.num_samples=5", "train.epochs=4"])

    assert default.search.num_samples == 20
    assert overridden.search.num_samples == 5
    assert overridden.train["epochs"] == 4
    assert overridden.resolved_mode == "max"  # the default for val_acc


@pytest.mark.parametrize("name", ["digits", "digits-pbt", "digits-grid"])
def test_builtin_experiment_validates(name):
    from tuning.experiment import load_experiment

    assert load_experiment(name).name == name


def test_builtin_cifar10_validates_once_given_a_root(tmp_path):
    from tuning.experiment import load_experiment

    experiment = load_experiment("cifar10", [f"dataset.root={tmp_path}"])
    assert experiment.resources.gpu == 0.25


# ----- the console script itself, in its own process ---------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "resources.cpu=1024"], "resources.cpu=1024 per trial"),
        (["--storage", "/proc/cnn-tune-x"], "--storage '/proc/cnn-tune-x'"),
    ],
)
def test_console_script_refuses_bad_input_before_ray_starts(args, fragment, tmp_path):
    ray_tmp, storage = tmp_path / "ray-tmp", tmp_path / "storage"
    ray_tmp.mkdir()
    storage.mkdir()
    command = [str(Path(sys.executable).parent / "cnn-tune"), "run", "digits"]
    if "--storage" not in args:
        command += ["--storage", str(storage)]
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}

    done = subprocess.run(
        command + args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr
    assert not any(ray_tmp.iterdir()), "Ray made a session folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ray-tmp", "storage"]
    assert not any(storage.iterdir())


# ----- warnings: valid input that is probably not what was meant ---------------------


@pytest.mark.parametrize(
    ("source", "overrides", "fragments"),
    [
        ("digits", ["search.num_samples=2000"], ["2000 trials", "each up to 15 epochs"]),
        ("digits-grid", ["search.num_samples=3"], ["repeats every grid point", "train.seed"]),
        ("digits", ["search.num_samples=4"], ["initial_points=6 >= search.num_samples=4"]),
    ],
)
def test_experiment_warnings_name_the_setting_and_the_fix(source, overrides, fragments):
    from tuning.experiment import load_experiment
    from tuning.preflight import experiment_warnings

    text = " ".join(experiment_warnings(load_experiment(source, overrides)))

    for fragment in fragments:
        assert fragment in text


@pytest.mark.parametrize("name", ["digits", "digits-pbt", "digits-grid"])
def test_experiment_warnings_none_for_builtin(name):
    from tuning.experiment import load_experiment
    from tuning.preflight import experiment_warnings

    assert experiment_warnings(load_experiment(name)) == []


def test_preflight_check_run_logs_warnings_and_writes_nothing(tmp_path, caplog):
    from tuning.experiment import load_experiment
    from tuning.preflight import check_run

    experiment = load_experiment("digits", ["search.num_samples=2000", "resources.cpu=0.01"])

    with caplog.at_level(logging.WARNING):
        check_run(experiment, storage=str(tmp_path / "runs"), name="ok-name", address=None)

    assert "2000 trials" in caplog.text
    assert "trials at once" in caplog.text and "search.max_concurrent" in caplog.text
    assert not any(tmp_path.iterdir())


def test_preflight_leaves_cpu_per_trial_to_the_cluster_given_an_address():
    from tuning.experiment import load_experiment
    from tuning.preflight import cpu_problems

    experiment = load_experiment("digits", ["resources.cpu=1024"])

    assert cpu_problems(experiment, "127.0.0.1:6379") == []
    assert cpu_problems(experiment, None) != []


@pytest.mark.parametrize(
    "storage", ["{tmp}", "{tmp}/new/nested/runs", "s3://bucket/prefix", "file:///tmp/x"]
)
def test_preflight_storage_accepts_writable_folders_and_buckets(storage, tmp_path):
    from tuning.preflight import storage_problems

    assert storage_problems(storage.format(tmp=tmp_path), flag="--storage") == []
    assert not any(tmp_path.iterdir()), "the write check leaves nothing behind"


def test_load_splits_warns_naming_a_class_missing_from_val_and_test(tmp_path, caplog):
    from PIL import Image

    from trainables.data import DataConfig, load_splits

    for name, count in {"cat": 20, "dog": 20, "owl": 2}.items():
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.new("RGB", (8, 8), color=(10 * i, 0, 0)).save(tmp_path / name / f"{i}.png")

    with caplog.at_level(logging.WARNING):
        load_splits(DataConfig(name="image_folder", root=str(tmp_path), image_size=8))

    for split in ("val", "test"):
        assert f"'owl' (2 examples) has no example in the {split} split" in caplog.text
        assert f"dataset.{split}_fraction" in caplog.text


# ----- YAML as people write it --------------------------------------------------------


def test_yaml_reads_on_off_yes_no_as_the_words_they_are():
    from trainables.config import TrainConfig
    from tuning import space
    from tuning.experiment import load_experiment

    experiment = load_experiment(
        "digits", ["train.channels_last=on", "train.augmentation.flip=yes"]
    )

    assert experiment.train["channels_last"] == "on"
    config = TrainConfig.model_validate(space.sample_point(experiment.train, seed=0))
    assert config.channels_last == "on"
    assert config.augmentation.flip is True


def test_yaml_merge_keys_may_override_what_they_merge():
    from tuning.yaml_io import parse_yaml_mapping

    text = "base: &base {lr: 0.1, momentum: 0.9}\nsgd:\n  <<: *base\n  lr: 0.01\n"

    assert parse_yaml_mapping(text, "x.yaml")["sgd"] == {"lr": 0.01, "momentum": 0.9}


def test_run_prefers_a_builtin_over_a_folder_of_the_same_name(tmp_path, monkeypatch):
    from tuning.experiment import load_experiment

    (tmp_path / "digits").mkdir()
    monkeypatch.chdir(tmp_path)

    assert load_experiment("digits").name == "digits"


def test_pbt_checkpoints_at_its_perturbations_unless_told_otherwise():
    """Left out, checkpoint.every_epochs follows perturbation_interval; set, it must match."""
    raw = {
        "name": "t",
        "train": {"epochs": 6, "optimizer": {"name": "adam", "lr": {"uniform": [0.01, 0.1]}}},
        "search": {"algorithm": "random"},
        "scheduler": {"name": "pbt", "perturbation_interval": 3, "mutate": ["optimizer.lr"]},
        "checkpoint": {"keep": 3},
    }
    assert validate_experiment(raw).checkpoint.every_epochs == 3
    with pytest.raises(ConfigError, match=r"needs checkpoint.every_epochs=3 \(it is 1\)"):
        validate_experiment({**raw, "checkpoint": {"every_epochs": 1, "keep": 3}})
