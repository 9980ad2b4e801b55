"""Ray tasks with a trial's GPU share (retraining, the test evaluation) on one logical GPU."""

from __future__ import annotations

import os

import pytest
import ray

from trainables.tune_adapter import remote_with_share

pytestmark = pytest.mark.integration


def _worker_pid() -> int:
    return os.getpid()


def test_a_task_with_a_gpu_share_gets_a_fresh_worker_process_each_time(ray_one_logical_gpu):
    # A reused worker would keep its CUDA context (and memory cap) on the last task's GPU.
    task = remote_with_share(_worker_pid, cpu=1, gpu=0.5)

    first = ray.get(task.remote(), timeout=120)
    second = ray.get(task.remote(), timeout=120)

    assert first != second


def test_a_task_without_a_gpu_share_may_reuse_its_worker(ray_one_logical_gpu):
    task = remote_with_share(_worker_pid, cpu=1, gpu=0)

    pids = {ray.get(task.remote(), timeout=120) for _ in range(4)}

    assert len(pids) < 4  # CPU tasks keep Ray's worker reuse
