"""Does every class reach the splits? Refuse data a classifier cannot learn from, warn
where a held-out split misses a class.

Run by `trainables.data.load_splits` on the seeded split it made, so what is checked is
exactly what the trials and the final test will see.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from trainables.data import DataConfig, DataError

logger = logging.getLogger(__name__)

_SHOWN = 5  # classes named in one message; the rest are counted


def check_class_coverage(
    config: DataConfig,
    class_names: tuple[str, ...],
    labels: np.ndarray,
    splits: dict[str, np.ndarray],
) -> None:
    """Check the labels of the whole dataset and of its "train", "val", "test" splits.

    Raises:
        DataError: fewer than two classes, a class with a single example, or a class
            with no example in the train split.
    """
    where = _where(config)
    present = [int(c) for c in np.unique(labels)]
    totals = np.bincount(labels, minlength=len(class_names))

    def listed(classes: list[int]) -> str:
        shown = ", ".join(f"{class_names[c]!r} ({_examples(totals[c])})" for c in classes[:_SHOWN])
        return shown + (f" and {len(classes) - _SHOWN} more" if len(classes) > _SHOWN else "")

    if len(present) < 2:
        raise DataError(
            f"{where}: found {len(present)} class {listed(present)}; a classifier needs at "
            "least 2 classes" + (_FOLDER_HINT if config.name == "image_folder" else "")
        )
    fix = f"give each class at least {_examples_needed(config)} examples, or remove it"
    singles = [c for c in present if totals[c] == 1]
    if singles:
        raise DataError(
            f"{where}: class {listed(singles)} has a single example, which cannot be both "
            f"learned and tested and stops the split from stratifying the others; {fix}"
        )
    untrained = [c for c in present if not np.any(splits["train"] == c)]
    if untrained:
        if config.max_train_examples is not None:
            fix += f", or raise dataset.max_train_examples={config.max_train_examples}"
        raise DataError(
            f"{where}: class {listed(untrained)} has no example in the train split "
            f"(dataset.split_seed={config.split_seed}), so no model can learn it; {fix}"
        )
    _warn_of_held_out_gaps(where, present, splits, listed, config)


_FOLDER_HINT = ": put one sub-folder per class under dataset.root (root/cat/*.png, root/dog/...)"


def _warn_of_held_out_gaps(where, present, splits, listed, config: DataConfig) -> None:
    """A class absent from val (or test) is silently left out of that split's accuracy."""
    for split in ("val", "test"):
        missing = [c for c in present if not np.any(splits[split] == c)]
        if missing:
            logger.warning(
                "warning: %s: class %s has no example in the %s split, so %s accuracy "
                "ignores it; give each class at least %d examples, or raise dataset.%s_fraction",
                where,
                listed(missing),
                split,
                split,
                _examples_needed(config),
                split,
            )


def _examples(count: int) -> str:
    return f"{count} example" if count == 1 else f"{count} examples"


def _where(config: DataConfig) -> str:
    """How a message names the dataset: its root, or its name if it reads no files."""
    if config.root is None:
        return f"dataset {config.name}"
    return f"dataset.root={str(Path(config.root).expanduser().resolve())!r}"


def _examples_needed(config: DataConfig) -> int:
    """Examples a class needs to expect one in each held-out split (1 / the smaller share)."""
    return math.ceil(1.0 / min(config.val_fraction, config.test_fraction))
