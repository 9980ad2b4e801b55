"""What a running sweep prints: one status line now and then, whatever the number of trials.

Ray's own output at its default verbosity prints a configuration table for every trial
that starts and a line for every trial that ends: some 20,000 lines for a sweep of 1,000
short trials. The runner turns it off (`verbose=0`) and prints this instead:

    [   45s] 340/1024 trials ended (12 stopped early, 1 errored), 2 running, 682 pending;
             best val_acc 0.9963 (trial_ab782_00017, epoch 5)

at most once every `every_s` seconds, and once more when the sweep ends; the best is the
best epoch that meets the outcome constraints. Errors are still logged by Ray as they
happen.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ray import tune

from trainables import metrics as m
from tuning.tradeoffs import Constraint

PRINT_EVERY_S = 20.0


class ProgressLine(tune.Callback):
    """Prints the sweep's status line: trials ended, running and pending, and the best."""

    _constraints: tuple[Constraint, ...] = ()  # also for callbacks pickled before they existed

    def __init__(
        self,
        metric: str,
        mode: str,
        total: int,
        every_s: float = PRINT_EVERY_S,
        constraints: tuple[Constraint, ...] = (),
    ) -> None:
        """`constraints`: a result that breaks one (tuning.tradeoffs) is never the best."""
        self._constraints = tuple(constraints)
        self._metric = metric
        self._total = total  # trials in the sweep; Tune creates them as slots free up
        self._sign = 1.0 if mode == "max" else -1.0
        self._every_s = every_s
        self._best: tuple[float, str, int] | None = None  # (value, trial id, epoch)
        self._stopped_early: set[str] = set()
        self._start = time.monotonic()
        self._last_print = self._start

    def setup(self, *args: Any, **info: Any) -> None:
        # Also on resume, where Tune unpickles this callback: time counts from now.
        self._start = self._last_print = time.monotonic()

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        value = result.get(self._metric)
        usable = not (result.get(m.DIVERGED) or result.get(m.INFEASIBLE))
        usable = usable and all(c.broken_by(result) is None for c in self._constraints)
        if not usable or not isinstance(value, int | float) or not math.isfinite(value):
            return
        if self._best is None or self._sign * value > self._sign * self._best[0]:
            self._best = (float(value), trial.trial_id, int(result.get(m.EPOCH, 0)))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result
        failed = last.get(m.DIVERGED) or last.get(m.INFEASIBLE)
        if not failed and last.get(m.EPOCH, 0) < trial.config.get("epochs", 0):
            self._stopped_early.add(trial.trial_id)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self._last_print >= self._every_s:
            self._last_print = now
            print(self.line(trials, now), flush=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        print(self.line(trials, time.monotonic()), flush=True)

    def line(self, trials: list, now: float) -> str:
        """The status line for `trials` (Tune's Trial objects) at monotonic time `now`."""
        counts: dict[str, int] = {}
        for trial in trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
        ended = counts.get("TERMINATED", 0) + counts.get("ERROR", 0)
        total = max(self._total, len(trials))
        pending = counts.get("PENDING", 0) + total - len(trials)
        notes = []
        if self._stopped_early:
            notes.append(f"{len(self._stopped_early)} stopped early")
        if counts.get("ERROR"):
            notes.append(f"{counts['ERROR']} errored")
        text = f"[{_clock(now - self._start)}] {ended}/{total} trials ended"
        if notes:
            text += f" ({', '.join(notes)})"
        text += f", {counts.get('RUNNING', 0)} running"
        if counts.get("PAUSED"):
            text += f", {counts['PAUSED']} paused"
        text += f", {pending} pending"
        if self._best is not None:
            value, trial_id, epoch = self._best
            text += f"; best {self._metric} {value:.4g} (trial_{trial_id}, epoch {epoch})"
        return text


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes:3d}m{secs:02d}s"
    return f"{secs:6d}s"
