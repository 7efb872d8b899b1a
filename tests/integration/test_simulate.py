"""`simulate`: the pure planner over a virtual clock, with modelled runs, failures and outages.

Expected counts are computed independently of the trigger code (interval arithmetic, datetime
stepping in zoneinfo), so a simulation that loses or doubles a fire is caught.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest

from cronledger.adapters import simulate as sim
from cronledger.adapters.simulate import (
    Runtime,
    ScheduleStats,
    SimReport,
    compare,
    parse_outage,
    parse_runtime,
    simulate,
)
from cronledger.domain import events as ev
from cronledger.domain.instants import parse_instant
from cronledger.domain.triggers import At, Cron, Every, fires_between
from cronledger.domain.values import (
    Call,
    Command,
    ConcurrencyPolicy,
    MisfirePolicy,
    Options,
    Retry,
    ScheduleSpec,
)
from cronledger.errors import InvalidInput

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
YEAR_END = 1_798_761_600_000  # 2027-01-01T00:00:00Z
FORBID = ConcurrencyPolicy.FORBID
QUEUE_ONE = ConcurrencyPolicy.QUEUE_ONE


def spec(schedule_id: str = "job", **kw: object) -> ScheduleSpec:
    kw.setdefault("trigger", Every(15 * MINUTE, T0))
    kw.setdefault("target", Call("noop"))
    kw.setdefault("concurrency", FORBID)
    return ScheduleSpec(id=schedule_id, **kw)  # type: ignore[arg-type]


def run(*specs: ScheduleSpec, end: int = T0 + DAY, **kw: object) -> SimReport:
    return simulate(specs, T0, end, **kw)  # type: ignore[arg-type]


def facts(*specs: ScheduleSpec, end: int = T0 + DAY, **kw: object) -> list[ev.Event]:
    seen: list[ev.Event] = []
    run(*specs, end=end, observe=seen.extend, **kw)
    return seen


def no_wall(report: SimReport) -> SimReport:
    return attrs.evolve(report, wall_s=0.0)


# --- brute-force counts ---------------------------------------------------------------------


def test_a_retry_waiting_for_a_slot_does_not_hide_the_next_due_fire() -> None:
    """One slot, hour-long failing runs with retries, and a second schedule with no grace:
    while a retry waits for the slot, the other schedule's fires are still decided on time
    (an earlier `_next` dropped the whole wake-up and woke only at the next exit)."""
    seen = facts(
        spec("r", trigger=Every(10 * SECOND, T0), concurrency=ConcurrencyPolicy.ALLOW,
             target=Command(("x",)), retry=Retry(5, SECOND)),
        spec("g", trigger=Every(7 * SECOND, T0), concurrency=ConcurrencyPolicy.ALLOW,
             target=Command(("y",)), misfire_grace_ms=0),
        end=T0 + HOUR,
        runtime=Runtime("fixed", MINUTE),
        fail_rate=0.5,
        options=Options(max_workers=1),
    )  # fmt: skip
    assert any(isinstance(e, ev.RetryPlanned) for e in seen)
    assert not [e for e in seen if isinstance(e, ev.FireMissed)]
    fired = [e for e in seen if isinstance(e, ev.FireRecorded) and e.schedule_id == "g"]
    assert len(fired) == HOUR // (7 * SECOND) and all(e.late_ms == 0 for e in fired)


def test_every_15_minutes_for_a_year_fires_at_every_nominal_time() -> None:
    expected = (YEAR_END - T0) // (15 * MINUTE)  # anchor T0: fires in (T0, end], end included
    assert expected == 365 * 96
    report = run(spec(), end=YEAR_END)
    stats = report.stats("job")
    assert stats.fires == stats.windows == stats.runs == expected
    assert (stats.succeeded, stats.active_at_end) == (expected - 1, 1)  # the one fired at `end`
    assert stats.skipped == stats.missed == stats.coalesced == 0
    assert stats.max_lateness_ms == 0
    assert stats.max_queue == 0  # read after each tick: the fire's own tick dispatches it
    print(
        f"\nEvery(15m), a year: {report.ticks} ticks, {report.events} events, {report.wall_s:.2f} s"
    )


def _hours(start: int, end: int) -> Iterator[datetime]:
    t = datetime.fromtimestamp(start / 1000, UTC)
    last = datetime.fromtimestamp(end / 1000, UTC)
    while t <= last:
        yield t
        t += timedelta(minutes=1)


def test_hourly_cron_in_utc_for_a_year() -> None:
    expected = sum(1 for t in _hours(T0 + 1, YEAR_END) if t.minute == 0)
    assert expected == 8760
    stats = run(spec(trigger=Cron("0 * * * *")), end=YEAR_END).stats("job")
    assert stats.fires == stats.windows == stats.succeeded + stats.active_at_end == expected
    assert stats.missed == stats.skipped == 0


def _daily_wall_time_instants(zone: str, hour: int, minute: int, year: int) -> list[int]:
    """For each day, the first instant whose local wall clock reads at least hh:mm that day
    (classic cron: a time in the spring gap fires once, right after it; a time in the autumn
    fold fires on its first reading). Found by stepping UTC minutes through zoneinfo."""
    tz = ZoneInfo(zone)
    out = []
    day = date(year, 1, 1)
    while day.year == year:
        target = datetime(day.year, day.month, day.day, hour, minute)
        t = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour - 3)
        while True:
            wall = t.astimezone(tz).replace(tzinfo=None)
            if wall >= target:
                break
            t += timedelta(minutes=1)
        assert wall.date() == day
        out.append(int(t.timestamp() * 1000))
        day += timedelta(days=1)
    return out


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 9 * * *"])
def test_daily_cron_in_berlin_across_both_dst_changes(expr: str) -> None:
    minute, hour = (int(x) for x in expr.split()[:2])
    expected = _daily_wall_time_instants("Europe/Berlin", hour, minute, 2026)
    assert len(expected) == 365
    if expr.startswith("30 2"):  # 29 March: 02:30 does not exist; it fires at 03:00 CEST
        assert parse_instant("2026-03-29T01:00Z") in expected
    seen = facts(spec(trigger=Cron(expr, "Europe/Berlin")), end=YEAR_END)
    fired = [e.nominal for e in seen if isinstance(e, ev.FireRecorded)]
    assert fired == expected  # neither lost nor doubled, at the right instants
    assert all(e.at == e.nominal for e in seen if isinstance(e, ev.FireRecorded))


def test_at_fires_once() -> None:
    report = run(spec(trigger=At(T0 + 5 * HOUR)), end=YEAR_END)
    stats = report.stats("job")
    assert (stats.fires, stats.windows, stats.runs, stats.succeeded) == (1, 1, 1, 1)
    assert report.ticks == 2  # the fire, and the exit


# --- outages --------------------------------------------------------------------------------


def _inside(start: int, end: int, step: int = 15 * MINUTE) -> int:
    """Nominal times of Every(step, T0) in [start, end)."""
    return len(range(-(-(start - T0) // step), -(-(end - T0) // step)))


def test_outage_under_skip_misses_the_late_fires_and_runs_the_one_within_grace() -> None:
    down = T0 + 10 * HOUR + 5 * MINUTE
    up = T0 + 12 * HOUR + 30 * SECOND  # 12:00 is 30 s late at the restart: within the grace
    inside = _inside(down, up)
    assert inside == 8  # 10:15 ... 12:00
    stats = run(spec(), outages=[(down, up)]).stats("job")
    assert stats.missed == inside - 1
    assert stats.windows == 96
    assert stats.fires == 96 - stats.missed
    assert stats.max_lateness_ms == 30 * SECOND


def test_outage_longer_than_the_grace_misses_every_fire_inside() -> None:
    down, up = T0 + 10 * HOUR + 5 * MINUTE, T0 + 12 * HOUR + 10 * MINUTE
    stats = run(spec(), outages=[(down, up)]).stats("job")
    assert stats.missed == _inside(down, up) == 8
    assert stats.fires == 88 and stats.windows == 96


def test_outage_under_catch_up_runs_once_for_all_the_fires_inside() -> None:
    down, up = T0 + 10 * HOUR + 5 * MINUTE, T0 + 12 * HOUR + 10 * MINUTE
    seen = facts(spec(misfire=MisfirePolicy.CATCH_UP), outages=[(down, up)])
    fires = [e for e in seen if isinstance(e, ev.FireRecorded)]
    catch_up = [f for f in fires if f.represents > 1]
    assert len(catch_up) == 1
    assert catch_up[0].represents == 8
    assert catch_up[0].at == up and catch_up[0].nominal == T0 + 12 * HOUR
    assert not any(isinstance(e, ev.FireMissed) for e in seen)
    stats = run(spec(misfire=MisfirePolicy.CATCH_UP), outages=[(down, up)]).stats("job")
    assert stats.missed == 0 and stats.fires == 96 - 7 and stats.windows == 96
    assert stats.max_lateness_ms == 10 * MINUTE


def test_an_outage_loses_call_runs_and_adopts_command_runs() -> None:
    hourly = Every(HOUR, T0)
    down, up = T0 + HOUR + 5 * MINUTE, T0 + HOUR + 30 * MINUTE  # the 01:00 run is in flight
    kw: dict[str, Any] = {
        "end": T0 + 150 * MINUTE,
        "runtime": Runtime("fixed", 10 * MINUTE),
        "outages": [(down, up)],
    }
    call = run(spec(trigger=hourly, retry=Retry(2, MINUTE)), **kw).stats("job")
    assert (call.lost, call.retries, call.succeeded) == (1, 1, 2)
    command = run(spec(trigger=hourly, target=Command(("true",))), **kw).stats("job")
    assert (command.lost, command.retries, command.succeeded) == (0, 0, 2)


def test_outages_are_merged_and_clipped() -> None:
    report = run(
        spec(),
        outages=[
            (T0 - DAY, T0 + HOUR),
            (T0 + 5 * HOUR, T0 + 6 * HOUR),
            (T0 + 5 * HOUR, T0 + 7 * HOUR),
        ],
    )
    assert report.outages == ((T0, T0 + HOUR), (T0 + 5 * HOUR, T0 + 7 * HOUR))
    # 00:15-00:45, then 05:00-06:45; the fire at each restart (01:00, 07:00) is on time
    assert report.stats("job").missed == 3 + 8


# --- concurrency ----------------------------------------------------------------------------

SLOW = Runtime("fixed", 20 * MINUTE)


def test_forbid_with_runs_longer_than_the_interval_skips() -> None:
    stats = run(spec(), runtime=SLOW).stats("job")
    assert (stats.fires, stats.skipped) == (48, 48)  # fire, skip, fire, skip...
    assert stats.windows == 96
    assert stats.max_queue <= 1
    assert stats.max_lateness_ms == 0


def test_queue_one_with_runs_longer_than_the_interval_coalesces() -> None:
    stats = run(spec(concurrency=QUEUE_ONE), runtime=SLOW).stats("job")
    assert stats.skipped == 0
    assert stats.coalesced > 0
    assert stats.fires + stats.coalesced == stats.windows == 96
    assert stats.max_queue == 1
    # back to back: one day holds at most 72 runs of 20 minutes
    assert 70 <= stats.runs <= 72
    assert stats.max_lateness_ms > 0
    assert stats.fires == stats.runs + stats.waiting_at_end


def test_replace_cancels_the_running_one() -> None:
    stats = run(spec(concurrency=ConcurrencyPolicy.REPLACE), runtime=SLOW).stats("job")
    assert stats.fires == 96 and stats.runs == 96
    assert stats.failed == 95  # each run is replaced by the next; the last one ends on its own
    assert stats.retries == 0


def test_allow_with_little_capacity_queues() -> None:
    report = run(
        spec(concurrency=ConcurrencyPolicy.ALLOW),
        runtime=Runtime("fixed", 40 * MINUTE),
        options=Options(max_workers=1),
    )
    stats = report.stats("job")
    assert stats.skipped == stats.coalesced == 0
    assert stats.fires == 96 and stats.runs == 36  # 24 h / 40 min
    assert stats.max_queue > 1 and report.max_queue == stats.max_queue
    assert report.max_active == 1


def test_timeouts_fail_and_retry() -> None:
    stats = run(
        spec(trigger=Every(HOUR, T0), timeout_ms=5 * MINUTE, retry=Retry(2, MINUTE)),
        runtime=Runtime("fixed", 10 * MINUTE),
        end=T0 + DAY - 30 * MINUTE,
    ).stats("job")
    assert stats.fires == 23
    assert stats.runs == 46 and stats.failed == 46 and stats.retries == 23


# --- failures and determinism ---------------------------------------------------------------


def _flaky(**kw: object) -> SimReport:
    return run(
        spec(trigger=Every(HOUR, T0), retry=Retry(3, MINUTE)),
        spec("other", trigger=Cron("*/10 * * * *"), concurrency=QUEUE_ONE),
        end=T0 + 30 * DAY,
        runtime=parse_runtime("uniform:10s..2m"),
        fail_rate=0.3,
        **kw,
    )


def test_failures_are_retried_and_the_same_seed_gives_the_same_report() -> None:
    first = _flaky(seed=7)
    stats = first.stats("job")
    assert stats.failed > 0 and stats.retries > 0
    assert stats.retries <= 2 * stats.fires
    assert stats.fires + stats.retries == stats.runs + stats.waiting_at_end
    assert stats.runs == stats.succeeded + stats.failed + stats.lost + stats.active_at_end
    # a fire ends in success unless all three attempts failed: about 0.3**3 of them
    assert stats.succeeded >= stats.fires * 0.9
    assert no_wall(_flaky(seed=7)) == no_wall(first)
    other = _flaky(seed=8)
    assert no_wall(other) != no_wall(first)
    assert other.stats("job").failed != stats.failed


def test_the_same_run_draws_the_same_duration_in_both_simulations() -> None:
    """Common random numbers: a policy change does not reshuffle the durations."""

    def durations(policy: ConcurrencyPolicy) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in facts(spec(concurrency=policy), runtime=parse_runtime("exp:10m"), seed=3):
            if isinstance(e, ev.RunSucceeded):
                out[e.run_id] = e.duration_ms
        return out

    forbid, queue_one = durations(FORBID), durations(QUEUE_ONE)
    shared = forbid.keys() & queue_one.keys()
    assert len(shared) > 10
    assert all(forbid[r] == queue_one[r] for r in shared)


def test_quiet_exits_give_the_same_report_as_a_tick_per_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    specs = [
        *_mixed(12),
        spec("capped", concurrency=ConcurrencyPolicy.ALLOW, timeout_ms=30 * MINUTE),
    ]
    kw: dict[str, Any] = {
        "runtime": parse_runtime("exp:3m"),
        "fail_rate": 0.1,
        "options": Options(max_workers=3, batch_size=2),
        "outages": [(T0 + 2 * DAY + 30 * SECOND, T0 + 2 * DAY + 3 * HOUR)],
        "seed": 5,
    }
    lazy = simulate(specs, T0, T0 + 4 * DAY, **kw)
    monkeypatch.setattr(sim._Simulation, "lazy_exits", False)
    eager = simulate(specs, T0, T0 + 4 * DAY, **kw)
    assert no_wall(lazy) == no_wall(eager)
    assert lazy.total.failed > 0 and lazy.total.lost > 0 and lazy.total.waiting_at_end >= 0


def test_progress_is_reported_about_every_percent() -> None:
    calls: list[tuple[int, int]] = []
    run(spec(), end=T0 + 10 * DAY, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 10 * DAY) and calls[-1] == (10 * DAY, 10 * DAY)
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert 90 <= len(calls) <= 110


# --- a year of a realistic mix --------------------------------------------------------------

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Tokyo", "UTC")
OTHER_CRONS = ("*/30 8-18 * * 1-5", "30 2 * * *", "0 8 1 * *", "15 */2 * * *", "45 6 * * 1")
POLICIES = (FORBID, QUEUE_ONE, ConcurrencyPolicy.ALLOW, ConcurrencyPolicy.REPLACE)


def _mixed(n: int, *, dense: bool = True) -> list[ScheduleSpec]:
    """Hourly crons, daily crons in zones, Every(15m) and other zoned crons, in equal parts
    (not `dense`: every 6 hours and every 12 hours instead of hourly and every 15 minutes)."""
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            hours = "*" if dense else "*/6"
            trigger: Cron | Every = Cron(f"{(i * 7) % 60} {hours} * * *")
        elif kind == 1:
            trigger = Cron(f"{(i * 11) % 60} {(i * 5) % 24} * * *", ZONES[i % 5])
        elif kind == 2:
            every = 15 * MINUTE if dense else 12 * HOUR
            trigger = Every(every, T0 + (i % 15) * MINUTE)
        else:
            trigger = Cron(OTHER_CRONS[i % 5], ZONES[(i // 5) % 5])
        target = Command(("job", str(i))) if i % 2 else Call(f"fn{i}")
        out.append(
            spec(f"s{i:03d}", trigger=trigger, target=target, concurrency=POLICIES[(i // 4) % 4])
        )
    return out


def test_a_year_of_100_mixed_schedules() -> None:
    # About 100k fires: a year of a hundred 15-minute schedules (1.2M fires) takes ~90 s here.
    specs = _mixed(100, dense=False)
    began = time.perf_counter()
    report = simulate(specs, T0, YEAR_END, runtime=parse_runtime("uniform:1s..2m"))
    took = time.perf_counter() - began
    total = report.total
    print(
        f"\n100 schedules, a year: {took:.1f} s, {report.ticks} ticks, {report.events} events, "
        f"{total.fires} fires, {total.fires / took:,.0f} fires/s"
    )
    assert took < 60  # generous (measured ~8 s): see the figures in simulate.py's docstring
    for s, stats in zip(specs, report.schedules, strict=True):
        assert stats.schedule_id == s.id
        # every nominal time in (start, end] is accounted for exactly once
        nominal = fires_between(s.trigger, T0 + 1, YEAR_END)[0]
        assert stats.windows == nominal, s.id
        assert stats.windows == (stats.fires + stats.skipped + stats.coalesced + stats.missed), s.id
        assert stats.runs == stats.succeeded + stats.failed + stats.lost + stats.active_at_end
        assert stats.fires + stats.retries == stats.runs + stats.waiting_at_end
        assert stats.missed == 0 and stats.max_queue <= 1
    assert report.max_active <= Options().max_workers
    json.dumps(report.to_json())


# --- compare --------------------------------------------------------------------------------


def test_compare_forbid_to_queue_one() -> None:
    base = run(spec(), spec("fast", trigger=Every(HOUR, T0)), runtime=SLOW)
    other = run(spec(concurrency=QUEUE_ONE), spec("fast", trigger=Every(HOUR, T0)), runtime=SLOW)
    diff = compare(base, other)
    job = next(d for d in diff.schedules if d.schedule_id == "job")
    delta = dict(job.delta)
    assert delta["skipped"] == -48
    assert delta["coalesced"] == other.stats("job").coalesced > 0
    assert delta["fires"] > 0 and delta["runs"] > 0
    assert delta["windows"] == 0
    assert [d.schedule_id for d in diff.changed] == ["job"]
    assert dict(diff.total.delta)["skipped"] == -48
    text = json.dumps(diff.to_json())
    assert '"changed": ["job"]' in text


def test_compare_with_a_schedule_on_one_side_only() -> None:
    diff = compare(run(spec()), run(spec(), spec("new", trigger=Every(HOUR, T0))))
    new = next(d for d in diff.schedules if d.schedule_id == "new")
    assert new.base is None and isinstance(new.other, ScheduleStats)
    assert dict(new.delta)["fires"] == 24
    json.dumps(diff.to_json())


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", Runtime("fixed", 30_000)),
        ("fixed:1m", Runtime("fixed", 60_000)),
        ("uniform:10s..2m", Runtime("uniform", 10_000, 120_000)),
        ("exp:45s", Runtime("exp", 45_000)),
        ("normal:1m,15s", Runtime("normal", 60_000, 15_000)),
        (" 250ms ", Runtime("fixed", 250)),
    ],
)
def test_parse_runtime(text: str, expected: Runtime) -> None:
    assert parse_runtime(text) == expected


@pytest.mark.parametrize(
    "text", ["", "fast", "uniform:10s", "uniform:2m..10s", "poisson:3s", "exp:", "normal:1m"]
)
def test_parse_runtime_errors_name_the_field_and_the_fix(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_runtime(text)
    assert caught.value.field == "runtime"
    assert caught.value.fix


def test_runtime_samples_stay_in_range() -> None:
    import random

    rng = random.Random(1)
    uniform = Runtime("uniform", 10, 20)
    assert {uniform.sample(rng) for _ in range(500)} == set(range(10, 21))
    assert all(Runtime("normal", 100, 1000).sample(rng) >= 0 for _ in range(500))
    mean = sum(Runtime("exp", 1000).sample(rng) for _ in range(4000)) / 4000
    assert 900 < mean < 1100


def test_parse_outage() -> None:
    assert parse_outage("2026-03-01T00:00Z..2026-03-01T06:00Z") == (
        parse_instant("2026-03-01T00:00:00Z"),
        parse_instant("2026-03-01T06:00:00Z"),
    )
    assert parse_outage("2026-03-01T01:00+01:00..2026-03-01T06:00Z")[0] == parse_instant(
        "2026-03-01T00:00Z"
    )


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-01T00:00Z",
        "2026-03-01T06:00Z..2026-03-01T00:00Z",
        "yesterday..today",
        "2026-03-01T00:00..2026-03-01T06:00Z",  # naive
    ],
)
def test_parse_outage_errors_name_the_field_and_the_fix(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_outage(text)
    assert caught.value.field == "outage"
    assert caught.value.fix


def test_bad_arguments_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="fail_rate"):
        run(spec(), fail_rate=1.5)
    with pytest.raises(InvalidInput, match="to"):
        simulate([spec()], T0, T0)
    with pytest.raises(InvalidInput, match="twice"):
        run(spec(), spec())
