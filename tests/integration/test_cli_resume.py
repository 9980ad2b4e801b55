"""The CLI end to end in subprocesses: Ctrl-C or kill -9 a sweep, resume it, lose no finished
trial, evaluate the test split once."""

from __future__ import annotations

import csv
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml
from ray import tune

from tuning.cli import main
from tuning.report.data import load_sweep

pytestmark = pytest.mark.integration

EPOCHS = 6
SWEEP = {
    "name": "resumable",
    "train": {
        "epochs": EPOCHS,
        "model": {"name": "cnn", "depth": 2, "width": 16},
        "optimizer": {"name": "adam", "lr": {"loguniform": [1.0e-3, 1.0e-2]}},
        # Small batches: epochs long enough (~1 s) for Ctrl-C to land mid-sweep.
        "batch_size": {"choice": [4, 8]},
    },
    "search": {"algorithm": "random", "num_samples": 4, "max_concurrent": 1, "seed": 0},
    "scheduler": {"name": "fifo"},
}


def cnn_tune(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tuning.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def epochs_reported(experiment_dir: Path) -> dict[str, list[int]]:
    """Trial folder -> the epoch of each row of its progress.csv, in order."""
    reported = {}
    for progress in experiment_dir.glob("trial_*/progress.csv"):
        with progress.open() as f:
            reported[progress.parent.name] = [int(row["epoch"]) for row in csv.DictReader(f)]
    return reported


def ended_trials(experiment_dir: Path) -> set[str]:
    """Trial folders that Tune's saved experiment state records as terminated."""
    trials = tune.ExperimentAnalysis(str(experiment_dir)).trials
    return {f"trial_{t.trial_id}" for t in trials if t.status == "TERMINATED"}


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path, listening_addresses):
    experiment_file = tmp_path / "sweep.yaml"
    experiment_file.write_text(yaml.safe_dump(SWEEP))
    experiment_dir = tmp_path / "runs" / "s"

    run = cnn_tune("run", str(experiment_file), "--storage", str(tmp_path / "runs"), "--name", "s")
    deadline = time.monotonic() + 240
    while run.poll() is None:
        # One trial at a time: once a second one reports, the first has ended (and Tune's
        # state says so), and the rest of the sweep (~17 epochs) is still to run. Waiting
        # for two finished trials left two, which a fast machine finished before Ctrl-C.
        if len([e for e in epochs_reported(experiment_dir).values() if e]) >= 2:
            break
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.1)
    listening = listening_addresses(run.pid)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)

    assert run.returncode == 1, err
    assert "cnn-tune resume" in err
    # Ray's GCS, raylet and workers were up, and none listened beyond loopback.
    assert listening and all(ipaddress.ip_address(a).is_loopback for a in listening), listening
    assert not (experiment_dir / "summary.json").exists()
    before = epochs_reported(experiment_dir)
    ended = ended_trials(experiment_dir)
    assert 1 <= len(ended) < 4, ended

    resume = cnn_tune("resume", str(experiment_dir))
    out, err = resume.communicate(timeout=400)

    assert resume.returncode == 0, err
    summary = json.loads((experiment_dir / "summary.json").read_text())
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0
    assert all(t["epochs"] == EPOCHS for t in summary["trials"])
    after = epochs_reported(experiment_dir)
    assert len(after) == 4 and all(set(e) == set(range(1, EPOCHS + 1)) for e in after.values())
    # A trial Tune recorded as ended is not trained again.
    assert all(after[name] == before[name] for name in ended)
    # One that was running goes on from its last checkpoint (one per epoch): at most the
    # epoch in flight and the one whose checkpoint Tune had not yet registered run again.
    for name in set(before) - ended:
        done = before[name][-1] if before[name] else 0
        repeated = len(after[name]) - len(before[name]) - (EPOCHS - done)
        assert 0 <= repeated <= 1, (name, before[name], after[name])
    assert "Test (held out, evaluated once per final model)" in out


def test_train_command_trains_one_config_without_ray(tmp_path, capsys):
    code = main(
        [
            "train",
            "digits",
            "--set",
            "train.epochs=2",
            "--sample-seed",
            "3",
            "--output",
            str(tmp_path),
        ]
    )

    out = capsys.readouterr().out
    assert code == 0
    assert out.count("val_acc") == 2 and "config:" in out
    assert (tmp_path / "state.pt").is_file()
    assert not ray.is_initialized()


