"""The training configuration of one trial: typed, strict, and free of Ray.

Every knob a sweep can tune is a field here. `tuning/` turns a YAML tree whose leaves
may be search-space domains into concrete dicts, and each trial validates its dict with
`TrainConfig.model_validate`. Unknown keys are errors everywhere.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(StrictModel):
    """Which network to train and how large it is."""

    name: Literal["cnn", "resnet18"] = "cnn"
    depth: int = Field(2, ge=1, le=8, description="conv blocks (cnn only)")
    width: int = Field(
        32, ge=1, le=1024, description="channels of the first block; doubles per block"
    )
    batch_norm: bool = True
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="drop probability before the classifier"
    )


class _OptimizerBase(StrictModel):
    lr: float = Field(
        0.01, gt=0.0, le=10.0, description="learning rate at batch_size examples per step"
    )
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="L2 coefficient")


class SGDConfig(_OptimizerBase):
    name: Literal["sgd"]
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
    alpha: float = Field(
        0.99, gt=0.0, lt=1.0, description="smoothing of the squared-gradient average"
    )
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    eps: float = Field(1.0e-8, gt=0.0, le=1.0)


class AdagradConfig(_OptimizerBase):
    name: Literal["adagrad"]
    eps: float = Field(1.0e-10, gt=0.0, le=1.0)


OptimizerConfig = Annotated[
    SGDConfig | AdamConfig | AdamWConfig | RMSpropConfig | AdagradConfig,
    Field(discriminator="name"),
]


class LRScheduleConfig(StrictModel):
    """Learning rate as a function of the epoch, multiplied onto `optimizer.lr`.

    constant: lr. exponential: lr * gamma**e. step: lr * gamma**(e // step_epochs).
    multistep: lr * gamma**(number of milestones <= e). cosine: from lr down to
    lr * min_factor over the epochs after warmup. An optional linear warmup ramps from
    lr * warmup_start_factor to lr over `warmup_epochs` first.
    """

    name: Literal["constant", "exponential", "step", "multistep", "cosine"] = "constant"
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="decay factor (per epoch or per step)")
    step_epochs: int = Field(10, ge=1, description="epochs between decays (step)")
    milestones: list[int] = Field(
        default_factory=list, description="epochs to decay at (multistep)"
    )
    min_factor: float = Field(0.0, ge=0.0, le=1.0, description="cosine floor, a fraction of lr")
    warmup_epochs: int = Field(0, ge=0)
    warmup_start_factor: float = Field(0.1, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _milestones_increase(self) -> LRScheduleConfig:
        if self.milestones != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise ValueError(
                f"milestones must be strictly increasing epochs >= 1, got {self.milestones}"
            )
        return self


class TrainConfig(StrictModel):
    """Everything one trial needs besides the data."""

    epochs: int = Field(
        10, ge=1, le=100_000, description="training epochs (the scheduler time unit)"
    )
    batch_size: int = Field(64, ge=1, le=65_536, description="examples per optimizer step")
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = SGDConfig(name="sgd")
    lr_schedule: LRScheduleConfig = LRScheduleConfig()
    l1: float = Field(0.0, ge=0.0, le=1.0, description="coefficient of sum |w| over weight tensors")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0, description="seeds weights, dropout and batch order")
    eval_batch_size: int = Field(
        1024, ge=1, description="examples per forward pass when evaluating"
    )
