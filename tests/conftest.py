"""Shared fixtures: small digits data and module-scoped real Ray instances."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tuning.cluster import keep_private_ray_on_loopback

# Before Ray is imported: the test clusters listen on loopback only, as cnn-tune's own do.
keep_private_ray_on_loopback()
os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "8")

import ray  # noqa: E402 - after the switch above, which Ray reads at import


def start_ray(**resources: Any) -> None:
    """A fresh local Ray; no GPU unless asked, even on a GPU host (Ray would detect it)."""
    if ray.is_initialized():
        ray.shutdown()
    resources.setdefault("num_gpus", 0)
    ray.init(include_dashboard=False, log_to_driver=False, **resources)


@pytest.fixture(scope="module")
def ray_two_cpus() -> Iterator[None]:
    """A real local Ray with the 2 CPUs of a developer machine."""
    start_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_one_logical_gpu() -> Iterator[None]:
    """Ray told it has one GPU (none needs to exist) and enough CPUs to pack trials onto it.

    The GPU is declared logical before Ray starts, so its workers inherit the setting:
    trials given a share train on the CPU instead of failing for want of CUDA.
    """
    with logical_gpus():
        start_ray(num_cpus=8, num_gpus=1)
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def logical_gpus_declared() -> Iterator[None]:
    """For a module whose Ray nodes have logical GPUs: declared before they start."""
    with logical_gpus():
        yield


@contextlib.contextmanager
def logical_gpus() -> Iterator[None]:
    """Declare Ray's GPUs logical for Ray processes started inside (they inherit it)."""
    from trainables.gpu import LOGICAL_GPUS_ENV

    previous = os.environ.get(LOGICAL_GPUS_ENV)
    os.environ[LOGICAL_GPUS_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(LOGICAL_GPUS_ENV)
        else:
            os.environ[LOGICAL_GPUS_ENV] = previous


@pytest.fixture(scope="session")
def digits_splits():
    from trainables.data import DataConfig, load_splits

    return load_splits(DataConfig(name="digits"))


@pytest.fixture(scope="session")
def small_experiment():
    """Factory of fast digits experiments as raw dicts; keyword sections replace top-level keys."""
    return _small_experiment


@pytest.fixture(scope="session")
def small_pbt_experiment():
    """Factory of a 4-trial, 6-epoch PBT experiment mutating lr and batch size every 2 epochs."""
    return _small_pbt_experiment


def _small_pbt_experiment() -> dict[str, Any]:
    raw = _small_experiment(
        search={"algorithm": "random", "num_samples": 4, "seed": 0},
        scheduler={
            "name": "pbt",
            "perturbation_interval": 2,
            "mutate": ["optimizer.lr", "batch_size"],
        },
        checkpoint={"every_epochs": 2, "keep": 3},
    )
    raw["train"]["epochs"] = 6
    raw["train"]["batch_size"] = {"choice": [32, 64, 128]}
    return raw


def _small_experiment(**sections: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "test",
        "dataset": {"name": "digits"},
        "train": {
            "epochs": 3,
            "model": {"name": "cnn", "depth": 1, "width": 8},
            "optimizer": {"name": "adam", "lr": {"loguniform": [1.0e-3, 1.0e-2]}},
            "batch_size": {"choice": [64, 128]},
        },
        "search": {"algorithm": "random", "num_samples": 2, "seed": 0},
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": 1, "gpu": 0},
        "checkpoint": {"every_epochs": 1, "keep": 1},
    }
    raw.update(sections)
    return raw


@pytest.fixture(scope="session")
def listening_addresses() -> Callable[[int], set[str]]:
    """`f(pid)`: the IP addresses a process and its descendants accept TCP connections on."""
    return _listening_addresses


def _listening_addresses(root_pid: int) -> set[str]:
    pids, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
            pids.add(int(child))
            frontier.append(int(child))
    sockets = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:  # the fd closed while we looked
                continue
            if target.startswith("socket:["):
                sockets.add(target[8:-1])
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in sockets:  # 0A: LISTEN
                addresses.add(_decode_address(fields[1].split(":")[0]))
    return addresses


def _decode_address(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)
