"""Due evaluation and misfire policies (SEMANTICS §3)."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cronledger.adapters.fake_runner import Script
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.jitter import jitter_ms
from cronledger.domain.misfire import classify, classify_one, horizon
from cronledger.domain.triggers import Every, next_fire_after
from cronledger.domain.values import ConcurrencyPolicy, MisfirePolicy, Options
from tests.harness import MINUTE, SECOND, T0, World, spec


def _offline_then_tick(policy: MisfirePolicy, gap: int, **kw: object) -> World:
    w = World()
    w.add(spec("job", misfire=policy, **kw))
    w.clock.advance(gap)
    w.tick()
    return w


def test_skip_records_late_fires_as_one_missed_fact_and_runs_the_on_time_one() -> None:
    w = _offline_then_tick(MisfirePolicy.SKIP, 10 * MINUTE + 5 * SECOND)
    [missed] = w.of(ev.FireMissed)
    assert (missed.count, missed.first, missed.last) == (9, T0 + MINUTE, T0 + 9 * MINUTE)
    [fired] = w.of(ev.FireRecorded)
    assert (fired.nominal, fired.represents, fired.late_ms) == (T0 + 10 * MINUTE, 1, 5 * SECOND)
    assert w.snapshot.schedules["job"].next_fire_at == T0 + 11 * MINUTE


def test_skip_with_no_fire_on_time_runs_nothing() -> None:
    w = _offline_then_tick(
        MisfirePolicy.SKIP, 10 * MINUTE + 30 * SECOND, misfire_grace_ms=20 * SECOND
    )
    [missed] = w.of(ev.FireMissed)
    assert (missed.count, missed.last, missed.grace_ms) == (10, T0 + 10 * MINUTE, 20 * SECOND)
    assert w.of(ev.FireRecorded) == []
    assert w.snapshot.schedules["job"].next_fire_at == T0 + 11 * MINUTE


def test_catch_up_represents_every_missed_fire_by_exactly_one_run() -> None:
    w = _offline_then_tick(MisfirePolicy.CATCH_UP, 10 * MINUTE + 5 * SECOND)
    assert w.of(ev.FireMissed) == []
    [fired] = w.of(ev.FireRecorded)
    assert (fired.nominal, fired.represents) == (T0 + 10 * MINUTE, 10)
    assert len(w.runner.started) == 1


def test_catch_up_window_skips_fires_older_than_the_window() -> None:
    w = _offline_then_tick(
        MisfirePolicy.CATCH_UP, 10 * MINUTE + 5 * SECOND, catch_up_window_ms=3 * MINUTE
    )
    [missed] = w.of(ev.FireMissed)
    assert (missed.count, missed.first, missed.last) == (7, T0 + MINUTE, T0 + 7 * MINUTE)
    [fired] = w.of(ev.FireRecorded)
    assert fired.represents == 3


def test_a_punctual_engine_misses_nothing_and_never_drifts() -> None:
    w = World()
    w.add(spec("job", trigger=Every(7 * SECOND, T0)))
    w.run_until(T0 + 10 * MINUTE, step=SECOND)
    fires = [f.nominal for f in w.of(ev.FireRecorded)]
    assert fires == [T0 + k * 7 * SECOND for k in range(1, len(fires) + 1)]
    assert len(fires) == (10 * MINUTE) // (7 * SECOND)
    assert w.of(ev.FireMissed) == []


@settings(max_examples=150, deadline=None)
@given(
    interval=st.integers(1, 600).map(lambda s: s * SECOND),
    grace=st.integers(0, 300).map(lambda s: s * SECOND),
    gap=st.integers(0, 3 * 3600).map(lambda s: s * SECOND),
    policy=st.sampled_from(MisfirePolicy),
)
def test_every_fire_time_is_accounted_for_exactly_once(
    interval: int, grace: int, gap: int, policy: MisfirePolicy
) -> None:
    w = World()
    w.add(spec("job", trigger=Every(interval, T0), misfire=policy, misfire_grace_ms=grace))
    w.clock.advance(gap)
    w.tick()
    expected = gap // interval  # brute force: fire times T0+k*interval in (T0, T0+gap]
    fired = w.of(ev.FireRecorded)
    missed = sum(m.count for m in w.of(ev.FireMissed))
    assert len(fired) <= 1
    assert missed + sum(f.represents for f in fired) == expected
    if policy is MisfirePolicy.CATCH_UP:
        assert missed == 0
    elif expected:
        last_late = gap - (gap // interval) * interval
        assert (len(fired) == 1) == (last_late <= grace)
    nxt = w.snapshot.schedules["job"].next_fire_at
    assert nxt is not None and nxt > w.now and nxt - interval <= w.now


@settings(max_examples=300, deadline=None)
@given(
    interval=st.integers(1, 10 * MINUTE),
    first_offset=st.integers(0, 10 * MINUTE),
    late=st.integers(0, 20 * MINUTE),
    grace=st.integers(0, 5 * MINUTE),
    jitter=st.sampled_from([0, 0, 30 * SECOND]),
    policy=st.sampled_from(list(MisfirePolicy)),
    window=st.one_of(st.none(), st.integers(0, 10 * MINUTE)),
)
def test_the_single_fire_shortcut_agrees_with_the_general_path(
    interval: int,
    first_offset: int,
    late: int,
    grace: int,
    jitter: int,
    policy: MisfirePolicy,
    window: int | None,
) -> None:
    """classify_one (W = {first}) gives what horizon + classify give, whenever it applies."""
    s = spec(
        trigger=Every(interval, T0),
        misfire=policy,
        misfire_grace_ms=grace,
        jitter_ms=jitter,
        catch_up_window_ms=window if policy is MisfirePolicy.CATCH_UP else None,
    )
    first = next_fire_after(s.trigger, T0 + first_offset - 1)
    assert first is not None
    now = first + jitter_ms(s.id, first, jitter) + late  # first is due at `now`
    following = next_fire_after(s.trigger, first)
    assume(following is None or following > now)
    general = classify(s, first, horizon(s, first, now), now, grace)
    assert classify_one(s, first, now, grace) == general


@settings(max_examples=400, deadline=None)
@given(
    interval=st.integers(1, 5 * SECOND),
    jitter=st.integers(0, 20 * SECOND),
    first_offset=st.integers(0, 10 * SECOND),
    late=st.integers(0, 60 * SECOND),
    grace=st.integers(0, 5 * SECOND),
)
def test_skip_accounts_for_every_fire_time_even_when_jitter_exceeds_the_gap(
    interval: int, jitter: int, first_offset: int, late: int, grace: int
) -> None:
    """The general path against a brute-force split of W: with jitter larger than the gap
    between fires, on-time and late fire times interleave (a later one can be due first)."""
    s = spec(
        trigger=Every(interval, T0),
        misfire=MisfirePolicy.SKIP,
        misfire_grace_ms=grace,
        jitter_ms=jitter,
    )
    first = next_fire_after(s.trigger, T0 + first_offset - 1)
    assert first is not None
    now = first + jitter_ms(s.id, first, jitter) + late
    last = horizon(s, first, now)
    window: list[int] = []
    t: int | None = first
    while t is not None and t <= last:
        window.append(t)
        t = next_fire_after(s.trigger, t)
        assume(len(window) <= 5000)
    on = [t for t in window if now - t - jitter_ms(s.id, t, jitter) <= grace]
    off = [t for t in window if now - t - jitter_ms(s.id, t, jitter) > grace]
    outcome = classify(s, first, last, now, grace)
    assert (outcome.fire, outcome.represents) == ((on[-1], len(on)) if on else (None, 0))
    assert outcome.missed == len(off)
    assert (outcome.missed_first, outcome.missed_last) == (
        (off[0], off[-1]) if off else (None, None)
    )


def test_a_tick_never_fails_when_jitter_exceeds_the_interval() -> None:
    """Every(1 s) with 1.5 s of jitter and no grace, ticking at each due time for a minute:
    every fire time is accounted for once, as run or missed (the old split asserted)."""
    w = World()
    w.add(
        spec(
            "job",
            trigger=Every(SECOND, T0),
            misfire=MisfirePolicy.SKIP,
            misfire_grace_ms=0,
            jitter_ms=1500,
            concurrency=ConcurrencyPolicy.ALLOW,
        )
    )
    while w.clock.now() < T0 + MINUTE:
        wake = w.snapshot.schedules["job"].wake_at
        assert wake is not None
        w.clock.set(max(wake, w.clock.now()))
        w.tick()
    fired = sum(f.represents for f in w.of(ev.FireRecorded))
    missed = sum(m.count for m in w.of(ev.FireMissed))
    last = w.snapshot.schedules["job"].next_fire_at
    assert last is not None
    assert fired + missed == (last - T0) // SECOND - 1


def _outage_under(policy: ConcurrencyPolicy) -> World:
    """CATCH_UP every minute; the 00:01 run takes 30 s; the daemon is down from 00:01 until
    00:11:05, so its first tick after the outage both sees that exit and finds 10 fire times
    due."""
    w = World(Script(30 * SECOND))
    w.add(spec("job", misfire=MisfirePolicy.CATCH_UP, concurrency=policy))
    w.clock.set(T0 + MINUTE)
    w.tick()
    w.clock.set(T0 + 11 * MINUTE + 5 * SECOND)
    w.tick()
    return w


def test_catch_up_under_forbid_after_an_outage_is_skipped_by_the_phase_order() -> None:
    """SEMANTICS §7 evaluates due schedules before it reconciles exits, so the run that ended
    during the outage still counts as active when the catch-up fire is decided: FORBID skips it
    (ARCHITECTURE, "One tick"). QUEUE_ONE holds it instead, and it runs in the same tick."""
    w = _outage_under(ConcurrencyPolicy.FORBID)
    [skipped] = w.of(ev.FireSkipped)
    assert (skipped.nominal, skipped.reason) == (T0 + 11 * MINUTE, "concurrency_forbid")
    assert len(w.of(ev.RunSucceeded)) == 1 and len(w.of(ev.RunAssigned)) == 1

    w = _outage_under(ConcurrencyPolicy.QUEUE_ONE)
    fires = w.of(ev.FireRecorded)
    assert [(f.nominal, f.represents) for f in fires] == [(T0 + MINUTE, 1), (T0 + 11 * MINUTE, 10)]
    assert len(w.of(ev.RunAssigned)) == 2  # released by the exit and dispatched at once


def _late_fires(option_grace: int, own_grace: int | None) -> World:
    """Fires at T0+1m, +2m and +3m, seen 150, 90 and 30 s late by one tick."""
    w = World()
    w.do(cmd.ChangeOptions(Options(misfire_grace_ms=option_grace)))
    w.add(spec("job", misfire_grace_ms=own_grace))
    w.clock.advance(3 * MINUTE + 30 * SECOND)
    w.tick()
    return w


def test_a_schedule_without_a_grace_of_its_own_follows_the_engines_misfire_grace_option() -> None:
    w = _late_fires(60 * SECOND, None)  # the default option: 60 s
    [missed] = w.of(ev.FireMissed)
    assert (missed.count, missed.grace_ms) == (2, 60 * SECOND)
    [fired] = w.of(ev.FireRecorded)
    assert (fired.nominal, fired.represents) == (T0 + 3 * MINUTE, 1)

    w = _late_fires(2 * MINUTE, None)  # a wider engine default: only the first is too late
    [missed] = w.of(ev.FireMissed)
    assert (missed.count, missed.grace_ms) == (1, 2 * MINUTE)
    [fired] = w.of(ev.FireRecorded)
    assert (fired.nominal, fired.represents) == (T0 + 3 * MINUTE, 2)


def test_a_schedules_own_grace_wins_over_the_engines_option() -> None:
    w = _late_fires(2 * MINUTE, 10 * SECOND)
    [missed] = w.of(ev.FireMissed)
    assert (missed.count, missed.grace_ms) == (3, 10 * SECOND)
    assert w.of(ev.FireRecorded) == []
