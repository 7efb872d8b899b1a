"""A persistent (immutable) sorted set of keys, cheap to update at 100k keys.

Keys live in sorted chunks of at most `_CHUNK` items held in a tuple; an update copies one chunk
and the (short) tuple of chunks, both C-speed memcpy of pointers, so add/remove cost O(sqrt n)
pointer copies with a tiny constant and leave the old version intact. The planner reads the
smallest keys (`iter_upto`) without touching the rest, so a tick's cost follows the due work.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Any)

_CHUNK = 512


class SortedKeys(Generic[K]):
    """Immutable sorted set; `add`/`remove` return a new set sharing untouched chunks."""

    __slots__ = ("_chunks", "_len", "_maxes")

    def __init__(
        self,
        chunks: tuple[tuple[K, ...], ...] = (),
        maxes: tuple[K, ...] = (),
        length: int = 0,
    ) -> None:
        self._chunks = chunks
        self._maxes = maxes
        self._len = length

    @classmethod
    def of(cls, keys: Any) -> SortedKeys[K]:
        """Build from any iterable of keys (duplicates collapse)."""
        items = sorted(set(keys))
        chunks = tuple(tuple(items[i : i + _CHUNK]) for i in range(0, len(items), _CHUNK))
        return cls(chunks, tuple(c[-1] for c in chunks), len(items))

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[K]:
        for chunk in self._chunks:
            yield from chunk

    def __contains__(self, key: object) -> bool:
        i = bisect_left(self._maxes, key)
        if i == len(self._chunks):
            return False
        chunk = self._chunks[i]
        j = bisect_left(chunk, key)
        return j < len(chunk) and chunk[j] == key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SortedKeys):
            return NotImplemented
        return self._len == other._len and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"SortedKeys({list(self)!r})"

    def first(self) -> K | None:
        """The smallest key, or None when empty."""
        return self._chunks[0][0] if self._chunks else None

    def iter_upto(self, bound: K) -> Iterator[K]:
        """Keys <= bound, in order."""
        for chunk in self._chunks:
            if chunk[-1] <= bound:
                yield from chunk
                continue
            yield from chunk[: bisect_right(chunk, bound)]
            return

    def add(self, key: K) -> SortedKeys[K]:
        """A new set with `key` (the same set when already present)."""
        chunks, maxes = self._chunks, self._maxes
        if not chunks:
            return SortedKeys(((key,),), (key,), 1)
        i = bisect_left(maxes, key)
        if i == len(chunks):
            i -= 1
        chunk = chunks[i]
        j = bisect_left(chunk, key)
        if j < len(chunk) and chunk[j] == key:
            return self
        new = (*chunk[:j], key, *chunk[j:])
        if len(new) > _CHUNK:
            half = len(new) // 2
            left, right = new[:half], new[half:]
            chunks = (*chunks[:i], left, right, *chunks[i + 1 :])
            maxes = (*maxes[:i], left[-1], right[-1], *maxes[i + 1 :])
        else:
            chunks = (*chunks[:i], new, *chunks[i + 1 :])
            if new[-1] != maxes[i]:
                maxes = (*maxes[:i], new[-1], *maxes[i + 1 :])
        return SortedKeys(chunks, maxes, self._len + 1)

    def remove(self, key: K) -> SortedKeys[K]:
        """A new set without `key` (the same set when absent)."""
        chunks, maxes = self._chunks, self._maxes
        i = bisect_left(maxes, key)
        if i == len(chunks):
            return self
        chunk = chunks[i]
        j = bisect_left(chunk, key)
        if j == len(chunk) or chunk[j] != key:
            return self
        new = chunk[:j] + chunk[j + 1 :]
        if new:
            chunks = (*chunks[:i], new, *chunks[i + 1 :])
            if new[-1] != maxes[i]:
                maxes = (*maxes[:i], new[-1], *maxes[i + 1 :])
        else:
            chunks = chunks[:i] + chunks[i + 1 :]
            maxes = maxes[:i] + maxes[i + 1 :]
        return SortedKeys(chunks, maxes, self._len - 1)

    def replace(self, old: K | None, new: K | None) -> SortedKeys[K]:
        """Remove `old` and add `new` (either may be None)."""
        result = self
        if old is not None and old != new:
            result = result.remove(old)
        if new is not None and old != new:
            result = result.add(new)
        return result
