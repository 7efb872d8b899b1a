"""A fast `attrs.evolve` for frozen value objects on the fold's hot path."""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

T = TypeVar("T")

_FIELDS: dict[type, tuple[str, ...]] = {}
_set = object.__setattr__


def evolve(obj: T, **changes: Any) -> T:
    """Copy of `obj` with `changes`; skips `__init__` (the values were validated when made)."""
    cls = type(obj)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(a.name for a in attrs.fields(cls))  # type: ignore[arg-type]
    new = object.__new__(cls)
    for name in names:
        _set(new, name, changes[name] if name in changes else getattr(obj, name))
    return new
