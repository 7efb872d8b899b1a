"""A persistent (immutable) sorted set of keys, cheap to update at 100k keys.

A B+tree of tuples with fanout `_FANOUT`: a leaf is a sorted tuple of keys, an inner node is a
pair (maxes, children). An update copies only the nodes on one root-to-leaf path (about three
small tuples at 100k keys) and shares the rest, so old versions stay valid. The planner reads
the smallest keys (`iter_upto`) without touching the rest, so a tick's cost follows the due
work, not the number of keys.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Any)

_FANOUT = 64
_LEAF = _FANOUT // 2 + _FANOUT // 4  # leaf and inner-node size of a freshly built tree
# One path copy per edit beats a pass over all the leaves below 16 edits or len/512 edits.
_BULK_MIN = 16
_BULK_RATIO = 512
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


def _leaves(node: Node, height: int, out: list[Node]) -> None:
    if height == 0:
        out.append(node)
        return
    for child in node[1]:
        _leaves(child, height - 1, out)


def _from_leaves(leaves: list[Node], length: int) -> SortedKeys[Any]:
    """A tree over non-empty sorted leaves (in order), inner levels built bottom-up."""
    if not leaves:
        return SortedKeys()
    nodes, height = leaves, 0
    while len(nodes) > 1:
        maxes = [_node_max(n, height) for n in nodes]
        nodes = [
            (tuple(maxes[i : i + _LEAF]), tuple(nodes[i : i + _LEAF]))
            for i in range(0, len(nodes), _LEAF)
        ]
        height += 1
    return SortedKeys(nodes[0], height, length)


def _bulk_update(keys: SortedKeys[Any], edits: Mapping[Any, bool]) -> SortedKeys[Any]:
    """`keys` with `edits` applied in one pass over the leaves: the sorted adds and removes are
    sliced per leaf by bisection, untouched leaves are shared, touched ones rebuilt."""
    leaves: list[Node] = []
    if keys:
        _leaves(keys._root, keys._height, leaves)
    adds = sorted(k for k, present in edits.items() if present)
    removes = sorted(k for k, present in edits.items() if not present)
    gone = set(removes)
    out: list[Node] = []
    length = 0
    a = r = 0
    last = len(leaves) - 1
    for i, leaf in enumerate(leaves):
        if i < last:  # the last leaf also takes every key past the largest one
            top = leaf[-1]
            a_end = bisect_right(adds, top, a)
            r_end = bisect_right(removes, top, r)
        else:
            a_end, r_end = len(adds), len(removes)
        if a == a_end and r == r_end:
            out.append(leaf)
            length += len(leaf)
            continue
        items = [k for k in leaf if k not in gone] if r < r_end else list(leaf)
        if a < a_end:
            items.extend(adds[a:a_end])
            items = sorted(set(items))  # an add of a key already present collapses
        a, r = a_end, r_end
        length += len(items)
        if len(items) <= _FANOUT:
            if items:
                out.append(tuple(items))
        else:
            out.extend(tuple(items[j : j + _LEAF]) for j in range(0, len(items), _LEAF))
    if not leaves and adds:
        out.extend(tuple(adds[j : j + _LEAF]) for j in range(0, len(adds), _LEAF))
        length = len(adds)
    return _from_leaves(out, length)


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
        return _from_leaves([items[i : i + _LEAF] for i in range(0, length, _LEAF)], length)

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[K]:
        return _iter(self._root, self._height)

    def _leaf(self, key: object, find: Callable[[Any, Any], int]) -> Node | None:
        """The leaf where `find` (bisect_left or bisect_right) places `key` among the inner
        nodes' maxes, or None when it falls past the last key."""
        node, height = self._root, self._height
        while height:
            maxes, children = node
            i = find(maxes, key)
            if i == len(maxes):
                return None
            node, height = children[i], height - 1
        return node

    def __contains__(self, key: object) -> bool:
        leaf = self._leaf(key, bisect_left)
        if leaf is None:
            return False
        j = bisect_left(leaf, key)
        return j < len(leaf) and leaf[j] == key

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

    def first_above(self, bound: K) -> K | None:
        """The smallest key > bound, or None."""
        leaf = self._leaf(bound, bisect_right)
        if leaf is None:
            return None
        j = bisect_right(leaf, bound)
        above: K | None = leaf[j] if j < len(leaf) else None
        return above

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

    def update(self, edits: Mapping[K, bool]) -> SortedKeys[K]:
        """A new set with each key of `edits` present (True) or absent (False).

        A few edits go one by one; many are merged leaf by leaf in one pass, which rebuilds only
        the leaves they touch and the small inner levels (a tick's batch of due schedules)."""
        if len(edits) < _BULK_MIN or len(edits) * _BULK_RATIO < self._len:
            result = self
            for key, present in edits.items():
                result = result.add(key) if present else result.remove(key)
            return result
        return _bulk_update(self, edits)
