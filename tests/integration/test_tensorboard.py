"""TensorBoard's HParams dashboard shows every tuned parameter of every trial.

One small random sweep over a conditional optimizer choice (sgd has its own momentum
and nesterov), an integer choice and an integer range, read back by TensorBoard itself:
its event reader, and `cnn-tune tensorboard` answering the hparams plugin's HTTP API
the way the dashboard asks it.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from ray import tune
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from tuning.experiment import validate_experiment
from tuning.runner import run_sweep

pytestmark = pytest.mark.integration

COLUMN_TYPES = {
    "optimizer.name": api_pb2.DATA_TYPE_STRING,
    "optimizer.lr": api_pb2.DATA_TYPE_FLOAT64,
    "optimizer.momentum": api_pb2.DATA_TYPE_FLOAT64,
    "optimizer.nesterov": api_pb2.DATA_TYPE_BOOL,
    "batch_size": api_pb2.DATA_TYPE_FLOAT64,
    "model.width": api_pb2.DATA_TYPE_FLOAT64,
}
METRIC_TAGS = {
    *("best_val_acc", "val_acc", "val_loss", "train_acc", "train_loss", "epoch"),
    *("params", "flops", "latency_ms", "latency_ms_batch"),
}
EPOCHS = 2


class SessionAtFirstEpoch(tune.Callback):
    """Reads each trial's run, as TensorBoard would, when its first epoch is reported."""

    def __init__(self, seen: dict[str, dict[str, bytes]]) -> None:
        self.seen = seen

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if trial.trial_id not in self.seen:
            self.seen[trial.trial_id] = hparams_content(Path(trial.local_path))


@pytest.fixture(scope="module")
def sessions_mid_trial() -> dict[str, dict[str, bytes]]:
    """trial id -> the hparams summaries in its run at its first epoch (filled by `sweep`)."""
    return {}


@pytest.fixture(scope="module")
def sweep(ray_two_cpus, small_experiment, tmp_path_factory, sessions_mid_trial):
    raw = small_experiment(search={"algorithm": "random", "num_samples": 5, "seed": 3})
    raw["train"]["epochs"] = EPOCHS
    raw["train"]["model"] = {"name": "cnn", "depth": 1, "width": {"randint": [4, 9]}}
    raw["train"]["batch_size"] = {"choice": [32, 64]}
    raw["train"]["optimizer"] = {
        "choice": [
            {
                "name": "sgd",
                "lr": 0.05,
                "momentum": {"uniform": [0.5, 0.9]},
                "nesterov": {"choice": [True, False]},
            },
            {"name": "adam", "lr": {"loguniform": [1.0e-3, 1.0e-2]}},
        ]
    }
    storage = tmp_path_factory.mktemp("runs")
    outcome = run_sweep(
        validate_experiment(raw),
        storage=str(storage),
        name="board",
        callbacks=[SessionAtFirstEpoch(sessions_mid_trial)],
    )
    chosen = {t["tuned"]["optimizer.name"] for t in outcome.summary["trials"]}
    assert chosen == {"sgd", "adam"}, "the seed must take both branches of the choice"
    return outcome


def hparams_content(run_dir: Path) -> dict[str, bytes]:
    """The hparams plugin's summaries in one run (one folder), read by TensorBoard."""
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    try:
        return accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    except KeyError:  # no hparams summary in this run
        return {}


def as_python(value: Any) -> Any:
    """A google.protobuf.Value as the Python value it holds."""
    return getattr(value, value.WhichOneof("kind"))


def test_tensorboard_root_run_declares_every_tuned_parameter_and_metric(sweep):
    content = hparams_content(sweep.experiment_dir)
    assert set(content) == {metadata.EXPERIMENT_TAG}

    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    columns = {info.name: info for info in experiment.hparam_infos}
    assert {name: info.type for name, info in columns.items()} == COLUMN_TYPES
    used = {key for trial in sweep.summary["trials"] for key in trial["tuned"]}
    assert used == set(columns)
    assert [as_python(v) for v in columns["batch_size"].domain_discrete.values] == [32, 64]
    assert {as_python(v) for v in columns["optimizer.name"].domain_discrete.values} == {
        "sgd",
        "adam",
    }
    width = columns["model.width"].domain_interval
    assert (width.min_value, width.max_value) == (4, 8)
    assert {info.name.tag for info in experiment.metric_infos} == METRIC_TAGS
    assert all(info.display_name for info in experiment.metric_infos)


def test_tensorboard_trial_run_holds_a_session_with_exactly_its_tuned_values(sweep):
    trials = sweep.summary["trials"]
    assert len(trials) == 5
    for trial in trials:
        content = hparams_content(sweep.experiment_dir / f"trial_{trial['trial_id']}")
        assert metadata.EXPERIMENT_TAG not in content  # the sweep's root run holds it
        start = metadata.parse_session_start_info_plugin_data(
            content[metadata.SESSION_START_INFO_TAG]
        )
        tuned = trial["tuned"]
        assert {key: as_python(value) for key, value in start.hparams.items()} == tuned
        assert ("optimizer.momentum" in tuned) == (tuned["optimizer.name"] == "sgd")
        for key in ("batch_size", "model.width"):  # integers are numbers, not text
            assert start.hparams[key].WhichOneof("kind") == "number_value"
        end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
        assert end.status == api_pb2.STATUS_SUCCESS


