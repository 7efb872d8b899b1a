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
        assert keys.first_above(probe) == min((k for k in model if k > probe), default=None)
    for old, expected in versions[:: max(1, len(versions) // 20)]:
        assert list(old) == expected, "an old version changed after later updates"


def test_sorted_keys_split_large_chunks_and_stay_ordered() -> None:
    keys: SortedKeys[tuple[int, str]] = SortedKeys()
    for i in reversed(range(5000)):
        keys = keys.add((i % 977, f"s{i}"))
    assert list(keys) == sorted(keys)
    assert len(keys) == 5000
    assert SortedKeys.of(list(keys)) == keys


@given(
    st.lists(st.integers(0, 5000), max_size=3000),
    st.dictionaries(st.integers(0, 5200), st.booleans(), max_size=1500),
)
def test_update_applies_a_batch_of_edits_like_one_by_one(
    start: list[int], edits: dict[int, bool]
) -> None:
    """Both paths of `update` (path copies for a few edits, the leaf pass for many) agree with
    the set model, keep the tree searchable and leave the old version intact."""
    keys = SortedKeys.of(start)
    before = list(keys)
    model = set(start)
    for key, present in edits.items():
        (model.add if present else model.discard)(key)
    updated = keys.update(edits)
    assert list(updated) == sorted(model)
    assert len(updated) == len(model)
    assert updated.first() == (min(model) if model else None)
    for probe in range(0, 5201, 113):
        assert (probe in updated) == (probe in model)
        assert list(updated.iter_upto(probe)) == [k for k in sorted(model) if k <= probe]
        assert updated.first_above(probe) == min((k for k in model if k > probe), default=None)
    assert list(keys) == before, "the old version changed"
    again = updated.add(-1).remove(5000)  # still a valid tree for single updates
    assert list(again) == sorted((model | {-1}) - {5000})


def test_a_tick_sized_batch_moves_the_smallest_keys_to_the_end() -> None:
    """The steady-state shape: the 2,048 earliest schedules leave and come back one second on."""
    keys = SortedKeys.of((1000, f"s{i:05d}") for i in range(10_000))
    moved: dict[tuple[int, str], bool] = {}
    for i in range(2048):
        moved[(1000, f"s{i:05d}")] = False
        moved[(2000, f"s{i:05d}")] = True
    updated = keys.update(moved)
    assert len(updated) == 10_000
    assert list(updated)[:2] == [(1000, "s02048"), (1000, "s02049")]
    assert list(updated)[-1] == (2000, "s02047")
