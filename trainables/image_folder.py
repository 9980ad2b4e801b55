"""Reading an ImageFolder (one sub-folder per class) into memory, refusing what would
mislead: folders named like splits, and unreadable images, each named in one line.

Read in DataLoader workers; a worker hands back an unreadable file's path instead of
raising, since a raise inside a worker reaches the user as a 20-line traceback.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from trainables.data import UNREADABLE, DataError

logger = logging.getLogger(__name__)


def read_image_folder(
    root: Path, image_size: int | Literal["auto"]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Every image under `root/<class>/` as uint8 NCHW squares, int64 labels, class names.

    `image_size` is the side of the squares in pixels, or "auto" to choose it from the
    images' own sizes (see `choose_image_size`).

    Raises:
        DataError: no class folders, folders named like splits, or unreadable images
            (each named, in one line).
    """
    from torchvision import datasets, transforms

    try:
        folder = datasets.ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as error:
        raise DataError(
            f"dataset.root={str(root)!r}: {error} image_folder expects one sub-folder per "
            "class holding image files (root/cat/1.png, root/dog/1.png)"
        ) from error
    _check_classes_are_not_splits(root, folder.classes)
    if image_size == "auto":
        paths = [path for path, _ in folder.samples]
        image_size = choose_image_size(_shorter_sides(paths, _SIZE_SAMPLE))
        logger.info("%s: image_size auto -> %d pixels", root, image_size)
    folder.transform = transforms.Compose(
        [transforms.Resize((image_size, image_size)), transforms.PILToTensor()]
    )
    workers = min(8, os.cpu_count() or 1)
    loader = torch.utils.data.DataLoader(
        _ImagesOrProblems(folder), batch_size=256, num_workers=workers - 1, collate_fn=list
    )
    images, labels, problems = [], [], []
    for batch in loader:
        for image, label in batch:
            if isinstance(image, str):
                problems.append((image, label))
            else:
                images.append(image)
                labels.append(label)
    if problems:
        raise DataError(_unreadable_images_message(root, problems))
    return torch.stack(images).numpy(), np.asarray(labels, dtype=np.int64), tuple(folder.classes)


AUTO_SIZE_MULTIPLE = 4  # pixels; each 2x2 pooling of a CNN block halves the side
AUTO_SIZE_RANGE = (16, 128)  # pixels: below, little is left to pool; above, slow on CPUs
_SIZE_SAMPLE = 2000  # images whose headers are read to choose the size


def choose_image_size(shorter_sides: list[int]) -> int:
    """The square side, in pixels, that `image_size: auto` resizes a folder's images to.

    The median of the images' shorter sides, so that a typical image is neither blown up
    nor shrunk much, rounded to a multiple of 4 and clamped to [16, 128].

    Raises:
        ValueError: `shorter_sides` is empty.
    """
    if not shorter_sides:
        raise ValueError("choose_image_size needs the size of at least one image, got none")
    low, high = AUTO_SIZE_RANGE
    median = float(np.median(shorter_sides))
    rounded = AUTO_SIZE_MULTIPLE * math.floor(median / AUTO_SIZE_MULTIPLE + 0.5)  # half up
    return int(min(max(rounded, low), high))


def _shorter_sides(paths: list[str], at_most: int) -> list[int]:
    """min(width, height) of up to `at_most` evenly spaced images, from their headers only.

    Unreadable files are skipped here; reading the folder names them afterwards.
    """
    from PIL import Image

    step = max(1, len(paths) // at_most)
    sides = []
    for path in paths[::step]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except UNREADABLE:
            continue
    return sides or [AUTO_SIZE_RANGE[0]]


_SPLIT_FOLDER_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}


def _check_classes_are_not_splits(root: Path, classes: list[str]) -> None:
    """A root holding train/ and val/ would make every split folder a class."""
    if len(classes) >= 2 and {c.lower() for c in classes} <= _SPLIT_FOLDER_NAMES:
        raise DataError(
            f"dataset.root={str(root)!r} holds the folders {', '.join(classes)}, which "
            "image_folder would read as classes; cnn-tune makes its own seeded "
            f"train/val/test split: point dataset.root at the folder whose sub-folders are "
            f"the classes, e.g. dataset.root={root / classes[0]!s}"
        )


class _ImagesOrProblems(torch.utils.data.Dataset):
    """An ImageFolder whose unreadable files come back as (path, problem) instead of
    raising, so one bad file gives one line naming it, not a DataLoader traceback."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int):
        try:
            return self.folder[index]
        except UNREADABLE as error:  # PIL's UnidentifiedImageError is an OSError
            return str(self.folder.samples[index][0]), _problem(error)


def _problem(error: BaseException) -> str:
    """A short reason, without PIL's `<_io.BufferedReader name=...>` noise."""
    if type(error).__name__ == "UnidentifiedImageError":
        return "not an image format PIL can read"
    first_line = (str(error).splitlines() or [""])[0]
    return re.sub(r"\s*<_io\.\w+ name=.*?>", "", first_line).strip() or type(error).__name__


def _unreadable_images_message(root: Path, problems: list[tuple[str, str]]) -> str:
    path, reason = problems[0]
    others = ""
    if len(problems) > 1:
        shown = ", ".join(repr(p) for p, _ in problems[1:4])
        more = f" and {len(problems) - 4} more" if len(problems) > 4 else ""
        others = f"; also unreadable: {shown}{more}"
    return (
        f"dataset.root={str(root)!r}: {len(problems)} image file(s) cannot be read: "
        f"{path!r} ({reason}){others}; remove or replace them"
    )
