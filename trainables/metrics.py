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
# True on the epoch whose loss became NaN or infinite; that epoch reports the worst value
# of every metric (accuracy 0, loss +inf) so no scheduler, searcher or PBT ranking can
# mistake the trial for a good one, and the trial ends there.
DIVERGED = "diverged"
WORST = {TRAIN_LOSS: float("inf"), VAL_LOSS: float("inf"), TRAIN_ACC: 0.0, VAL_ACC: 0.0}
# Reported once, instead of an epoch, by a trial that cannot run at all (its batch does
# not fit its share of the GPU): the reason, as text. The trial ends there.
INFEASIBLE = "infeasible"
# The Ray node that trained the epoch (where a trial ran, on a cluster).
NODE_ID = "node_id"
# The device the trial trained on ("cpu", "cuda:0"), and on a GPU the most memory its
# allocator has reserved so far and its cap (its share less the CUDA context), in bytes.
DEVICE = "device"
GPU_MEMORY_PEAK_BYTES = "gpu_memory_peak_bytes"
GPU_MEMORY_CAP_BYTES = "gpu_memory_cap_bytes"

# What the trial's model costs to keep and to run (trainables.footprint): measured once
# when the trial (re)starts, on its device and in its compute format, and reported with
# every epoch as constants, so progress.csv, the summary, the report and TensorBoard read
# them like the other metrics. Lower is better for each; no scheduler looks at them.
PARAMS = "params"  # parameters of the model, trainable or not
FLOPS = "flops"  # per image, one forward pass; a multiply-add counts as 2 FLOPs
LATENCY_MS = "latency_ms"  # one forward pass of 1 image, eval mode, milliseconds
LATENCY_MS_BATCH = "latency_ms_batch"  # one forward pass of LATENCY_BATCH_SIZE images, ms
LATENCY_BATCH_SIZE = "latency_batch_size"  # images in that batch (256, or fewer)

FOOTPRINT_METRICS = (PARAMS, FLOPS, LATENCY_MS, LATENCY_MS_BATCH)

# The metrics a sweep may optimize, and the direction that is better for each.
OPTIMIZABLE: dict[str, str] = {VAL_ACC: "max", VAL_LOSS: "min", TRAIN_ACC: "max", TRAIN_LOSS: "min"}
