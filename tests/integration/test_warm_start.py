"""search.warm_start on real sweeps: one earlier sweep seeds HyperOpt, one that trained
for another number of epochs is dropped, and both lists are printed and recorded."""

from __future__ import annotations

import json
import pickle

import pytest

from tuning.errors import ConfigError
from tuning.experiment import validate_experiment
from tuning.runner import run_sweep

pytestmark = pytest.mark.integration


def test_a_sweep_warm_started_from_two_uses_the_compatible_one_and_says_why_not_the_other(
    ray_two_cpus, small_experiment, tmp_path, caplog
):
    earlier = small_experiment(search={"algorithm": "random", "num_samples": 3, "seed": 1})
    earlier["train"]["epochs"] = 1
    same = run_sweep(validate_experiment(earlier), storage=str(tmp_path), name="same").summary
    longer = {**earlier, "search": {"algorithm": "random", "num_samples": 1}}
    longer["train"] = {**earlier["train"], "epochs": 2}
    run_sweep(validate_experiment(longer), storage=str(tmp_path), name="longer")

    raw = small_experiment(
        search={
            "algorithm": "hyperopt",
            "num_samples": 2,
            "initial_points": 2,
            "warm_start": [str(tmp_path / "same"), str(tmp_path / "longer")],
        }
    )
    raw["train"]["epochs"] = 1
    caplog.set_level("INFO")
    outcome = run_sweep(validate_experiment(raw), storage=str(tmp_path), name="warm")

    warm = outcome.summary["warm_start"]
    earlier_ids = {t["trial_id"]: t["best"] for t in same["trials"]}
    assert {u["source"]: u["value"] for u in warm["used"]} == {
        f"{tmp_path}/same/{trial_id}": best for trial_id, best in earlier_ids.items()
    }
    ((source, reason),) = [(d["source"], d["reason"]) for d in warm["dropped"]]
    assert source.startswith(f"{tmp_path}/longer/")
    assert reason == "train.epochs was 2 there, this sweep fixes 1"
    assert "warm start: 3 earlier trial(s) seed the searcher, 1 dropped" in caplog.text
    assert f"dropped {source}: {reason}" in caplog.text
    # The searcher Tune saved with the sweep holds the 3 earlier trials and its own 2.
    (state,) = outcome.experiment_dir.glob("searcher-state-*.pkl")
    searcher = pickle.loads(state.read_bytes())
    losses = [t["result"].get("loss") for t in searcher["_hpopt_trials"].trials]
    assert losses[:3] == [-best for best in earlier_ids.values()]
    assert len(losses) == 5 and outcome.summary["num_trials"] == 2
    assert json.loads((outcome.experiment_dir / "warm-start.json").read_text())["used"]


def test_a_warm_start_folder_that_is_no_finished_sweep_is_refused_before_ray_starts(
    small_experiment, tmp_path
):
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "cnn-tune-experiment.yaml").write_text("name: x\n")
    raw = small_experiment(
        search={
            "algorithm": "hyperopt",
            "warm_start": [str(tmp_path / "nothing"), str(tmp_path / "unfinished")],
        }
    )

    with pytest.raises(ConfigError) as caught:
        run_sweep(validate_experiment(raw), storage=str(tmp_path / "runs"), name="warm")

    assert caught.value.messages == [
        f"search.warm_start: '{tmp_path}/nothing' is not a cnn-tune sweep (no "
        "cnn-tune-experiment.yaml); list sweep folders <storage>/<name> that `cnn-tune run` "
        "printed",
        f"search.warm_start: '{tmp_path}/unfinished' has not finished (no summary.json); "
        f"finish it with `cnn-tune resume {tmp_path}/unfinished` or leave it out",
    ]
    assert not (tmp_path / "runs" / "warm").exists()
