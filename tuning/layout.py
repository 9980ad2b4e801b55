"""The sweep folder's layout: every name cnn-tune and Ray Tune give to what is in it.

Imports neither Ray nor torch, so the report, export and the CLI read sweeps through
it without loading the runner.

    <storage>/<name>/
      cnn-tune-experiment.yaml   EXPERIMENT_FILE: the resolved experiment; `resume` reads it
      summary.json               SUMMARY_FILE: written once the sweep has finished
      cnn-tune-clock.json        CLOCK_FILE: seconds in Tune when a fit last ended
      gpu-share.json             GPU_SHARE_FILE: the share `gpu: auto` chose, reused on resume
      warm-start.json            WARM_START_FILE: search.warm_start's points, used and dropped
      experiment_state-*.json    Ray Tune's state (with tuner.pkl, searcher and callback
                                 states): what `resume` restores
      events.out.tfevents.*      the TensorBoard HParams experiment
      trial_<id>/                TRIAL_PREFIX + trial id, one per trial:
        progress.csv             PROGRESS_FILE: one row per reported epoch
        events.out.tfevents.*    the trial's curves and HParams session
        checkpoint_000012/       CHECKPOINT_PREFIX + Tune's index: state.pt
                                 (trainables.checkpoint.CHECKPOINT_FILE)
      final/                     FINAL_DIR: what the final step made
        reevaluation.json        REEVALUATION_FILE: final.reevaluate's runs and scores
        <model>/test.json        the one look at the test split per final model
        seed_<seed>/state.pt     retrained final models (final.protocol: retrain)
      report/                    REPORT_DIR: `cnn-tune report` (INDEX_FILE and its PNGs)
      extension-<k>/             EXTENSION_PREFIX + k: round k of trials added by `cnn-tune
                                 resume DIR --set search.num_samples=N` (tuning.extension),
                                 a Tune experiment laid out like the sweep (trial_<id>/ ...)
      final/test-looks.json      TEST_LOOKS_FILE: each final model the test split scored
"""

from __future__ import annotations

EXPERIMENT_FILE = "cnn-tune-experiment.yaml"
SUMMARY_FILE = "summary.json"
CLOCK_FILE = "cnn-tune-clock.json"
GPU_SHARE_FILE = "gpu-share.json"
WARM_START_FILE = "warm-start.json"
TRIAL_PREFIX = "trial_"  # the runner names trial folders; Ray would pack the config in
PROGRESS_FILE = "progress.csv"  # Ray's EXPR_PROGRESS_FILE (tests/tuning/test_layout.py)
CHECKPOINT_PREFIX = "checkpoint_"  # Ray Tune's checkpoint folders: checkpoint_000012
FINAL_DIR = "final"
REEVALUATION_FILE = f"{FINAL_DIR}/reevaluation.json"
REPORT_DIR = "report"
EXTENSION_PREFIX = "extension-"
TEST_LOOKS_FILE = f"{FINAL_DIR}/test-looks.json"
INDEX_FILE = "index.html"


def trial_dirname(trial_id: str) -> str:
    """The folder of the trial with Tune's id `trial_id`."""
    return f"{TRIAL_PREFIX}{trial_id}"


def trial_id_of(dirname: str) -> str:
    """The trial id in a trial folder's name (the inverse of `trial_dirname`)."""
    return dirname.removeprefix(TRIAL_PREFIX)


def extension_dirname(round_number: int) -> str:
    """The folder of the sweep's extension round `round_number` (1, 2, ...)."""
    return f"{EXTENSION_PREFIX}{round_number}"


def final_model_dir(name: str) -> str:
    """Where a final model's files live, relative to the sweep: `final/<name>`."""
    return f"{FINAL_DIR}/{name}"