def test_list_command_names_every_builtin(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "digits-pbt", "digits-grid", "cifar10"):
        assert name in out


def test_tensorboard_command_serves_on_loopback_and_prints_the_url(tmp_path):
    import socket
    import urllib.request

    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    board = cnn_tune("tensorboard", str(tmp_path), "--port", str(port))
    try:
        assert board.stdout is not None
        line = board.stdout.readline()
        assert line.startswith(f"TensorBoard at http://127.0.0.1:{port}/"), line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200
    finally:
        board.terminate()
        board.wait(timeout=30)


EARLY = {
    "name": "early",
    "dataset": {"name": "digits"},
    "train": {
        "epochs": 2,
        "model": {"name": "cnn", "depth": 1, "width": 8},
        "optimizer": {"name": "adam", "lr": {"loguniform": [1.0e-3, 1.0e-2]}},
    },
    "search": {"algorithm": "random", "num_samples": 2, "max_concurrent": 1, "seed": 0},
    "scheduler": {"name": "fifo"},
}


def cnn_tune_in_own_group(*args: str) -> subprocess.Popen:
    """`cnn-tune ARGS` as the leader of a process group, to kill -9 with its Ray."""
    return cnn_tune(*args, start_new_session=True)


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


@pytest.fixture(scope="module")
def early_killed_then_resumed(tmp_path_factory):
    """A sweep killed -9 as soon as its experiment file exists, then resumed to the end."""
    root = tmp_path_factory.mktemp("early")
    experiment_file = root / "early.yaml"
    experiment_file.write_text(yaml.safe_dump(EARLY))
    sweep = root / "runs" / "early"
    run_args = ("run", str(experiment_file), "--storage", str(root / "runs"), "--name", "early")
    run = cnn_tune_in_own_group(*run_args)
    deadline = time.monotonic() + 120
    while not (sweep / "cnn-tune-experiment.yaml").exists():
        assert run.poll() is None and time.monotonic() < deadline, "no experiment file"
        time.sleep(0.02)
    kill_group(run)
    had_tune_state = any(sweep.glob("experiment_state-*.json"))

    again = cnn_tune(*run_args)
    _, again_err = again.communicate(timeout=120)
    resume = cnn_tune("resume", str(sweep))
    _, resume_err = resume.communicate(timeout=400)
    return {
        "sweep": sweep,
        "had_tune_state": had_tune_state,
        "again": (again.returncode, again_err),
        "resume": (resume.returncode, resume_err),
    }


def test_run_again_after_an_early_kill_points_to_resume_which_finishes_it(
    early_killed_then_resumed,
):
    outcome = early_killed_then_resumed
    sweep = outcome["sweep"]
    code, err = outcome["again"]
    assert not outcome["had_tune_state"]
    assert code == 2 and f"cnn-tune resume {sweep}" in err
    code, err = outcome["resume"]
    assert code == 0, err
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["num_trials"] == 2 and summary["test"]["evaluations"] == 1
    assert sorted(epochs_reported(sweep).values()) == [[1, 2], [1, 2]]
    assert err.count("held-out test examples") == 1


def test_resume_killed_after_the_test_evaluation_reads_its_figures_back(
    early_killed_then_resumed,
):
    sweep = early_killed_then_resumed["sweep"]
    finished = json.loads((sweep / "summary.json").read_text())
    (sweep / "summary.json").unlink()  # as a kill between test.json and summary.json leaves it

    resume = cnn_tune("resume", str(sweep))
    _, err = resume.communicate(timeout=400)

    assert resume.returncode == 0, err
    assert "held-out test examples" not in err  # the test split is not looked at again
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["test"] == finished["test"]
    assert summary["best"]["trial_id"] == finished["best"]["trial_id"]
    assert summary["wall_seconds"] >= finished["wall_seconds"]  # earlier runs still count


def test_resume_of_a_sweep_killed_before_its_test_evaluation_evaluates_once(
    early_killed_then_resumed,
):
    sweep = early_killed_then_resumed["sweep"]
    (sweep / "summary.json").unlink()
    for record in sweep.glob("final/*/test.json"):
        record.unlink()

    resume = cnn_tune("resume", str(sweep))
    _, err = resume.communicate(timeout=400)

    assert resume.returncode == 0, err
    assert err.count("held-out test examples") == 1


