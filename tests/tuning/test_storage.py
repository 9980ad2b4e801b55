"""Reading a sweep through its location: what is copied for the report and export."""

from __future__ import annotations

import pytest

from tuning.errors import ConfigError
from tuning.storage import copy_files, latest_checkpoints_only, list_files


def test_latest_checkpoints_only_keeps_each_trials_newest_and_every_other_file():
    names = [
        "summary.json",
        "trial_a/progress.csv",
        "trial_a/checkpoint_000002/state.pt",
        "trial_a/checkpoint_000010/state.pt",
        "trial_a/checkpoint_000010/.metadata.json",
        "trial_b/checkpoint_000003/state.pt",
        "final/seed_0/state.pt",
    ]

    assert latest_checkpoints_only(names) == [
        "summary.json",
        "trial_a/progress.csv",
        "trial_a/checkpoint_000010/state.pt",
        "trial_a/checkpoint_000010/.metadata.json",
        "trial_b/checkpoint_000003/state.pt",
        "final/seed_0/state.pt",
    ]


@pytest.mark.parametrize("as_uri", [False, True])
def test_list_and_copy_files_by_path_or_uri(tmp_path, as_uri):
    source = tmp_path / "sweep"
    (source / "trial_a" / "checkpoint_000001").mkdir(parents=True)
    (source / "summary.json").write_text("{}")
    (source / "trial_a" / "checkpoint_000001" / "state.pt").write_bytes(b"\0" * 10)
    location = source.as_uri() if as_uri else str(source)

    files = list_files(location)
    copy_files(location, files, tmp_path / "copy")

    assert files == {"summary.json": 2, "trial_a/checkpoint_000001/state.pt": 10}
    assert (tmp_path / "copy" / "trial_a" / "checkpoint_000001" / "state.pt").read_bytes() == (
        b"\0" * 10
    )


def test_list_files_of_a_missing_folder_names_it(tmp_path):
    with pytest.raises(ConfigError, match="nope"):
        list_files((tmp_path / "nope").as_uri())
