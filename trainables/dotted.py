"""Dotted paths into nested config trees (`optimizer.lr`): the one way to read, write and
flatten them, for --set overrides, search spaces, PBT mutations and reports."""

from __future__ import annotations

from typing import Any


class PathBlocked(ValueError):
    """A path runs through a value that is not a mapping."""

    def __init__(self, where: str, value: Any, next_key: str) -> None:
        self.where, self.value, self.next_key = where, value, next_key
        super().__init__(f"{where} is {value!r}, not a mapping, so it has no key {next_key!r}")


def split(path: str) -> list[str]:
    return path.split(".")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as {dotted.path: value}, the way users name keys in --set."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def get_path(tree: Any, path: str) -> Any:
    """The value at `path` in `tree`, or None where the path does not lead anywhere."""
    node = tree
    for key in split(path):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def set_path(tree: dict[str, Any], path: str | list[str], value: Any) -> None:
    """Set `path` in `tree` to `value`, creating the mappings on the way.

    Raises:
        PathBlocked: a key on the way holds something other than a mapping.
    """
    keys = split(path) if isinstance(path, str) else path
    node = tree
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise PathBlocked(".".join(keys[: depth + 1]), child, keys[depth + 1])
        node = child
    node[keys[-1]] = value
