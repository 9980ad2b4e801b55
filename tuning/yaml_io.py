"""YAML reading with numbers as people write them, and `--set key=value` overrides."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from trainables.dotted import PathBlocked, set_path
from tuning.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-4` as a float and only true/false as booleans, as YAML 1.2."""


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_BOOL_TAG = "tag:yaml.org,2002:bool"
# YAML 1.1 reads yes/no/on/off as booleans, so `channels_last: on` arrived as True and
# was refused; as in YAML 1.2, only true/false are booleans here (pydantic still reads
# yes/no/on/off as booleans for a boolean field).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in copy.deepcopy(yaml.SafeLoader.yaml_implicit_resolvers).items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice; PyYAML would silently keep the last value."""

    def __init__(self, key: Any, first_line: int, second_line: int) -> None:
        self.key, self.first_line, self.second_line = key, first_line, second_line
        super().__init__(f"key {key!r} appears twice in one mapping")


def _construct_mapping_without_duplicates(
    loader: _Loader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    """SafeLoader's mapping constructor, refusing a key written twice in the same mapping.

    Keys that a merge (`<<: *anchor`) brings in may be overridden: only keys written
    out in this mapping count.
    """
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            if key in seen:
                raise DuplicateKeyError(key, seen[key], line)
        except TypeError:  # an unhashable key: PyYAML reports it itself
            continue
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


def _construct_yaml_map(loader: _Loader, node: yaml.MappingNode) -> Any:
    data: dict[Any, Any] = {}
    yield data
    data.update(_construct_mapping_without_duplicates(loader, node))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_yaml_map)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; any problem becomes one line naming `source`, the line and the fix."""
    try:
        return yaml.load(text, Loader=_Loader)
    except DuplicateKeyError as error:
        raise ConfigError(
            f"{source}: key {error.key!r} is written twice in the same mapping "
            f"({_lines(error.first_line, error.second_line)}); YAML would silently keep the "
            "second value: keep one of them"
        ) from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {_one_line(error, text)}") from error


def _lines(first: int, second: int) -> str:
    return f"both on line {first}" if first == second else f"lines {first} and {second}"


def _one_line(error: yaml.YAMLError, text: str) -> str:
    """PyYAML's multi-line report as one line: where, what, the line itself, a hint."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return problem
    lines = text.splitlines()
    shown = lines[mark.line].strip() if mark.line < len(lines) else ""
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    hint = "; indent with spaces, not tabs" if "\\t" in problem else ""
    hint = hint or "; check the indentation, colons and brackets there"
    return f"{where}: {problem}" + (f" in {shown!r}" if shown else "") + hint


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError as error:
        raise ConfigError(
            f"{str(path)!r} is a folder; pass an experiment YAML file or a built-in name"
        ) from error
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{str(path)!r} is not UTF-8 text (byte {error.start}); an experiment file is "
            "YAML text: save it as UTF-8"
        ) from error
    except OSError as error:
        raise ConfigError(f"{path}: cannot read experiment file: {error.strerror}") from error
    return parse_yaml_mapping(text, str(path))


def parse_yaml_mapping(text: str, source: str) -> dict[str, Any]:
    """Parse YAML text whose top level is a mapping with string keys."""
    data = parse_yaml(text, source)
    if data is None:
        raise ConfigError(
            f"{source}: the file is empty; an experiment is a mapping such as "
            "`train: {optimizer: {lr: {loguniform: [1.0e-4, 1.0e-1]}}}`"
        )
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
        if not all(part.strip() for part in path):
            raise ConfigError(
                f"--set {override!r}: the key {key.strip()!r} has an empty part; write dotted "
                "keys without doubled, leading or trailing dots, e.g. train.optimizer.lr=0.01"
            )
        value = parse_yaml(raw_value, f"--set {override!r}")
        try:
            set_path(result, [part.strip() for part in path], value)
        except PathBlocked as blocked:
            raise ConfigError(f"--set {override!r}: {blocked}") from None
    return result


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)
