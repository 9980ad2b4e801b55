"""PB2 with the decisions it took recorded (schedulers.replay), in a module of its own:
Ray's PB2 imports scikit-learn's Gaussian processes, about a second of start-up that only
PB2 sweeps import."""

from __future__ import annotations

from ray.tune.schedulers.pb2 import PB2

from schedulers.population import LastEpochLeftAlone
from schedulers.replay import ReplayGuard


class ResumablePB2(ReplayGuard, LastEpochLeftAlone, PB2):
    """PB2 that records its decisions (see ReplayGuard) and leaves a trial's last epoch
    alone (schedulers.population)."""
