"""tuning.continuation without a sweep: which trials can train on, how a continuation and
the trial it continues become one, and the searcher that hands out their configs."""

from __future__ import annotations

import pandas as pd
import pytest
from ray import tune
from ray.tune.search import Searcher

from tuning.continuation import (
    Continuation,
    GivenConfigs,
    continuable,
    gather_rounds,
    merged,
)
from tuning.errors import ConfigError
from tuning.experiment import validate_experiment
from tuning.extension import extended, longer_round

CONFIG = {"epochs": 2, "batch_size": 64, "optimizer": {"name": "adam", "lr": 0.01}}


def _result(folder, trial_id, epochs, config=CONFIG, checkpoint=True, **last):
    """A trial's Tune result as Tune returns it: rows, latest metrics, latest checkpoint."""
    path = folder / f"trial_{trial_id}"
    kept = None
    if checkpoint:
        kept = path / f"checkpoint_{epochs - 1:06d}"
        kept.mkdir(parents=True)
    rows = pd.DataFrame(
        {"epoch": range(1, epochs + 1), "training_iteration": range(1, epochs + 1)}
        | {"val_acc": [0.1 * e for e in range(1, epochs + 1)]}
    )
    metrics = {"epoch": epochs, "training_iteration": epochs, "val_acc": 0.1 * epochs}
    return tune.Result(
        metrics=metrics | {"config": config} | last,
        checkpoint=tune.Checkpoint(str(kept)) if kept else None,
        error=None,
        path=str(path),
        metrics_dataframe=rows,
        best_checkpoints=[(tune.Checkpoint(str(kept)), metrics)] if kept else [],
    )


def test_only_trials_that_ran_every_epoch_and_kept_a_checkpoint_go_on(tmp_path):
    other = {**CONFIG, "batch_size": 128}
    by_id = {
        "a": _result(tmp_path, "a", 2),
        "stopped": _result(tmp_path, "stopped", 1, config=other),
        "patience": _result(tmp_path, "patience", 2, config=other, early_stopped=True),
        "diverged": _result(tmp_path, "diverged", 2, config=other, diverged=True),
        "deleted": _result(tmp_path, "deleted", 2, config=other, checkpoint=False),
        "twin": _result(tmp_path, "twin", 2),  # the same config as "a"
    }
    chosen, refused = continuable(by_id, old_epochs=2, new_epochs=5)

    assert list(chosen.configs) == ["a"] and chosen.configs["a"]["epochs"] == 5
    assert chosen.checkpoints["a"].endswith("trial_a/checkpoint_000001")
    assert refused == {
        "stopped": "the scheduler stopped it at epoch 1",
        "patience": "its early stopping ended it",
        "diverged": "it diverged or did not fit in memory",
        "deleted": "its checkpoints were not kept "
        "(checkpoint.keep_trials: only the best keep theirs)",
        "twin": "the same config as another trial that is continued",
    }


def test_only_the_sweeps_best_go_on_when_more_kept_their_checkpoints(tmp_path):
    """Each round keeps its own best trials' checkpoints: the sweep's best decide."""
    by_id = {
        "a": _result(tmp_path, "a", 2),
        "b": _result(tmp_path, "b", 2, config={**CONFIG, "batch_size": 128}),
    }
    chosen, refused = continuable(by_id, old_epochs=2, new_epochs=4, best=({"a"}, 1))
    assert list(chosen.configs) == ["a"]
    assert refused == {"b": "it is not among the sweep's 1 best (checkpoint.keep_trials)"}


def test_a_continuation_and_its_trial_are_one_trial(tmp_path):
    first = _result(tmp_path, "a", 2)
    then = _result(tmp_path / "extension-1", "b", 3, config={**CONFIG, "epochs": 5})
    then.metrics_dataframe["epoch"] += 2  # the round's rows are epochs 3-5
    one = merged(first, then)

    assert one.path == first.path  # its id and folder are the first trial's
    assert one.metrics["training_iteration"] == 5 and one.config["epochs"] == 5
    assert one.metrics_dataframe["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert one.metrics_dataframe["training_iteration"].tolist() == [1, 2, 3, 4, 5]
    assert one.checkpoint == then.checkpoint and len(one.best_checkpoints) == 2


def test_rounds_fold_each_continuation_into_the_trial_it_continued(tmp_path):
    round_dir = tmp_path / "extension-1"
    longer = {**CONFIG, "epochs": 5}
    Continuation({"a": longer}, {"a": "somewhere"}).save(str(round_dir))
    sweep = {"a": _result(tmp_path, "a", 2), "c": _result(tmp_path, "c", 1)}
    round_results = {"b": _result(round_dir, "b", 3, config=longer)}

    gathered = gather_rounds([(str(tmp_path), sweep), (str(round_dir), round_results)])
    assert list(gathered) == ["a", "c"] and gathered["a"].metrics["training_iteration"] == 5
    assert Continuation.load(str(round_dir)) == Continuation({"a": longer}, {"a": "somewhere"})


def test_the_searcher_hands_out_each_config_once_and_resumes_where_it_was(tmp_path):
    searcher = GivenConfigs([{"x": 1}, {"x": 2}])
    assert searcher.suggest("t1") == {"x": 1}
    searcher.save(str(tmp_path / "state.pkl"))
    restored = GivenConfigs([])
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.suggest("t2") == {"x": 2}
    assert restored.suggest("t3") == Searcher.FINISHED


def _experiment(**train):
    return validate_experiment(
        {
            "name": "t",
            "train": {
                "epochs": 2,
                "optimizer": {"name": "adam", "lr": {"grid": [0.01, 0.1]}},
                **train,
            },
            "search": {"algorithm": "random", "num_samples": 2},
            "scheduler": {"name": "fifo"},
        }
    )


def test_a_round_of_more_epochs_runs_one_trial_per_config():
    wanted = extended(_experiment(), ["train.epochs=6"], trials_run=4)
    assert wanted.max_epochs == 6
    planned = longer_round(wanted, trials=3, round_number=1)
    assert planned.num_trials == 3  # the grid is a choice here: the searcher gives configs
    assert planned.search.seed == wanted.search.seed + 1


@pytest.mark.parametrize(
    ("train", "change", "message"),
    [
        ({}, "train.epochs=2", "already train for 2 epochs; ask for more"),
        ({"epochs": {"choice": [2, 4]}}, "train.epochs=6", "the sweep tunes train.epochs"),
    ],
)
def test_more_epochs_that_cannot_be_given_are_refused(train, change, message):
    with pytest.raises(ConfigError, match=message):
        extended(_experiment(**train), [change], trials_run=4)
