"""`cnn-tune run` against real `ray start` clusters on 127.0.0.1, as a user would run them.

The cluster is what Ray 2.60 gives by default: `ray start --head` finds a token in
~/.ray/auth_token and turns token authentication on; workers join with
`RAY_AUTH_MODE=token ray start --address ...` (docs/cluster.md). Every process here
runs with HOME set to a fresh folder, so the token is this module's own; each `ray start`
runs in a session of its own, and teardown ends that session's processes, and those
below them, by process id. Ray's default temp folder is moved with RAY_TMPDIR (Ray looks
for ray_current_cluster in `$RAY_TMPDIR/ray`), so nothing here reads or writes /tmp/ray.
"""

from __future__ import annotations

import contextlib
import csv
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

RAY = str(Path(sys.executable).with_name("ray"))
EPOCHS = 6
SMALL_SWEEP = {
    "name": "small",
    "train": {
        "epochs": EPOCHS,
        "model": {"name": "cnn", "depth": 2, "width": 16},
        "optimizer": {"name": "adam", "lr": {"loguniform": [1.0e-3, 1.0e-2]}},
        "batch_size": 16,
    },
    "search": {"algorithm": "random", "num_samples": 3, "seed": 0},
    "scheduler": {"name": "fifo"},
    "checkpoint": {"every_epochs": 1, "keep": 1},
}


