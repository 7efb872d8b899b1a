"""Triggers: when a schedule fires, as pure functions of the trigger and an instant (no cursor).

Instants are int UTC epoch milliseconds. A `Cron` is evaluated on the wall clock of its IANA zone
with the classic-cron daylight-saving rule (SEMANTICS §1):

- fixed-hour expressions (hour field without `*` or `/`): a wall time in the spring gap fires once,
  at the transition instant (several gap times collapse into it); a wall time in the autumn fold
  fires once, on its first occurrence. A daily job neither disappears nor doubles.
- wildcard-hour expressions (`*` or a step in the hour field) follow the real clock, as classic
  cron's "wildcard jobs": a wall time read twice in the fold fires twice, and a wall time that is
  never read (the gap) does not fire, so an hourly job keeps firing once per real hour.

croniter only parses; the search for the next wall time is done here, field by field, on a
compiled matcher cached per expression, which is what makes `next_fire_after` cheap.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import CroniterUnsupportedSyntaxError, croniter

from cronledger.domain.durations import as_duration, bounded
from cronledger.domain.instants import as_instant, bounded_instant
from cronledger.domain.zones import offset_change, seconds
from cronledger.errors import InvalidInput


@attrs.frozen(kw_only=False)
class Cron:
    """A 5-field cron expression (or @daily etc.) evaluated on the wall clock of `timezone`."""

    expr: str
    timezone: str = "UTC"


def _interval(value: int | timedelta | str) -> Any:
    return as_duration(value, "trigger.interval")


def _anchor_at(value: int | datetime | str | None) -> Any:
    return None if value is None else as_instant(value, "trigger.anchor")


def _instant(value: int | datetime | str) -> Any:
    return as_instant(value, "trigger.at")


@attrs.frozen(kw_only=False)
class Every:
    """Fires at `anchor_ms + k * interval_ms` for every integer k: aligned, so it never drifts.

    The interval takes int ms, a timedelta or text ("5m"); the anchor int ms, an aware datetime
    or ISO text, and defaults (None) to the instant the schedule is registered."""

    interval_ms: int = attrs.field(converter=_interval)
    anchor_ms: int | None = attrs.field(default=None, converter=_anchor_at)


@attrs.frozen(kw_only=False)
class At:
    """Fires once, at `instant_ms` (int ms, an aware datetime or ISO text)."""

    instant_ms: int = attrs.field(converter=_instant)


Trigger: TypeAlias = Cron | Every | At

MIN_INTERVAL_MS = 1000

_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_FIELD_HELP = (
    "use 0-59, a list like 0,30, a range like 0-29 or a step like */15",
    "use 0-23, a list like 9,17, a range like 9-17 or a step like */2",
    "use 1-31, L (last day), 15W (weekday nearest the 15th), ?, a list, a range or a step",
    "use 1-12 or JAN-DEC, a list, a range or a step",
    "use 0-7 or SUN-SAT (0 and 7 are Sunday), 5#2 (second Friday), L5 (last Friday), ?, "
    "a list or a range",
)
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS_RE = re.compile(r"\S+", re.ASCII)
_HASHED_RE = re.compile(r"^[hr](\(|/|$)")
_EQUAL_RANGE_RE = re.compile(r"^(\w+)-(\w+)(/\d+)?$", re.ASCII)
_NEAREST_WEEKDAY_RE = re.compile(r"^(?:(\d+)w|w(\d+))$", re.ASCII)
_UTC_KEYS = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Zulu"})

_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH_NAIVE.toordinal()
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_SEARCH_YEARS = 401  # a whole Gregorian cycle: an expression that matches at all matches in it
_MIN_MS = -62_135_424_000_000  # 0001-01-03T00:00Z: a margin for offsets around datetime.min
_MAX_MS = 253_402_041_600_000  # 9999-12-30T00:00Z
_DAY_MS = 86_400_000


# --- validation -----------------------------------------------------------------------------


def validate_trigger(trigger: Trigger, *, now_ms: int, new: bool = True) -> None:
    """Reject a trigger that cannot be registered, with a message naming the field and the fix.
    `new=False` for a trigger a schedule already has (an update of its other settings): what
    only new input is held to (cron ranges that run forwards) is not asked of it."""
    if isinstance(trigger, Cron):
        if not isinstance(trigger.expr, str):
            raise InvalidInput(
                "trigger.expr", f"{trigger.expr!r} is not a string", "use '0 9 * * *'"
            )
        if not isinstance(trigger.timezone, str):
            raise InvalidInput(
                "trigger.timezone", f"{trigger.timezone!r} is not a string", "use 'Europe/Berlin'"
            )
        _compile(trigger.expr)
        if new:
            _check_ranges_run_forwards(trigger.expr)
        _zone(trigger.timezone)
    elif isinstance(trigger, Every):
        if not is_int(trigger.interval_ms) or trigger.interval_ms < MIN_INTERVAL_MS:
            raise InvalidInput(
                "trigger.interval",
                f"{trigger.interval_ms!r} ms is shorter than the minimum of 1 s",
                "use an interval of at least 1 second (1000 ms)",
            )
        bounded(trigger.interval_ms, "trigger.interval")
        if trigger.anchor_ms is not None and not is_int(trigger.anchor_ms):
            raise InvalidInput(
                "trigger.anchor",
                f"{trigger.anchor_ms!r} is not an instant",
                "use UTC epoch ms, an aware datetime or ISO text, or omit it (the registration "
                "instant)",
            )
        if trigger.anchor_ms is not None:
            bounded_instant(trigger.anchor_ms, "trigger.anchor")
    elif isinstance(trigger, At):
        if not is_int(trigger.instant_ms):
            raise InvalidInput(
                "trigger.at", f"{trigger.instant_ms!r} is not an int", "use UTC epoch ms"
            )
        bounded_instant(trigger.instant_ms, "trigger.at")
        if trigger.instant_ms <= now_ms:
            raise InvalidInput(
                "trigger.at",
                f"{_iso(trigger.instant_ms)} is in the past (now is {_iso(now_ms)})",
                "choose an instant in the future",
            )
    else:
        raise InvalidInput(
            "trigger", f"{trigger!r} is not a trigger", "use Cron(...), Every(...) or At(...)"
        )


def anchored(trigger: Trigger, now_ms: int, stored: Trigger | None = None) -> Trigger:
    """An `Every` without an anchor: the `stored` trigger where it is an `Every` of the same
    interval (re-registering keeps the alignment), else anchored at `now_ms`, its registration
    instant (SEMANTICS §1). Any other trigger as it is."""
    if isinstance(trigger, Every) and trigger.anchor_ms is None:
        if isinstance(stored, Every) and stored.interval_ms == trigger.interval_ms:
            return stored
        return Every(trigger.interval_ms, now_ms)
    return trigger


def _anchor(trigger: Every) -> int:
    if trigger.anchor_ms is None:
        raise InvalidInput(
            "trigger.anchor",
            "is not set yet (it is the instant the schedule is registered)",
            "register the schedule first, or give Every(interval, anchor)",
        )
    return trigger.anchor_ms


def is_int(value: object) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


@functools.lru_cache(maxsize=256)
def _zone(key: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name, or InvalidInput naming trigger.timezone."""
    fix = "use an IANA time zone name such as 'Europe/Berlin' or 'UTC'"
    if not isinstance(key, str) or key == "localtime":
        # "localtime" resolves to the host's zone: not a name that means the same everywhere.
        raise InvalidInput("trigger.timezone", f"unknown time zone {key!r}", fix)
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidInput("trigger.timezone", f"unknown time zone {key!r}", fix) from exc


