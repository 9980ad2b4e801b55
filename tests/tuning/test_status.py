"""Trial statuses: one spelling, old sweeps still read, members usable as plain strings."""

from __future__ import annotations

import json

import pytest

from tuning.status import TrialStatus


def test_an_older_sweeps_own_patience_status_reads_as_patience_stopped():
    assert TrialStatus.read("early_stopped") is TrialStatus.patience_stopped
    assert TrialStatus.read("stopped_early") is TrialStatus.stopped_early  # the scheduler's


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="bogus"):
        TrialStatus.read("bogus")


@pytest.mark.parametrize("status", list(TrialStatus))
def test_each_status_is_its_own_string_as_a_key_in_json_and_in_print(status):
    # Enum hashes a member by its name: name == value keeps string lookups working.
    assert status.name == status.value
    assert {status: 1}[status.value] == 1 and {status.value: 1}[status] == 1
    assert json.loads(json.dumps({"status": status})) == {"status": status.value}
    assert f"{status}" == status.value


def test_only_ended_trials_that_trained_normally_can_win():
    winners = {s for s in TrialStatus if s.can_win}
    assert winners == {
        TrialStatus.completed,
        TrialStatus.stopped_early,
        TrialStatus.patience_stopped,
    }
