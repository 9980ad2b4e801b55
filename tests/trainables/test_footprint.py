"""A model's footprint: parameters, FLOPs per image and latency, measured without side effects."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from trainables import metrics as m
from trainables.compute import ComputeFormat
from trainables.footprint import (
    flops_per_image,
    footprint_of,
    latency_ms,
    measure_footprint,
    parameter_count,
)
from trainables.models import ConvNet

CPU = ComputeFormat(torch.device("cpu"))
DIGIT = (1, 8, 8)  # one 8x8 grey image


def convnet(width: int, batch_norm: bool = True, dropout: float = 0.0) -> ConvNet:
    return ConvNet(
        in_channels=1,
        image_size=8,
        num_classes=10,
        depth=1,
        width=width,
        batch_norm=batch_norm,
        dropout=dropout,
    )


@pytest.mark.parametrize(
    ("batch_norm", "expected"),
    [
        (False, 8 * 9 + 8 + 8 * 10 + 10),  # conv weights and bias, linear head
        (True, 8 * 9 + 2 * 8 + 8 * 10 + 10),  # conv without bias, batch norm's scale and shift
    ],
)
def test_parameter_count_counts_every_weight_and_bias(batch_norm: bool, expected: int) -> None:
    assert parameter_count(convnet(8, batch_norm)) == expected


def test_parameter_count_includes_frozen_parameters() -> None:
    model = nn.Linear(4, 3)
    model.weight.requires_grad_(False)
    assert parameter_count(model) == 4 * 3 + 3


@pytest.mark.parametrize(
    ("model", "shape", "expected"),
    [
        (nn.Linear(16, 4, bias=False), (16,), 2 * 16 * 4),
        # 8 output channels x 8x8 positions, each 9 multiply-adds over 1 input channel.
        (nn.Conv2d(1, 8, 3, padding=1, bias=False), DIGIT, 2 * 8 * 8 * 8 * 9),
    ],
    ids=["linear", "conv"],
)
def test_flops_per_image_counts_a_multiply_add_as_two(
    model: nn.Module, shape: tuple[int, ...], expected: int
) -> None:
    assert flops_per_image(model, shape) == expected


def test_flops_per_image_grow_with_the_width_of_a_convnet() -> None:
    flops = [flops_per_image(convnet(width).eval(), DIGIT) for width in (4, 8, 16)]
    assert 0 < flops[0] < flops[1] < flops[2]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread, as a 1-CPU trial has: on a machine busy with other work, threads
    that wait for each other at every operation would time the other work instead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_latency_ms_of_a_large_batch_exceeds_one_image(one_thread: None) -> None:
    model = convnet(64).eval()  # ~0.1 ms against ~15 ms
    one, many = latency_ms(model, DIGIT, 1, CPU), latency_ms(model, DIGIT, 1024, CPU)
    assert 0 < one < many


def test_measure_footprint_reports_every_footprint_metric() -> None:
    footprint = measure_footprint(convnet(8), DIGIT, CPU, large_batch=64)
    metrics = footprint.metrics()
    assert set(metrics) == {*m.FOOTPRINT_METRICS, m.LATENCY_BATCH_SIZE}
    assert metrics[m.PARAMS] == parameter_count(convnet(8))
    assert metrics[m.LATENCY_BATCH_SIZE] == 64
    assert all(metrics[name] > 0 for name in m.FOOTPRINT_METRICS)


def test_measure_footprint_leaves_training_exactly_as_it_was() -> None:
    """No random number drawn, no batch-norm statistic moved, train mode restored: a
    measured trial trains as an unmeasured one would."""
    torch.manual_seed(0)
    model = convnet(8, dropout=0.5).train()
    rng_before = torch.get_rng_state()
    state_before = {k: v.clone() for k, v in model.state_dict().items()}

    measure_footprint(model, DIGIT, CPU, large_batch=32)

    assert model.training
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert all(torch.equal(v, state_before[k]) for k, v in model.state_dict().items())


def test_footprint_of_measures_each_architecture_once_per_process() -> None:
    """Trials that differ only in training hyperparameters share their architecture's
    figures; another width, input or throughput batch is measured on its own."""
    torch.manual_seed(0)
    first = footprint_of(convnet(8), DIGIT, CPU, large_batch=16)
    torch.manual_seed(1)  # other weights, same architecture
    assert footprint_of(convnet(8), DIGIT, CPU, large_batch=16) is first

    wider = footprint_of(convnet(16), DIGIT, CPU, large_batch=16)
    assert wider.params == parameter_count(convnet(16)) > first.params
    other_batch = footprint_of(convnet(8), DIGIT, CPU, large_batch=8)
    assert other_batch is not first and other_batch.latency_batch_size == 8
    assert footprint_of(convnet(8), (1, 12, 12), CPU, large_batch=16).flops > first.flops