def _field_error(index: int, token: str, problem: str = "") -> InvalidInput:
    name = _FIELD_NAMES[index]
    text = f"{name} field {token!r} is not valid" + (f": {problem}" if problem else "")
    return InvalidInput("trigger.expr", text, _FIELD_HELP[index])


def _check_field(index: int, token: str, shown: str) -> None:
    """Validate one (lower-cased) field on its own, so an error can name it."""
    for part in token.split(","):
        if _HASHED_RE.match(part):
            raise _field_error(index, shown, "random (R) and hashed (H) values are not supported")
        equal = _EQUAL_RANGE_RE.match(part)
        if equal and _same_bound(equal.group(1), equal.group(2)):
            # croniter reads an equal range such as 5-5 as the whole field: refuse the trap.
            raise _field_error(index, shown, f"the range {part!r} has equal bounds")
    probe = ["*"] * 5
    probe[index] = token
    try:
        croniter.expand(" ".join(probe))
    except CroniterUnsupportedSyntaxError as exc:
        raise _field_error(index, shown, "plain days cannot be listed with '#' days") from exc
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise _field_error(index, shown) from exc


def _check_ranges_run_forwards(expr: str) -> None:
    """New input only (`validate_trigger`): a range that runs backwards (22-2) is refused.
    croniter wraps it around (22..23 and 0..2), classic cron refuses it, and a typo such as
    5-1 would fire 57 minutes an hour. The matcher (`_compile`) still takes it, so that a
    schedule an older version recorded keeps firing and re-planning as it did."""
    text = expr.strip().lower()
    if text.startswith("@"):
        return
    fields, shown = _FIELDS_RE.findall(text), _FIELDS_RE.findall(expr)
    for index, token in enumerate(fields):
        for part in token.split(","):
            found = _EQUAL_RANGE_RE.match(part)
            if found is None:
                continue
            low, high = _bound(index, found.group(1)), _bound(index, found.group(2))
            if low is None or high is None or low <= high:
                continue
            first, last = _FIELD_SPAN[index]
            step = found.group(3) or ""
            raise InvalidInput(
                "trigger.expr",
                f"{_FIELD_NAMES[index]} field {shown[index]!r} is not valid: the range "
                f"{part!r} runs backwards",
                f"write the values in order, e.g. {found.group(1)}-{last}{step},{first}-"
                f"{found.group(2)}{step} for a range that wraps around (a step starts again "
                "at the second range's start)",
            )