@dataclass(frozen=True)
class RayNode:
    """One `ray start` node: the process group of its daemons, and its Ray node id.

    The raylet starts Ray's worker processes (the trials) in process groups of their
    own, so a node is its daemons' group plus every process below them.
    """

    pgid: int
    node_id: str

    def processes(self) -> set[int]:
        pids = set(_live_pids_in_group(self.pgid))
        frontier = list(pids)
        while frontier:
            children = Path(f"/proc/{frontier.pop()}/task")
            for task in children.glob("*/children") if children.exists() else ():
                with contextlib.suppress(OSError):
                    for child in map(int, task.read_text().split()):
                        if child not in pids:
                            pids.add(child)
                            frontier.append(child)
        return pids

    def kill(self) -> None:
        """What losing the machine does to it: SIGKILL to every process of the node."""
        _signal_all(self.processes(), signal.SIGKILL)

    def stop(self) -> None:
        """`ray stop` for this node only: SIGTERM, then SIGKILL what is left after 3 s."""
        pids = self.processes()
        _signal_all(pids, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.5)
        _signal_all(pids, signal.SIGKILL)


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@dataclass(frozen=True)
class Cluster:
    head: RayNode
    workers: list[RayNode]
    address: str  # HOST:PORT of the head's GCS
    ray_tmpdir: Path  # RAY_TMPDIR: the head's temp folder and ray_current_cluster are in ray/
    env: dict[str, str]  # a shell on this machine: HOME holds the cluster's token

    @property
    def node_ids(self) -> set[str]:
        return {self.head.node_id} | {w.node_id for w in self.workers}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and one worker, 1 CPU each, with Ray 2.60's default token authentication."""
    base = Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))  # short: Ray's socket paths
    env = {**user_shell_env(base / "home"), "RAY_TMPDIR": str(base)}
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    port = free_port()
    nodes: list[RayNode] = []
    try:
        head_args = ["--head", "--port", str(port), "--node-ip-address", "127.0.0.1"]
        head_args += ["--temp-dir", str(base / "ray"), "--include-dashboard", "false"]
        head_args += ["--ray-client-server-port", str(free_port())]
        nodes.append(start_node(head_args, env, base / "head.log"))
        address = f"127.0.0.1:{port}"
        nodes.append(start_worker(address, env, base / "worker-1.log"))
        yield Cluster(nodes[0], nodes[1:], address, base, env)
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ray_tmpdir() -> Iterator[Path]:
    """A RAY_TMPDIR for a private Ray: short, as Ray's socket paths must be (107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def user_shell_env(home: Path) -> dict[str, str]:
    """This environment as a user's shell has it: no Ray switch the test session set."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def start_node(args: list[str], env: dict[str, str], log: Path) -> RayNode:
    """`ray start ARGS` in a new session; its daemons keep the session's process group."""
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    common += ["--dashboard-agent-listen-port", str(free_port())]
    common += ["--object-store-memory", str(200 * 1024**2)]
    with log.open("w") as out:
        start = subprocess.Popen(
            [RAY, "start", *args, *common],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        code = start.wait(timeout=120)
    node = RayNode(start.pid, _raylet_node_id(start.pid))
    if code != 0:
        node.stop()
        pytest.fail(f"ray start {' '.join(args)} exited {code}:\n{log.read_text()[-3000:]}")
    return node


def start_worker(address: str, env: dict[str, str], log: Path) -> RayNode:
    """A worker node joins as docs/cluster.md says: RAY_AUTH_MODE=token ray start --address."""
    return start_node(["--address", address], {**env, "RAY_AUTH_MODE": "token"}, log)


def _raylet_node_id(pgid: int) -> str:
    for pid in _live_pids_in_group(pgid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if cmdline and cmdline[0].endswith(b"/raylet"):
            flags = [a.decode() for a in cmdline if a.startswith(b"--node_id=")]
            return flags[0].split("=", 1)[1]
    return ""


def _live_pids_in_group(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp
            pids.append(int(stat.parent.name))
    return pids


def cnn_tune(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tuning.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_sweep(folder: Path, **changes) -> Path:
    sweep = json.loads(json.dumps(SMALL_SWEEP))
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        section = sweep
        for parent in parents:
            section = section[parent]
        section[key] = value
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def progress_rows(experiment_dir: Path) -> dict[str, list[dict[str, str]]]:
    """Trial id -> its progress.csv rows (one per reported epoch), in order."""
    rows = {}
    for progress in experiment_dir.glob("trial_*/progress.csv"):
        with progress.open() as f:
            rows[progress.parent.name.removeprefix("trial_")] = list(csv.DictReader(f))
    return rows


def test_run_with_address_sweeps_on_every_node_and_names_each_trials_node(cluster, tmp_path):
    # Two trials start at once, and each node has room for one (1 CPU each).
    sweep = write_sweep(tmp_path, train__epochs=3, search__num_samples=2)
    run = cnn_tune(
        "run", str(sweep), "--address", cluster.address, "--storage", str(tmp_path / "runs"),
        "--name", "onto-cluster", env=cluster.env,
    )  # fmt: skip
    _out, err = run.communicate(timeout=240)

    assert run.returncode == 0, err
    assert "uses token authentication" in err and "Joined the Ray cluster" in err
    summary = json.loads((tmp_path / "runs" / "onto-cluster" / "summary.json").read_text())
    assert summary["num_trials"] == 2 and summary["num_errored"] == 0
    nodes = {trial["node_id"] for trial in summary["trials"]}
    assert nodes == cluster.node_ids, (nodes, cluster.node_ids)
    assert all(trial["nodes"] == [trial["node_id"]] for trial in summary["trials"])


@pytest.mark.slow
def test_worker_node_killed_mid_sweep_its_trials_finish_elsewhere_from_checkpoint(
    cluster, tmp_path, listening_addresses
):
    victim = start_worker(cluster.address, cluster.env, tmp_path / "victim.log")
    try:
        # Batches of 4 and twice the epochs: trials of 12 epochs of ~0.5 s or more; the
        # kill comes at the second epoch on the victim, so it lands mid-trial.
        sweep = write_sweep(tmp_path, train__batch_size=4, train__epochs=2 * EPOCHS)
        experiment_dir = tmp_path / "runs" / "node-lost"
        run = cnn_tune(
            # auto: the cluster `ray start --head` recorded in $RAY_TMPDIR/ray
            "run", str(sweep), "--address", "auto", "--storage", str(tmp_path / "runs"),
            "--name", "node-lost", env=cluster.env,
        )  # fmt: skip
        wait_for_epochs_on(victim.node_id, 2, cluster.ray_tmpdir, run)
        driver_listens = listening_addresses(run.pid)
        victim.kill()
        _out, err = run.communicate(timeout=300)
    finally:
        victim.stop()

    assert run.returncode == 0, err
    summary = json.loads((experiment_dir / "summary.json").read_text())
    assert summary["num_trials"] == 3 and summary["num_errored"] == 0
    assert all(t["epochs"] == 2 * EPOCHS for t in summary["trials"])
    rows = progress_rows(experiment_dir)
    # Trials that started on the victim and had to move (one may have finished there).
    on_victim = {
        t: r
        for t, r in rows.items()
        if r[0]["node_id"] == victim.node_id and r[-1]["node_id"] != victim.node_id
    }
    assert on_victim, rows
    for trial_id, trial_rows in on_victim.items():
        last_there = max(int(r["epoch"]) for r in trial_rows if r["node_id"] == victim.node_id)
        moved = [r for r in trial_rows if r["node_id"] != victim.node_id]
        # Resumed from its last checkpoint (one per epoch), not from epoch 1.
        assert 2 <= int(moved[0]["epoch"]) <= last_there + 1, (trial_id, trial_rows)
        assert {int(r["epoch"]) for r in trial_rows} == set(range(1, 2 * EPOCHS + 1))
        record = next(t for t in summary["trials"] if t["trial_id"] == trial_id)
        assert record["nodes"][0] == victim.node_id and record["node_id"] != victim.node_id
    # Ray binds a driver's gRPC server as it binds its node's raylet: to every interface
    # unless the node's address is loopback (docs/cluster.md, "What listens where").
    assert driver_listens <= node_listening_addresses(cluster.head, listening_addresses)


def wait_for_epochs_on(node_id: str, epochs: int, ray_tmpdir: Path, run: subprocess.Popen) -> None:
    """Wait until a trial reported `epochs` epochs on `node_id`.

    Read where the driver writes each result as it arrives, its staging folder in the
    Ray session's temp folder: the storage copy is synced only every few seconds.
    """
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()[1]
        for staged in ray_tmpdir.glob("ray/session_*/artifacts/*/*/driver_artifacts"):
            for trial_rows in progress_rows(staged).values():
                if sum(r.get("node_id") == node_id for r in trial_rows) >= epochs:
                    return
        time.sleep(0.2)
    run.kill()
    pytest.fail(f"no trial reported {epochs} epochs on node {node_id} in time")


def node_listening_addresses(node: RayNode, listening_addresses) -> set[str]:
    addresses: set[str] = set()
    for pid in _live_pids_in_group(node.pgid):
        addresses |= listening_addresses(pid)
    return addresses


@pytest.mark.slow
def test_run_with_dead_address_fails_within_timeout_with_what_was_tried(tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = user_shell_env(tmp_path / "home")
    start = time.monotonic()
    run = cnn_tune(
        "run", "digits", "--address", address, "--storage", str(tmp_path / "runs"), env=env
    )
    _, err = run.communicate(timeout=120)

    assert run.returncode == 2, err
    assert time.monotonic() - start < 45  # a refused port: about 5 s, plus the start
    assert f"--address {address}" in err and "TCP connection" in err and "token" in err
    assert not (tmp_path / "runs").exists()


def test_run_with_address_but_without_the_clusters_token_says_how_to_get_it(cluster, tmp_path):
    env = user_shell_env(tmp_path / "home")  # this machine has no token
    run = cnn_tune(
        "run", "digits", "--address", cluster.address, "--storage", str(tmp_path / "runs"),
        env=env,
    )  # fmt: skip
    _, err = run.communicate(timeout=120)

    assert run.returncode == 2, err
    assert f"--address {cluster.address}" in err and "requires token authentication" in err
    assert "ray get-auth-token" in err and "~/.ray/auth_token" in err
    assert not (tmp_path / "runs").exists()


def test_local_run_ignores_a_stopped_cluster_named_where_ray_looks(tmp_path, ray_tmpdir):
    """The file a stopped `ray start` left, and RAY_ADDRESS: a plain `ray.init()` would wait."""
    stale = f"127.0.0.1:{free_port()}"  # nothing listens there any more
    cluster_file = ray_tmpdir / "ray" / "ray_current_cluster"
    cluster_file.parent.mkdir(parents=True)
    cluster_file.write_text(stale)
    env = {**user_shell_env(tmp_path / "home"), "RAY_TMPDIR": str(ray_tmpdir), "RAY_ADDRESS": stale}
    sweep = write_sweep(tmp_path, train__epochs=1, search__num_samples=1)

    run = cnn_tune("run", str(sweep), "--storage", str(tmp_path / "runs"), "--name", "s", env=env)
    _, err = run.communicate(timeout=180)

    assert run.returncode == 0, err
    assert "Starting a private Ray" in err and f"not joining RAY_ADDRESS={stale}" in err
    assert f"the cluster at {stale} named by {cluster_file}" in err
    assert cluster_file.read_text() == stale


def test_private_ray_is_on_loopback_and_not_a_live_cluster_named_elsewhere(
    cluster, tmp_path, ray_tmpdir, listening_addresses
):
    """A local run's Ray is its own: on loopback only (the one test of the coupling to Ray's
    loopback switch), even when ray_current_cluster and RAY_ADDRESS name a live cluster."""
    recorded = (cluster.ray_tmpdir / "ray" / "ray_current_cluster").read_text()
    cluster_file = ray_tmpdir / "ray" / "ray_current_cluster"
    cluster_file.parent.mkdir()
    cluster_file.write_text(recorded)
    env = {**cluster.env, "RAY_TMPDIR": str(ray_tmpdir), "RAY_ADDRESS": cluster.address}
    code = (
        "import json, logging, sys\n"
        "from tuning.cluster import keep_private_ray_on_loopback, connect\n"
        "assert keep_private_ray_on_loopback()\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "connect(None)\n"
        "import ray\n"
        "nodes = [n['NodeID'] for n in ray.nodes()]\n"
        "print(json.dumps([ray.get_runtime_context().gcs_address, nodes]), flush=True)\n"
        "sys.stdin.read()\n"
    )
    log = tmp_path / "private-ray.log"
    with log.open("w") as err:
        ray_process = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            gcs_address, nodes = json.loads(ray_process.stdout.readline() or "[null, []]")
            listening = listening_addresses(ray_process.pid)
        finally:
            ray_process.communicate(input="", timeout=60)

    assert gcs_address and gcs_address.startswith("127.0.0.1:"), log.read_text()
    assert nodes and not set(nodes) & cluster.node_ids
    assert listening and all(ipaddress.ip_address(a).is_loopback for a in listening), listening
    said = log.read_text()
    assert f"not joining RAY_ADDRESS={cluster.address}" in said and str(cluster_file) in said
