"""Active and quiet hours (SEMANTICS §3): window membership, the gate, and when it opens."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cronledger.domain.hours import (
    Window,
    gate_allows,
    gate_opens_at,
    validate_window,
    window_contains,
)
from cronledger.errors import InvalidInput

BERLIN, NEW_YORK, LORD_HOWE = "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def ms(zone: str, *fields: int, fold: int = 0) -> int:
    """UTC ms of a local wall time (year, month, day[, hour, minute, second]) in `zone`."""
    year, month, day, hour, minute, second = (*fields, 0, 0, 0)[:6]
    local = datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone), fold=fold)
    return int(local.timestamp() * 1000)


def reading(instant_ms: int, zone: str) -> tuple[str, int]:
    local = datetime.fromtimestamp(instant_ms / 1000, ZoneInfo(zone))
    return local.isoformat(), local.fold


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "says"),
    [
        (Window("8:00", "20:00"), "'8:00'"),
        (Window("08:00", "24:00"), "'24:00'"),
        (Window("08:60", "20:00"), "'08:60'"),
        (Window("0800", "20:00"), "'0800'"),
        (Window("08:00", " 20:00"), "' 20:00'"),
        (Window("08:00", "08:00"), "both '08:00'"),
    ],
)
def test_a_bad_window_is_rejected_naming_the_field(window: Window, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_window(window, "active_hours")
    assert caught.value.field == "active_hours"
    assert says in str(caught.value)


def test_a_window_in_an_unknown_zone_is_rejected() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_window(Window("08:00", "20:00", "Mars/Olympus_Mons"), "quiet_hours")
    assert caught.value.field == "quiet_hours.timezone"


def test_valid_windows_are_accepted() -> None:
    validate_window(Window("08:00", "20:00", BERLIN), "active_hours")
    validate_window(Window("22:00", "07:00", NEW_YORK), "quiet_hours")
    validate_window(Window("00:00", "23:59"), "active_hours")


# --- membership -----------------------------------------------------------------------------


def test_a_window_contains_its_start_but_not_its_end() -> None:
    window = Window("08:00", "20:00", BERLIN)
    assert not window_contains(window, ms(BERLIN, 2026, 6, 1, 7, 59, 59))
    assert window_contains(window, ms(BERLIN, 2026, 6, 1, 8, 0))
    assert window_contains(window, ms(BERLIN, 2026, 6, 1, 19, 59, 59))
    assert not window_contains(window, ms(BERLIN, 2026, 6, 1, 20, 0))


def test_a_window_is_read_on_its_own_zones_wall_clock() -> None:
    window = Window("08:00", "20:00", NEW_YORK)
    assert not window_contains(window, ms(BERLIN, 2026, 6, 1, 9, 0))  # 03:00 in New York
    assert window_contains(window, ms(BERLIN, 2026, 6, 1, 15, 0))  # 09:00 in New York


def test_a_window_that_ends_before_it_starts_wraps_midnight() -> None:
    window = Window("22:00", "06:00", BERLIN)
    assert window_contains(window, ms(BERLIN, 2026, 6, 1, 23, 0))
    assert window_contains(window, ms(BERLIN, 2026, 6, 2, 0, 0))
    assert window_contains(window, ms(BERLIN, 2026, 6, 2, 5, 59))
    assert not window_contains(window, ms(BERLIN, 2026, 6, 2, 6, 0))
    assert not window_contains(window, ms(BERLIN, 2026, 6, 2, 21, 59))


def test_both_readings_of_a_fold_wall_time_are_inside() -> None:
    window = Window("02:15", "02:45", BERLIN)
    assert window_contains(window, ms(BERLIN, 2026, 10, 25, 2, 30, fold=0))
    assert window_contains(window, ms(BERLIN, 2026, 10, 25, 2, 30, fold=1))


# --- the gate -------------------------------------------------------------------------------


def test_no_windows_always_allow() -> None:
    assert gate_allows(None, None, 0)
    assert gate_opens_at(None, None, 12_345) == 12_345


def test_quiet_hours_block_and_the_rest_of_the_day_is_allowed() -> None:
    quiet = Window("22:00", "07:00", BERLIN)
    assert not gate_allows(None, quiet, ms(BERLIN, 2026, 6, 1, 23, 30))
    assert gate_allows(None, quiet, ms(BERLIN, 2026, 6, 1, 12, 0))


def test_active_and_quiet_hours_combine() -> None:
    active = Window("08:00", "20:00", BERLIN)
    quiet = Window("12:00", "13:00", BERLIN)
    assert gate_allows(active, quiet, ms(BERLIN, 2026, 6, 1, 11, 59))
    assert not gate_allows(active, quiet, ms(BERLIN, 2026, 6, 1, 12, 30))
    assert not gate_allows(active, quiet, ms(BERLIN, 2026, 6, 1, 21, 0))
    assert gate_opens_at(active, quiet, ms(BERLIN, 2026, 6, 1, 12, 30)) == ms(
        BERLIN, 2026, 6, 1, 13, 0
    )
    assert gate_opens_at(active, quiet, ms(BERLIN, 2026, 6, 1, 21, 0)) == ms(
        BERLIN, 2026, 6, 2, 8, 0
    )


def test_the_gate_opens_at_once_when_it_is_already_open() -> None:
    active = Window("08:00", "20:00", BERLIN)
    now = ms(BERLIN, 2026, 6, 1, 9, 0) + 123
    assert gate_opens_at(active, None, now) == now


def test_quiet_hours_that_wrap_midnight_open_the_next_morning() -> None:
    quiet = Window("22:00", "07:00", NEW_YORK)
    assert gate_opens_at(None, quiet, ms(NEW_YORK, 2026, 6, 1, 23, 0)) == ms(
        NEW_YORK, 2026, 6, 2, 7, 0
    )


def test_a_window_starting_inside_the_spring_gap_opens_at_the_end_of_the_gap() -> None:
    active = Window("02:30", "05:00", BERLIN)
    opens = gate_opens_at(active, None, ms(BERLIN, 2026, 3, 29, 1, 0))
    assert reading(opens, BERLIN) == ("2026-03-29T03:00:00+02:00", 0)
    assert opens == int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp() * 1000)


def test_a_lord_howe_window_inside_the_half_hour_gap_opens_at_half_past_two() -> None:
    active = Window("02:00", "03:00", LORD_HOWE)
    opens = gate_opens_at(active, None, ms(LORD_HOWE, 2026, 10, 4, 1, 0))
    assert reading(opens, LORD_HOWE) == ("2026-10-04T02:30:00+11:00", 0)


def test_the_fold_closes_a_window_and_opens_it_again_on_the_second_pass() -> None:
    active = Window("02:30", "05:00", BERLIN)
    back_to_two = ms(BERLIN, 2026, 10, 25, 2, 0, fold=1)  # 03:00 CEST became 02:00 CET
    assert gate_allows(active, None, back_to_two - 1)
    assert not gate_allows(active, None, back_to_two)
    opens = gate_opens_at(active, None, back_to_two)
    assert reading(opens, BERLIN) == ("2026-10-25T02:30:00+01:00", 1)


def test_windows_in_two_zones_open_when_both_agree() -> None:
    active = Window("09:00", "17:00", BERLIN)
    quiet = Window("00:00", "06:00", NEW_YORK)  # 06:00-12:00 in Berlin in June
    opens = gate_opens_at(active, quiet, ms(BERLIN, 2026, 6, 1, 8, 0))
    assert reading(opens, BERLIN) == ("2026-06-01T12:00:00+02:00", 0)


def test_quiet_hours_covering_all_active_hours_are_refused() -> None:
    active = Window("09:00", "17:00", BERLIN)
    quiet = Window("08:00", "18:00", BERLIN)
    with pytest.raises(InvalidInput) as caught:
        gate_opens_at(active, quiet, ms(BERLIN, 2026, 6, 1, 10, 0))
    assert caught.value.field == "quiet_hours"


def test_two_zone_windows_that_never_overlap_are_refused_after_a_bounded_search() -> None:
    active = Window("09:00", "10:00", "Asia/Tokyo")  # 00:00-01:00 UTC
    quiet = Window("23:00", "02:00", "UTC")
    with pytest.raises(InvalidInput):
        gate_opens_at(active, quiet, 0)


# --- properties -----------------------------------------------------------------------------

ZONES = st.sampled_from([BERLIN, NEW_YORK, LORD_HOWE, "UTC", "Asia/Kolkata"])
HHMM = st.tuples(st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59])).map(
    lambda hm: f"{hm[0]:02d}:{hm[1]:02d}"
)
WINDOWS = st.builds(Window, HHMM, HHMM, ZONES).filter(lambda w: w.start != w.end)
# Instants near the 2026 transitions, and anywhere in 2026.
TRANSITION_MS = [
    ms(BERLIN, 2026, 3, 29, 3), ms(BERLIN, 2026, 10, 25, 2, fold=1), ms(NEW_YORK, 2026, 3, 8, 3),
    ms(NEW_YORK, 2026, 11, 1, 1, fold=1), ms(LORD_HOWE, 2026, 10, 4, 2, 30),
    ms(LORD_HOWE, 2026, 4, 5, 1, 30, fold=1),
]  # fmt: skip
INSTANTS = st.one_of(
    st.tuples(st.sampled_from(TRANSITION_MS), st.integers(-2 * DAY, 2 * DAY)).map(sum),
    st.integers(ms("UTC", 2026, 1, 1), ms("UTC", 2027, 1, 1)),
)


def _closed_all_along(active: Window | None, quiet: Window | None, first: int, last: int) -> bool:
    """Not allowed at any whole minute in [first, last) nor at first: the gate's change points."""
    probes = [first, *range(first - first % MINUTE + MINUTE, last, MINUTE)]
    return not any(gate_allows(active, quiet, p) for p in probes if p < last)


@settings(max_examples=300, deadline=None)
@given(active=st.none() | WINDOWS, quiet=st.none() | WINDOWS, instant=INSTANTS)
def test_the_gate_opens_at_the_first_allowed_instant(
    active: Window | None, quiet: Window | None, instant: int
) -> None:
    try:
        opens = gate_opens_at(active, quiet, instant)
    except InvalidInput:
        # Refused only for windows that never allow a fire: at least the next two days are closed.
        assert active is not None and quiet is not None
        assert _closed_all_along(active, quiet, instant, instant + 2 * DAY)
        return
    assert opens >= instant
    assert gate_allows(active, quiet, opens)
    if opens == instant:
        return
    assert not gate_allows(active, quiet, opens - 1)
    assert _closed_all_along(active, quiet, instant, opens)


@settings(max_examples=200, deadline=None)
@given(window=WINDOWS, instant=INSTANTS)
def test_quiet_hours_are_the_complement_of_the_same_active_hours(
    window: Window, instant: int
) -> None:
    assert gate_allows(None, window, instant) != gate_allows(window, None, instant)
    if not gate_allows(window, None, instant):
        assert gate_opens_at(window, None, instant) > instant
