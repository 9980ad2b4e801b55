"""Ray Tune trial schedulers built from validated settings: FIFO, ASHA, HyperBand,
median stopping, PBT and PB2.

The names below load on first use: the settings and the compatibility checks import no
Ray, so the CLI validates an experiment before Ray is imported; `build_scheduler` and
PBT's mutation helpers import Ray when they are first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schedulers.build import build_scheduler, clip_to_domains, pb2_errors, pbt_mutations
    from schedulers.compatibility import COMPATIBLE_SEARCHERS, compatibility_errors
    from schedulers.settings import (
        ASHASettings,
        FIFOSettings,
        HyperBandSettings,
        MedianStoppingSettings,
        PB2Settings,
        PBTSettings,
        SchedulerSettings,
    )

_MODULE_OF = {
    "COMPATIBLE_SEARCHERS": "schedulers.compatibility",
    "ASHASettings": "schedulers.settings",
    "FIFOSettings": "schedulers.settings",
    "HyperBandSettings": "schedulers.settings",
    "MedianStoppingSettings": "schedulers.settings",
    "PB2Settings": "schedulers.settings",
    "PBTSettings": "schedulers.settings",
    "SchedulerSettings": "schedulers.settings",
    "build_scheduler": "schedulers.build",
    "clip_to_domains": "schedulers.build",
    "compatibility_errors": "schedulers.compatibility",
    "pb2_errors": "schedulers.build",
    "pbt_mutations": "schedulers.build",
}

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


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use (PEP 562)."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'schedulers' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
