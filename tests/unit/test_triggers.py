"""Triggers: validation, Every alignment, At, fires_between, and agreement with croniter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest
from croniter import CroniterBadDateError, croniter, croniter_range
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cronledger.domain.triggers import (
    At,
    Cron,
    Every,
    Trigger,
    describe,
    fires_between,
    next_fire_after,
    validate_trigger,
)
from cronledger.errors import InvalidInput

NOW = 1_767_225_600_000  # 2026-01-01T00:00Z
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def utc_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def utc_text(instant_ms: int | None) -> str:
    assert instant_ms is not None
    return datetime.fromtimestamp(instant_ms / 1000, UTC).strftime("%Y-%m-%d %a %H:%M")


def rejection(trigger: Trigger, now_ms: int = NOW) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        validate_trigger(trigger, now_ms=now_ms)
    return caught.value


# --- validation -----------------------------------------------------------------------------

BAD_FIELDS = {
    "minute_out_of_range": ("61 * * * *", "minute", "61"),
    "hour_out_of_range": ("0 24 * * *", "hour", "24"),
    "day_of_month_zero": ("0 0 0 * *", "day of month", "0"),
    "day_of_month_32": ("0 0 32 * *", "day of month", "32"),
    "month_13": ("0 0 * 13 *", "month", "13"),
    "month_unknown_name": ("0 0 * foo *", "month", "foo"),
    "day_of_week_8": ("0 0 * * 8", "day of week", "8"),
    "day_of_week_unknown_name": ("0 0 * * funday", "day of week", "funday"),
    "step_zero": ("*/0 * * * *", "minute", "*/0"),
    "question_mark_in_hour": ("0 ? * * *", "hour", "?"),
    "nth_out_of_range": ("0 0 * * 5#6", "day of week", "5#6"),
    "nth_mixed_with_plain_days": ("0 0 * * 1,5#2", "day of week", "1,5#2"),
    "nth_with_a_day_of_month": ("0 0 1 * 5#2", "day of week", "5#2"),
    "nearest_weekday_with_a_day_of_week": ("0 0 15W * 1", "day of month", "15W"),
    "random_value": ("R * * * *", "minute", "R"),
    "hashed_value": ("0 H * * *", "hour", "H"),
    "equal_range_that_croniter_reads_as_every_minute": ("5-5 * * * *", "minute", "5-5"),
    "day_that_never_occurs": ("0 0 30 2 *", "day of month", "30"),
    # croniter wraps a backwards range around (5-1: 57 minutes an hour); classic cron refuses
    "backwards_minute_range": ("5-1 * * * *", "minute", "5-1"),
    "backwards_hour_range_with_a_step": ("0 22-2/2 * * *", "hour", "22-2/2"),
    "backwards_month_names": ("0 0 1 dec-feb *", "month", "dec-feb"),
    "backwards_weekday_names": ("0 0 * * fri-mon", "day of week", "fri-mon"),
}


@pytest.mark.parametrize("case", BAD_FIELDS.values(), ids=list(BAD_FIELDS))
def test_a_bad_cron_field_is_rejected_with_its_name_and_value(case: tuple[str, str, str]) -> None:
    expr, field_name, value = case
    error = rejection(Cron(expr))
    assert error.field == "trigger.expr"
    assert f"{field_name} field {value!r}" in str(error)
    assert error.fix  # says how to write it instead


@pytest.mark.parametrize("expr", ["", "   "])
def test_an_empty_cron_expression_is_rejected(expr: str) -> None:
    error = rejection(Cron(expr))
    assert error.field == "trigger.expr" and "empty" in str(error)


@pytest.mark.parametrize("expr", ["0 0 * *", "0 0 * * * *", "0 0 0 * * * 2026"])
def test_a_cron_expression_needs_exactly_five_fields(expr: str) -> None:
    error = rejection(Cron(expr))
    assert error.field == "trigger.expr" and "expected 5" in str(error)


def test_an_unknown_shortcut_is_rejected_with_the_known_ones() -> None:
    error = rejection(Cron("@fortnightly"))
    assert error.field == "trigger.expr" and "@daily" in str(error)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "Europe", "localtime", "utc"])
def test_an_unknown_time_zone_is_rejected(zone: str) -> None:
    error = rejection(Cron("0 9 * * *", zone))
    assert error.field == "trigger.timezone" and repr(zone) in str(error)


@pytest.mark.parametrize(
    "expr",
    [
        "*/5 * * * *", "0 9 * * 1-5", "0 9 * * MON-FRI", "15 14 * * 5#2", "0 0 L * *",
        "0 0 1,L * *", "0 0 ? * 1", "0 0 15W * *", "0 0 * * L5", "0 0 * JAN,JUL *",
        "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
        " 0  9 * * * ", "0 0 29 2 *", "0 0 * 2 1#5",
    ],
)  # fmt: skip
def test_valid_cron_expressions_are_accepted(expr: str) -> None:
    validate_trigger(Cron(expr, "Europe/Berlin"), now_ms=NOW)


@pytest.mark.parametrize("interval", [0, -1000, 999])
def test_an_interval_shorter_than_a_second_is_rejected(interval: int) -> None:
    error = rejection(Every(interval, NOW))
    assert error.field == "trigger.interval" and "1 s" in str(error)


def test_an_interval_of_one_second_is_accepted() -> None:
    validate_trigger(Every(1000, NOW), now_ms=NOW)


@pytest.mark.parametrize("instant", [NOW - 1, NOW])
def test_a_one_shot_instant_that_is_not_in_the_future_is_rejected(instant: int) -> None:
    error = rejection(At(instant))
    assert error.field == "trigger.at" and "in the past" in str(error)


def test_a_one_shot_instant_in_the_future_is_accepted() -> None:
    validate_trigger(At(NOW + 1), now_ms=NOW)


def test_an_object_that_is_not_a_trigger_is_rejected() -> None:
    error = rejection("0 9 * * *")  # type: ignore[arg-type]
    assert error.field == "trigger"


# --- Every ----------------------------------------------------------------------------------


def test_every_fires_on_the_anchor_grid() -> None:
    trigger = Every(2000, 10_000)
    assert next_fire_after(trigger, 10_000) == 12_000
    assert next_fire_after(trigger, 10_999) == 12_000
    assert next_fire_after(trigger, 11_999) == 12_000
    assert next_fire_after(trigger, 12_000) == 14_000


def test_every_fires_before_its_anchor_too() -> None:
    trigger = Every(2000, 10_000)
    assert next_fire_after(trigger, 0) == 2000
    assert next_fire_after(trigger, -1) == 0
    assert next_fire_after(trigger, -2001) == -2000


def test_every_never_drifts_however_late_it_is_asked() -> None:
    trigger = Every(7_000, 123)
    t = 123
    for lateness in range(1000):
        t = next_fire_after(trigger, t + lateness * 13) or 0
        assert (t - 123) % 7_000 == 0


@settings(max_examples=300)
@given(
    interval=st.integers(1000, 10 * DAY),
    anchor=st.integers(-(10**13), 10**13),
    after=st.integers(-(10**13), 10**13),
)
def test_every_next_fire_is_the_first_grid_point_after(
    interval: int, anchor: int, after: int
) -> None:
    nxt = next_fire_after(Every(interval, anchor), after)
    assert nxt is not None
    assert (nxt - anchor) % interval == 0
    assert after < nxt <= after + interval


@settings(max_examples=300)
@given(
    interval=st.integers(1000, 20_000),
    anchor=st.integers(-100_000, 100_000),
    first=st.integers(-200_000, 200_000),
    length=st.integers(-5_000, 200_000),
)
def test_every_fires_between_counts_like_brute_force(
    interval: int, anchor: int, first: int, length: int
) -> None:
    last = first + length
    grid = [anchor + k * interval for k in range(-1000, 1000)]  # covers every range drawn
    inside = [t for t in grid if first <= t <= last]
    assert fires_between(Every(interval, anchor), first, last) == (
        len(inside),
        inside[-1] if inside else None,
    )


def test_every_fires_between_is_constant_time_over_a_century() -> None:
    count, latest = fires_between(Every(1000, 0), 0, 100 * 365 * DAY)
    assert count == 100 * 365 * 86_400 + 1
    assert latest == 100 * 365 * DAY


# --- At -------------------------------------------------------------------------------------


def test_at_fires_once_then_never() -> None:
    trigger = At(NOW + HOUR)
    assert next_fire_after(trigger, NOW) == NOW + HOUR
    assert next_fire_after(trigger, NOW + HOUR - 1) == NOW + HOUR
    assert next_fire_after(trigger, NOW + HOUR) is None
    assert next_fire_after(trigger, NOW + DAY) is None


def test_at_fires_between_counts_its_one_instant_only_inside_the_range() -> None:
    trigger = At(NOW)
    assert fires_between(trigger, NOW, NOW) == (1, NOW)
    assert fires_between(trigger, NOW - DAY, NOW + DAY) == (1, NOW)
    assert fires_between(trigger, NOW + 1, NOW + DAY) == (0, None)
    assert fires_between(trigger, NOW - DAY, NOW - 1) == (0, None)


# --- Cron: examples -------------------------------------------------------------------------


def test_cron_fires_strictly_after_the_given_instant() -> None:
    trigger = Cron("0 9 * * *")
    assert utc_text(next_fire_after(trigger, utc_ms(2026, 1, 5, 9))) == "2026-01-06 Tue 09:00"
    assert utc_text(next_fire_after(trigger, utc_ms(2026, 1, 5, 9) - 1)) == "2026-01-05 Mon 09:00"


def test_weekdays_only_skip_the_weekend() -> None:
    trigger = Cron("0 9 * * 1-5")
    assert utc_text(next_fire_after(trigger, utc_ms(2026, 1, 9, 10))) == "2026-01-12 Mon 09:00"


def test_hash_picks_the_nth_weekday_of_the_month() -> None:
    trigger = Cron("15 14 * * 5#2")
    got = [next_fire_after(trigger, utc_ms(2026, m, 1)) for m in (1, 2, 5)]
    assert [utc_text(t) for t in got] == [
        "2026-01-09 Fri 14:15",
        "2026-02-13 Fri 14:15",
        "2026-05-08 Fri 14:15",
    ]


def test_l_picks_the_last_day_of_each_month() -> None:
    trigger = Cron("0 0 L * *")
    t, got = utc_ms(2027, 12, 31, 1), []
    for _ in range(3):
        t = next_fire_after(trigger, t) or 0
        got.append(utc_text(t))
    assert got == ["2028-01-31 Mon 00:00", "2028-02-29 Tue 00:00", "2028-03-31 Fri 00:00"]


def test_l_with_a_weekday_picks_the_last_such_weekday() -> None:
    assert (
        utc_text(next_fire_after(Cron("0 0 * * L5"), utc_ms(2026, 1, 1))) == "2026-01-30 Fri 00:00"
    )


def test_day_of_month_and_day_of_week_together_match_either() -> None:
    trigger = Cron("0 0 13 * 5")
    t, got = utc_ms(2026, 2, 1), []
    for _ in range(4):
        t = next_fire_after(trigger, t) or 0
        got.append(utc_text(t))
    assert got == [
        "2026-02-06 Fri 00:00",
        "2026-02-13 Fri 00:00",
        "2026-02-20 Fri 00:00",
        "2026-02-27 Fri 00:00",
    ]


def test_february_29_waits_for_a_leap_year() -> None:
    assert (
        utc_text(next_fire_after(Cron("0 0 29 2 *"), utc_ms(2026, 1, 1))) == "2028-02-29 Tue 00:00"
    )


@pytest.mark.parametrize(
    ("alias", "expansion"),
    [
        ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"), ("@DAILY", "0 0 * * *"),
    ],
)  # fmt: skip
def test_a_shortcut_fires_like_its_expansion(alias: str, expansion: str) -> None:
    for start in range(utc_ms(2026, 1, 1), utc_ms(2028, 1, 1), 37 * DAY + 12_345):
        assert next_fire_after(Cron(alias), start) == next_fire_after(Cron(expansion), start)


def test_a_cron_in_a_zone_fires_on_that_zones_wall_clock() -> None:
    got = next_fire_after(Cron("0 9 * * *", "Asia/Kolkata"), utc_ms(2026, 1, 5))
    assert utc_text(got) == "2026-01-05 Mon 03:30"


def test_a_trigger_is_not_changed_by_asking_for_its_next_fire() -> None:
    trigger = Cron("*/5 * * * *", "Europe/Berlin")
    before = attrs.asdict(trigger)
    first = next_fire_after(trigger, NOW)
    assert next_fire_after(trigger, NOW) == first
    assert attrs.asdict(trigger) == before


def test_cron_fires_between_counts_each_fire_once() -> None:
    trigger = Cron("*/15 * * * *")
    assert fires_between(trigger, utc_ms(2026, 1, 1), utc_ms(2026, 1, 1, 1)) == (
        5,
        utc_ms(2026, 1, 1, 1),
    )
    assert fires_between(trigger, utc_ms(2026, 1, 1, 0, 1), utc_ms(2026, 1, 1, 0, 14)) == (0, None)
    assert fires_between(trigger, utc_ms(2026, 1, 1, 1), utc_ms(2026, 1, 1)) == (0, None)


def test_cron_fires_between_counts_a_dst_day_by_its_real_fires() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    day = (
        int(datetime(2026, 10, 25, tzinfo=berlin).timestamp() * 1000),
        int(datetime(2026, 10, 26, tzinfo=berlin).timestamp() * 1000) - 1,
    )
    assert fires_between(Cron("0 * * * *", "Europe/Berlin"), *day)[0] == 25
    assert fires_between(Cron("30 2 * * *", "Europe/Berlin"), *day)[0] == 1


def test_describe_says_what_the_trigger_does() -> None:
    assert describe(Cron("0 9 * * 1-5", "Europe/Berlin")) == "cron '0 9 * * 1-5' (Europe/Berlin)"
    assert describe(Every(2000, 0)) == "every 2s"
    assert describe(Every(90_000, 0)) == "every 1m30s"
    assert describe(Every(DAY + 1500, 0)) == "every 1d1s500ms"
    assert describe(At(utc_ms(2026, 3, 29, 1))) == "at 2026-03-29T01:00:00Z"
    assert describe(At(utc_ms(2026, 3, 29, 1) + 250)) == "at 2026-03-29T01:00:00.250Z"


# --- Cron: properties against croniter ------------------------------------------------------


def _values(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    single = number.map(str) | (st.sampled_from(names) if names else number.map(str))
    ranged = st.integers(low, high - 1).flatmap(
        lambda a: st.tuples(st.just(a), st.integers(a + 1, high))
    )
    return st.one_of(
        single,
        ranged.map(lambda p: f"{p[0]}-{p[1]}"),
        st.tuples(ranged, st.integers(1, 9)).map(lambda p: f"{p[0][0]}-{p[0][1]}/{p[1]}"),
        st.integers(1, max(1, (high - low) // 2)).map(lambda n: f"*/{n}"),
        st.tuples(number, st.integers(1, 9)).map(lambda p: f"{p[0]}/{p[1]}"),
    )


def _field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just("*"),
        _values(low, high, names),
        st.lists(_values(low, high, names), min_size=2, max_size=3).map(",".join),
    )


MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@st.composite
def cron_expressions(draw: st.DrawFn) -> str:
    minute = draw(_field(0, 59))
    hour = draw(_field(0, 23))
    month = draw(_field(1, 12, MONTHS))
    kind = draw(st.sampled_from(["plain", "plain", "plain", "nth", "last_weekday", "w", "l"]))
    if kind == "nth":
        dom, dow = (
            draw(st.sampled_from(["*", "?"])),
            f"{draw(st.integers(0, 7))}#{draw(st.integers(1, 5))}",
        )
    elif kind == "last_weekday":
        dom, dow = "*", f"L{draw(st.integers(0, 6))}"
    elif kind == "w":
        dom, dow = f"{draw(st.integers(1, 31))}W", draw(st.sampled_from(["*", "?"]))
    elif kind == "l":
        dom, dow = draw(st.sampled_from(["L", "1,L", "10-15,L"])), draw(_field(0, 6, DAYS))
    else:
        dom, dow = draw(_field(1, 31)), draw(_field(0, 7, DAYS))
    return f"{minute} {hour} {dom} {month} {dow}"


def _valid(expr: str, zone: str = "UTC") -> bool:
    try:
        validate_trigger(Cron(expr, zone), now_ms=NOW)
    except InvalidInput:
        return False
    return True


def _croniter_next(expr: str, after_ms: int, zone: str = "UTC") -> int | None:
    start = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(zone))
    try:
        return round(croniter(expr, start).get_next(float) * 1000)
    except CroniterBadDateError:
        return None


INSTANTS = st.integers(utc_ms(1971, 1, 1), utc_ms(2099, 1, 1))


@settings(max_examples=1000, deadline=None)
@given(expr=cron_expressions(), after=INSTANTS, sub_minute=st.integers(0, MINUTE - 1))
def test_next_fire_agrees_with_croniter_in_utc(expr: str, after: int, sub_minute: int) -> None:
    assume(_valid(expr))
    after = after // MINUTE * MINUTE + sub_minute
    expected = _croniter_next(expr, after)
    assume(expected is not None)  # croniter gives up after 50 years without a match
    assert next_fire_after(Cron(expr), after) == expected


ZONES = st.sampled_from(
    [
        "Asia/Tokyo", "Asia/Kolkata", "Asia/Kathmandu", "America/Sao_Paulo", "Europe/Berlin",
        "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns",
    ]
)  # fmt: skip


def _offsets_constant(zone: str, first_ms: int, last_ms: int) -> bool:
    """No offset change in [first - 3h, last + 3h], sampled every 6 h (transitions are rarer)."""
    tz = ZoneInfo(zone)
    points = [*range(first_ms - 3 * HOUR, last_ms + 3 * HOUR, 6 * HOUR), last_ms + 3 * HOUR]
    return len({datetime.fromtimestamp(p / 1000, tz).utcoffset() for p in points}) == 1


@settings(max_examples=400, deadline=None)
@given(
    expr=cron_expressions(), zone=ZONES, after=st.integers(utc_ms(2020, 1, 1), utc_ms(2030, 1, 1))
)
def test_next_fire_agrees_with_croniter_in_zones_away_from_transitions(
    expr: str, zone: str, after: int
) -> None:
    assume(_valid(expr, zone))
    nxt = next_fire_after(Cron(expr, zone), after)
    assume(nxt is not None and nxt - after < 120 * DAY)
    assert nxt is not None
    assume(_offsets_constant(zone, after, nxt))
    assert nxt == _croniter_next(expr, after, zone)


@settings(max_examples=300, deadline=None)
@given(expr=cron_expressions(), zone=ZONES, after=INSTANTS)
def test_next_fire_is_strictly_increasing(expr: str, zone: str, after: int) -> None:
    assume(_valid(expr, zone))
    first = next_fire_after(Cron(expr, zone), after)
    assert first is not None and first > after
    second = next_fire_after(Cron(expr, zone), first)
    assert second is not None and second > first
    assert next_fire_after(Cron(expr, zone), first - 1) == first


@settings(max_examples=150, deadline=None)
@given(
    expr=st.sampled_from(
        ["*/5 * * * *", "0 */3 * * *", "30 2 1 * *", "*/7 9-17 * * 1-5", "0 0 L * *"]
    ),
    first=st.integers(utc_ms(2020, 1, 1), utc_ms(2030, 1, 1)),
    length=st.integers(0, 3 * DAY),
)
def test_cron_fires_between_counts_like_croniter_range(expr: str, first: int, length: int) -> None:
    last = first + length
    start = datetime.fromtimestamp(first / 1000, UTC)
    stop = datetime.fromtimestamp(last / 1000, UTC)
    expected = [
        round(d.timestamp() * 1000)
        for d in croniter_range(start - timedelta(minutes=1), stop, expr)
        if first <= round(d.timestamp() * 1000) <= last
    ]
    assert fires_between(Cron(expr), first, last) == (
        len(expected),
        expected[-1] if expected else None,
    )


def test_a_backwards_range_an_older_version_recorded_still_fires_and_verifies() -> None:
    """The backwards-range check is for new input only: a ledger that holds `0 22-2 * * *`
    (recorded before the check) still fires at 22, 23, 0, 1, 2 and re-plans alike (a review
    found `verify`, `show` and the daemon refusing such a ledger)."""
    from cronledger.domain import events as ev
    from cronledger.domain.verify import verify
    from tests.harness import MINUTE, T0, World, spec

    w = World()
    wrapping = spec("wrap", trigger=Cron("0 22-2 * * *"))
    first = next_fire_after(wrapping.trigger, T0)
    assert first is not None
    w.record([ev.ScheduleAdded(at=T0, spec=wrapping, next_fire_at=first, due_at=first)])
    w.run_until(T0 + 24 * 60 * MINUTE, step=MINUTE)
    hours = sorted(
        {datetime.fromtimestamp(f.nominal / 1000, UTC).hour for f in w.of(ev.FireRecorded)}
    )
    assert hours == [0, 1, 2, 22, 23]
    assert verify(enumerate(w.log, 1)).ok
    # its other settings can still be changed (the trigger it has is not new input) ...
    from cronledger.adapters.schedules_file import spec_from_table
    from cronledger.domain import commands as cmd

    [updated] = w.do(cmd.UpdateSchedule(attrs.evolve(wrapping, priority=5)))
    assert isinstance(updated, ev.ScheduleUpdated) and updated.spec.priority == 5
    table = {"cron": "0 22-2 * * *", "command": ["true"], "priority": 6}
    assert spec_from_table("wrap", table, now_ms=T0, new_trigger=False).priority == 6  # CLI
    # ... but a new backwards trigger is refused
    with pytest.raises(InvalidInput, match="runs backwards"):
        w.do(cmd.UpdateSchedule(attrs.evolve(wrapping, trigger=Cron("0 23-1 * * *"))))
    with pytest.raises(InvalidInput, match="runs backwards"):
        spec_from_table("wrap", table, now_ms=T0)
