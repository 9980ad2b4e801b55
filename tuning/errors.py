"""User-facing configuration errors, formatted from pydantic's."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """Bad user input. The CLI prints every message and exits with code 2."""

    def __init__(self, messages: str | Iterable[str]) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(dict.fromkeys(messages))
        super().__init__("\n".join(self.messages))


class SweepInterrupted(RuntimeError):
    """The sweep stopped before every trial ended (Ctrl-C); its state is saved."""


def describe_validation_error(
    error: ValidationError, model: type[BaseModel], *, prefix: str = ""
) -> list[str]:
    """One line per problem: the dotted key, the value, and what is allowed."""
    lines = []
    for item in error.errors():
        parts, target = _walk(model, item["loc"])
        loc = ".".join([prefix, *parts] if prefix else parts) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(_unknown_key_message(loc, parts[-1], _field_names(target)))
        elif item["type"] == "missing":
            lines.append(f"{loc}: required but missing")
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{loc}: {message} (got {_short(item.get('input'))})")
    return lines


def _walk(model: Any, loc: tuple[Any, ...]) -> tuple[list[str], Any]:
    """The user's dotted path for a pydantic `loc`, and the model that owns its last key.

    A discriminated union puts its tag ("sgd") into `loc`; users never write it, so it
    is dropped from the path and used to pick the union member.
    """
    parts: list[str] = []
    current, owner = model, model
    for part in loc:
        parts.append(str(part))
        owner = current
        fields = _field_names(current)
        if isinstance(part, str) and part in fields:
            current = current.model_fields[part].annotation
        elif isinstance(part, str) and (member := _union_member(current, part)) is not None:
            parts.pop()
            current = member
        else:
            current = None
    return parts, owner if parts and parts[-1] not in _field_names(current) else current


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
