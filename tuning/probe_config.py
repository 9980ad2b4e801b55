"""What `cnn-tune probe` measures: one concrete config fixed from the experiment's space.

A probe trains one configuration, so every tuned value is fixed first, to the middle
of its domain: the midpoint of a uniform range, the geometric mean of a log range, the
middle option of a choice of numbers (the lower of the two middle ones), the first
option of a choice of other values. The lr and the batch size are what the probe
measures, so their middle values only set where it starts: the lr range test runs at
the middle batch size. A choice between mappings (optimizer or model families) is not
fixed: the lr range depends on the family, so the user picks one with --set.

Nothing here imports torch: a bad experiment or option is refused before it loads.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trainables.config import TrainConfig
from tuning import space
from tuning.errors import ConfigError, describe_validation_error
from tuning.values import is_number


@dataclass(frozen=True)
class FixedValue:
    """A tuned value the probe fixed: its dotted path under train:, the value, its domain."""

    path: str
    value: Any
    domain: dict[str, Any]

    def describe(self) -> str:
        kind, args = next(iter(self.domain.items()))
        value = f"{self.value:.3g}" if isinstance(self.value, float) else repr(self.value)
        return f"train.{self.path}={value}  (from {{{kind}: {args!r}}})"


def fix_tuned_values(tree: dict[str, Any]) -> tuple[TrainConfig, list[FixedValue]]:
    """The probe's config: every domain of `tree` fixed to its middle value.

    Raises:
        ConfigError: a choice between mappings (give one with --set), or a fixed value
            the config refuses.
    """
    fixed: list[FixedValue] = []
    point = _fix(tree, (), fixed)
    try:
        config = TrainConfig.model_validate(point)
    except ValidationError as error:
        raise ConfigError(
            [
                f"probe: the middle of each tuned value gives an invalid config: {line}; "
                "fix that value with --set"
                for line in describe_validation_error(error, TrainConfig, prefix="train")
            ]
        ) from error
    return config, fixed


def middle_value(kind: str, args: list[Any]) -> Any:
    """The middle of a range domain (`kind` is not choice or grid); ints stay ints."""
    low, high = args[0], args[1]
    if kind == "uniform":
        return (low + high) / 2
    if kind == "loguniform":
        return math.sqrt(low * high)
    if kind == "randint":
        return (low + high - 1) // 2  # high is excluded
    if kind == "lograndint":
        return round(math.sqrt(low * (high - 1)))
    q = args[2]  # quniform, qloguniform
    centre = (low + high) / 2 if kind == "quniform" else math.sqrt(low * high)
    value = round(centre / q) * q
    return int(value) if all(isinstance(a, int) for a in args) else value


def middle_option(options: list[Any]) -> Any:
    """The middle of a choice of numbers (lower median), else the first option."""
    if all(is_number(option) for option in options):
        ordered = sorted(options)
        return ordered[(len(ordered) - 1) // 2]
    return options[0]


def _fix(node: Any, path: tuple[str, ...], fixed: list[FixedValue]) -> Any:
    if space.is_domain(node):
        kind, args = next(iter(node.items()))
        if kind in ("choice", "grid"):
            if any(isinstance(option, dict) for option in args) and len(args) > 1:
                raise ConfigError(_choice_of_mappings_message(".".join(path), args))
            value = _fix(middle_option(args), path, fixed)
        else:
            value = middle_value(kind, args)
        if not isinstance(value, dict):
            fixed.append(FixedValue(".".join(path), value, node))
        return value
    if isinstance(node, dict):
        return {key: _fix(value, (*path, str(key)), fixed) for key, value in node.items()}
    return node


def _choice_of_mappings_message(path: str, options: list[Any]) -> str:
    names = [str(o.get("name", "?")) if isinstance(o, dict) else repr(o) for o in options]
    # The first option as flow YAML keeps its own domains: the sweep still tunes them.
    first = yaml.safe_dump(options[0], default_flow_style=True, sort_keys=False, width=10_000)
    return (
        f"train.{path} is a choice of {len(options)} options ({', '.join(names)}); a probe "
        "measures one, and the lr range differs between them: pick one with "
        f"--set train.{path}='{first.strip()}' (probe each option to compare)"
    )


def output_folder(text: str | None, experiment_name: str) -> Path:
    """The folder probe.json and probe.png go to (default ./probe-NAME), checked not created.

    Raises:
        ConfigError: a file is in the way, or the folder could not be made or written.
    """
    if text is not None and not text.strip():
        raise ConfigError(
            "--output '': give a folder, or leave --output out for ./probe-" + experiment_name
        )
    shown = text or f"probe-{experiment_name}"
    folder = Path(shown).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output {shown!r} is a file; give a folder (it is made if missing)")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(
            f"--output {shown!r}: {str(existing)!r} is a file, so no folder can be made "
            "under it; give another folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"--output {shown!r}: {str(existing)!r} is not writable by this user; give a "
            "folder you can write to"
        )
    return folder
