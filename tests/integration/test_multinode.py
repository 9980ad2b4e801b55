"""A sweep on a local multi-node cluster: a head and two worker nodes with logical GPUs.

Ray's in-process test cluster (`ray.cluster_utils.Cluster`) records its address in
ray_current_cluster under Ray's default temp folder, where any plain `ray.init()` on the
machine would find it (and wait for it once it is gone). It gets a temp folder of its own
(RAY_TMPDIR); real `ray start` clusters are in test_real_cluster.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest
import ray
from ray.cluster_utils import Cluster

from tuning.experiment import validate_experiment
from tuning.runner import run_sweep
from tuning.storage import check_storage_is_shared

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def three_node_cluster(logical_gpus_declared):
    # The nodes' GPUs exist only for Ray: trials given a share train on the CPU.
    if ray.is_initialized():
        ray.shutdown()
    ray_tmpdir = tempfile.mkdtemp(prefix="ct-", dir="/tmp")  # short: Ray's socket paths
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = ray_tmpdir
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        workers = [cluster.add_node(num_cpus=2, num_gpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster, workers
        ray.shutdown()
        cluster.shutdown()
    finally:
        if previous is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous
        shutil.rmtree(ray_tmpdir, ignore_errors=True)


def test_sweep_runs_trials_on_two_nodes_into_one_storage(
    three_node_cluster, small_experiment, tmp_path
):
    _, workers = three_node_cluster
    raw = small_experiment(
        search={"algorithm": "random", "num_samples": 4, "seed": 0},
        resources={"cpu": 1, "gpu": 0.5},
    )
    raw["train"]["epochs"] = 2

    outcome = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="multinode")

    nodes = set()
    for trial in outcome.summary["trials"]:
        trial_dir = outcome.experiment_dir / f"trial_{trial['trial_id']}"
        rows = (trial_dir / "progress.csv").read_text().splitlines()
        assert len(rows) == 1 + trial["epochs"]  # header + one row per epoch
        assert list(trial_dir.glob("events.out.tfevents.*"))
        header = rows[0].split(",")
        nodes.update(row.split(",")[header.index("node_id")] for row in rows[1:])
    assert nodes <= {w.node_id for w in workers} and len(nodes) == 2
    summary = json.loads((outcome.experiment_dir / "summary.json").read_text())
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0
    assert {trial["node_id"] for trial in summary["trials"]} == nodes  # each trial's node


def test_storage_check_passes_for_a_path_every_node_sees(three_node_cluster, tmp_path):
    check_storage_is_shared(str(tmp_path))  # all nodes run on this machine: one filesystem
