"""Ray Tune trial schedulers built from validated settings (FIFO, ASHA, PBT)."""

from schedulers.build import COMPATIBLE_SEARCHERS, build_scheduler, compatibility_errors
from schedulers.settings import ASHASettings, FIFOSettings, PBTSettings, SchedulerSettings

__all__ = [
    "COMPATIBLE_SEARCHERS",
    "ASHASettings",
    "FIFOSettings",
    "PBTSettings",
    "SchedulerSettings",
    "build_scheduler",
    "compatibility_errors",
]
