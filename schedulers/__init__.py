"""Ray Tune trial schedulers built from validated settings: FIFO, ASHA, HyperBand,
median stopping, PBT and PB2."""

from schedulers.build import (
    COMPATIBLE_SEARCHERS,
    build_scheduler,
    clip_to_domains,
    compatibility_errors,
    pb2_errors,
    pbt_mutations,
)
from schedulers.settings import (
    ASHASettings,
    FIFOSettings,
    HyperBandSettings,
    MedianStoppingSettings,
    PB2Settings,
    PBTSettings,
    SchedulerSettings,
)

__all__ = [
    "COMPATIBLE_SEARCHERS",
    "ASHASettings",
    "FIFOSettings",
    "HyperBandSettings",
    "MedianStoppingSettings",
    "PB2Settings",
    "PBTSettings",
    "SchedulerSettings",
    "build_scheduler",
    "clip_to_domains",
    "compatibility_errors",
    "pb2_errors",
    "pbt_mutations",
]
