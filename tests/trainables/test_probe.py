"""The lr range test and the batch-size finder: reading curves, searching sizes, real runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables.batch_finder import (
    BISECT_PRECISION,
    BatchSearch,
    batch_fits,
    find_largest_batch,
    next_batch_size,
    suggested_batch_sizes,
)
from trainables.config import TrainConfig
from trainables.lr_range import (
    LRRangeSettings,
    SweepPoints,
    centered_losses,
    choose_points,
    divergence_index,
    exponential_lrs,
    lr_range_test,
    smooth_losses,
    suggested_lr_range,
)

TINY = {
    "batch_size": 32,
    "model": {"depth": 2, "width": 16},
    "optimizer": {"name": "sgd", "lr": 1.0e-2, "momentum": 0.9},
}


def synthetic_curve(lrs: list[float], steepest_at: float, blow_up_at: float) -> list[float]:
    """A range-test-shaped loss: flat at 2.3, falling fastest at `steepest_at` (a logistic
    in log10 lr) to 0.2, then rising steeply from `blow_up_at`."""
    x = np.log10(lrs)
    fall = 2.1 / (1 + np.exp(-4 * (x - math.log10(steepest_at))))
    rise = np.where(x > math.log10(blow_up_at), 30 * (x - math.log10(blow_up_at)) ** 2, 0.0)
    return list(2.3 - fall + rise)


# ----- the lr range test's arithmetic ---------------------------------------------------


def test_exponential_lrs_span_start_to_end_evenly_on_a_log_scale():
    lrs = exponential_lrs(1.0e-7, 10.0, 9)

    assert lrs[0] == pytest.approx(1.0e-7) and lrs[-1] == pytest.approx(10.0)
    assert np.allclose(np.diff(np.log10(lrs)), 1.0)


def test_smooth_losses_of_a_constant_series_is_that_constant_from_the_first_step():
    assert smooth_losses([2.0] * 5, 0.95) == pytest.approx([2.0] * 5)


def test_smooth_losses_follow_a_step_with_a_lag():
    smoothed = smooth_losses([1.0] * 10 + [3.0] * 10, 0.8)

    assert smoothed[10] == pytest.approx(1.0 + 2.0 * 0.2, rel=0.05)
    assert 1.0 < smoothed[12] < smoothed[15] < 3.0


@pytest.mark.parametrize(
    ("smoothed", "expected"),
    [
        ([3.0, 2.0, 1.0, 0.5], None),
        ([3.0, 1.0, 2.0, 3.9, 4.1], 4),
        ([2.0, 1.0, math.nan, 0.5], 2),
        ([2.0, math.inf], 1),
    ],
    ids=["falling", "four-times-the-lowest", "nan", "inf"],
)
def test_divergence_index_is_the_first_step_past_the_rule(smoothed, expected):
    assert divergence_index(smoothed, factor=4.0) == expected


def test_choose_points_on_a_synthetic_curve_finds_the_steepest_descent_and_the_minimum():
    lrs = exponential_lrs(1.0e-7, 10.0, 300)
    losses = synthetic_curve(lrs, steepest_at=1.0e-3, blow_up_at=1.0e-1)

    points = choose_points(lrs, losses, divergence_index(losses, 4.0), planned_steps=300)

    assert points.steepest is not None
    assert lrs[points.steepest] == pytest.approx(1.0e-3, rel=0.1)
    assert 1.0e-2 < lrs[points.minimum] <= 1.2e-1
    assert points.divergence is not None and lrs[points.divergence] > lrs[points.minimum]


def test_centered_losses_put_the_steepest_descent_where_the_running_average_is_late():
    lrs = exponential_lrs(1.0e-7, 10.0, 300)
    losses = synthetic_curve(lrs, steepest_at=1.0e-3, blow_up_at=1.0e-1)
    taken = divergence_index(losses, 4.0)

    late = choose_points(lrs, smooth_losses(losses[:taken], 0.95), None, 300)
    centred = choose_points(lrs, centered_losses(losses[:taken], 0.95), None, 300)

    assert late.steepest is not None and centred.steepest is not None
    assert lrs[centred.steepest] == pytest.approx(1.0e-3, rel=0.1)
    assert lrs[late.steepest] > 1.5e-3  # the running average trails the loss


def test_choose_points_without_a_fall_has_no_steepest_descent():
    lrs = exponential_lrs(1.0e-3, 10.0, 100)
    rising = [2.3 + i * 0.01 for i in range(100)]

    points = choose_points(lrs, rising, None, planned_steps=100)

    assert points.steepest is None
    with pytest.raises(ValueError, match="never fell"):
        suggested_lr_range(lrs, points)


def test_suggested_lr_range_spans_a_decade_below_the_steepest_descent_to_the_minimum():
    lrs = exponential_lrs(1.0e-7, 10.0, 300)
    losses = synthetic_curve(lrs, steepest_at=1.0e-3, blow_up_at=1.0e-1)
    points = choose_points(lrs, losses, divergence_index(losses, 4.0), planned_steps=300)

    low, high = suggested_lr_range(lrs, points)

    assert low == pytest.approx(lrs[points.steepest] / 10)
    assert high == pytest.approx(lrs[points.minimum])


def test_suggested_lr_range_is_at_least_a_decade_wide():
    lrs = [1.0e-3, 2.0e-3, 3.0e-3]

    low, high = suggested_lr_range(lrs, SweepPoints(steepest=2, minimum=2, divergence=None))

    assert high / low == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr=1"),
        ({"end_lr": 100.0}, "end_lr=100"),
        ({"steps": 5}, "got 5"),
        ({"smoothing": 1.0}, "got 1.0"),
        ({"divergence_factor": 1.0}, "got 1.0"),
    ],
    ids=["reversed", "above-10", "few-steps", "smoothing", "factor"],
)
def test_lr_range_settings_refuse_a_bad_value_naming_it(settings, names):
    with pytest.raises(ValueError, match=names):
        LRRangeSettings(**settings)


# ----- the batch-size search -----------------------------------------------------------


def search_until_done(capacity: int, start: int, limit: int) -> BatchSearch:
    """Run the search against a memory that holds batches of up to `capacity`."""
    search = BatchSearch(start=start, limit=limit)
    while (size := search.next()) is not None:
        assert size not in search.tried, "a batch size was tried twice"
        search.tried[size] = size <= capacity
    return search


@pytest.mark.parametrize(
    ("capacity", "start", "limit"),
    [(100, 32, 4096), (1000, 32, 4096), (33, 64, 4096), (3, 64, 4096), (5000, 16, 1257)],
    ids=["doubling-then-bisecting", "large", "start-fails", "tiny", "limit"],
)
def test_next_batch_size_ends_within_the_precision_below_the_capacity(capacity, start, limit):
    largest = search_until_done(capacity, start, limit).largest

    assert largest is not None and largest <= min(capacity, limit)
    assert largest == limit or min(capacity, limit) - largest <= largest * BISECT_PRECISION + 1


def test_next_batch_size_doubles_from_the_start_then_bisects():
    search = search_until_done(capacity=100, start=32, limit=4096)

    assert list(search.tried) == [32, 64, 128, 96, 112, 104]


def test_next_batch_size_stops_when_not_even_the_smallest_batch_fits():
    search = search_until_done(capacity=1, start=8, limit=4096)

    assert search.largest is None and list(search.tried) == [8, 4, 2]


def test_next_batch_size_starts_at_the_limit_when_the_start_is_above_it():
    assert next_batch_size({}, start=128, limit=28) == 28
    assert next_batch_size({28: True}, start=128, limit=28) is None


@pytest.mark.parametrize(
    ("largest", "expected"),
    [(1257, [128, 256, 512, 1024]), (1024, [128, 256, 512, 1024]), (5, [2, 4]), (2, [2])],
)
def test_suggested_batch_sizes_are_powers_of_two_up_to_the_largest(largest, expected):
    assert suggested_batch_sizes(largest) == expected


def test_suggested_batch_sizes_refuse_a_largest_below_two():
    with pytest.raises(ValueError, match="no batch size fits"):
        suggested_batch_sizes(1)


# ----- real runs on digits -------------------------------------------------------------


def test_lr_range_test_on_digits_descends_then_diverges(digits_splits):
    config = TrainConfig.model_validate(TINY)
    settings = LRRangeSettings(steps=300)

    sweep = lr_range_test(config, digits_splits.tuning, settings=settings)
    points = sweep.points()

    assert sweep.lrs == exponential_lrs(1.0e-7, 10.0, 300)[: len(sweep.lrs)]
    assert sweep.smoothed == pytest.approx(smooth_losses(sweep.losses, settings.smoothing))
    assert points.steepest is not None and 1.0e-4 < sweep.lrs[points.steepest] < 1.0
    assert min(sweep.smoothed) < 0.5 * sweep.smoothed[0]  # it learned something
    assert points.divergence is not None and points.divergence == len(sweep.lrs) - 1
    assert sweep.lrs[points.divergence] > sweep.lrs[points.minimum]


def test_lr_range_test_repeats_exactly_with_the_same_seed(digits_splits):
    config = TrainConfig.model_validate(TINY)
    settings = LRRangeSettings(steps=30)

    first = lr_range_test(config, digits_splits.tuning, settings=settings)
    second = lr_range_test(config, digits_splits.tuning, settings=settings)

    assert first.losses == second.losses


def test_find_largest_batch_on_the_cpu_stops_at_the_train_split(digits_splits):
    data = digits_splits.tuning
    config = TrainConfig.model_validate(TINY)
    seen: list[tuple[int, bool]] = []

    search = find_largest_batch(
        config, data, torch.device("cpu"), len(data.train), on_try=lambda b, f: seen.append((b, f))
    )

    assert search.largest == len(data.train)
    assert seen[0] == (32, True) and seen[-1] == (len(data.train), True)


def test_batch_fits_raises_what_is_not_out_of_memory(digits_splits):
    # Labels beyond the model's 10 classes: an index error, which must surface instead
    # of reading as "does not fit".
    data = digits_splits.tuning
    bad_labels = type(data.train)(images=data.train.images, labels=data.train.labels + 100)
    broken = type(data)(train=bad_labels, val=data.val, info=data.info)

    with pytest.raises((IndexError, RuntimeError)) as error:
        batch_fits(TrainConfig.model_validate(TINY), broken, torch.device("cpu"), 16)

    assert "out of memory" not in str(error.value)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_find_largest_batch_on_cuda_stops_below_the_allocator_cap(digits_splits):
    # A wide CNN under a 128 MiB cap: its activations at the train split's 1257 examples
    # need more, so the search must meet real out-of-memory errors and stop below them.
    data = digits_splits.tuning
    device = torch.device("cuda", torch.cuda.current_device())
    config = TrainConfig.model_validate({**TINY, "model": {"depth": 4, "width": 256}})
    cap = 128 << 20
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(cap / total, device)
    try:
        search = find_largest_batch(config, data, device, len(data.train), cap)
        assert search.largest is not None and search.largest < len(data.train)
        assert not all(search.tried.values())
        assert batch_fits(config, data, device, search.largest, cap)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
