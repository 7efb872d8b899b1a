"""The persistent sorted index behaves like a sorted set, and old versions stay intact."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cronledger.domain.sorted_keys import SortedKeys

ops = st.lists(st.tuples(st.booleans(), st.integers(0, 3000)), max_size=2500)


@given(ops)
def test_sorted_keys_match_a_sorted_set_model(operations: list[tuple[bool, int]]) -> None:
    keys: SortedKeys[int] = SortedKeys()
    model: set[int] = set()
    versions = []
    for add, key in operations:
        keys = keys.add(key) if add else keys.remove(key)
        (model.add if add else model.discard)(key)
        versions.append((keys, sorted(model)))
    assert list(keys) == sorted(model)
    assert len(keys) == len(model)
    assert keys.first() == (min(model) if model else None)
    for probe in range(0, 3001, 97):
        assert (probe in keys) == (probe in model)
        assert list(keys.iter_upto(probe)) == [k for k in sorted(model) if k <= probe]
    for old, expected in versions[:: max(1, len(versions) // 20)]:
        assert list(old) == expected, "an old version changed after later updates"


def test_sorted_keys_split_large_chunks_and_stay_ordered() -> None:
    keys: SortedKeys[tuple[int, str]] = SortedKeys()
    for i in reversed(range(5000)):
        keys = keys.add((i % 977, f"s{i}"))
    assert list(keys) == sorted(keys)
    assert len(keys) == 5000
    assert SortedKeys.of(list(keys)) == keys
