"""The sweep's status line: one line whatever the number of trials, with the best so far."""

from __future__ import annotations

from ray.tune.experiment import Trial

from tuning.progress import ProgressLine


def trials_with(statuses: list[str]) -> list[Trial]:
    trials = []
    for index, status in enumerate(statuses):
        trial = Trial("train_trial", stub=True, trial_id=f"abc_{index:05d}")
        trial.set_status(status)
        trials.append(trial)
    return trials


def test_the_line_counts_trials_tune_has_not_created_yet_as_pending():
    progress = ProgressLine("val_acc", "max", total=1024)
    trials = trials_with(["TERMINATED"] * 300 + ["ERROR"] + ["RUNNING"] * 2 + ["PENDING"] * 10)
    progress.on_trial_result(0, trials, trials[5], {"val_acc": 0.91, "epoch": 2})
    progress.on_trial_result(0, trials, trials[7], {"val_acc": 0.95, "epoch": 1})
    progress.on_trial_result(0, trials, trials[8], {"val_acc": 0.99, "epoch": 1, "diverged": True})

    line = progress.line(trials, now=progress._start + 75)

    assert line == (
        "[  1m15s] 301/1024 trials ended (1 errored), 2 running, 721 pending; "
        "best val_acc 0.95 (trial_abc_00007, epoch 1)"
    )


def test_a_loss_metric_is_best_when_lowest():
    progress = ProgressLine("val_loss", "min", total=2)
    trials = trials_with(["RUNNING", "RUNNING"])
    progress.on_trial_result(0, trials, trials[0], {"val_loss": 0.4, "epoch": 1})
    progress.on_trial_result(0, trials, trials[1], {"val_loss": 0.2, "epoch": 1})
    progress.on_trial_result(0, trials, trials[0], {"val_loss": float("nan"), "epoch": 2})

    assert progress.line(trials, now=progress._start).endswith(
        "0/2 trials ended, 2 running, 0 pending; best val_loss 0.2 (trial_abc_00001, epoch 1)"
    )
