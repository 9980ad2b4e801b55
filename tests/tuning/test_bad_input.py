"""Every bad input is refused before Ray starts, with exit code 2 and a message that
names the key, the value and what is allowed."""

from __future__ import annotations

import pytest
import ray
import yaml

from tuning.cli import EXIT_BAD_INPUT, main

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
            "multiple of checkpoint.every_epochs=2",
            "checkpoint.keep=1 is too few",
        ],
    ),
    (["scheduler.grace_period=40"], ["scheduler.grace_period=40", "max_t=15"]),
    (["scheduler.reduction_factor=1"], ["scheduler.reduction_factor", "greater than 1"]),
    (["metric=val_f1"], ["metric", "val_f1", "'val_acc'"]),
    (["mode=min"], ["mode='min'", "set mode: max"]),
    (["resources.gpu=1.5"], ["resources", "whole number"]),
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
    assert "is not a cnn-tune sweep that can be resumed" in capsys.readouterr().err


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
