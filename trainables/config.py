"""The training configuration of one trial: typed, strict, and free of Ray.

Every knob a sweep can tune is a field here. `tuning/` turns a YAML tree whose leaves
may be search-space domains into concrete dicts, and each trial validates its dict with
`TrainConfig.model_validate`. Unknown keys are errors everywhere, and parameters that
belong to one choice (sgd's momentum, the cnn's width) exist only inside that choice.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainables.metrics import OPTIMIZABLE


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ----- models ------------------------------------------------------------------------


class CNNConfig(StrictModel):
    """A plain CNN whose size is tuned: `depth` conv blocks, `width` channels to start."""

    name: Literal["cnn"] = "cnn"
    depth: int = Field(2, ge=1, le=8, description="conv blocks")
    width: int = Field(32, ge=1, le=1024, description="channels of block 1; doubles per block")
    batch_norm: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="drop probability before the head")


class ResNet18Config(StrictModel):
    """torchvision's ResNet-18 with a small-image stem, trained from scratch."""

    name: Literal["resnet18"]
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="drop probability before the head")


class TransferConfig(StrictModel):
    """A pretrained backbone, partly frozen, and a new head.

    backbone: a torchvision architecture, or `cnn-tune`: the conv blocks of a model this
    tool trained and exported (`cnn-tune export`), which needs no download.
    weights: for torchvision, "imagenet" (torchvision's weights API; downloads once where
    there is internet), "none" (random initialization), or the path of a state-dict file
    saved from the same architecture; for cnn-tune, the exported model's folder.
    """

    name: Literal["transfer"]
    backbone: Literal[
        "resnet18", "resnet50", "vgg16", "mobilenet_v3_small", "efficientnet_b0", "cnn-tune"
    ]
    weights: str = Field("imagenet", min_length=1)
    freeze: Literal["all", "none"] | int = Field(
        "all", description="freeze every backbone block, none, or the first k blocks"
    )
    input_size: int | None = Field(
        None,
        ge=4,
        le=1024,
        description="pixels the backbone sees; default 224 for torchvision backbones, the "
        "exported model's image size for cnn-tune",
    )
    backbone_lr_factor: float = Field(
        0.1, ge=0.0, le=1.0, description="backbone lr = optimizer.lr x this; the head gets lr"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="drop probability before the head")

    @model_validator(mode="after")
    def _freeze_count_not_negative(self) -> TransferConfig:
        if isinstance(self.freeze, int) and self.freeze < 0:
            raise ValueError(f"freeze must be all, none or a block count >= 0, got {self.freeze}")
        if self.backbone == "cnn-tune" and self.weights in ("imagenet", "none"):
            raise ValueError(
                f"backbone cnn-tune takes its weights from a model `cnn-tune export` wrote, "
                f"not {self.weights!r}: set weights to that folder, e.g. runs/pretrain/model"
            )
        return self


ModelConfig = Annotated[CNNConfig | ResNet18Config | TransferConfig, Field(discriminator="name")]


# ----- optimizers --------------------------------------------------------------------


class _OptimizerBase(StrictModel):
    lr: float = Field(0.01, gt=0.0, le=10.0, description="learning rate at batch_size")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="L2 coefficient")


class SGDConfig(_OptimizerBase):
    name: Literal["sgd"] = "sgd"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDConfig:
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=true needs momentum > 0; set optimizer.momentum, e.g. 0.9")
        return self


class AdamConfig(_OptimizerBase):
    name: Literal["adam"]
    lr: float = Field(1.0e-3, gt=0.0, le=10.0)
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    eps: float = Field(1.0e-8, gt=0.0, le=1.0)


class AdamWConfig(AdamConfig):
    name: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="decoupled weight decay")


class RMSpropConfig(_OptimizerBase):
    name: Literal["rmsprop"]
    lr: float = Field(1.0e-3, gt=0.0, le=10.0)
    alpha: float = Field(0.99, gt=0.0, lt=1.0, description="smoothing of the squared gradient")
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    eps: float = Field(1.0e-8, gt=0.0, le=1.0)


class AdagradConfig(_OptimizerBase):
    name: Literal["adagrad"]
    eps: float = Field(1.0e-10, gt=0.0, le=1.0)


OptimizerConfig = Annotated[
    SGDConfig | AdamConfig | AdamWConfig | RMSpropConfig | AdagradConfig,
    Field(discriminator="name"),
]


# ----- schedules ---------------------------------------------------------------------


class LRScheduleConfig(StrictModel):
    """Learning rate as a function of the epoch, multiplied onto `optimizer.lr`.

    constant: lr. exponential: lr * gamma**e. step: lr * gamma**(e // step_epochs).
    multistep: lr * gamma**(number of milestones <= epoch), where the milestones are
    absolute 0-based epochs, warmup included (as torch's MultiStepLR). cosine: from lr
    down to lr * min_factor at the last epoch. plateau: lr * gamma**(number of times
    `plateau_metric` went `plateau_patience` epochs without improving by more than
    `plateau_min_delta`). An optional linear warmup first ramps from
    lr * warmup_start_factor to lr over `warmup_epochs`; e counts epochs after warmup,
    epoch counts from the first (both 0-based).
    """

    name: Literal["constant", "exponential", "step", "multistep", "cosine", "plateau"] = "constant"
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="decay factor (per epoch or per step)")
    step_epochs: int = Field(10, ge=1, description="epochs between decays (step)")
    milestones: list[int] = Field(default_factory=list, description="epochs to decay at")
    min_factor: float = Field(0.0, ge=0.0, le=1.0, description="cosine floor, a fraction of lr")
    warmup_epochs: int = Field(0, ge=0)
    warmup_start_factor: float = Field(0.1, gt=0.0, le=1.0)
    plateau_metric: Literal["val_loss", "val_acc"] = "val_loss"
    plateau_patience: int = Field(2, ge=1, description="epochs without improvement, then decay")
    plateau_min_delta: float = Field(0.0, ge=0.0, description="smallest change that counts")

    @model_validator(mode="after")
    def _milestones_increase(self) -> LRScheduleConfig:
        if self.milestones != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise ValueError(
                f"milestones must be strictly increasing epochs >= 1, got {self.milestones}"
            )
        return self