@pytest.mark.slow
def test_an_extension_killed_mid_round_continues_its_round_on_resume(early_killed_then_resumed):
    sweep = early_killed_then_resumed["sweep"]
    before = json.loads((sweep / "summary.json").read_text())
    extend = cnn_tune_in_own_group("resume", str(sweep), "--set", "search.num_samples=4")
    deadline = time.monotonic() + 240
    while not any((sweep / "extension-1").glob("trial_*/checkpoint_*")):
        assert extend.poll() is None and time.monotonic() < deadline, extend.communicate()
        time.sleep(0.02)
    kill_group(extend)  # 2 trials planned, one at a time: the round is far from its end

    resume = cnn_tune("resume", str(sweep))
    _, err = resume.communicate(timeout=400)

    assert resume.returncode == 0, err
    assert f"continuing the extension of {sweep} in {sweep}/extension-1" in err
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["num_trials"] == 4 and summary["extensions"] == 1
    assert all(t["epochs"] == 2 and t["status"] == "completed" for t in summary["trials"])
    kept = {t["trial_id"]: t["best"] for t in before["trials"]}
    assert {t["trial_id"]: t["best"] for t in summary["trials"] if t["trial_id"] in kept} == kept
    assert len(epochs_reported(sweep / "extension-1")) == 2


@pytest.mark.slow
def test_more_epochs_killed_mid_round_go_on_from_where_the_kill_left_them(
    early_killed_then_resumed,
):
    sweep = early_killed_then_resumed["sweep"]
    before = json.loads((sweep / "summary.json").read_text())
    round_dir = sweep / f"extension-{before.get('extensions', 0) + 1}"
    extend = cnn_tune_in_own_group("resume", str(sweep), "--set", "train.epochs=4")
    deadline = time.monotonic() + 240
    while not any(round_dir.glob("trial_*/checkpoint_*")):
        assert extend.poll() is None and time.monotonic() < deadline, extend.communicate()
        time.sleep(0.02)
    kill_group(extend)  # one trial at a time, 2 epochs each: the round is far from its end

    # The same command again, as a user would: the round goes on as planned.
    resume = cnn_tune("resume", str(sweep), "--set", "train.epochs=4")
    _, err = resume.communicate(timeout=400)

    assert resume.returncode == 0, err
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["num_trials"] == before["num_trials"]  # the same trials, trained on
    # The best checkpoint.keep_trials (3) trials, and any tied with the third, went on.
    bests = sorted((t["best"] for t in before["trials"]), reverse=True)
    expected = {t["trial_id"] for t in before["trials"] if t["best"] >= bests[2]}
    continued = json.loads((round_dir / "continued.json").read_text())["checkpoints"]
    assert set(continued) == expected
    after = {t["trial_id"]: t for t in summary["trials"]}
    assert all(after[t]["epochs"] == 4 and after[t]["status"] == "completed" for t in continued)
    for trial in before["trials"]:
        if trial["trial_id"] not in continued:  # left as it was
            assert (after[trial["trial_id"]]["epochs"], after[trial["trial_id"]]["best"]) == (
                2,
                trial["best"],
            )
    # Where a continued trial first ran, its rows are still epochs 1 and 2.
    rounds = [sweep, *(r for r in sweep.glob("extension-*") if r != round_dir)]
    for trial_id in continued:
        (where,) = [r for r in rounds if (r / f"trial_{trial_id}").is_dir()]
        assert epochs_reported(where)[f"trial_{trial_id}"] == [1, 2]
    # One trial each in the report too; the test split is looked at again only for a
    # new final model.
    assert {t.trial_id for t in load_sweep(sweep).trials} == set(after)
    new_model = summary["final"] != before["final"]
    assert summary["test"]["looks"] == before["test"]["looks"] + new_model
    # Each continued trial trained epochs 3 and 4 in the round, each of them once at most
    # again: the epoch in flight at the kill, from the trial's latest checkpoint.
    for epochs in epochs_reported(round_dir).values():
        assert epochs[0] == 3 and epochs[-1] == 4 and len(epochs) <= 3, epochs
    assert len(epochs_reported(round_dir)) == len(continued)


def test_resume_of_a_folder_without_an_experiment_says_what_to_pass(tmp_path):
    resume = cnn_tune("resume", str(tmp_path))
    _, err = resume.communicate(timeout=120)
    assert resume.returncode == 2
    assert "cnn-tune-experiment.yaml" in err and "<storage>/<name>" in err
