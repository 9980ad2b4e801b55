"""Over- and underfitting, read from one trial's train and validation curves.

The rules are the textbook ones, with thresholds in accuracy points (fractions) or
relative loss changes:

- **overfitting**: the model fits the training data much better than held-out data. The
  accuracy gap train - val over the last epochs exceeds `OVERFIT_GAP`, and either the
  validation loss has risen from its minimum by `OVERFIT_VAL_LOSS_RISE` or the gap is
  beyond `OVERFIT_WIDE_GAP` on its own.
- **underfitting**: the model does not even fit the training data. Train accuracy over
  the last epochs is below `UNDERFIT_TRAIN_ACC`, or its train loss is still above
  `UNDERFIT_CHANCE_LOSS_SHARE` of chance level (ln of the number of classes), or it was
  still improving fast when it stopped (validation accuracy rose by `STILL_IMPROVING`
  over the last third of its epochs): it needed more capacity, a higher learning rate or
  more epochs.
- **diverged**: a loss became NaN or infinite; **too_short**: fewer than `MIN_EPOCHS`
  epochs, too few to judge a trend (e.g. stopped by ASHA at its first rung).
- otherwise **healthy**.

"The last epochs" is the mean over the last `max(1, epochs // 4)` epochs (at most 3), so
one noisy epoch does not decide the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from trainables import metrics as m
from tuning.values import is_finite, is_true

MIN_EPOCHS = 3
OVERFIT_GAP = 0.05  # train_acc - val_acc
OVERFIT_WIDE_GAP = 0.10
OVERFIT_VAL_LOSS_RISE = 0.10  # (val_loss now - its minimum) / its minimum
UNDERFIT_TRAIN_ACC = 0.90
UNDERFIT_CHANCE_LOSS_SHARE = 0.5  # train_loss / ln(num_classes)
STILL_IMPROVING = 0.03  # rise of val_acc over the last third of the epochs

OVERFITTING_REMEDIES = [
    "more regularization: raise optimizer.weight_decay (L2), l1 or model.dropout",
    "augmentation: train.augmentation.preset light or standard",
    "more training data (dataset.max_train_examples, if it was set, limits it)",
    "stop earlier: train.early_stopping, or fewer epochs",
    "a smaller model: lower model.width or model.depth",
]
UNDERFITTING_REMEDIES = [
    "a larger model: raise model.width or model.depth",
    "a higher learning rate (optimizer.lr), or a schedule with warmup",
    "train longer: more epochs (and a later or gentler LR decay)",
    "less regularization: lower weight_decay, l1, dropout or augmentation",
]
DIVERGED_REMEDIES = [
    "a lower learning rate (optimizer.lr), or lr_schedule.warmup_epochs",
    "a larger batch size, or an adaptive optimizer such as adam",
]


@dataclass(frozen=True)
class Diagnosis:
    """A verdict on one trial's curves, the evidence behind it and what to try next."""

    verdict: str  # "overfitting" | "underfitting" | "healthy" | "diverged" | "too_short"
    reasons: list[str] = field(default_factory=list)
    remedies: list[str] = field(default_factory=list)
    evidence: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(history: Sequence[Mapping[str, Any]], num_classes: int | None = None) -> Diagnosis:
    """Judge a trial from its epoch rows (train_loss, train_acc, val_loss, val_acc, ...).

    Args:
        history: one mapping per reported epoch, in order, as in progress.csv.
        num_classes: classes of the dataset, for the chance-level loss; None skips that rule.
    """
    if any(is_true(row.get(m.DIVERGED)) for row in history) or not all(
        is_finite(row.get(key)) for row in history for key in (m.TRAIN_LOSS, m.VAL_LOSS)
    ):
        return Diagnosis("diverged", ["a loss became NaN or infinite"], list(DIVERGED_REMEDIES))
    if len(history) < MIN_EPOCHS:
        return Diagnosis(
            "too_short", [f"{len(history)} epoch(s): too few to judge (needs {MIN_EPOCHS})"]
        )
    evidence = _evidence(history, num_classes)
    overfitting = _overfitting_reasons(evidence)
    if overfitting:
        return Diagnosis("overfitting", overfitting, list(OVERFITTING_REMEDIES), evidence)
    underfitting = _underfitting_reasons(evidence)
    if underfitting:
        return Diagnosis("underfitting", underfitting, list(UNDERFITTING_REMEDIES), evidence)
    return Diagnosis(
        "healthy",
        [
            f"train_acc {evidence['train_acc']:.3f} and val_acc {evidence['val_acc']:.3f} "
            f"are close (gap {evidence['gap']:+.3f}) and training has converged"
        ],
        [],
        evidence,
    )


