"""Cron triggers across the 2026 DST transitions (SEMANTICS §1), as a named table.

Fixed-hour expressions: a gap time fires once at the end of the gap, a fold time fires once on its
first occurrence. Wildcard-hour expressions (`*` or a step in the hour field) follow the real clock:
both fold readings fire, unread gap times do not. Assertions are on (local isoformat, fold) or UTC
ms, never on `==` of aware datetimes.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from cronledger.domain.triggers import Cron, next_fire_after

BERLIN, NEW_YORK, LORD_HOWE = "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"

# (zone, UTC instant of the 2026 transition, "spring" or "autumn")
TRANSITIONS = [
    (BERLIN, datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "spring"),
    (BERLIN, datetime(2026, 10, 25, 1, 0, tzinfo=UTC), "autumn"),
    (NEW_YORK, datetime(2026, 3, 8, 7, 0, tzinfo=UTC), "spring"),
    (NEW_YORK, datetime(2026, 11, 1, 6, 0, tzinfo=UTC), "autumn"),
    (LORD_HOWE, datetime(2026, 10, 3, 15, 30, tzinfo=UTC), "spring"),  # 02:00 -> 02:30
    (LORD_HOWE, datetime(2026, 4, 4, 15, 0, tzinfo=UTC), "autumn"),  # 02:00 -> 01:30
]


def ms(local: datetime, zone: str, fold: int = 0) -> int:
    """UTC ms of a naive local wall time in `zone`."""
    return int(local.replace(tzinfo=ZoneInfo(zone), fold=fold).timestamp() * 1000)


def reading(instant_ms: int, zone: str) -> tuple[str, int]:
    """(local isoformat, fold) of an instant: what the wall clock shows."""
    local = datetime.fromtimestamp(instant_ms / 1000, ZoneInfo(zone))
    return local.isoformat(), local.fold


def fires(trigger: Cron, after_ms: int, count: int) -> list[int]:
    out, t = [], after_ms
    for _ in range(count):
        nxt = next_fire_after(trigger, t)
        assert nxt is not None
        out.append(nxt)
        t = nxt
    return out


# id: (zone, expression, start (local naive), expected readings of the next fires)
CASES = {
    "spring_gap_fires_after_gap": (
        BERLIN, "30 2 * * *", datetime(2026, 3, 27, 12),
        [("2026-03-28T02:30:00+01:00", 0), ("2026-03-29T03:00:00+02:00", 0),
         ("2026-03-30T02:30:00+02:00", 0)],
    ),
    "autumn_fold_fires_once": (
        BERLIN, "30 2 * * *", datetime(2026, 10, 24, 12),
        [("2026-10-25T02:30:00+02:00", 0), ("2026-10-26T02:30:00+01:00", 0)],
    ),
    "autumn_fold_hourly_fires_twice": (
        BERLIN, "0 * * * *", datetime(2026, 10, 25, 0, 30),
        [("2026-10-25T01:00:00+02:00", 0), ("2026-10-25T02:00:00+02:00", 0),
         ("2026-10-25T02:00:00+01:00", 1), ("2026-10-25T03:00:00+01:00", 0)],
    ),
    "autumn_fold_quarter_hourly_fires_in_both_passes": (
        BERLIN, "*/15 * * * *", datetime(2026, 10, 25, 2, 40),
        [("2026-10-25T02:45:00+02:00", 0), ("2026-10-25T02:00:00+01:00", 1),
         ("2026-10-25T02:15:00+01:00", 1), ("2026-10-25T02:30:00+01:00", 1),
         ("2026-10-25T02:45:00+01:00", 1), ("2026-10-25T03:00:00+01:00", 0)],
    ),
    "autumn_fold_fixed_hour_steps_fire_in_the_first_pass_only": (
        BERLIN, "*/20 2 * * *", datetime(2026, 10, 25, 1),
        [("2026-10-25T02:00:00+02:00", 0), ("2026-10-25T02:20:00+02:00", 0),
         ("2026-10-25T02:40:00+02:00", 0), ("2026-10-26T02:00:00+01:00", 0)],
    ),
    "spring_gap_quarter_hourly_continues_after_gap": (
        BERLIN, "*/15 * * * *", datetime(2026, 3, 29, 1, 30),
        [("2026-03-29T01:45:00+01:00", 0), ("2026-03-29T03:00:00+02:00", 0),
         ("2026-03-29T03:15:00+02:00", 0)],
    ),
    "spring_gap_hourly_fires_once_per_real_hour": (
        BERLIN, "10 * * * *", datetime(2026, 3, 29, 0, 30),
        [("2026-03-29T01:10:00+01:00", 0), ("2026-03-29T03:10:00+02:00", 0),
         ("2026-03-29T04:10:00+02:00", 0)],
    ),
    "spring_gap_fixed_hour_times_collapse_into_one_fire": (
        BERLIN, "0,20,40 2 * * *", datetime(2026, 3, 28, 12),
        [("2026-03-29T03:00:00+02:00", 0), ("2026-03-30T02:00:00+02:00", 0)],
    ),
    "spring_gap_collapse_does_not_double_the_time_after_gap": (
        BERLIN, "0 2,3 * * *", datetime(2026, 3, 29, 0),
        [("2026-03-29T03:00:00+02:00", 0), ("2026-03-30T02:00:00+02:00", 0)],
    ),
    "new_york_spring_gap_fires_after_gap": (
        NEW_YORK, "30 2 * * *", datetime(2026, 3, 6, 12),
        [("2026-03-07T02:30:00-05:00", 0), ("2026-03-08T03:00:00-04:00", 0),
         ("2026-03-09T02:30:00-04:00", 0)],
    ),
    "new_york_autumn_fold_fires_once": (
        NEW_YORK, "30 1 * * *", datetime(2026, 10, 31, 12),
        [("2026-11-01T01:30:00-04:00", 0), ("2026-11-02T01:30:00-05:00", 0)],
    ),
    "new_york_autumn_fold_hourly_fires_twice": (
        NEW_YORK, "0 * * * *", datetime(2026, 11, 1, 0, 30),
        [("2026-11-01T01:00:00-04:00", 0), ("2026-11-01T01:00:00-05:00", 1),
         ("2026-11-01T02:00:00-05:00", 0)],
    ),
    "lord_howe_spring_gap_fires_at_half_past": (
        LORD_HOWE, "0 2 * * *", datetime(2026, 10, 2, 12),
        [("2026-10-03T02:00:00+10:30", 0), ("2026-10-04T02:30:00+11:00", 0),
         ("2026-10-05T02:00:00+11:00", 0)],
    ),
    "lord_howe_spring_gap_quarter_hourly_skips_the_missing_half_hour": (
        LORD_HOWE, "*/15 * * * *", datetime(2026, 10, 4, 1, 40),
        [("2026-10-04T01:45:00+10:30", 0), ("2026-10-04T02:30:00+11:00", 0),
         ("2026-10-04T02:45:00+11:00", 0)],
    ),
    "lord_howe_autumn_fold_fires_once": (
        LORD_HOWE, "45 1 * * *", datetime(2026, 4, 3, 12),
        [("2026-04-04T01:45:00+11:00", 0), ("2026-04-05T01:45:00+11:00", 0),
         ("2026-04-06T01:45:00+10:30", 0)],
    ),
    "lord_howe_autumn_fold_quarter_hourly_fires_in_both_passes": (
        LORD_HOWE, "*/15 * * * *", datetime(2026, 4, 5, 1, 20),
        [("2026-04-05T01:30:00+11:00", 0), ("2026-04-05T01:45:00+11:00", 0),
         ("2026-04-05T01:30:00+10:30", 1), ("2026-04-05T01:45:00+10:30", 1),
         ("2026-04-05T02:00:00+10:30", 0)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_dst_case_fires_at_the_expected_wall_times(
    case: tuple[str, str, datetime, list[tuple[str, int]]],
) -> None:
    zone, expr, start, expected = case
    got = fires(Cron(expr, zone), ms(start, zone), len(expected))
    assert [reading(t, zone) for t in got] == expected


def test_spring_gap_fire_is_the_transition_instant_in_utc() -> None:
    start = ms(datetime(2026, 3, 29, 0), BERLIN)
    assert next_fire_after(Cron("30 2 * * *", BERLIN), start) == int(
        datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp() * 1000
    )


def test_a_fire_inside_the_second_pass_of_the_fold_is_not_repeated() -> None:
    # 02:15 in the second pass (CET): the 02:30 job already ran at 02:30 CEST.
    after = ms(datetime(2026, 10, 25, 2, 15), BERLIN, fold=1)
    assert reading(next_fire_after(Cron("30 2 * * *", BERLIN), after) or 0, BERLIN) == (
        "2026-10-26T02:30:00+01:00",
        0,
    )


DAILY = [
    (zone, expr, moment, kind)
    for zone, moment, kind in TRANSITIONS
    for expr in ("30 2 * * *", "0 2 * * *", "45 1 * * *", "30 1 * * *", "0 3 * * *")
]


@pytest.mark.parametrize(
    ("zone", "expr", "moment", "kind"),
    DAILY,
    ids=[f"{z.split('/')[1]}-{k}-{e.replace(' ', '_')}" for z, e, _, k in DAILY],
)
def test_a_daily_job_fires_exactly_once_on_each_day_around_a_transition(
    zone: str, expr: str, moment: datetime, kind: str
) -> None:
    tz = ZoneInfo(zone)
    first_day = moment.astimezone(tz).date() - timedelta(days=3)
    start = ms(datetime(first_day.year, first_day.month, first_day.day), zone) - 1
    got = fires(Cron(expr, zone), start, 7)
    days = [datetime.fromtimestamp(t / 1000, tz).date() for t in got]
    assert days == [first_day + timedelta(days=i) for i in range(7)]


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK, LORD_HOWE])
@pytest.mark.parametrize("expr", ["30 2 * * *", "0 2 * * *", "45 1 * * *", "59 23 * * *"])
def test_a_daily_job_fires_once_on_every_local_date_of_2026(zone: str, expr: str) -> None:
    tz = ZoneInfo(zone)
    t = ms(datetime(2026, 1, 1), zone) - 1
    end = ms(datetime(2027, 1, 1), zone)
    dates: Counter[object] = Counter()
    while (nxt := next_fire_after(Cron(expr, zone), t)) is not None and nxt < end:
        dates[datetime.fromtimestamp(nxt / 1000, tz).date()] += 1
        t = nxt
    assert len(dates) == 365
    assert set(dates.values()) == {1}


# --- an independent oracle: scan every minute of real time and read the wall clock -------------


def oracle(expr: str, zone: str, first_ms: int, last_ms: int) -> list[int]:
    """Fires in [first, last] by the SEMANTICS §1 rule, from minute-by-minute wall readings."""
    tz = ZoneInfo(zone)
    expr = {"@hourly": "0 * * * *", "@daily": "0 0 * * *"}.get(expr, expr)
    fixed = "*" not in expr.split()[1] and "/" not in expr.split()[1]
    out: list[int] = []
    previous = datetime.fromtimestamp(first_ms / 1000 - 60, tz).replace(tzinfo=None)
    for t in range(first_ms, last_ms + 1, 60_000):
        aware = datetime.fromtimestamp(t / 1000, tz)
        wall = aware.replace(tzinfo=None)
        hit = croniter.match(expr, wall) and not (fixed and aware.fold == 1)
        if fixed and wall - previous > timedelta(minutes=1):  # a gap ended at t
            skipped = previous + timedelta(minutes=1)
            while skipped < wall and not hit:
                hit = croniter.match(expr, skipped)
                skipped += timedelta(minutes=1)
        if hit:
            out.append(t)
        previous = wall
    return out


EXPRS = st.sampled_from(
    [
        "*/15 * * * *", "10 * * * *", "0 * * * *", "30 2 * * *", "0 2 * * *", "45 1 * * *",
        "*/20 2 * * *", "0,30 1-3 * * *", "15 */2 * * *", "5 1,2,3 * * *", "* 2 * * *",
        "50 0-4 * * *", "*/7 1 * * *", "0 0-23/3 * * *", "30 1 * * 0", "@hourly", "@daily",
    ]
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(expr=EXPRS, transition=st.sampled_from(TRANSITIONS), shift=st.integers(-180, 180))
def test_fires_around_a_transition_match_a_minute_by_minute_oracle(
    expr: str, transition: tuple[str, datetime, str], shift: int
) -> None:
    zone, moment, _ = transition
    centre = int(moment.timestamp() * 1000) + shift * 60_000
    first, last = centre - 4 * 3_600_000, centre + 4 * 3_600_000
    got: list[int] = []
    t = first - 1
    while (nxt := next_fire_after(Cron(expr, zone), t)) is not None and nxt <= last:
        got.append(nxt)
        t = nxt
    assert got == oracle(expr, zone, first, last)


@settings(max_examples=200, deadline=None)
@given(
    expr=EXPRS,
    transition=st.sampled_from(TRANSITIONS),
    offset_s=st.integers(-3 * 3600, 3 * 3600),
    extra_ms=st.integers(0, 999),
)
def test_next_fire_is_the_same_from_any_instant_before_it(
    expr: str, transition: tuple[str, datetime, str], offset_s: int, extra_ms: int
) -> None:
    zone, moment, _ = transition
    after = int(moment.timestamp() * 1000) + offset_s * 1000 + extra_ms
    nxt = next_fire_after(Cron(expr, zone), after)
    assert nxt is not None and nxt > after
    for probe in (after + (nxt - after) // 2, nxt - 1):
        assert next_fire_after(Cron(expr, zone), probe) == nxt
