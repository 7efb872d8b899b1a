"""cronledger.testing: the worked example of a user's property tests, and the kit itself."""

from __future__ import annotations

import itertools
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cronledger import (
    Call,
    ConcurrencyPolicy,
    Every,
    InvalidInput,
    Retry,
    ScheduleSpec,
    Trigger,
    Window,
    testing,
)
from cronledger.domain.triggers import next_fire_after, validate_trigger
from cronledger.domain.validation import validate_spec

T0 = testing.T0
MINUTE = 60_000
HOUR = 3_600_000

# --- the worked example (README: "Testing your schedules") ------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    spec=testing.schedule_specs(
        concurrency=[ConcurrencyPolicy.FORBID],
        trigger=testing.everys(min_interval_ms=MINUTE, max_interval_ms=15 * MINUTE),
        hours=False,
    ),
    walk=testing.clock_walks(min_steps=3, max_steps=10, min_step_ms=MINUTE, max_step_ms=HOUR),
    script=testing.scripters(max_duration_ms=45 * MINUTE),
)
def test_a_forbid_schedule_never_overlaps_itself(
    spec: ScheduleSpec, walk: list[int], script: testing.Scripter
) -> None:
    with testing.scheduler(script=script) as s:
        s.add_spec(spec)
        for instant in walk:
            s.advance_to(instant)  # ticks at every due time, retry and run end on the way
            assert len([r for r in s.runs() if r.schedule_id == spec.id]) <= 1
        runs = s.history(spec.id, limit=None)
        for earlier, later in itertools.pairwise(runs):
            assert earlier.finished_at is not None
            assert later.assigned_at >= earlier.finished_at
        assert s.verify().ok


BERLIN = ZoneInfo("Europe/Berlin")
QUIET_NIGHTS = Window("22:00", "06:00", "Europe/Berlin")


@settings(max_examples=20, deadline=None)
@given(
    trigger=testing.triggers(),
    walk=testing.clock_walks(max_steps=10, min_step_ms=10 * MINUTE + 1, max_step_ms=6 * HOUR),
)
def test_nothing_starts_in_quiet_hours_even_after_an_outage(
    trigger: Trigger, walk: list[int]
) -> None:
    with testing.scheduler() as s:
        s.add("digest", trigger, Call("job"), quiet_hours=QUIET_NIGHTS, misfire="catch_up")
        for instant in walk:
            s.tick_at(instant)  # the daemon wakes here only: long steps are outages
            s.advance("10m")  # then runs normally for a while
        for run in s.history("digest", limit=None):
            local = datetime.fromtimestamp(run.assigned_at / 1000, BERLIN)
            assert 6 <= local.hour < 22, local


def test_the_checks_above_can_fail_an_allow_schedule_overlaps() -> None:
    with testing.scheduler(script=testing.Script(duration_ms=30 * MINUTE)) as s:
        s.add("allow", "every 10m", Call("job"), concurrency="allow")
        s.advance("25m")
        assert len(s.runs()) == 2


def test_billing_catches_up_once_after_an_outage() -> None:
    with testing.scheduler(start="2026-03-01T00:00:00Z") as s:
        s.add("billing", "0 * * * *", Call("bill"), misfire="catch_up", catch_up_window="3h")
        s.advance("150m")  # 01:00 and 02:00 run on time
        s.tick_at("2026-03-01T07:30:00Z")  # the daemon was down from 02:30 to 07:30
        s.advance("1h")
        expected = [datetime(2026, 3, 1, h, tzinfo=UTC).timestamp() * 1000 for h in (1, 2, 7, 8)]
        assert [r.scheduled_for for r in s.history("billing")] == expected
        assert s.snapshot.counters.missed == 2  # 03:00 and 04:00: older than the 3 h window


# --- the kit ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(trigger=testing.triggers(T0))
def test_generated_triggers_are_valid_and_fire_after_the_start(trigger: Trigger) -> None:
    validate_trigger(trigger, now_ms=T0)
    nxt = next_fire_after(trigger, T0)
    assert nxt is not None and nxt > T0


