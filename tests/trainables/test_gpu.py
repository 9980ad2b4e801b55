"""The GPU decisions that need no GPU: device, memory cap, data path, out-of-memory."""

from __future__ import annotations

import pytest
import torch

from trainables.batches import BatchFeeder, index_batches, split_bytes
from trainables.data import ImageSplit
from trainables.gpu import (
    CUDA_CONTEXT_BYTES,
    GpuUnavailableError,
    is_out_of_memory,
    keep_data_on_device,
    memory_fraction,
    pick_device,
)

GIB = 2**30


def test_pick_device_without_a_gpu_share_is_the_cpu():
    assert pick_device(0.0, cuda_available=True) == torch.device("cpu")


def test_pick_device_with_a_share_but_no_cuda_fails_with_the_versions():
    with pytest.raises(GpuUnavailableError) as error:
        pick_device(0.25, cuda_available=False, logical_gpus=False)

    message = str(error.value)
    assert "0.25 GPU" in message and torch.__version__ in message
    assert "NVIDIA driver" in message and "resources.gpu=0" in message


def test_pick_device_with_logical_gpus_trains_on_the_cpu():
    assert pick_device(0.5, cuda_available=False, logical_gpus=True) == torch.device("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pick_device_on_cuda_names_an_index_the_memory_cap_accepts():
    device = pick_device(0.25)

    assert device.type == "cuda" and device.index is not None
    torch.cuda.set_per_process_memory_fraction(0.99, device)  # refuses an index-less device


@pytest.mark.parametrize(
    ("share", "total_gib", "expected"),
    [
        (1.0, 80, 1.0),  # a whole GPU: no cap
        (0.5, 80, (40 - 1) / 80),
        (0.25, 141, (35.25 - 1) / 141),
        (0.125, 16, (2 - 1) / 16),
    ],
)
def test_memory_fraction_takes_the_cuda_context_out_of_the_share(share, total_gib, expected):
    assert memory_fraction(share, total_gib * GIB) == pytest.approx(expected)


def test_memory_fractions_of_a_full_gpu_leave_room_for_every_context():
    caps = 8 * memory_fraction(0.125, 80 * GIB) * 80 * GIB

    assert caps + 8 * CUDA_CONTEXT_BYTES == pytest.approx(80 * GIB)


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_memory_fraction_rejects_shares_outside_one_gpu(share):
    with pytest.raises(ValueError, match="share"):
        memory_fraction(share, 80 * GIB)


def test_memory_fraction_rejects_a_share_smaller_than_the_context():
    with pytest.raises(ValueError, match="CUDA context"):
        memory_fraction(0.125, 4 * GIB)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("CUDA error: out of memory"), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"), True),
        (RuntimeError("cudaErrorMemoryAllocation"), True),
        (RuntimeError("Expected all tensors to be on the same device"), False),
        (RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"), False),
        (ValueError("out of memory"), False),  # not an allocator's error type
        (KeyError("model"), False),
    ],
)
def test_is_out_of_memory_classifies_by_type_and_message(error, expected):
    assert is_out_of_memory(error) is expected


def test_is_out_of_memory_recognizes_a_real_allocation_failure():
    with pytest.raises(RuntimeError) as error:
        torch.empty(1 << 50, dtype=torch.uint8)  # a pebibyte: no machine grants it

    assert is_out_of_memory(error.value)


@pytest.mark.parametrize(
    ("requested", "dataset_gib", "cap_gib", "expected"),
    [
        (True, 1, None, True),  # the CPU, or no cap known: as asked
        (False, 1, 40, False),  # asked for the host path
        (True, 1, 40, True),
        (True, 20, 40, True),  # exactly half the cap
        (True, 21, 40, False),  # more than half: batches come from host memory
    ],
)
def test_keep_data_on_device_falls_back_to_the_host_when_the_data_takes_over_half_the_cap(
    requested, dataset_gib, cap_gib, expected
):
    cap = None if cap_gib is None else cap_gib * GIB
    assert keep_data_on_device(requested, dataset_gib * GIB, cap) is expected


def test_index_batches_cover_the_order_and_drop_a_last_batch_of_one():
    batches = list(index_batches(torch.arange(9), 4))

    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [b.tolist() for b in index_batches(torch.arange(1), 4)] == [[0]]


def test_batch_feeder_on_the_cpu_yields_the_indexed_examples():
    split = ImageSplit(
        images=torch.arange(10 * 3 * 2 * 2, dtype=torch.uint8).view(10, 3, 2, 2),
        labels=torch.arange(10),
    )
    feeder = BatchFeeder(split, torch.device("cpu"), on_device=False, max_batch=4)
    order = torch.tensor([9, 1, 4, 0, 2, 3, 5, 6, 7, 8])

    batches = list(feeder.batches(order, 4))

    assert feeder.resident  # nothing to stage on the CPU
    assert [y.tolist() for _, y in batches] == [[9, 1, 4, 0], [2, 3, 5, 6], [7, 8]]
    assert all(torch.equal(x, split.images[y]) for x, y in batches)
    assert split_bytes(split) == 10 * 12 + 10 * 8


def test_batch_feeder_in_order_covers_every_example_even_a_last_one_alone():
    split = ImageSplit(images=torch.zeros(9, 1, 2, 2, dtype=torch.uint8), labels=torch.arange(9))
    feeder = BatchFeeder(split, torch.device("cpu"), on_device=True, max_batch=4)

    batches = [y.tolist() for _, y in feeder.in_order(4)]

    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
