"""Summary arithmetic: the Wilson interval of the test accuracy."""

from __future__ import annotations

import pytest

from tuning.final import wilson_interval


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [
        (0, 10, [0.0, 0.2775]),
        (5, 10, [0.2366, 0.7634]),
        (10, 10, [0.7225, 1.0]),
        (265, 270, [0.9574, 0.9921]),
    ],
)
def test_wilson_interval_matches_the_textbook_values(successes, trials, expected):
    assert wilson_interval(successes, trials) == pytest.approx(expected, abs=1e-4)


def test_wilson_interval_of_no_trials_is_uninformative():
    assert wilson_interval(0, 0) == [0.0, 1.0]
