"""Names of the metrics every epoch reports: the one place they are spelled."""

from __future__ import annotations

TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"
VAL_LOSS = "val_loss"
VAL_ACC = "val_acc"
LR = "lr"
BATCH_SIZE = "batch_size"
EPOCH = "epoch"

EPOCH_METRICS = (TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, LR, BATCH_SIZE, EPOCH)

# Reported with every epoch too: true on the epoch after which the trial's own early
# stopping (train.early_stopping) ended it.
EARLY_STOPPED = "early_stopped"

# The metrics a sweep may optimize, and the direction that is better for each.
OPTIMIZABLE: dict[str, str] = {VAL_ACC: "max", VAL_LOSS: "min", TRAIN_ACC: "max", TRAIN_LOSS: "min"}
