"""Type checks of analysis configs at the edge: every field against its annotation.

Values come from TOML files, flags or Python; each wrong one is refused with one line naming
the key, the type expected and where the value came from, before anything runs.

Example:
    >>> check_value("k", "forty", int)
    Traceback (most recent call last):
    ...
    TypeError: k must be an integer, got the string 'forty'
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# Any: ``tp`` is an annotation object (a class, ``X | None``, ``tuple[X, ...]``), which has no
# common static type.


def describe(tp: Any) -> str:
    """An annotation in words: ``int | None`` -> ``an integer or none``."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return " or ".join(describe(a) for a in args)
    if typing.get_origin(tp) is tuple:
        return f"a list of {_plural(args[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "none"}.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(tp: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(
        tp, describe(tp))


def _what(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, tuple):
        value = list(value)  # TOML and flags give lists; show them as written
    kind = {int: "the integer", float: "the number", str: "the string",
            list: "the list", tuple: "the list", dict: "the table"}.get(type(value), "")
    return f"{kind} {value!r}" if kind else f"a {type(value).__name__} {value!r}"


def _matches(value: object, tp: Any) -> bool:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        return isinstance(value, list | tuple) and all(_matches(v, item) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, tp) if isinstance(tp, type) else True


def check_value(name: str, value: object, tp: Any) -> None:
    """Raise TypeError when ``value`` does not fit annotation ``tp``, naming ``name``."""
    if _matches(value, tp):
        return
    hint = ""
    if isinstance(value, str) and typing.get_origin(_strip_none(tp)) is tuple:
        hint = f' (write a list: {name} = ["{value}"])'
    raise TypeError(f"{name} must be {describe(tp)}, got {_what(value)}{hint}")


def _strip_none(tp: Any) -> Any:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def check_fields(cfg: DataclassInstance) -> None:
    """Type-check every field of a dataclass config; lists become tuples (frozen-safe)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        check_value(f.name, value, hints[f.name])
        if isinstance(value, list):
            object.__setattr__(cfg, f.name, tuple(value))
        elif hints[f.name] is float and isinstance(value, int):
            object.__setattr__(cfg, f.name, float(value))
