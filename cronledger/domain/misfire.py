"""Misfire policy (SEMANTICS §3): which of the fire times due now run, and which are missed."""

from __future__ import annotations

import attrs

from cronledger.domain.jitter import jitter_ms
from cronledger.domain.triggers import Trigger, fires_between, next_fire_after
from cronledger.domain.values import MisfirePolicy, ScheduleSpec


@attrs.frozen
class MisfireOutcome:
    """The run (if any) that stands for the due fire times W, and the ones missed."""

    fire: int | None
    represents: int
    late_ms: int
    missed: int
    missed_first: int | None
    missed_last: int | None


def horizon(spec: ScheduleSpec, first: int, now: int) -> int:
    """The last fire time in [first, now] that is due (t + jitter(t) <= now); `first` is due."""
    last = fires_between(spec.trigger, first, now)[1]
    while (
        last is not None and last > first and last + jitter_ms(spec.id, last, spec.jitter_ms) > now
    ):
        last = fires_between(spec.trigger, first, last - 1)[1]
    return first if last is None else last


def _split_window(
    spec: ScheduleSpec, lower: int, last: int, now: int, grace: int
) -> tuple[list[int], list[int]]:
    """Fire times t in [lower, last], in order, split into those on time
    (now - (t + jitter(t)) <= grace) and the rest; `lower` is where lateness beyond the grace
    stops being certain. With jitter larger than the gap between fires the lists interleave."""
    on_time: list[int] = []
    late: list[int] = []
    t = next_fire_after(spec.trigger, lower - 1)
    while t is not None and t <= last:
        if now - t - jitter_ms(spec.id, t, spec.jitter_ms) <= grace:
            on_time.append(t)
        else:
            late.append(t)
        t = next_fire_after(spec.trigger, t)
    return on_time, late


def _last_before(trigger: Trigger, first: int, bound: int) -> int | None:
    return fires_between(trigger, first, bound - 1)[1]


def classify_one(spec: ScheduleSpec, first: int, now: int, grace: int) -> MisfireOutcome:
    """`classify` when W = {first}, the usual case: the next fire time is still ahead.

    The same outcome as the general path with fewer trigger evaluations (a property test
    checks they agree)."""
    late = now - first - jitter_ms(spec.id, first, spec.jitter_ms)
    if spec.misfire is MisfirePolicy.CATCH_UP:
        window = spec.catch_up_window_ms
        on_time = window is None or first >= now - window
    else:
        on_time = late <= grace
    if on_time:
        return MisfireOutcome(first, 1, max(0, late), 0, None, None)
    return MisfireOutcome(None, 0, 0, 1, first, first)


def classify(spec: ScheduleSpec, first: int, last: int, now: int, grace: int) -> MisfireOutcome:
    """Split W = fire times in [first, last] (all due at `now`) by the misfire policy."""
    count, latest = fires_between(spec.trigger, first, last)
    if count == 0 or latest is None:
        return MisfireOutcome(None, 0, 0, 0, None, None)

    def late(t: int) -> int:
        return max(0, now - t - jitter_ms(spec.id, t, spec.jitter_ms))

    if spec.misfire is MisfirePolicy.CATCH_UP:
        window = spec.catch_up_window_ms
        if window is None or first >= now - window:
            return MisfireOutcome(latest, count, late(latest), 0, None, None)
        old_count, old_last = fires_between(spec.trigger, first, now - window - 1)
        kept = count - old_count
        if kept == 0:
            return MisfireOutcome(None, 0, 0, old_count, first, old_last)
        return MisfireOutcome(latest, kept, late(latest), old_count, first, old_last)

    lower = max(first, now - grace - spec.jitter_ms)  # fire times before it are late for sure
    on_time, late_in_window = _split_window(spec, lower, last, now, grace)
    if not on_time:
        return MisfireOutcome(None, 0, 0, count, first, latest)
    missed = count - len(on_time)
    if not missed:
        return MisfireOutcome(on_time[-1], len(on_time), late(on_time[-1]), 0, None, None)
    # The missed fire times: all of W before the window, and the window's late ones.
    before = _last_before(spec.trigger, first, lower)
    missed_first = first if before is not None else late_in_window[0]
    missed_last = late_in_window[-1] if late_in_window else before
    return MisfireOutcome(
        on_time[-1], len(on_time), late(on_time[-1]), missed, missed_first, missed_last
    )
