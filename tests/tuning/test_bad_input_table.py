"""The table of bad input: each row is refused with exit code 2 before Ray starts.

Every row runs the real `cnn-tune` entry point in this process and checks four things:
the exit code is 2, stderr names what is wrong (the key or flag and the value), no Ray
started (none is initialized and Ray's temp folder stays empty), and nothing was written
anywhere under the test's folder (the --storage folder stays empty).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import ray
from PIL import Image

from tuning.cli import EXIT_BAD_INPUT, main
from tuning.preflight import local_cpu_count

Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Bad:
    """One bad input: the command line, what stderr must say, and files it needs."""

    args: list[str]  # after `cnn-tune`; {in} is the inputs folder, {storage} the storage
    says: list[str]  # fragments stderr must contain
    setup: Setup | None = None  # writes input files into {in}
    id: str = field(default="")

    def argv(self, inputs: Path, storage: Path) -> list[str]:
        return [
            a.replace("{in}", str(inputs)).replace("{storage}", str(storage)) for a in self.args
        ]


def run_digits(*overrides: str, says: list[str]) -> Bad:
    """`cnn-tune run digits --set ...` into the test's storage."""
    args = ["run", "digits", "--storage", "{storage}"]
    for override in overrides:
        args += ["--set", override]
    return Bad(args, says, id=" ".join(overrides))


def run_file(content: str | bytes, *, says: list[str], name: str = "exp.yaml") -> Bad:
    """`cnn-tune run {in}/exp.yaml` with the file holding `content`."""

    def write(inputs: Path) -> None:
        path = inputs / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return Bad(
        ["run", "{in}/" + name, "--storage", "{storage}"], says, write, id=f"file {content!r}"
    )


def run_flags(*flags: str, says: list[str], setup: Setup | None = None) -> Bad:
    """`cnn-tune run digits FLAGS` (FLAGS give their own --storage if they test it)."""
    storage = [] if "--storage" in flags else ["--storage", "{storage}"]
    return Bad(["run", "digits", *storage, *flags], says, setup, id=" ".join(flags))


def run_images(
    classes: dict[str, int],
    *overrides: str,
    says: list[str],
    damage: Setup | None = None,
) -> Bad:
    """`cnn-tune run digits` on an image_folder with `classes` (name -> image count)."""

    def write(inputs: Path) -> None:
        _write_image_folder(inputs / "images", classes)
        if damage is not None:
            damage(inputs / "images")

    args = ["run", "digits", "--storage", "{storage}", "--set", "dataset.name=image_folder"]
    args += ["--set", "dataset.root={in}/images", "--set", "dataset.image_size=8"]
    for override in overrides:
        args += ["--set", override]
    name = getattr(damage, "__name__", "")
    return Bad(args, says, write, id=f"images {classes} {name} {' '.join(overrides)}")


