"""User-facing configuration errors, formatted from pydantic's."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """Bad user input. The CLI prints every message and exits with code 2."""

    def __init__(self, messages: str | Iterable[str]) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(dict.fromkeys(messages))
        super().__init__("\n".join(self.messages))


class SweepInterrupted(RuntimeError):
    """The sweep stopped before every trial ended (Ctrl-C); its state is saved."""


Explain = Callable[[str, dict[str, Any]], "str | None"]
"""A hook that may word one pydantic error item itself: (dotted key, item) -> line or None."""


def describe_validation_error(
    error: ValidationError,
    model: type[BaseModel],
    *,
    prefix: str = "",
    explain: Explain | None = None,
) -> list[str]:
    """One line per problem: the dotted key, the value, and what is allowed.

    Errors from the branches of one union (`freeze: all | none | int`) become one line.
    """
    lines: dict[str, list[str]] = {}  # key of the line -> its parts, in order
    for index, item in enumerate(error.errors()):
        parts, target, branch = _walk(model, item["loc"])
        loc = ".".join([prefix, *parts] if prefix else parts) or "(top level)"
        custom = explain(loc, dict(item)) if explain is not None else None
        if custom is not None:
            lines[custom] = [custom]
        elif item["type"] == "extra_forbidden":
            line = _unknown_key_message(loc, parts[-1], _field_names(target))
            line += _other_kinds_hint(model, item["loc"], prefix)
            lines[line] = [line]
        elif item["type"] == "missing":
            lines[f"{loc}: required but missing"] = [f"{loc}: required but missing"]
        elif parts and parts[-1] == "[key]":
            owner = loc.removesuffix(".[key]").rsplit(".", 1)[0]
            line = (
                f"{owner}: key {item.get('input')!r} must be a name (text); quote it or rename it"
            )
            lines[line] = [line]
        else:
            message = item["msg"].removeprefix("Value error, ")
            key = f"{loc}\0{_short(item.get('input'))}" if branch else str(index)
            lines.setdefault(key, [f"{loc}: ", f" (got {_short(item.get('input'))})"])
            lines[key].insert(-1, message)
    return [_join_branches(parts) for parts in lines.values()]


def _join_branches(parts: list[str]) -> str:
    """`[head, msg1, msg2, tail]` as `head msg1, or msg2 tail`; one-part lines as they are."""
    if len(parts) == 1:
        return parts[0]
    head, *messages, tail = parts
    rest = [m.removeprefix("Input should be ") for m in messages[1:]]
    return head + ", or ".join([messages[0], *rest]) + tail


def _walk(model: Any, loc: tuple[Any, ...]) -> tuple[list[str], Any, bool]:
    """The user's dotted path for a pydantic `loc`, the model that owns its last key, and
    whether the error came from one branch of a union.

    A discriminated union puts its tag ("sgd") into `loc`; users never write it, so it
    is dropped from the path and used to pick the union member. A plain union puts the
    branch it tried ("int", "literal['all','none']"); that is dropped too.
    """
    parts: list[str] = []
    current, owner, branch = model, model, False
    for part in loc:
        parts.append(str(part))
        current = _member_with_field(current, part)
        owner = current
        fields = _field_names(current)
        if isinstance(part, str) and part in fields:
            current = current.model_fields[part].annotation
        elif isinstance(part, str) and (member := _union_member(current, part)) is not None:
            parts.pop()
            current = member
        elif isinstance(part, str) and _is_plain_union(current):
            parts.pop()
            current, branch = None, True
        else:
            current = None
    target = owner if parts and parts[-1] not in _field_names(current) else current
    return parts, target, branch


def _member_with_field(annotation: Any, part: Any) -> Any:
    """The model of an optional or union `annotation` that has field `part`, else as is."""
    if not _is_plain_union(annotation):
        return annotation
    for member in typing.get_args(annotation):
        if part in _field_names(member):
            return member
    return annotation


def _is_plain_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _field_names(annotation: Any) -> list[str]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _union_member(annotation: Any, tag: str) -> Any:
    """The member of a (possibly Annotated) union whose `name` literal is `tag`."""
    args = getattr(annotation, "__args__", ())
    if args and hasattr(annotation, "__metadata__"):  # Annotated[Union[...], Field(...)]
        args = getattr(args[0], "__args__", ())
    for member in args:
        name_field = getattr(member, "model_fields", {}).get("name")
        if name_field is not None and tag in getattr(name_field.annotation, "__args__", ()):
            return member
    return None


def _other_kinds_hint(model: Any, loc: tuple[Any, ...], prefix: str) -> str:
    """For a key that belongs to other kinds of a tagged union (`grace_period` under a
    fifo scheduler, `momentum` under adam): which kinds have it, and how to switch.

    `--set scheduler.name=fifo` keeps the old scheduler's keys; replacing the mapping
    drops them.
    """
    current: Any = model
    path: list[str] = []
    for depth, part in enumerate(loc):
        current = _member_with_field(current, part)
        if isinstance(part, str) and part in _field_names(current):
            current = current.model_fields[part].annotation
            path.append(part)
            continue
        member = _union_member(current, str(part))
        if member is None:
            return ""
        if depth == len(loc) - 2:  # the tag sits right above the unknown key
            key, others = str(loc[-1]), _union_tags_with_field(current, str(loc[-1]))
            if not others:
                return ""
            where = ".".join([prefix, *path] if prefix else path)
            return (
                f"; {key!r} is a key of {', '.join(others)}, not of {part}: to change kinds, "
                f"replace the whole mapping, e.g. --set '{where}={{name: {part}}}'"
            )
        current = member
    return ""


def _union_tags_with_field(annotation: Any, key: str) -> list[str]:
    """The `name` tags of the union's members that have field `key`."""
    args = getattr(annotation, "__args__", ())
    if args and hasattr(annotation, "__metadata__"):
        args = getattr(args[0], "__args__", ())
    tags = []
    for member in args:
        if key in _field_names(member):
            tags += list(getattr(member.model_fields["name"].annotation, "__args__", ()))
    return tags


def _unknown_key_message(loc: str, key: str, allowed: list[str]) -> str:
    hint = ""
    if allowed:
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        hint += f" allowed keys here: {', '.join(sorted(allowed))}"
    return f"{loc}: unknown key {key!r}{hint}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
