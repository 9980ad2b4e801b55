"""Validated settings for each trial scheduler. Every time unit is the epoch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def mutates_config(self) -> bool:
        """Whether a trial's hyperparameters can change while it runs (PBT-style)."""
        return False


class FIFOSettings(_Settings):
    """Run every trial to its last epoch."""

    name: Literal["fifo"]


class ASHASettings(_Settings):
    """Asynchronous successive halving: at each rung keep the top 1/reduction_factor."""

    name: Literal["asha"]
    max_t: int | None = Field(
        None, ge=1, description="epochs a trial may reach; default train.epochs"
    )
    grace_period: int = Field(1, ge=1, description="epochs before the first stopping decision")
    reduction_factor: float = Field(3.0, gt=1.0, le=100.0)
    brackets: int = Field(1, ge=1, le=10)


class HyperBandSettings(_Settings):
    """Synchronous HyperBand: brackets of successive halving, pausing trials at each rung."""

    name: Literal["hyperband"]
    max_t: int | None = Field(
        None, ge=1, description="epochs a trial may reach; default train.epochs"
    )
    reduction_factor: float = Field(3.0, gt=1.0, le=100.0)


class MedianStoppingSettings(_Settings):
    """Stop a trial whose best result is below the median of the others' running averages."""

    name: Literal["median"]
    grace_period: int = Field(1, ge=1, description="epochs before a trial can be stopped")
    min_samples_required: int = Field(3, ge=1, description="trials to compare against")


class _PopulationSettings(_Settings):
    perturbation_interval: int = Field(
        2, ge=1, description="epochs between exploits; equal to checkpoint.every_epochs"
    )
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5, description="share cloned / replaced")
    mutate: list[str] = Field(
        min_length=1,
        description="dotted train-config paths of tuned parameters to mutate, e.g. optimizer.lr",
    )
    synch: bool = False

    @property
    def mutates_config(self) -> bool:
        return True


class PBTSettings(_PopulationSettings):
    """Population based training: exploit the top trials' checkpoints and mutate their config."""

    name: Literal["pbt"]
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)


class PB2Settings(_PopulationSettings):
    """PB2: PBT whose explore step picks new values with a Gaussian-process bandit."""

    name: Literal["pb2"]


SchedulerSettings = Annotated[
    FIFOSettings
    | ASHASettings
    | HyperBandSettings
    | MedianStoppingSettings
    | PBTSettings
    | PB2Settings,
    Field(discriminator="name"),
]