def _write_image_folder(root: Path, classes: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for name, count in classes.items():
        (root / name).mkdir()
        for i in range(count):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def _garble_one_image(root: Path) -> None:
    (root / "cat" / "0.png").write_bytes(b"not a png at all")


def _truncate_one_image(root: Path) -> None:
    image = root / "dog" / "1.png"
    image.write_bytes(image.read_bytes()[:40])


def _add_empty_class(root: Path) -> None:
    (root / "empty").mkdir()


def _file(name: str, content: bytes = b"x") -> Setup:
    def write(inputs: Path) -> None:
        (inputs / name).write_bytes(content)

    write.__name__ = f"file {name}"
    return write


def _folder(name: str, *files: str) -> Setup:
    def make(inputs: Path) -> None:
        (inputs / name).mkdir()
        for f in files:
            (inputs / name / f).write_text("train: {}\n")

    return make


def _saved_sweep_needing_cpus(cpus: int) -> Setup:
    """A sweep folder {in}/sweep whose saved experiment asks `cpus` CPUs per trial."""

    def write(inputs: Path) -> None:
        (inputs / "sweep").mkdir()
        (inputs / "sweep" / "cnn-tune-experiment.yaml").write_text(
            f"name: s\nresources: {{cpu: {cpus}}}\n{VALID_FILE_TAIL}"
        )

    return write


def _existing_sweep(inputs: Path) -> None:
    """A sweep folder named `taken` already under the storage (a sibling of {in})."""
    sweep = inputs.parent / "storage" / "taken"
    sweep.mkdir(parents=True)
    (sweep / "summary.json").write_text("{}")


CPUS = local_cpu_count(None) or 1
VALID_FILE_TAIL = "train:\n  batch_size: {choice: [32, 64]}\nsearch: {algorithm: random}\n"

BAD_INPUTS: list[Bad] = [
    # --- train.optimizer ---------------------------------------------------------------
    run_digits("train.optimizer.lr=-0.5", says=["train.optimizer.lr", "-0.5", "greater than 0"]),
    run_digits("train.optimizer.lr=0", says=["train.optimizer.lr", "greater than 0", "got 0"]),
    run_digits("train.optimizer.lr=11", says=["train.optimizer.lr", "less than or equal to 10"]),
    run_digits("train.optimizer.lr=fast", says=["train.optimizer.lr", "'fast'"]),
    run_digits("train.optimizer.lr={loguniform: [0, 0.1]}", says=["optimizer.lr", "low > 0"]),
    run_digits(
        "train.optimizer.lr={normal: [0, 1]}",
        says=["train.optimizer.lr", "{normal: [0, 1]} is not a search domain", "loguniform"],
    ),
    run_digits(
        "train.optimizer.lr={loguniforn: [1.0e-4, 0.1]}",
        says=["train.optimizer.lr", "did you mean 'loguniform'"],
    ),
    run_digits(
        "train.optimizer.lr={Uniform: [0.001, 0.1]}",
        says=["train.optimizer.lr", "did you mean 'uniform'"],
    ),
    run_digits(
        "train.optimizer.lr={uniform: [0.001, .inf]}", says=["train.optimizer.lr", "finite"]
    ),
    run_digits("train.optimizer.lr={uniform: [0.1, 0.01]}", says=["optimizer.lr", "low < high"]),
    run_digits("train.optimizer.lr={uniform: 0.1}", says=["optimizer.lr", "[low, high]"]),
    run_digits("train.optimizer.lr={uniform: [low, high]}", says=["optimizer.lr", "numbers"]),
    run_digits("train.optimizer.lr={quniform: [0.01, 0.1, 0]}", says=["lr", "q > 0"]),
    run_digits(
        "train.optimizer.lr={uniform: [0.01, 0.1], choice: [0.1]}",
        says=["train.optimizer.lr", "exactly one key"],
    ),
    run_digits("train.optimizer.name=adamax", says=["train.optimizer", "adamax", "'sgd'"]),
    run_digits("train.optimizer.momentum=0.9", says=["unknown key 'momentum'", "beta1"]),
    run_digits(
        "train.optimizer={name: sgd, nesterov: true, momentum: 0.0}",
        says=["train.optimizer", "nesterov=true needs momentum > 0"],
    ),
    run_digits("train.optimizer={name: sgd, momentum: 1.0}", says=["momentum", "less than 1"]),
    run_digits("train.optimizer.beta2=1.5", says=["train.optimizer.beta2", "1.5"]),
    run_digits("train.optimizer.weight_decay=2", says=["train.optimizer.weight_decay", "2"]),
    run_digits(
        "train.optimizer={choise: [{name: sgd}, {name: adam}]}",
        says=["train.optimizer", "'choise'", "did you mean the search domain {choice"],
    ),
    run_digits(
        "train.optimizer={grid: [{name: sgd}, {name: adam}]}",
        says=["search.algorithm=hyperopt cannot search a {grid: [...]}", "choice"],
    ),
    run_digits(
        "search.algorithm=optuna",
        "train.batch_size={grid: [32, 64]}",
        says=["search.algorithm=optuna cannot search a {grid: [...]}", "choice"],
    ),
    # --- train.model -------------------------------------------------------------------
    run_digits("train.model.name=vgg", says=["train.model", "vgg", "'cnn'"]),
    run_digits("train.model.depth=0", says=["train.model.depth", "greater than or equal to 1"]),
    run_digits("train.model.depth=9", says=["train.model.depth", "less than or equal to 8"]),
    run_digits("train.model.width=wide", says=["train.model.width", "'wide'"]),
    run_digits("train.model.dropout=1.0", says=["train.model.dropout", "less than 1"]),
    run_digits("train.model.depth={randint: [1.5, 3]}", says=["model.depth", "integer bounds"]),
    run_digits(
        "train.model={name: transfer, backbone: resnet9}", says=["backbone", "resnet9", "resnet18"]
    ),
    run_digits(
        "train.model={name: transfer, backbone: resnet18, freeze: -1}",
        says=["train.model", "freeze", "-1"],
    ),
    run_digits(
        "train.model={name: transfer, backbone: resnet18, freeze: some}",
        says=["train.model.freeze:", "'all' or 'none', or a valid integer", "'some'"],
    ),
    run_digits("train.model.kernel=3", says=["train.model.kernel", "unknown key 'kernel'"]),
    # --- train: batch, epochs, schedules, regularization --------------------------------
    run_digits("train.batch_size=0", says=["train.batch_size", "greater than or equal to 1"]),
    run_digits("train.batch_size=100000", says=["train.batch_size", "less than or equal to"]),
    run_digits("train.batch_size=32.5", says=["train.batch_size", "32.5"]),
    run_digits("train.batch_size={choice: []}", says=["train.batch_size", "non-empty list"]),
    run_digits("train.batch_size={choice: [32, 0]}", says=["train.batch_size", "got 0"]),
    run_digits(
        "train.batch_size={categorical: [32, 64]}",
        says=["train.batch_size", "categorical", "did you mean 'choice'"],
    ),
    run_digits("train.batch_size={grid: [32, 32]}", says=["train.batch_size", "32 twice"]),
    run_digits("train.epochs=0", says=["train.epochs", "greater than or equal to 1"]),
    run_digits("train.epochs=abc", says=["train.epochs", "'abc'"]),
    run_digits("train.epochs=1", says=["scheduler.grace_period=2 exceeds max_t=1"]),
    run_digits("train.epochs.max=1", says=["train.epochs is 15", "not a mapping"]),
    run_digits("train.epcohs=3", says=["train.epcohs", "did you mean 'epochs'"]),
    run_digits("train.lr_schedule.name=linear", says=["train.lr_schedule.name", "linear"]),
    run_digits(
        "train.lr_schedule={name: multistep, milestones: [5, 3]}",
        says=["train.lr_schedule", "strictly increasing", "[5, 3]"],
    ),
    run_digits("train.lr_schedule.gamma=0", says=["train.lr_schedule.gamma", "greater than 0"]),
    run_digits(
        "train.lr_schedule.milestones=[{randint: [1, 5]}]",
        says=["train.lr_schedule.milestones", "inside a list"],
    ),
    run_digits("train.lr_schedule.warmup_epochs=-1", says=["train.lr_schedule.warmup_epochs"]),
    run_digits(
        "train.batch_growth={max_batch_size: 8}",
        says=["batch_growth.max_batch_size=8", "below batch_size"],
    ),
    run_digits("train.batch_growth.factor=1", says=["train.batch_growth.factor", "got 1"]),
    run_digits("train.l1=2", says=["train.l1", "less than or equal to 1"]),
    run_digits("train.label_smoothing=1", says=["train.label_smoothing", "less than 1"]),
    run_digits("train.augmentation.preset=heavy", says=["train.augmentation.preset", "heavy"]),
    run_digits(
        "train.augmentation.rotation_degrees=360",
        says=["train.augmentation.rotation_degrees", "180"],
    ),
    run_digits("train.early_stopping.patience=0", says=["train.early_stopping.patience", "got 0"]),
    run_digits(
        "train.early_stopping={metric: val_loss}",
        says=["train.early_stopping.metric='val_loss' differs from metric='val_acc'"],
    ),
    run_digits("train.precision=fp16", says=["train.precision", "fp16", "'bf16'"]),
    run_digits("train.channels_last=yes", says=["train.channels_last", "'yes'"]),
    run_digits("train.seed=-1", says=["train.seed", "greater than or equal to 0"]),
    run_digits("train.eval_batch_size=0", says=["train.eval_batch_size", "got 0"]),
    run_digits("train={1: 2}", says=["train: key 1 must be a name"]),
    run_digits("train=5", says=["train", "valid dictionary", "got 5"]),
    run_digits("train={epochs: 3}", says=["nothing to tune"]),
    # --- search ------------------------------------------------------------------------
    run_digits(
        "search.algorithm=bayes", says=["search.algorithm", "bayes", "'hyperopt'", "'optuna'"]
    ),
    run_digits("search.algorithm=grid", says=["search.algorithm=grid", "train.", "sampled"]),
    run_digits("search.num_samples=0", says=["search.num_samples", "greater than or equal to 1"]),
    run_digits("search.num_samples=many", says=["search.num_samples", "'many'"]),
    run_digits(
        "search.num_samples=20000",
        says=["search.num_samples=20000 trials", "more than the 10000", "lower search.num_samples"],
    ),
    Bad(
        ["run", "digits-grid", "--storage", "{storage}", "--set", "search.num_samples=100000"],
        ["search.num_samples=100000 x 18 grid points", "1800000 trials", "shrink the grids"],
        id="digits-grid 1.8 million trials",
    ),
    run_file(
        "search: {algorithm: grid}\nscheduler: {name: fifo}\ntrain:\n"
        f"  batch_size: {{grid: {list(range(1, 201))}}}\n"
        f"  seed: {{grid: {list(range(60))}}}\n",
        says=["search.num_samples=1 x 12000 grid points", "train.batch_size 200 x train.seed 60"],
    ),
    run_digits("search.max_concurrent=0", says=["search.max_concurrent", "got 0"]),
    run_digits("search.initial_points=0", says=["search.initial_points", "got 0"]),
    run_digits("search.seed=-1", says=["search.seed", "got -1"]),
    run_digits(
        "search.num_samples={randint: [1, 5]}",
        says=["search.num_samples", "search domain", "only values under train"],
    ),
    # --- scheduler, metric, mode -------------------------------------------------------
    run_digits("scheduler.name=hyperband2", says=["scheduler", "hyperband2"]),
    run_digits(
        "scheduler.name=fifo",
        says=["scheduler.grace_period", "not of fifo", "--set 'scheduler={name: fifo}'"],
    ),
    run_digits("scheduler.grace_period=40", says=["scheduler.grace_period=40", "max_t=15"]),
    run_digits("scheduler.reduction_factor=1", says=["scheduler.reduction_factor", "got 1"]),
    run_digits("scheduler.max_t=50", says=["scheduler.max_t=50 exceeds train.epochs=15"]),
    run_digits("scheduler={name: pbt, mutate: [optimizer.lr]}", says=["pbt", "hyperopt", "random"]),
    run_digits(
        "search.algorithm=optuna",
        "scheduler={name: pbt, mutate: [optimizer.lr]}",
        says=["scheduler.name='pbt'", "search.algorithm='optuna'", "random or grid"],
    ),
    run_digits(
        "search.algorithm=optuna",
        "scheduler={name: pb2, mutate: [optimizer.lr]}",
        says=["scheduler.name='pb2'", "search.algorithm='optuna'", "random or grid"],
    ),
    run_digits(
        "search.algorithm=optuna",
        "scheduler={name: hyperband}",
        says=["scheduler.name='hyperband'", "search.algorithm='optuna'", "scheduler.name: asha"],
    ),
    run_digits(
        "search.algorithm=random",
        "scheduler={name: pbt, mutate: [model.width]}",
        says=["train.model.width is not a tuned"],
    ),
    run_digits("metric=val_f1", says=["metric", "val_f1", "'val_acc'"]),
    run_digits("mode=min", says=["mode='min'", "set mode: max"]),
    run_digits("mode=maximize", says=["mode", "maximize", "'max'"]),
    # --- objectives, constraints (tuning.tradeoffs) ---------------------------------------
    run_digits(
        "metric=[val_acc, accuracy]",
        says=["'accuracy' cannot be a further objective", "latency_ms", "metric: [val_acc"],
    ),
    run_digits(
        "metric=[latency_ms, val_acc]",
        says=["metric='latency_ms'", "what Tune optimizes", "metric: [val_acc, latency_ms]"],
    ),
    run_digits(
        "objectives=[val_loss, params]",
        says=["objectives[0]='val_loss' differs from metric='val_acc'"],
    ),
    run_digits("metric=[val_acc, params, params]", says=["params listed twice"]),
    run_digits(
        "metric=[val_acc, params]",
        "objectives=[val_acc]",
        says=["is a list and objectives", "give the objectives once"],
    ),
    run_digits(
        "metric=[val_acc, latency_ms]",
        "final.reevaluate={top_k: 2, seeds: 2}",
        says=["final.reevaluate with objectives", "drop final.reevaluate"],
    ),
    run_digits(
        "constraints={params: 1e6}",
        says=["constraints.params=1000000.0 is not a comparison", '"<= 1e6"'],
    ),
    run_digits(
        "constraints={latency: '<= 2'}",
        says=["unknown metric 'latency'", "did you mean 'latency_ms'?", "allowed:"],
    ),
    run_digits(
        "constraints={latency_ms: '<= soon'}",
        says=["constraints.latency_ms='<= soon'", "'soon' is not a finite number"],
    ),
    run_digits("constraints=[params]", says=["constraints", "valid dictionary"]),
    # --- resources, checkpoint, failures, final ------------------------------------------
    run_digits("resources.cpu=0", says=["resources.cpu", "greater than 0"]),
    run_digits("resources.cpu=-1", says=["resources.cpu", "got -1"]),
    run_digits("resources.cpu=2000", says=["resources.cpu", "less than or equal to 1024"]),
    run_digits(
        "resources.cpu=1024",
        says=["resources.cpu=1024 per trial", f"has {CPUS} CPUs", "wait for ever"],
    ),
    run_digits(
        f"resources.cpu={CPUS + 1}",
        says=[f"resources.cpu={CPUS + 1} per trial", f"resources.cpu={CPUS} or less"],
    ),
    run_digits(
        f"resources.cpu={CPUS + 0.5}", says=[f"resources.cpu={CPUS + 0.5:g} per trial", "--address"]
    ),
    run_digits("resources.gpu=-1", says=["resources", "gpu", "-1"]),
    run_digits("resources.gpu=lots", says=["resources.gpu", "'lots'", "'auto'"]),
    run_digits(
        "resources.cpu={uniform: [1, 2]}", says=["resources.cpu", "only values under train"]
    ),
    run_digits("resources.memory=4", says=["resources.memory", "unknown key"]),
    run_digits("checkpoint.every_epochs=0", says=["checkpoint.every_epochs", "got 0"]),
    run_digits("checkpoint.keep=0", says=["checkpoint.keep", "got 0"]),
    run_digits("max_failures=-1", says=["max_failures", "got -1"]),
    run_digits("max_failures=1000", says=["max_failures", "less than or equal to 100"]),
    run_digits("final.protocol=latest", says=["final.protocol", "latest", "'retrain'"]),
    run_digits("final.seeds=3", says=["final.seeds=3", "final.protocol: retrain"]),
    run_digits(
        "final.protocol=retrain",
        "train.lr_schedule={name: plateau}",
        says=["final.protocol=retrain", "plateau", "best_checkpoint"],
    ),
    # --- dataset -----------------------------------------------------------------------
    run_digits("dataset.name=mnist", says=["dataset", "needs dataset.root"]),
    run_digits("dataset.name=imagenet", says=["dataset.name", "imagenet", "'cifar10'"]),
    run_digits(
        "dataset.name={choice: [digits, mnist]}", says=["dataset.name", "only values under train"]
    ),
    run_digits(
        "dataset.root=/data/mnist",
        says=["dataset.root='/data/mnist'", "'digits' reads no files", "dataset.name"],
    ),
    run_digits(
        "dataset.name=cifar10",
        "dataset.root=/nonexistent/cifar",
        says=["dataset.root='/nonexistent/cifar'", "not a folder"],
    ),
    run_digits("dataset.val_fraction=0.9", says=["dataset.val_fraction", "less than 0.5"]),
    run_digits("dataset.test_fraction=0", says=["dataset.test_fraction", "greater than 0"]),
    run_digits("dataset.max_train_examples=5", says=["dataset.max_train_examples", "got 5"]),
    run_digits("dataset.image_size=2", says=["dataset.image_size", "got 2"]),
    run_digits("dataset.split_seed=-1", says=["dataset.split_seed", "got -1"]),
    run_digits("dataset.shuffle=true", says=["dataset.shuffle", "unknown key"]),
    # --- top level and --set syntax ----------------------------------------------------
    run_digits("gpus=1", says=["gpus", "unknown key"]),
    run_digits("name=bad name!", says=["name", "bad name!"]),
    run_digits("description=[1, 2]", says=["description", "valid string"]),
    run_digits("train", says=["--set 'train'", "KEY=VALUE"]),
    run_digits("=3", says=["--set '=3'", "KEY=VALUE"]),
    run_digits("train..epochs=3", says=["--set 'train..epochs=3'", "empty part"]),
    run_digits("train.epochs=[1,", says=["--set 'train.epochs=[1,'", "not valid YAML", "line 1"]),
    run_digits(
        "train.optimizer={name: adam, name: sgd}",
        says=["train.optimizer={name: adam, name: sgd}", "key 'name' is written twice"],
    ),
    # --- experiment files --------------------------------------------------------------
    run_file("", says=["exp.yaml", "empty"]),
    run_file("- just\n- a list\n", says=["exp.yaml", "top level must be a mapping", "list"]),
    run_file("just some words\n", says=["exp.yaml", "top level must be a mapping", "str"]),
    run_file("train:\n\tepochs: 3\n", says=["exp.yaml", "line 2, column 1", "spaces, not tabs"]),
    run_file("train: {epochs: 3\n", says=["exp.yaml", "not valid YAML", "line 2"]),
    run_file(
        VALID_FILE_TAIL + "train:\n  epochs: 3\n",
        says=["exp.yaml", "key 'train' is written twice", "lines 1 and 4"],
    ),
    run_file(
        "train:\n  epochs: 3\n  batch_size: {choice: [32, 64]}\n  epochs: 5\n",
        says=["exp.yaml", "key 'epochs' is written twice", "lines 2 and 4"],
    ),
    run_file(b"name: caf\xe9\n" + VALID_FILE_TAIL.encode(), says=["exp.yaml", "not UTF-8"]),
    run_file("name: x\ntrain: {epochs: 3}\n", says=["nothing to tune"]),
    run_file(
        "name: x\ntrain:\n  optimizer: {lr: {loguniform: [1.0e-3, 1.0e-2], grid: [1]}}\n",
        says=["train.optimizer.lr", "exactly one key"],
        name="exp.yml",
    ),
    Bad(["run", "{in}/missing.yaml"], ["missing.yaml", "does not exist", "digits"], id="missing"),
    Bad(
        ["run", "{in}/exps"],
        ["exps", "is a folder", "a.yaml", "YAML file or a built-in name"],
        _folder("exps", "a.yaml"),
        id="folder as experiment",
    ),
    Bad(["run", "{in}/empty-folder"], ["empty-folder", "is a folder"], _folder("empty-folder")),
    Bad(["run", "/dev/null"], ["/dev/null", "not a regular file"], id="device as experiment"),
    Bad(["run", "digitz"], ["'digitz'", "did you mean 'digits'", "digits-pbt"], id="digitz"),
    Bad(["run", ""], ["experiment ''", "cnn-tune list"], id="empty experiment"),
    # --- flags: --name, --storage, argparse ------------------------------------------------
    run_flags("--name=", says=["--name ''", "is empty"]),
    run_flags("--name=a/b", says=["--name 'a/b'", "path separator"]),
    run_flags("--name=..", says=["--name '..'", "would leave --storage"]),
    run_flags("--name=.hidden", says=["--name '.hidden'", "hidden folder"]),
    run_flags("--name=has space", says=["--name 'has space'", "' '"]),
    run_flags("--name=" + "x" * 200, says=["characters long", "more than 128"]),
    run_flags("--name=x?y", says=["--name 'x?y'", "'?'"]),
    run_flags("--name=-x", says=["--name '-x'", "start it with a letter or digit"]),
    run_flags(
        "--name=taken",
        says=["already holds a sweep", "cnn-tune resume"],
        setup=_existing_sweep,
    ),
    run_flags("--storage", "/proc/cnn-tune-x", says=["--storage '/proc/cnn-tune-x'", "'/proc'"]),
    run_flags(
        "--storage",
        "{in}/plain-file/runs",
        says=["--storage", "plain-file/runs", "which is a file, not a folder"],
        setup=_file("plain-file"),
    ),
    run_flags(
        "--storage",
        "{in}/plain-file",
        says=["--storage", "plain-file' is a file, not a folder"],
        setup=_file("plain-file"),
    ),
    run_flags("--storage=", says=["--storage '' is empty"]),
    run_flags("--storage", "ftp://host/runs", says=["--storage 'ftp://host/runs'", "s3://"]),
    run_flags("--storage", "s3://", says=["--storage 's3://' names no bucket"]),
    run_flags("--set", says=["--set", "expected one argument"]),
    run_flags("extra-positional", says=["unrecognized arguments", "extra-positional"]),
    run_flags("--bogus", says=["unrecognized arguments", "--bogus"]),
    Bad(["resume", ""], ["resume DIR '' is empty"], id="resume nothing"),
    Bad(
        ["resume", "{in}/sweep"],
        ["resources.cpu=1024 per trial", "wait for ever"],
        _saved_sweep_needing_cpus(1024),
        id="resume a sweep whose trials need 1024 CPUs",
    ),
    Bad(["train", "--sample-seed", "-1"], ["--sample-seed", "-1 is outside 0.."]),
    Bad(["tensorboard", "{in}", "--port", "70000"], ["--port", "70000 is outside 1..65535"]),
    Bad(
        ["resume", "{in}/not-a-sweep"],
        ["not-a-sweep", "is not a cnn-tune sweep"],
        _folder("not-a-sweep"),
        id="resume a plain folder",
    ),
    # --- data that cannot be learned from ------------------------------------------------
    run_images({"cat": 12}, says=["images", "found 1 class 'cat' (12 examples)", "at least 2"]),
    run_images(
        {"cat": 12, "dog": 12, "owl": 1},
        says=["class 'owl' (1 example) has a single example", "at least 7 examples"],
    ),
    run_images(
        {"cat": 12, "dog": 12},
        damage=_garble_one_image,
        says=["cat/0.png", "not an image format PIL can read", "remove or replace"],
    ),
    run_images(
        {"cat": 12, "dog": 12},
        damage=_truncate_one_image,
        says=["dog/1.png", "cannot be read", "remove or replace"],
    ),
    run_images(
        {"cat": 20, "dog": 20, "owl": 3},
        "dataset.split_seed=3",
        "dataset.max_train_examples=10",
        says=[
            "class 'owl' (3 examples) has no example in the train split",
            "dataset.split_seed=3",
            "raise dataset.max_train_examples=10",
        ],
    ),
    run_images(
        {"train": 6, "val": 6},
        says=["holds the folders train, val", "read as classes", "images/train"],
    ),
    run_images({}, says=["images", "class folder", "one sub-folder per class"]),
    run_images(
        {"cat": 12, "dog": 12},
        damage=_add_empty_class,
        says=["images", "empty", "one sub-folder per class"],
    ),
    Bad(
        [
            "run",
            "digits",
            "--storage",
            "{storage}",
            "--set",
            "dataset.name=image_folder",
            "--set",
            "dataset.root={in}/plain-file",
        ],
        ["dataset.root=", "plain-file", "not a folder"],
        _file("plain-file"),
        id="image_folder root is a file",
    ),
    Bad(
        [
            "run",
            "digits",
            "--storage",
            "{storage}",
            "--set",
            "dataset.name=mnist",
            "--set",
            "dataset.root={in}",
        ],
        ["dataset.root=", "MNIST/raw", "download"],
        id="mnist root without the files",
    ),
]


@pytest.fixture(autouse=True)
def _private_ray_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Ray started by mistake would make its session folder here, not in /tmp/ray."""
    ray_tmp = tmp_path / "ray-tmp"
    ray_tmp.mkdir()
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return ray_tmp


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own errors
        return int(exit_.code or 0)


def test_bad_input_table_has_at_least_100_distinct_rows() -> None:
    keys = [(tuple(bad.args), bad.id) for bad in BAD_INPUTS]
    assert len(set(keys)) == len(keys) >= 100


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.id or " ".join(b.args) for b in BAD_INPUTS])
def test_bad_input_exits_2_naming_the_problem_with_no_ray_and_nothing_written(
    bad: Bad, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, storage, cwd = tmp_path / "in", tmp_path / "storage", tmp_path / "cwd"
    for folder in (inputs, storage, cwd):
        folder.mkdir()
    if bad.setup is not None:
        bad.setup(inputs)
    monkeypatch.chdir(cwd)  # a default ./runs would land here, and be seen
    before = _tree(tmp_path)

    code = _exit_code(bad.argv(inputs, storage))

    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    for fragment in bad.says:
        assert fragment in err, f"{fragment!r} not in:\n{err}"
    assert "Traceback" not in err
    assert not ray.is_initialized()
    assert not any((tmp_path / "ray-tmp").iterdir()), "a Ray session folder was made"
    assert _tree(tmp_path) == before, "bad input must write nothing"
    assert os.listdir(cwd) == []
