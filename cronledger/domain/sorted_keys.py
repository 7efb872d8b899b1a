"""A persistent (immutable) sorted set of keys, cheap to update at 100k keys.

A B+tree of tuples with fanout `_FANOUT`: a leaf is a sorted tuple of keys, an inner node is a
pair (maxes, children). An update copies only the nodes on one root-to-leaf path (about three
small tuples at 100k keys) and shares the rest, so old versions stay valid. The planner reads
the smallest keys (`iter_upto`) without touching the rest, so a tick's cost follows the due
work, not the number of keys.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Any)

_FANOUT = 64
Node = Any  # a leaf: tuple[K, ...]; an inner node: tuple[tuple[K, ...], tuple[Node, ...]]


def _node_max(node: Node, height: int) -> Any:
    return node[-1] if height == 0 else node[0][-1]


def _split(items: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    half = len(items) // 2
    return items[:half], items[half:]


def _add(node: Node, height: int, key: Any) -> tuple[Node, ...] | None:
    """The node(s) replacing `node` after adding `key`; None when already present."""
    if height == 0:
        j = bisect_left(node, key)
        if j < len(node) and node[j] == key:
            return None
        new = node[:j] + (key,) + node[j:]
        return _split(new) if len(new) > _FANOUT else (new,)
    maxes, children = node
    i = bisect_left(maxes, key)
    if i == len(maxes):
        i -= 1
    replaced = _add(children[i], height - 1, key)
    if replaced is None:
        return None
    kids = children[:i] + replaced + children[i + 1 :]
    if len(replaced) == 1:
        top = _node_max(replaced[0], height - 1)
        if top == maxes[i]:
            return ((maxes, kids),)
        return ((maxes[:i] + (top,) + maxes[i + 1 :], kids),)
    tops = (
        maxes[:i]
        + (_node_max(replaced[0], height - 1), _node_max(replaced[1], height - 1))
        + maxes[i + 1 :]
    )
    if len(kids) > _FANOUT:
        (lk, rk), (lm, rm) = _split(kids), _split(tops)
        return ((lm, lk), (rm, rk))
    return ((tops, kids),)


def _remove(node: Node, height: int, key: Any) -> Node | None:
    """`node` without `key` (() when it becomes empty); None when `key` is absent."""
    if height == 0:
        j = bisect_left(node, key)
        if j == len(node) or node[j] != key:
            return None
        return node[:j] + node[j + 1 :]
    maxes, children = node
    i = bisect_left(maxes, key)
    if i == len(maxes):
        return None
    child = _remove(children[i], height - 1, key)
    if child is None:
        return None
    if not child:
        if len(children) == 1:
            return ()
        return (maxes[:i] + maxes[i + 1 :], children[:i] + children[i + 1 :])
    top = _node_max(child, height - 1)
    if top != maxes[i]:
        maxes = maxes[:i] + (top,) + maxes[i + 1 :]
    return (maxes, children[:i] + (child,) + children[i + 1 :])


def _iter(node: Node, height: int) -> Iterator[Any]:
    if height == 0:
        yield from node
        return
    for child in node[1]:
        yield from _iter(child, height - 1)


def _iter_upto(node: Node, height: int, bound: Any) -> Iterator[Any]:
    """Keys <= bound, in order; stops at the first subtree past the bound."""
    if height == 0:
        yield from node[: bisect_right(node, bound)]
        return
    maxes, children = node
    for i, child in enumerate(children):
        if maxes[i] <= bound:
            yield from _iter(child, height - 1)
        else:
            yield from _iter_upto(child, height - 1, bound)
            return


class SortedKeys(Generic[K]):
    """Immutable sorted set; `add`/`remove` return a new set sharing untouched nodes."""

    __slots__ = ("_height", "_len", "_root")

    def __init__(self, root: Node = (), height: int = 0, length: int = 0) -> None:
        self._root = root
        self._height = height
        self._len = length

    @classmethod
    def of(cls, keys: Iterable[K]) -> SortedKeys[K]:
        """Build from any iterable of keys (duplicates collapse), bottom-up."""
        level: list[Node] = [tuple(sorted(set(keys)))]
        items = level[0]
        length = len(items)
        if length <= _FANOUT:
            return cls(items, 0, length)
        size = _FANOUT // 2 + _FANOUT // 4
        nodes: list[Node] = [items[i : i + size] for i in range(0, length, size)]
        height = 0
        while len(nodes) > 1:
            maxes = [_node_max(n, height) for n in nodes]
            nodes = [
                (tuple(maxes[i : i + size]), tuple(nodes[i : i + size]))
                for i in range(0, len(nodes), size)
            ]
            height += 1
        return cls(nodes[0], height, length)

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[K]:
        return _iter(self._root, self._height)

    def __contains__(self, key: object) -> bool:
        node, height = self._root, self._height
        while height:
            maxes, children = node
            i = bisect_left(maxes, key)
            if i == len(maxes):
                return False
            node, height = children[i], height - 1
        j = bisect_left(node, key)
        return j < len(node) and node[j] == key

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
        if not self._len:
            return None
        node, height = self._root, self._height
        while height:
            node, height = node[1][0], height - 1
        first: K = node[0]
        return first

    def iter_upto(self, bound: K) -> Iterator[K]:
        """Keys <= bound, in order."""
        return _iter_upto(self._root, self._height, bound)

    def add(self, key: K) -> SortedKeys[K]:
        """A new set with `key` (the same set when already present)."""
        replaced = _add(self._root, self._height, key)
        if replaced is None:
            return self
        if len(replaced) == 1:
            return SortedKeys(replaced[0], self._height, self._len + 1)
        tops = tuple(_node_max(n, self._height) for n in replaced)
        return SortedKeys((tops, replaced), self._height + 1, self._len + 1)

    def remove(self, key: K) -> SortedKeys[K]:
        """A new set without `key` (the same set when absent)."""
        if not self._len:
            return self
        root = _remove(self._root, self._height, key)
        if root is None:
            return self
        height = self._height
        while height and len(root[1]) == 1:
            root, height = root[1][0], height - 1
        if not root:
            return SortedKeys()
        return SortedKeys(root, height, self._len - 1)

    def replace(self, old: K | None, new: K | None) -> SortedKeys[K]:
        """Remove `old` and add `new` (either may be None)."""
        result = self
        if old is not None and old != new:
            result = result.remove(old)
        if new is not None and old != new:
            result = result.add(new)
        return result
