"""A fast `attrs.evolve` for frozen value objects on the fold's hot path."""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

T = TypeVar("T")

_FIELDS: dict[type, tuple[str, ...]] = {}
_new = object.__new__
_set = object.__setattr__


def evolve(obj: T, **changes: Any) -> T:
    """Copy of `obj` with `changes`, skipping `__init__` (the values were validated when made).

    Dict-backed classes (`slots=False`) are copied with one C-level dict copy; slotted ones
    field by field.
    """
    new = _new(type(obj))
    state = getattr(obj, "__dict__", None)
    if state is not None:
        fields = state.copy()
        fields.update(changes)
        _set(new, "__dict__", fields)
        return new
    cls = type(obj)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(a.name for a in attrs.fields(cls))  # type: ignore[arg-type]
    for name in names:
        _set(new, name, changes[name] if name in changes else getattr(obj, name))
    return new


def build(cls: type[T], fields: dict[str, Any]) -> T:
    """An instance of the dict-backed attrs class `cls` holding exactly `fields`."""
    new = _new(cls)
    _set(new, "__dict__", fields)
    return new


_DEFAULTS: dict[type, dict[str, Any]] = {}


def make(cls: type[T], **fields: Any) -> T:
    """Like `cls(**fields)` for a dict-backed attrs class, without running `__init__`.

    Fields left out take their declared defaults (plain defaults only, no factories).
    """
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _DEFAULTS[cls] = {
            a.name: a.default
            for a in attrs.fields(cls)  # type: ignore[arg-type]
            if a.default is not attrs.NOTHING
        }
    return build(cls, {**defaults, **fields})