def _evidence(history: Sequence[Mapping[str, Any]], num_classes: int | None) -> dict[str, float]:
    def column(key: str) -> list[float]:
        return [float(row[key]) for row in history]

    window = max(1, min(3, len(history) // 4))
    train_acc, val_acc = (
        _tail_mean(column(m.TRAIN_ACC), window),
        _tail_mean(column(m.VAL_ACC), window),
    )
    val_losses, train_losses, val_accs = column(m.VAL_LOSS), column(m.TRAIN_LOSS), column(m.VAL_ACC)
    val_loss_min = min(val_losses)
    val_loss = _tail_mean(val_losses, window)
    third_ago = val_accs[-1 - max(1, len(val_accs) // 3)]
    evidence = {
        "epochs": float(len(history)),
        "train_acc": train_acc,
        "val_acc": val_acc,
        "gap": train_acc - val_acc,
        "val_loss": val_loss,
        "val_loss_min": val_loss_min,
        "val_loss_min_epoch": float(val_losses.index(val_loss_min) + 1),
        "val_loss_rise": (val_loss - val_loss_min) / max(val_loss_min, 1e-12),
        "train_loss": _tail_mean(train_losses, window),
        "val_acc_recent_rise": val_acc - third_ago,
    }
    if num_classes and num_classes > 1:
        evidence["train_loss_vs_chance"] = evidence["train_loss"] / math.log(num_classes)
    return evidence


def _overfitting_reasons(e: dict[str, float]) -> list[str]:
    if e["gap"] <= OVERFIT_GAP:
        return []
    reasons = [
        f"train_acc {e['train_acc']:.3f} vs val_acc {e['val_acc']:.3f}: a gap of "
        f"{e['gap']:.3f} (> {OVERFIT_GAP})"
    ]
    if e["val_loss_rise"] > OVERFIT_VAL_LOSS_RISE:
        reasons.append(
            f"val_loss rose {e['val_loss_rise']:.0%} above its minimum "
            f"{e['val_loss_min']:.3f} at epoch {e['val_loss_min_epoch']:.0f}"
        )
    elif e["gap"] <= OVERFIT_WIDE_GAP:
        return []  # a moderate gap with a val loss still at its best: not (yet) overfitting
    return reasons


def _underfitting_reasons(e: dict[str, float]) -> list[str]:
    reasons = []
    if e["train_acc"] < UNDERFIT_TRAIN_ACC:
        reasons.append(
            f"train_acc {e['train_acc']:.3f} < {UNDERFIT_TRAIN_ACC}: the model does not "
            "fit even its training data"
        )
    if e.get("train_loss_vs_chance", 0.0) > UNDERFIT_CHANCE_LOSS_SHARE:
        reasons.append(
            f"train_loss {e['train_loss']:.3f} is {e['train_loss_vs_chance']:.0%} of "
            "chance level (ln of the number of classes)"
        )
    if e["val_acc_recent_rise"] > STILL_IMPROVING:
        reasons.append(
            f"val_acc rose {e['val_acc_recent_rise']:.3f} over the last third of the "
            "epochs: it was still improving fast when training ended"
        )
    return reasons


def _tail_mean(values: list[float], window: int) -> float:
    tail = values[-window:]
    return sum(tail) / len(tail)
