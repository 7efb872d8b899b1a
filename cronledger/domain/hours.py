"""Active and quiet hours: the gate that defers a due fire outside its window (SEMANTICS §3).

A window is a daily range [start, end) of local wall times in an IANA zone; end < start wraps
midnight. Membership follows the wall clock: a wall time read twice in the autumn fold is inside
both times, a wall time skipped by the spring gap is never read, so a window that starts inside the
gap opens at the end of the gap.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from cronledger.domain.zones import offset_at, offset_change
from cronledger.errors import InvalidInput


@attrs.frozen
class Window:
    """Local wall times [start, end) as "HH:MM" in `timezone`; end < start wraps midnight."""

    start: str
    end: str
    timezone: str = "UTC"


_HHMM_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$", re.ASCII)
_HORIZON_MS = 400 * 86_400_000  # a year of DST shifts between two zones, and some margin


def validate_window(window: Window, field: str) -> None:
    """Reject a window with a bad "HH:MM", an unknown zone, or start == end, naming `field`."""
    if not isinstance(window, Window):
        raise InvalidInput(field, f"{window!r} is not a Window", 'use Window("08:00", "20:00")')
    _bounds(window, field)
    _zone(window.timezone, field)


@functools.lru_cache(maxsize=256)
def _bounds(window: Window, field: str = "window") -> tuple[int, int]:
    """(start, end) in seconds after local midnight."""
    values = []
    for name, text in (("start", window.start), ("end", window.end)):
        match = _HHMM_RE.match(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidInput(
                field,
                f"{name} {text!r} is not a 24-hour HH:MM time",
                'write it like "08:00" or "22:30"',
            )
        values.append(int(match.group(1)) * 3600 + int(match.group(2)) * 60)
    if values[0] == values[1]:
        raise InvalidInput(
            field,
            f"start and end are both {window.start!r}, so the window is empty or the whole day",
            "use different times, or leave the window out to allow every hour",
        )
    return values[0], values[1]


@functools.lru_cache(maxsize=256)
def _zone(key: str, field: str = "window") -> ZoneInfo:
    fix = "use an IANA time zone name such as 'Europe/Berlin' or 'UTC'"
    if not isinstance(key, str) or key == "localtime":
        raise InvalidInput(f"{field}.timezone", f"unknown time zone {key!r}", fix)
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidInput(f"{field}.timezone", f"unknown time zone {key!r}", fix) from exc


def window_contains(window: Window, instant_ms: int) -> bool:
    """Is the local wall time of `instant_ms` in [start, end)?"""
    start, end = _bounds(window)
    reading = datetime.fromtimestamp(instant_ms // 1000, _zone(window.timezone))
    of_day = reading.hour * 3600 + reading.minute * 60 + reading.second
    if start < end:
        return start <= of_day < end
    return of_day >= start or of_day < end


def gate_allows(active: Window | None, quiet: Window | None, instant_ms: int) -> bool:
    """May a scheduled fire run at `instant_ms`: inside active hours and outside quiet hours."""
    if active is not None and not window_contains(active, instant_ms):
        return False
    return quiet is None or not window_contains(quiet, instant_ms)


def gate_opens_at(active: Window | None, quiet: Window | None, instant_ms: int) -> int:
    """The first instant >= `instant_ms` at which the gate allows a fire.

    Walks from one change point to the next (a wall clock reaching a window bound, or a DST
    transition), so it ends within a day or two for real windows. Raises InvalidInput when the
    two windows together never allow a fire.
    """
    t = instant_ms
    if gate_allows(active, quiet, t):
        return t
    if active is not None and quiet is not None and _always_closed(active, quiet):
        raise InvalidInput(
            "quiet_hours",
            f"quiet hours {quiet.start}-{quiet.end} cover all of the active hours "
            f"{active.start}-{active.end}, so no fire is ever allowed",
            "make the active hours reach outside the quiet hours",
        )
    windows = [w for w in (active, quiet) if w is not None]
    while t - instant_ms <= _HORIZON_MS:
        t = min(_next_change(w, t) for w in windows)
        if gate_allows(active, quiet, t):
            return t
    raise InvalidInput(
        "quiet_hours",
        "with these active hours no instant is ever allowed",
        "make the active hours reach outside the quiet hours",
    )


@functools.lru_cache(maxsize=256)
def _always_closed(active: Window, quiet: Window) -> bool:
    """In one zone the gate is a fixed set of wall times: is that set empty?"""
    if active.timezone != quiet.timezone:
        return False  # two zones drift against each other over the year: the walk decides
    a_start, a_end = _bounds(active)
    q_start, q_end = _bounds(quiet)
    return not any(
        _in(of_day, a_start, a_end) and not _in(of_day, q_start, q_end)
        for of_day in range(0, 86_400, 60)
    )


def _in(of_day: int, start: int, end: int) -> bool:
    return start <= of_day < end if start < end else of_day >= start or of_day < end


def _next_change(window: Window, t_ms: int) -> int:
    """The first instant > t_ms at which `window_contains` may change its answer."""
    tz = _zone(window.timezone)
    start, end = _bounds(window)
    t_s = t_ms // 1000
    reading = datetime.fromtimestamp(t_s, tz)
    midnight = datetime(reading.year, reading.month, reading.day)
    transition = _next_transition(tz, t_s, t_s + 2 * 86_400)
    best = t_s + 86_400 if transition is None else transition
    for days in (-1, 0, 1, 2):
        for bound in (start, end):
            wall = midnight + timedelta(days=days, seconds=bound)
            for fold in (0, 1):
                moment = int(wall.replace(tzinfo=tz, fold=fold).timestamp())
                if moment * 1000 <= t_ms or moment >= best:
                    continue
                if datetime.fromtimestamp(moment, tz).replace(tzinfo=None) == wall:
                    best = moment  # the wall clock really reads this bound at `moment`
    return best * 1000


def _next_transition(tz: ZoneInfo, low: int, high: int) -> int | None:
    """The first offset change in (low, high] (epoch seconds), assuming at most one."""
    offset = offset_at(tz, low)
    if offset_at(tz, high) == offset:
        return None
    return offset_change(tz, low, high, offset)