def test_tensorboard_lists_a_running_trial_with_its_values_and_no_end_yet(
    sweep, sessions_mid_trial
):
    trials = {t["trial_id"]: t for t in sweep.summary["trials"]}
    assert set(sessions_mid_trial) == set(trials)
    for trial_id, content in sessions_mid_trial.items():
        start = metadata.parse_session_start_info_plugin_data(
            content[metadata.SESSION_START_INFO_TAG]
        )
        values = {key: as_python(value) for key, value in start.hparams.items()}
        assert values == trials[trial_id]["tuned"]
        assert metadata.SESSION_END_INFO_TAG not in content


def test_tensorboard_session_of_a_diverged_trial_ends_in_failure(
    ray_two_cpus, small_experiment, tmp_path
):
    raw = small_experiment(search={"algorithm": "grid"})
    raw["train"]["epochs"] = EPOCHS
    raw["train"]["batch_size"] = 32
    raw["train"]["model"] = {"depth": 4, "width": 64, "batch_norm": False}
    # lr 10 with heavy momentum sends the loss to NaN in the first epoch.
    raw["train"]["optimizer"] = {"name": "sgd", "momentum": 0.99, "lr": {"grid": [10.0, 0.01]}}

    outcome = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="diverging")

    statuses = {}
    for trial in outcome.summary["trials"]:
        content = hparams_content(outcome.experiment_dir / f"trial_{trial['trial_id']}")
        end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
        statuses[trial["status"]] = end.status
    assert statuses == {"diverged": api_pb2.STATUS_FAILURE, "completed": api_pb2.STATUS_SUCCESS}


def test_tensorboard_command_serves_scalars_and_hparams_of_every_trial(sweep, listening_addresses):
    port = free_port()
    command = ["tensorboard", str(sweep.experiment_dir), "--port", str(port)]
    board = subprocess.Popen(
        [sys.executable, "-m", "tuning.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert board.stdout is not None
        assert board.stdout.readline().startswith(f"TensorBoard at http://127.0.0.1:{port}/")
        listing = wait_for_plugins(port, ("scalars", "hparams"), timeout_s=60)
        assert listing["scalars"]["enabled"] and listing["hparams"]["enabled"]
        listeners = listening_addresses(board.pid)
        assert listeners and all(ipaddress.ip_address(a).is_loopback for a in listeners)

        experiment = post(port, "experiment", {"experimentName": "", "hparamsLimit": 1000})
        assert {c["name"] for c in experiment["hparamInfos"]} == set(COLUMN_TYPES)
        groups = post(port, "session_groups", session_groups_request(experiment))["sessionGroups"]
    finally:
        board.terminate()
        board.wait(timeout=30)

    trials = {f"trial_{t['trial_id']}": t for t in sweep.summary["trials"]}
    assert {group["name"] for group in groups} == set(trials)
    for group in groups:
        trial = trials[group["name"]]
        assert group["hparams"] == trial["tuned"]
        values = {v["name"]["tag"]: v["value"] for v in group["metricValues"]}
        assert set(values) == METRIC_TAGS
        assert values["epoch"] == trial["epochs"] == EPOCHS
        assert values["best_val_acc"] == pytest.approx(trial["best"], abs=1e-6)
        assert [s["status"] for s in group["sessions"]] == ["STATUS_SUCCESS"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_plugins(port: int, names: tuple[str, ...], timeout_s: float) -> dict[str, Any]:
    """The plugin listing, once TensorBoard has loaded data for every plugin in `names`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            url = f"http://127.0.0.1:{port}/data/plugins_listing"
            with urllib.request.urlopen(url, timeout=5) as response:
                listing = json.load(response)
            if all(listing.get(name, {}).get("enabled") for name in names):
                return listing
        except (urllib.error.URLError, ConnectionError):
            pass  # not listening yet
        assert time.monotonic() < deadline, f"TensorBoard did not serve {names} in {timeout_s}s"
        time.sleep(0.5)


def post(port: int, route: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST to the hparams plugin's API, as its dashboard does."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/data/plugin/hparams/{route}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def session_groups_request(experiment: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's ListSessionGroupsRequest: every column, every status, one page."""
    columns = [{"hparam": info["name"]} for info in experiment["hparamInfos"]]
    columns += [{"metric": info["name"]} for info in experiment["metricInfos"]]
    return {
        "experimentName": "",
        "allowedStatuses": [api_pb2.Status.Name(s) for s in api_pb2.Status.values()],
        "colParams": columns,
        "startIndex": 0,
        "sliceSize": 100,
    }
