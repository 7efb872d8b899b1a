"""Deterministic jitter (SEMANTICS §1) and the active/quiet hours gate in due evaluation (§3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.hours import Window
from cronledger.domain.jitter import jitter_ms
from cronledger.domain.values import MisfirePolicy
from tests.harness import MINUTE, SECOND, T0, World, cron, spec

HOUR = 60 * MINUTE


@given(st.text(min_size=1, max_size=20), st.integers(0, 2**45), st.integers(0, 10**7))
def test_jitter_is_deterministic_and_within_bounds(sid: str, nominal: int, bound: int) -> None:
    j = jitter_ms(sid, nominal, bound)
    assert 0 <= j <= bound
    assert j == jitter_ms(sid, nominal, bound)


def test_jitter_spreads_fires_and_replays_identically() -> None:
    values = {jitter_ms("job", T0 + k * MINUTE, 30 * SECOND) for k in range(200)}
    assert len(values) > 150  # not a constant


def test_a_jittered_fire_starts_at_the_first_tick_after_its_due_time() -> None:
    w = World()
    w.add(spec("job", jitter_ms=30 * SECOND))
    end = T0 + 10 * MINUTE
    w.run_until(end, step=SECOND)
    dues = [T0 + k * MINUTE + jitter_ms("job", T0 + k * MINUTE, 30 * SECOND) for k in range(1, 11)]
    expected = [d + (-d % SECOND) for d in dues if d + (-d % SECOND) <= end]
    assert [f.at for f in w.of(ev.FireRecorded)] == expected
    assert len(set(dues)) > 1


def test_a_fire_outside_active_hours_is_deferred_once_then_the_misfire_policy_decides() -> None:
    w = World()
    hours = Window("08:00", "20:00", "UTC")
    w.add(spec("job", trigger=cron("0 * * * *"), active_hours=hours))  # T0 is 00:00 UTC
    w.run_until(T0 + 8 * HOUR + 30 * SECOND, step=30 * SECOND)
    deferred = w.of(ev.FireDeferred)
    assert len(deferred) == 1
    assert (deferred[0].nominal, deferred[0].until) == (T0 + HOUR, T0 + 8 * HOUR)
    # at 08:00 the window opens: 01:00..07:00 are late (SKIP) and missed, 08:00 runs
    [missed] = w.of(ev.FireMissed)
    assert (missed.count, missed.first, missed.last) == (7, T0 + HOUR, T0 + 7 * HOUR)
    [fired] = w.of(ev.FireRecorded)
    assert fired.nominal == T0 + 8 * HOUR


def test_catch_up_runs_once_when_the_quiet_hours_end() -> None:
    w = World()
    quiet = Window("22:00", "06:00", "UTC")  # wraps midnight
    w.add(
        spec("job", trigger=cron("30 * * * *"), quiet_hours=quiet, misfire=MisfirePolicy.CATCH_UP)
    )
    w.run_until(T0 + 6 * HOUR + MINUTE, step=MINUTE)
    assert len(w.of(ev.FireDeferred)) == 1
    [fired] = w.of(ev.FireRecorded)
    assert (fired.at, fired.represents) == (T0 + 6 * HOUR, 6)


def test_a_manual_trigger_ignores_the_hours_gate() -> None:
    w = World()
    w.add(spec("job", active_hours=Window("08:00", "09:00", "UTC")))
    w.clock.advance(SECOND)
    w.do(cmd.TriggerSchedule("job"))
    w.tick()
    [fired] = w.of(ev.FireRecorded)
    assert fired.request_id is not None and len(w.runner.started) == 1
