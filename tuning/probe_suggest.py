"""The probe's answer as search ranges, and the `--set` lines that put them in a sweep.

The lines are exactly what `cnn-tune run EXPERIMENT` accepts: `--set KEY=VALUE` with
VALUE parsed as YAML (tuning/yaml_io.py), quoted for a POSIX shell, floats written with
a dot (`2.0e-04`) so every YAML reader takes them as numbers.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

LR_KEY = "train.optimizer.lr"
BATCH_KEY = "train.batch_size"
GROWTH_CAP_KEY = "train.batch_growth.max_batch_size"
MAX_LR = 10.0  # the largest optimizer.lr a config takes

# The seeds' rule of thumb, offered by --scale-lr-with-batch (Goyal et al., 2017: "when
# the minibatch size is multiplied by k, multiply the learning rate by k").
SCALING_RULE = "lr x (batch / probed batch): the linear scaling rule"


@dataclass(frozen=True)
class Suggestion:
    """Search ranges for a sweep: a log-uniform lr range and a choice of batch sizes.

    Either is None when its probe found none (no descent, or no batch size that fits).
    """

    lr_range: tuple[float, float] | None
    batch_sizes: list[int] | None
    lr_scaled_from: tuple[float, float] | None = None  # the unscaled range, when scaled

    def set_lines(self, batch_growth: bool = False) -> list[str]:
        """One shell-ready `--set` line per suggestion.

        With progressive batch growth the measured maximum caps the growth instead: the
        experiment's starting batch sizes stay.
        """
        lines = []
        if self.lr_range is not None:
            low, high = (yaml_float(x) for x in self.lr_range)
            lines.append(f"--set {LR_KEY}='{{loguniform: [{low}, {high}]}}'")
        if not self.batch_sizes:
            return lines
        if batch_growth:
            lines.append(f"--set {GROWTH_CAP_KEY}={max(self.batch_sizes)}")
        else:
            sizes = ", ".join(str(b) for b in self.batch_sizes)
            lines.append(f"--set {BATCH_KEY}='{{choice: [{sizes}]}}'")
        return lines


def yaml_float(value: float) -> str:
    """Two significant digits, with a dot: 0.00023 -> 2.3e-04, which YAML reads as a float."""
    return f"{value:.1e}"


def scale_lr_range(
    lr_range: tuple[float, float], probed_batch: int, batch_sizes: list[int]
) -> tuple[float, float]:
    """The lr range under the linear scaling rule, covering every batch size suggested.

    Each batch size b gets the probed range times b / `probed_batch`; the result spans
    them all: the low end scaled to the smallest b, the high end to the largest (at most
    MAX_LR).
    """
    if probed_batch < 1 or not batch_sizes:
        raise ValueError(f"scaling needs a probed batch >= 1 and batch sizes, got {probed_batch}")
    low = lr_range[0] * min(batch_sizes) / probed_batch
    high = min(lr_range[1] * max(batch_sizes) / probed_batch, MAX_LR)
    return min(low, high / 10), high


def overrides_of(lines: list[str]) -> list[str]:
    """The KEY=VALUE arguments of `--set` lines, as a shell would pass them."""
    words = [word for line in lines for word in shlex.split(line)]
    return [value for flag, value in zip(words[::2], words[1::2], strict=True) if flag == "--set"]
