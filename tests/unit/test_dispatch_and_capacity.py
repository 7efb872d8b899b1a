"""Capacity (SEMANTICS §6) and the ready dispatch plan (SEMANTICS §5)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cronledger.adapters.fake_runner import Script
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.capacity import ready_dispatch_limit
from cronledger.domain.dispatch import render_argv
from cronledger.domain.tick import next_wake
from cronledger.domain.values import Call, Command, Options
from tests.harness import SECOND, T0, World, spec

HOUR = 3600 * SECOND


@given(
    max_workers=st.integers(1, 64),
    max_per_tick=st.integers(1, 64),
    slot=st.integers(0, 8),
    fallback=st.integers(0, 8),
    active=st.integers(0, 80),
    uses_fallback=st.booleans(),
    draining=st.booleans(),
)
def test_ready_dispatch_limit_follows_the_formula(
    max_workers: int,
    max_per_tick: int,
    slot: int,
    fallback: int,
    active: int,
    uses_fallback: bool,
    draining: bool,
) -> None:
    options = Options(
        max_workers=max_workers,
        max_per_tick=max_per_tick,
        slot_headroom=slot,
        fallback_headroom=fallback,
        draining=draining,
    )
    limit = ready_dispatch_limit(options, active, uses_fallback)
    if draining:
        assert limit == 0
        return
    headroom = slot + (fallback if uses_fallback else 0)
    assert limit == max(0, min(max_per_tick, max_workers - active - headroom))
    assert active + limit + headroom <= max(max_workers, active + headroom)


def _submit(w: World, name: str, priority: int = 0) -> str:
    [queued] = w.do(cmd.SubmitTask(target=Call(name), priority=priority))
    assert isinstance(queued, ev.EntryQueued)
    return queued.entry_id


def test_dispatch_takes_higher_priority_first_then_fifo() -> None:
    w = World(Script(10 * SECOND))
    w.do(cmd.ChangeOptions(Options(max_workers=3)))
    low1 = _submit(w, "a", 0)
    high1 = _submit(w, "b", 5)
    low2 = _submit(w, "c", 0)
    high2 = _submit(w, "d", 5)
    w.tick()
    assert [c.entry_id for c in w.runner.started] == [high1, high2, low1]
    w.clock.advance(10 * SECOND)
    w.tick()
    assert w.runner.started[-1].entry_id == low2


@settings(max_examples=80, deadline=None)
@given(
    priorities=st.lists(st.integers(0, 3), min_size=1, max_size=30),
    max_workers=st.integers(1, 6),
    durations=st.lists(st.integers(1, 20), min_size=1, max_size=30),
)
def test_capacity_is_never_exceeded_and_order_is_priority_then_fifo(
    priorities: list[int], max_workers: int, durations: list[int]
) -> None:
    runs = iter(durations * 30)
    w = World(lambda _c: Script(next(runs) * SECOND))
    w.do(cmd.ChangeOptions(Options(max_workers=max_workers, slot_headroom=0)))
    ids = [_submit(w, f"t{i}", p) for i, p in enumerate(priorities)]
    for _ in range(len(priorities) * 25):
        w.clock.advance(SECOND)
        w.tick()
        assert w.snapshot.active <= max_workers
    order = [c.entry_id for c in w.runner.started]
    assert sorted(order) == sorted(ids)
    expected = sorted(ids, key=lambda i: (-priorities[ids.index(i)], ids.index(i)))
    assert order == expected


def test_draining_dispatches_nothing() -> None:
    w = World()
    w.do(cmd.ChangeOptions(Options(draining=True)))
    _submit(w, "a")
    w.clock.advance(SECOND)
    w.tick()
    assert w.runner.started == []


def test_placeholders_are_rendered_in_the_write_ahead_intent() -> None:
    w = World()
    w.add(
        spec(
            "nightly",
            target=Command(
                ("run", "{schedule}", "{run_id}", "--at={scheduled_for}", "{attempt}", "{literal}")
            ),
        )
    )
    w.run_until(T0 + 60 * SECOND)
    [assigned] = w.of(ev.RunAssigned)
    run_id = "nightly@20260101T000100Z#1"
    assert assigned.argv == (
        "run",
        "nightly",
        run_id,
        "--at=2026-01-01T00:01:00.000Z",
        "1",
        "{literal}",
    )
    assert w.runner.started[0].argv == assigned.argv


def test_render_argv_leaves_text_without_placeholders_alone() -> None:
    assert render_argv(("a{b}", "x"), {"{run_id}": "r"}) == ("a{b}", "x")


def test_a_retry_whose_wait_is_over_but_has_no_slot_is_no_reason_to_wake() -> None:
    """next_wake(snapshot, now): only an exit can free the slot the retry waits for."""
    w = World(lambda c: Script(100, 1) if c.target == Call("flaky") else Script(HOUR))
    w.do(cmd.ChangeOptions(Options(max_workers=1)))
    w.do(cmd.SubmitTask(target=Call("flaky"), priority=5, max_attempts=3, backoff_ms=SECOND))
    w.tick()  # flaky starts
    _submit(w, "long")
    w.clock.advance(100)
    w.tick()  # flaky failed (retry at +1 s); long takes the slot
    retry_at = w.snapshot.delayed.first()
    assert retry_at is not None and retry_at[0] == w.now + SECOND
    assert next_wake(w.snapshot, w.now) == retry_at[0]  # still ahead: a wake-up
    w.clock.advance(2 * SECOND)
    plan = w.tick()  # the wait is over, but long holds the only slot
    assert plan.summary.dispatched == 0 and not plan.summary.more_due
    assert next_wake(w.snapshot) == retry_at[0]  # without `now`: the earliest, as before
    wake = next_wake(w.snapshot, w.now)
    assert wake is None or wake > w.now  # the long run's end is the runner's to report


@given(per_tick=st.integers(1, 5), ready=st.integers(0, 12), workers=st.integers(1, 12))
def test_more_due_when_max_per_tick_held_back_ready_entries_and_slots_are_free(
    per_tick: int, ready: int, workers: int
) -> None:
    w = World(Script(HOUR))
    w.do(cmd.ChangeOptions(Options(max_workers=workers, max_per_tick=per_tick)))
    for i in range(ready):
        _submit(w, f"t{i}")
    plan = w.tick()
    started = min(per_tick, workers, ready)
    assert plan.summary.dispatched == started
    assert plan.summary.more_due == (started == per_tick < workers and ready > per_tick)