@settings(max_examples=100, deadline=None)
@given(spec=testing.schedule_specs(T0))
def test_generated_specs_validate(spec: ScheduleSpec) -> None:
    validate_spec(spec, now_ms=T0)


@given(walk=testing.clock_walks(T0 + 5, max_steps=20, max_step_ms=1000, min_steps=2))
def test_clock_walks_increase_strictly_from_the_start(walk: list[int]) -> None:
    assert 2 <= len(walk) <= 20
    assert walk[0] > T0 + 5
    assert all(0 < b - a <= 1000 for a, b in itertools.pairwise([T0 + 5, *walk]))


@given(data=st.data())
def test_scripters_hand_out_the_drawn_scripts_in_turn(data: st.DataObject) -> None:
    scripter = data.draw(testing.scripters(max_duration_ms=5000, exit_codes=(0, None)))
    runner = testing.FakeRunner(scripter)
    assert runner.active() == 0
    script = data.draw(testing.scripts(5000))
    assert 0 <= script.duration_ms <= 5000


def test_advance_ticks_at_every_due_time_and_run_end() -> None:
    with testing.scheduler(script=testing.Script(duration_ms=30_000)) as s:
        s.add("minutely", "every 1m", Call("job"))
        summaries = s.advance(timedelta(minutes=10))
        assert s.fake_clock.now() == T0 + 10 * MINUTE
        assert len(summaries) == 20  # at the start, then at every fire and every run end
        assert sum(x.fired for x in summaries) == 10
        assert sum(x.reconciled for x in summaries) == 9  # the 00:10 run ends at 00:10:30
        assert s.verify().ok


def test_advance_records_a_timeout_when_it_happens_and_retries_on_time() -> None:
    # a run that never ends by itself: the timeout cancels it, and its end is recorded at the
    # deadline (not when the next unrelated thing happens), so the retry's backoff counts from it
    with testing.scheduler(script=testing.Script(0, None)) as s:
        s.add(
            "stuck", Every(HOUR, T0 + MINUTE), Call("job"), timeout="30s",
            retry=Retry(2, backoff_ms=5000),
        )  # fmt: skip
        s.advance("3m")
        runs = s.history("stuck")
        assert [(r.attempt, r.outcome, r.finished_at) for r in runs] == [
            (1, "failed", T0 + 90_000),
            (2, "failed", T0 + 125_000),
        ]
        assert s.verify().ok


def test_tick_at_a_late_instant_is_an_outage() -> None:
    with testing.scheduler() as s:
        s.add("minutely", "every 1m", Call("job"))
        s.tick_at(T0 + 30 * MINUTE)
        # 00:01-00:28 were missed; 00:29 and 00:30 are within the 60 s grace: one run
        assert s.snapshot.counters.missed == 28
        [run] = s.history("minutely")
        assert run.scheduled_for == T0 + 30 * MINUTE
        with pytest.raises(InvalidInput):
            s.advance_to(T0)


def test_registered_functions_decide_the_fake_exit() -> None:
    seen: list[int] = []
    with testing.scheduler(script=testing.Script(duration_ms=500)) as s:
        s.register("count", lambda: seen.append(1))
        s.register("fail", lambda: 1 / 0)
        s.submit(Call("count"))
        s.submit(Call("fail"))
        s.submit(Call("unregistered"))
        s.advance("1s")
        outcomes = sorted((r.call or "", r.outcome) for r in s.history())
    assert seen == [1]
    assert outcomes == [
        ("count", "succeeded"),
        ("fail", "failed"),
        ("unregistered", "succeeded"),  # not registered: the script decides
    ]


def test_the_strategies_say_how_to_get_hypothesis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(ImportError, match="pip install hypothesis"):
        testing.triggers()
    # the rest of the kit works without it
    with testing.scheduler() as s:
        s.add("job", "@daily", Call("job"))
