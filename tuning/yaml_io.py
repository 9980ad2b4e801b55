"""YAML reading with numbers as people write them, and `--set key=value` overrides."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from tuning.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-4` and `3e5` as floats (YAML 1.1 needs `1.0e-4`)."""


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = copy.deepcopy(yaml.SafeLoader.yaml_implicit_resolvers)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {error}") from error


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read experiment file: {error.strerror}") from error
    return parse_yaml_mapping(text, str(path))


def parse_yaml_mapping(text: str, source: str) -> dict[str, Any]:
    """Parse YAML text whose top level is a mapping."""
    data = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of keys, got {type(data).__name__}"
        )
    return data


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides (value parsed as YAML) to a copy of `tree`."""
    result = copy.deepcopy(tree)
    for override in overrides:
        key, sep, raw_value = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set {override!r}: expected KEY=VALUE, e.g. --set train.optimizer.lr=0.01"
            )
        path = key.strip().split(".")
        node = result
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(
                    f"--set {override!r}: {where} is {child!r}, not a mapping, so it has no "
                    f"key {path[depth + 1]!r}"
                )
            node = child
        node[path[-1]] = parse_yaml(raw_value, f"--set {override!r}")
    return result


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)