class BatchGrowthConfig(StrictModel):
    """Progressive batch growth: batch_size * factor**(epoch // every_epochs), capped.

    The learning rate follows the batch size by `lr_scaling`: none, linear (lr x b/b0)
    or sqrt (lr x sqrt(b/b0)), where b0 is `batch_size`.
    """

    factor: int = Field(2, ge=2, le=16, description="multiplier at each growth step")
    every_epochs: int = Field(5, ge=1)
    max_batch_size: int = Field(1024, ge=2, le=65_536)
    lr_scaling: Literal["none", "linear", "sqrt"] = "linear"


# ----- regularization ----------------------------------------------------------------

AUGMENTATION_PRESETS: dict[str, dict[str, Any]] = {
    "none": {
        "crop_padding_fraction": 0.0,
        "flip": False,
        "rotation_degrees": 0.0,
        "color_jitter": 0.0,
    },
    "light": {
        "crop_padding_fraction": 0.125,
        "flip": False,
        "rotation_degrees": 0.0,
        "color_jitter": 0.0,
    },
    "standard": {
        "crop_padding_fraction": 0.125,
        "flip": True,
        "rotation_degrees": 10.0,
        "color_jitter": 0.1,
    },
}


class AugmentationConfig(StrictModel):
    """Training-batch augmentation: a preset, and any knob set explicitly overrides it."""

    preset: Literal["none", "light", "standard"] = "none"
    crop_padding_fraction: float = Field(
        0.0, ge=0.0, le=0.5, description="shift up to this share of the side: 0.125 = 4 px of 32"
    )
    flip: bool = Field(False, description="horizontal flip with probability 0.5")
    rotation_degrees: float = Field(0.0, ge=0.0, le=180.0, description="uniform +-deg")
    color_jitter: float = Field(
        0.0, ge=0.0, lt=1.0, description="brightness, contrast, saturation x U(1-s, 1+s)"
    )

    @model_validator(mode="before")
    @classmethod
    def _preset_gives_the_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset", "none") in AUGMENTATION_PRESETS:
            return {**AUGMENTATION_PRESETS[data.get("preset", "none")], **data}
        return data


class EarlyStoppingConfig(StrictModel):
    """End a trial once `metric` has not improved by `min_delta` for `patience` epochs."""

    metric: Literal["val_acc", "val_loss", "train_acc", "train_loss"] = "val_acc"
    patience: int = Field(3, ge=1, description="epochs without improvement")
    min_delta: float = Field(0.0, ge=0.0, description="smallest improvement that counts")

    @property
    def mode(self) -> str:
        return OPTIMIZABLE[self.metric]


# ----- the whole trial ---------------------------------------------------------------


class TrainConfig(StrictModel):
    """Everything one trial needs besides the data."""

    epochs: int = Field(10, ge=1, le=100_000, description="epochs; every scheduler's time unit")
    batch_size: int = Field(64, ge=1, le=65_536, description="examples per optimizer step")
    batch_growth: BatchGrowthConfig | None = None
    model: ModelConfig = CNNConfig()
    optimizer: OptimizerConfig = SGDConfig()
    lr_schedule: LRScheduleConfig = LRScheduleConfig()
    l1: float = Field(0.0, ge=0.0, le=1.0, description="coefficient of sum |w| over weights")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    augmentation: AugmentationConfig = AugmentationConfig()
    early_stopping: EarlyStoppingConfig | None = None
    seed: int = Field(0, ge=0, description="seeds weights, dropout, augmentation, batch order")
    eval_batch_size: int = Field(1024, ge=1, description="examples per forward pass in eval")
    data_on_device: bool = Field(
        True,
        description="keep the dataset on the trial's device (GPU-resident); false copies each "
        "batch from pinned host memory, for datasets larger than the GPU share",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast; auto = on for CUDA devices that support bf16"
    )
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="channels-last memory format; auto = on for CUDA"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, data: Any) -> Any:
        """A `model` without a name is a cnn; an `optimizer` without one is sgd."""
        if isinstance(data, dict):
            data = dict(data)
            for key, default in (("model", "cnn"), ("optimizer", "sgd")):
                if isinstance(data.get(key), dict) and "name" not in data[key]:
                    data[key] = {"name": default, **data[key]}
        return data

    @model_validator(mode="after")
    def _growth_starts_below_its_cap(self) -> TrainConfig:
        if self.batch_growth and self.batch_growth.max_batch_size < self.batch_size:
            raise ValueError(
                f"batch_growth.max_batch_size={self.batch_growth.max_batch_size} is below "
                f"batch_size={self.batch_size}, where growth starts; raise the cap"
            )
        return self
