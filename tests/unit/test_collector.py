"""The daemon loop's collector timetable: automatic collection off inside, cycles still freed."""

from __future__ import annotations

import gc
import weakref

from cronledger.adapters.collector import FULL_EVERY, MIDDLE_EVERY, CycleCollector


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_inside_the_block_automatic_collection_is_off_and_restored_after() -> None:
    assert gc.isenabled()
    with CycleCollector():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_between_ticks_collects_at_most_once_per_interval() -> None:
    with CycleCollector(interval_s=3600) as collector:
        assert collector.between_ticks() is None
        assert collector.passes == 0


def test_the_timetable_runs_the_older_generations_every_10th_and_100th_pass() -> None:
    with CycleCollector(interval_s=0) as collector:
        generations = [collector.between_ticks() for _ in range(FULL_EVERY)]
    assert generations.count(2) == 1 and generations[-1] == 2
    assert generations.count(1) == FULL_EVERY // MIDDLE_EVERY - 1
    assert generations[MIDDLE_EVERY - 1] == 1


def test_a_cycle_made_inside_is_freed_by_a_pass() -> None:
    with CycleCollector(interval_s=0) as collector:
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        assert alive() is not None, "nothing collects while the collector is off"
        collector.between_ticks()
        assert alive() is None
