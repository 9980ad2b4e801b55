"""Errors about the user's data and weights: light, so the CLI catches them without torch."""


class DataError(ValueError):
    """The dataset cannot be loaded as configured (missing or malformed files)."""


class WeightsError(ValueError):
    """Pretrained weights cannot be loaded as configured."""
