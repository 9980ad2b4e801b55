"""scripts/bench_search.py's statistics: the IQM, its bootstrap interval, best-so-far and
epochs-to-reach on hand-made sequences. No Ray, no sweeps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_search.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_search", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_search"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([5.0], 5.0),
        ([1.0, 2.0, 3.0, 4.0], 2.5),  # the middle two
        ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0], 3.5),  # the outlier is trimmed
        ([100.0, 1.0, 3.0, 2.0], 2.5),  # order does not matter
    ],
)
def test_iqm_is_the_mean_of_the_middle_half(bench, values, expected):
    assert bench.iqm(values) == pytest.approx(expected)


def test_iqm_refuses_no_values(bench):
    with pytest.raises(ValueError, match="at least one"):
        bench.iqm([])


@pytest.mark.parametrize(
    "values",
    [
        [0.91, 0.95, 0.93, 0.97, 0.92, 0.96, 0.94, 0.90, 0.98, 0.95],
        [10, 12, 30, 11, 9, 14, 13, 100, 12, 10],
    ],
)
def test_bootstrap_interval_contains_the_iqm_and_is_reproducible(bench, values):
    low, high = bench.bootstrap_iqm_interval(values, resamples=2000, seed=0)
    assert low <= bench.iqm(values) <= high
    assert low < high
    assert bench.bootstrap_iqm_interval(values, resamples=2000, seed=0) == (low, high)


def test_bootstrap_interval_of_equal_values_is_that_value(bench):
    assert bench.bootstrap_iqm_interval([0.5] * 10) == (0.5, 0.5)


@pytest.mark.parametrize(("resamples", "level"), [(0, 0.95), (2000, 0.0), (2000, 1.0)])
def test_bootstrap_interval_refuses_bad_settings(bench, resamples, level):
    with pytest.raises(ValueError, match="resamples"):
        bench.bootstrap_iqm_interval([1.0, 2.0], resamples=resamples, level=level)


def test_best_so_far_is_the_running_maximum(bench):
    assert bench.best_so_far([0.2, 0.5, 0.4, 0.7, 0.6]) == [0.2, 0.5, 0.5, 0.7, 0.7]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (0.1, 1),  # reached on the first epoch
        (0.5, 2),
        (0.55, 4),  # the first value at or above, not the first above the previous
        (0.7, 4),  # equal counts as reached
        (0.71, None),  # never reached
    ],
)
def test_epochs_to_reach_counts_epochs_until_the_target(bench, target, expected):
    assert bench.epochs_to_reach([0.2, 0.5, 0.4, 0.7, 0.6], target) == expected


@pytest.mark.parametrize(("reached", "expected"), [(7, 7), (None, 144)])
def test_a_seed_that_never_reaches_is_censored_at_the_budget(bench, reached, expected):
    assert bench.censored(reached, budget=144) == expected


def test_curve_on_grid_holds_the_best_after_the_method_stopped(bench):
    assert bench.curve_on_grid([0.3, 0.6, 0.5], 5) == [0.3, 0.6, 0.6, 0.6, 0.6]