_FIELD_SPAN = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_NAMES = (
    (),
    (),
    (),
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ("sun", "mon", "tue", "wed", "thu", "fri", "sat"),
)


def _bound(index: int, text: str) -> int | None:
    """A range bound's number (a name as its month or weekday number), None if neither."""
    if text.isdigit():
        return int(text)
    names = _NAMES[index]
    if text in names:
        return names.index(text) + (1 if index == 3 else 0)
    return None


def _same_bound(low: str, high: str) -> bool:
    if low.isdigit() and high.isdigit():
        return int(low) == int(high)
    return low == high


# --- the compiled matcher -------------------------------------------------------------------


@attrs.frozen(eq=False)
class _Matcher:
    """Sorted allowed values per field, and the matching days of each kind of month."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    month_ok: tuple[bool, ...]  # indexed 1..12
    # month_days[first weekday (0 = Sunday)][month length - 28] -> sorted matching days
    month_days: tuple[tuple[tuple[int, ...], ...], ...]
    fixed_hour: bool


@functools.lru_cache(maxsize=1024)
def _compile(expr: str) -> _Matcher:
    """Parse and validate a cron expression into a matcher (cached per expression)."""
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidInput(
            "trigger.expr",
            "the cron expression is empty",
            "write 5 fields 'minute hour day-of-month month day-of-week', e.g. '0 9 * * 1-5'",
        )
    text = expr.strip().lower()
    if text.startswith("@"):
        if text not in _ALIASES:
            raise InvalidInput(
                "trigger.expr",
                f"unknown shortcut {expr.strip()!r}",
                "use one of " + ", ".join(_ALIASES) + " or 5 fields",
            )
        text = _ALIASES[text]
    fields = _FIELDS_RE.findall(text)
    shown = _FIELDS_RE.findall(expr) if len(_FIELDS_RE.findall(expr)) == 5 else fields
    if len(fields) != 5:
        raise InvalidInput(
            "trigger.expr",
            f"{expr!r} has {len(fields)} fields, expected 5",
            "write 'minute hour day-of-month month day-of-week'; seconds and years are not "
            "supported",
        )
    for index, token in enumerate(fields):
        _check_field(index, token, shown[index])
    try:
        expanded, nth = croniter.expand(" ".join(fields))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        # Each field is valid alone, so the combination is what croniter refused.
        raise _field_error(4, shown[4]) from exc
    matcher = _build(fields, shown, expanded, nth)
    if _next_match(matcher, (datetime(2000, 1, 1) - _EPOCH_NAIVE) // timedelta(minutes=1)) is None:
        raise _field_error(2, shown[2], f"it never occurs in month field {shown[3]!r}")
    return matcher


def _ints(values: Sequence[int | str], low: int, high: int) -> tuple[int, ...]:
    if list(values) == ["*"]:
        return tuple(range(low, high + 1))
    return tuple(sorted({int(v) for v in values}))


def _build(
    fields: list[str], shown: list[str], expanded: Sequence[Sequence[int | str]], nth: object
) -> _Matcher:
    """Turn croniter's expansion into the matcher, with croniter's day-of-month/week rules."""
    dom, dow = list(expanded[2]), list(expanded[4])
    nth_map: dict[int, frozenset[int | str]] = {}
    if isinstance(nth, dict):
        for key, values in nth.items():
            for weekday in range(7) if key == "*" else (int(key),):
                nth_map[weekday] = nth_map.get(weekday, frozenset()) | frozenset(values)
    w_match = _NEAREST_WEEKDAY_RE.match(fields[2])
    nearest = int(w_match.group(1) or w_match.group(2)) if w_match else None
    dom_star = dom == ["*"] and nearest is None
    dow_star = dow == ["*"] and not nth_map
    if nth_map and not dom_star:
        problem = "'#' and 'L' days of week cannot be combined with a day of month"
        raise _field_error(4, shown[4], problem + "; set the day of month to '*' or '?'")
    if nearest is not None and not dow_star:
        raise _field_error(
            2, shown[2], "'W' cannot be combined with a day of week; set it to '*' or '?'"
        )
    dom_days = frozenset(int(v) for v in dom if v not in ("*", "l"))
    dom_last = "l" in dom
    dow_days = frozenset(int(v) for v in dow if v != "*")

    def day_matches(day: int, first: int, length: int) -> bool:
        weekday = (first + day - 1) % 7
        if nearest is not None:
            on_dom = day == _nearest_weekday(nearest, first, length)
        else:
            on_dom = day in dom_days or (dom_last and day == length)
        if nth_map:
            on_dow = any(
                weekday == wd and (day + 7 > length if n == "l" else (day - 1) // 7 + 1 == n)
                for wd, ns in nth_map.items()
                for n in ns
            )
        else:
            on_dow = weekday in dow_days
        if dom_star and dow_star:
            return True
        if dom_star:
            return on_dow
        if dow_star:
            return on_dom
        return on_dom or on_dow  # cron: both restricted means either matches

    month_days = tuple(
        tuple(
            tuple(d for d in range(1, length + 1) if day_matches(d, first, length))
            for length in range(28, 32)
        )
        for first in range(7)
    )
    months = set(_ints(expanded[3], 1, 12))
    hour_token = fields[1]
    return _Matcher(
        minutes=_ints(expanded[0], 0, 59),
        hours=_ints(expanded[1], 0, 23),
        month_ok=tuple(m in months for m in range(13)),
        month_days=month_days,
        fixed_hour="*" not in hour_token and "/" not in hour_token,
    )


def _nearest_weekday(day: int, first: int, length: int) -> int:
    """The Monday-Friday day nearest `day` within the month (croniter's 'W' rule)."""
    day = min(day, length)
    weekday = (first + day - 1) % 7  # 0 = Sunday
    if weekday == 6:  # Saturday
        return day - 1 if day > 1 else day + 2
    if weekday == 0:  # Sunday
        return day + 1 if day < length else day - 2
    return day


def _next_match(m: _Matcher, wall_minute: int) -> int | None:
    """The first matching wall minute >= `wall_minute` (minutes since 1970-01-01 00:00 local)."""
    days, rest = divmod(wall_minute, 1440)
    ordinal = _EPOCH_ORDINAL + days
    if ordinal < 1:
        ordinal, rest = 1, 0
    start = datetime.fromordinal(ordinal)
    year, month, day = start.year, start.month, start.day
    hour, minute = divmod(rest, 60)
    hours, minutes = m.hours, m.minutes
    last_year = year + _SEARCH_YEARS
    while year <= last_year and year <= 9999:
        if m.month_ok[month]:
            first_ordinal = datetime(year, month, 1).toordinal()
            length = _MONTH_DAYS[month]
            if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
                length = 29
            candidates = m.month_days[first_ordinal % 7][length - 28]
            i = bisect.bisect_left(candidates, day)
            while i < len(candidates):
                if candidates[i] != day:
                    day, hour, minute = candidates[i], 0, 0
                hi = bisect.bisect_left(hours, hour)
                found: tuple[int, int] | None = None
                if hi < len(hours):
                    if hours[hi] == hour:
                        mi = bisect.bisect_left(minutes, minute)
                        if mi < len(minutes):
                            found = (hour, minutes[mi])
                        elif hi + 1 < len(hours):
                            found = (hours[hi + 1], minutes[0])
                    else:
                        found = (hours[hi], minutes[0])
                if found is not None:
                    base = (first_ordinal + day - 1 - _EPOCH_ORDINAL) * 1440
                    return base + found[0] * 60 + found[1]
                i += 1
                hour = minute = 0
                if i < len(candidates):
                    day = candidates[i]
        month += 1
        if month == 13:
            month, year = 1, year + 1
        day, hour, minute = 1, 0, 0
    return None


# --- next fire ------------------------------------------------------------------------------


def next_fire_after(trigger: Trigger, after_ms: int) -> int | None:
    """The first nominal fire instant strictly after `after_ms`, or None when there is none."""
    if isinstance(trigger, Every):
        anchor = _anchor(trigger)
        k = (after_ms - anchor) // trigger.interval_ms + 1
        return anchor + k * trigger.interval_ms
    if isinstance(trigger, At):
        return trigger.instant_ms if trigger.instant_ms > after_ms else None
    return _cron_next(_compile(trigger.expr), trigger.timezone, after_ms)


def _cron_next(m: _Matcher, zone: str, after_ms: int) -> int | None:
    """Next fire of a compiled cron on the wall clock of `zone`, with the DST rule."""
    if after_ms >= _MAX_MS:
        return None
    after_ms = max(after_ms, _MIN_MS - 1)
    if zone in _UTC_KEYS:
        found = _next_match(m, after_ms // 60_000 + 1)
        return None if found is None else found * 60_000
    tz = _zone(zone)
    after_s = after_ms // 1000
    reading = datetime.fromtimestamp(after_s, tz)
    offset = seconds(reading.utcoffset())
    wall = (after_s + offset) // 60 + 1
    wildcard = not m.fixed_hour
    if wildcard and reading.fold == 0:
        later_offset = seconds(reading.replace(fold=1).utcoffset())
        if later_offset < offset:
            # `after` is the first reading of a repeated wall time: the fold's second readings
            # of earlier wall times are still to come, so search from there.
            wall = (after_s + later_offset) // 60 + 1
    best: int | None = None
    for _ in range(10_000):  # bounded: only matches inside one fold can be passed over
        found = _next_match(m, wall)
        if found is None:
            return best
        local = _EPOCH_NAIVE + timedelta(minutes=found)
        off_before = seconds(local.replace(tzinfo=tz).utcoffset())
        off_after = seconds(local.replace(tzinfo=tz, fold=1).utcoffset())
        base = found * 60
        if off_before < off_after:  # the wall time does not exist (spring gap)
            if wildcard:
                wall = found + 1
                continue
            first = offset_change(tz, base - off_after, base - off_before, off_before) * 1000
        else:
            first = (base - off_before) * 1000
        if first > after_ms:
            return first if best is None or first < best else best
        if wildcard and off_before > off_after:  # the fold: its second reading fires too
            second = (base - off_after) * 1000
            if second > after_ms and (best is None or second < best):
                best = second
        wall = found + 1
    return best


def fires_between(trigger: Trigger, first_ms: int, last_ms: int) -> tuple[int, int | None]:
    """(count, latest) of nominal fire instants t with first_ms <= t <= last_ms.

    O(1) for Every and At. A Cron walks its fires with `next_fire_after` (a few µs each), so the
    cost grows with the number of fires in the range.
    """
    if last_ms < first_ms:
        return 0, None
    if isinstance(trigger, Every):
        step, anchor = trigger.interval_ms, _anchor(trigger)
        low = -((anchor - first_ms) // step)  # ceil((first - anchor) / step)
        high = (last_ms - anchor) // step
        if high < low:
            return 0, None
        return high - low + 1, anchor + high * step
    if isinstance(trigger, At):
        if first_ms <= trigger.instant_ms <= last_ms:
            return 1, trigger.instant_ms
        return 0, None
    matcher = _compile(trigger.expr)
    count, latest = 0, None
    fire = _cron_next(matcher, trigger.timezone, first_ms - 1)
    while fire is not None and fire <= last_ms:
        count, latest = count + 1, fire
        fire = _cron_next(matcher, trigger.timezone, fire)
    return count, latest


# --- description ----------------------------------------------------------------------------


def describe(trigger: Trigger) -> str:
    """A short human text for a trigger, for listings and explanations."""
    if isinstance(trigger, Cron):
        return f"cron {trigger.expr!r} ({trigger.timezone})"
    if isinstance(trigger, Every):
        return f"every {_duration(trigger.interval_ms)}"
    return f"at {_iso(trigger.instant_ms)}"


def _duration(ms: int) -> str:
    parts = []
    for unit, size in (("d", _DAY_MS), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0ms"


def _iso(ms: int) -> str:
    """An instant as ISO 8601 UTC ('2026-03-29T01:00:00Z'), or raw ms when out of range."""
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    except OverflowError:
        return f"{ms} ms since the epoch"
    spec = "milliseconds" if ms % 1000 else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
