"""What Ray leaves to us to check: which searcher and checkpoint settings fit a scheduler.

Pure settings logic, free of Ray, so that the CLI rejects a bad combination before Ray
is imported.
"""

from __future__ import annotations

from schedulers.settings import (
    ASHASettings,
    HyperBandSettings,
    PB2Settings,
    PBTSettings,
    SchedulerSettings,
)

# Searchers that may drive each scheduler. PBT and PB2 choose and mutate configurations
# themselves, so a model-based searcher would fight them; synchronous HyperBand pauses
# and resumes trials in brackets that a sequential model-based searcher does not follow.
COMPATIBLE_SEARCHERS: dict[str, tuple[str, ...]] = {
    "fifo": ("grid", "random", "hyperopt", "optuna"),
    "asha": ("grid", "random", "hyperopt", "optuna"),
    "median": ("grid", "random", "hyperopt", "optuna"),
    "hyperband": ("grid", "random"),
    "pbt": ("grid", "random"),
    "pb2": ("grid", "random"),
}
_INSTEAD = {
    "hyperband": "use scheduler.name: asha (asynchronous HyperBand) to keep hyperopt or optuna",
    "pbt": "PBT picks and mutates configurations itself; seed it with random or grid",
    "pb2": "PB2 picks and mutates configurations itself; seed it with random or grid",
}

# Ray's PBT may restore a donor checkpoint a few epochs old; fewer kept ones get deleted
# before another trial can exploit them.
PBT_MIN_CHECKPOINTS_KEPT = 3


def compatibility_errors(
    settings: SchedulerSettings,
    *,
    searcher: str,
    checkpoint_every: int,
    checkpoints_kept: int,
    max_epochs: int,
) -> list[str]:
    """Everything wrong with running `settings` this way, as user-facing messages."""
    errors = []
    if searcher not in COMPATIBLE_SEARCHERS[settings.name]:
        allowed = ", ".join(COMPATIBLE_SEARCHERS[settings.name])
        errors.append(
            f"scheduler.name={settings.name!r} cannot be combined with search.algorithm="
            f"{searcher!r}: {_INSTEAD[settings.name]}. Use search.algorithm: {allowed}."
        )
    if isinstance(settings, PBTSettings | PB2Settings):
        if settings.perturbation_interval != checkpoint_every:
            # PBT copies the checkpoint a donor saved at a perturbation; Ray keeps a trial's
            # `keep` best checkpoints and its latest, so checkpoints saved in between can
            # push it out before a trial waiting for a slot restores it (it then errors).
            errors.append(
                f"scheduler.perturbation_interval={settings.perturbation_interval} needs "
                f"checkpoint.every_epochs={settings.perturbation_interval} (it is "
                f"{checkpoint_every}): {settings.name.upper()} copies the checkpoint a trial "
                "saved at a perturbation, and checkpoints saved between perturbations can push "
                "it out of those kept before another trial restores it; set "
                f"checkpoint.every_epochs: {settings.perturbation_interval}"
            )
        if checkpoints_kept < PBT_MIN_CHECKPOINTS_KEPT:
            errors.append(
                f"checkpoint.keep={checkpoints_kept} is too few for {settings.name.upper()}, which "
                "exploits other trials' recent checkpoints; set checkpoint.keep: "
                f"{PBT_MIN_CHECKPOINTS_KEPT} or more"
            )
    if isinstance(settings, HyperBandSettings) and checkpoint_every != 1:
        errors.append(
            f"scheduler.name='hyperband' pauses trials at its milestones and resumes them from "
            f"their last checkpoint; with checkpoint.every_epochs={checkpoint_every} a resumed "
            "trial would train epochs again. Set checkpoint.every_epochs: 1"
        )
    if isinstance(settings, ASHASettings) and settings.grace_period > (
        settings.max_t or max_epochs
    ):
        errors.append(
            f"scheduler.grace_period={settings.grace_period} exceeds "
            f"max_t={settings.max_t or max_epochs} epochs; lower grace_period or raise train.epochs"
        )
    max_t = getattr(settings, "max_t", None)
    if max_t is not None and max_t > max_epochs:
        errors.append(
            f"scheduler.max_t={max_t} exceeds train.epochs={max_epochs}; trials stop at "
            "train.epochs, so lower max_t or leave it unset"
        )
    return errors
