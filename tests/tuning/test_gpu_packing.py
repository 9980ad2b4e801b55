"""`gpu: auto` without a GPU: which configurations it probes and how it turns bytes into shares."""

from __future__ import annotations

import pytest

from tuning.experiment import load_experiment
from tuning.gpu_packing import (
    CUDA_CONTEXT_BYTES,
    MAX_PROBED_CONFIGS,
    Probe,
    context_bytes_from,
    probe_configs,
    share_for,
    spread_share,
)

GIB = 2**30


def _probe(reserved_gib: float, total_gib: float = 80, context_gib: float = 1) -> Probe:
    return Probe(
        reserved_bytes=int(reserved_gib * GIB),
        context_bytes=int(context_gib * GIB),
        total_bytes=int(total_gib * GIB),
    )


def test_probe_configs_of_cifar10_probe_resnet18_and_the_widest_cnn_at_the_largest_batch():
    configs = probe_configs(load_experiment("cifar10", ["dataset.root=/data"]).train)

    models = {(c["model"]["name"], c["model"].get("width")) for c in configs}
    assert models == {("cnn", 64), ("resnet18", None)}
    assert {c["batch_size"] for c in configs} == {512}
    assert all(c["model"]["dropout"] == pytest.approx(0.3) for c in configs)


def test_probe_configs_fold_batch_growth_into_the_probed_batch():
    tree = {
        "epochs": 6,
        "batch_size": {"choice": [32, 64]},
        "batch_growth": {"factor": 2, "every_epochs": 2, "max_batch_size": 1024},
        "model": {"name": "cnn", "depth": {"randint": [1, 4]}, "width": 16},
    }

    (config,) = probe_configs(tree)

    assert config["batch_size"] == 256  # 64 doubled at epochs 2 and 4
    assert config["batch_growth"] is None and config["model"]["depth"] == 3


def test_probe_configs_branch_on_optimizers_but_not_on_learning_rates():
    tree = {
        "optimizer": {
            "choice": [
                {"name": "sgd", "lr": {"loguniform": [1.0e-3, 1.0e-1]}, "momentum": 0.9},
                {"name": "adam", "lr": {"choice": [1.0e-3, 1.0e-2]}},
            ]
        },
        "lr_schedule": {"name": {"choice": ["cosine", "step"]}},
    }

    configs = probe_configs(tree)

    assert sorted(c["optimizer"]["name"] for c in configs) == ["adam", "sgd"]
    assert {c["lr_schedule"]["name"] for c in configs} == {"cosine"}


def test_probe_configs_are_capped():
    tree = {"model": {"name": "cnn", "depth": {"choice": [1, 2]}, "width": 8}}
    tree["optimizer"] = {"choice": [{"name": n} for n in ("sgd", "adam", "adamw", "rmsprop")]}
    tree["precision"] = {"choice": ["fp32", "bf16", "auto"]}

    assert len(probe_configs(tree)) == MAX_PROBED_CONFIGS


@pytest.mark.parametrize(
    ("reserved_gib", "share"),
    [
        (1.0, 0.125),  # 10 GiB slots less a 1 GiB context hold 1.25 GiB
        (7.0, 0.125),  # 8.75 <= 9
        (7.5, 0.25),
        (16.0, 0.5),  # 20 > 19
        (60.0, 1.0),
    ],
)
def test_share_for_counts_the_context_and_the_headroom(reserved_gib, share):
    assert share_for([_probe(reserved_gib)], dataset_bytes=0) == share


def test_share_for_counts_the_dataset_while_it_stays_on_the_gpu():
    # 2 GiB of data: within half of a 1/4 slot's cap (19 GiB), so it is counted there.
    assert share_for([_probe(6.0)], dataset_bytes=0) == 0.125
    assert share_for([_probe(6.0)], dataset_bytes=2 * GIB) == 0.25


def test_share_for_leaves_a_large_dataset_on_the_host_instead_of_a_whole_gpu():
    # 60 GiB of data fits no slot's half; it stays in host memory and packs by the model.
    assert share_for([_probe(3.0)], dataset_bytes=60 * GIB) == 0.125
    # Asked for the host path: the data is never counted.
    assert share_for([_probe(6.0)], dataset_bytes=2 * GIB, data_on_device=False) == 0.125


def test_share_for_takes_the_worst_probe():
    assert share_for([_probe(1.0), _probe(16.0), _probe(3.0)], dataset_bytes=0) == 0.5


@pytest.mark.parametrize(
    ("memory_share", "gpus", "trials_at_once", "expected"),
    [
        (0.125, 8, 8, 1.0),  # 8 trials on 8 GPUs: one each, not all on GPU 0
        (0.125, 8, 16, 0.5),
        (0.125, 1, 32, 0.125),  # more trials than slots: memory decides
        (0.25, 4, 6, 0.5),
        (0.5, 2, 64, 0.5),
        (1.0, 8, 2, 1.0),
        (0.125, 1, 3, 0.25),
    ],
)
def test_spread_share_spreads_concurrent_trials_over_every_gpu(
    memory_share, gpus, trials_at_once, expected
):
    assert spread_share(memory_share, gpus, trials_at_once) == expected


@pytest.mark.parametrize(
    ("used_gib", "expected"),
    [
        (0.6, int(0.6 * GIB)),  # this process's context
        (0.01, CUDA_CONTEXT_BYTES),  # implausibly small: the estimate
        (30.0, CUDA_CONTEXT_BYTES),  # another process holds memory: the estimate
    ],
)
def test_context_bytes_from_free_memory_or_the_estimate(used_gib, expected):
    total = 80 * GIB
    assert context_bytes_from(total, total - int(used_gib * GIB), reserved=0) == expected
