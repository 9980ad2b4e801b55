"""probe.png: the lr range test's curve with its points, and the batch sizes tried.

Drawn on a bare `matplotlib.figure.Figure` (Agg, no pyplot state), as the report is.
"""

from __future__ import annotations

import io
import math
from typing import Any

from matplotlib.figure import Figure

_DPI = 110


def probe_png(result: dict[str, Any]) -> bytes:
    """PNG bytes of the figure for `result`, the probe.json mapping."""
    figure = Figure(figsize=(11, 4.2))
    lr_axes, batch_axes = figure.subplots(1, 2, width_ratios=[3, 2])
    _draw_lr_sweep(lr_axes, result["lr_range_test"], result["suggested"])
    _draw_batch_tries(batch_axes, result["batch_size"])
    figure.suptitle(f"cnn-tune probe {result['experiment']}  ({result['device']})", fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _draw_lr_sweep(axes: Any, sweep: dict[str, Any], suggested: dict[str, Any]) -> None:
    lrs, losses, curve = sweep["lr"], _floats(sweep["loss"]), _floats(sweep["curve"])
    axes.plot(lrs, losses, color="#a0aec0", linewidth=0.8, label="loss per step")
    axes.plot(lrs[: len(curve)], curve, color="#2b6cb0", linewidth=1.8, label="smoothed loss")
    axes.set_xscale("log")
    if suggested["lr_range"] is not None:
        low, high = suggested["lr_range"]
        axes.axvspan(low, high, color="#c6f6d5", alpha=0.6, label="suggested lr range")
    points = sweep["points"]
    for key, marker, colour, label in (
        ("steepest", "o", "#38a169", "steepest descent"),
        ("minimum", "s", "#805ad5", "lowest loss"),
    ):
        point = points.get(key)
        if point is not None and point["smoothed_loss"] is not None:
            axes.plot(
                point["lr"],
                point["smoothed_loss"],
                marker=marker,
                color=colour,
                markersize=9,
                linestyle="none",
                label=f"{label}: lr {point['lr']:.2g}",
            )
    if points.get("divergence") is not None:
        lr = points["divergence"]["lr"]
        axes.axvline(lr, color="#e53e3e", linestyle="--", label=f"divergence: lr {lr:.2g}")
    finite = [v for v in losses if math.isfinite(v)]
    if finite:  # the last steps of a divergence would squash the rest of the curve
        axes.set_ylim(0, min(max(finite), 4 * finite[0]) * 1.1)
    axes.set_xlabel("learning rate (log scale)")
    axes.set_ylabel("training loss (cross-entropy)")
    axes.set_title(f"lr range test at batch size {sweep['batch_size']}", fontsize=10)
    axes.legend(fontsize=8, loc="lower left")
    axes.grid(True, which="major", alpha=0.3)


def _floats(values: list[float | None]) -> list[float]:
    """probe.json's series, where a non-finite loss is null, as floats to plot."""
    return [math.nan if v is None else v for v in values]


def _draw_batch_tries(axes: Any, batch: dict[str, Any]) -> None:
    tried = batch["tried"]
    fits = [t["batch_size"] for t in tried if t["fits"]]
    failed = [t["batch_size"] for t in tried if not t["fits"]]
    axes.plot(fits, [1] * len(fits), "o", color="#38a169", markersize=9, label="fits")
    axes.plot(failed, [0] * len(failed), "X", color="#e53e3e", markersize=9, label="out of memory")
    if batch["largest"] is not None:
        axes.axvline(batch["largest"], color="#2b6cb0", linestyle="--", linewidth=1)
    axes.axvline(batch["limit"], color="grey", linestyle=":", linewidth=1, label="search limit")
    axes.set_xscale("log", base=2)
    axes.set_yticks([0, 1], ["out of\nmemory", "fits"])
    axes.set_ylim(-0.5, 1.5)
    axes.set_xlabel("batch size (examples, log scale)")
    axes.set_title(
        f"largest batch that fits: {batch['largest']}\n({batch['limited_by']})", fontsize=9
    )
    axes.legend(fontsize=8, loc="center left")
    axes.grid(True, axis="x", alpha=0.3)
