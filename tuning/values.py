"""Predicates and the short format for values read back from configs, progress.csv
and summary.json, where a number may arrive as a bool, a NaN or a string."""

from __future__ import annotations

import math
from typing import Any, TypeGuard


def is_number(value: Any) -> TypeGuard[int | float]:
    """An int or float; booleans are not numbers here."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite(value: Any) -> TypeGuard[float]:
    """A number that is neither NaN nor infinite (booleans are not numbers here)."""
    return is_number(value) and math.isfinite(value)


def is_true(value: Any) -> bool:
    """A flag from progress.csv: True, 1 or "True"."""
    return value in (True, 1, "True", "true")


def short(value: Any) -> str:
    """A value for people: floats to 4 significant digits, None as "-"."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
