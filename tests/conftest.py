"""Shared fixtures: small digits data and module-scoped real Ray instances."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# Before Ray is imported: the test clusters listen on loopback only, as cnn-tune's own do.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "8")

import ray


def start_ray(**resources: Any) -> None:
    if ray.is_initialized():
        ray.shutdown()
    ray.init(include_dashboard=False, log_to_driver=False, **resources)


@pytest.fixture(scope="module")
def ray_two_cpus() -> Iterator[None]:
    """A real local Ray with the 2 CPUs of a developer machine."""
    start_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_one_logical_gpu() -> Iterator[None]:
    """Ray told it has one GPU (none needs to exist) and enough CPUs to pack trials onto it."""
    start_ray(num_cpus=8, num_gpus=1)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def digits_splits():
    from trainables.data import DataConfig, load_splits

    return load_splits(DataConfig(name="digits"))


@pytest.fixture(scope="session")
def small_experiment():
    """Factory of fast digits experiments as raw dicts; keyword sections replace top-level keys."""
    return _small_experiment


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
