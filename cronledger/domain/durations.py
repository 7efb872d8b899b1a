"""Durations are int milliseconds; text like '90s', '5m', '1h30m' is parsed at the edge."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from cronledger.errors import InvalidInput

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"([0-9]{1,15})(ms|s|m|h|d|w)")
MAX_DURATION_MS = 36_500 * 86_400_000  # 100 years: instants stay within what datetime can show


def parse_duration(text: str, field: str = "duration") -> int:
    """Parse '250ms', '90s', '5m', '1h30m', '2d' (or plain seconds) into milliseconds."""
    raw = text.strip().lower()
    if raw.isascii() and raw.isdigit() and len(raw) <= 15:
        return bounded(int(raw) * 1000, field)
    pos, total = 0, 0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not raw or pos != len(raw):
        raise InvalidInput(
            field, f"{text!r} is not a duration", "use e.g. 250ms, 90s, 5m, 1h30m or 2d"
        )
    return bounded(total, field)


def bounded(ms: int, field: str) -> int:
    """`ms`, unless it is longer than MAX_DURATION_MS."""
    if ms > MAX_DURATION_MS:
        raise InvalidInput(
            field, f"{ms:,} ms is longer than 100 years", "use a duration of at most 36500d"
        )
    return ms


def duration_ms(value: timedelta | int | str, field: str = "duration") -> int:
    """Accept a timedelta, int milliseconds or duration text."""
    if isinstance(value, timedelta):
        return bounded(value // timedelta(milliseconds=1), field)
    if isinstance(value, bool):
        raise InvalidInput(field, "a bool is not a duration", "pass a timedelta or e.g. '5m'")
    if isinstance(value, int):
        return bounded(value, field)
    return parse_duration(value, field)


def as_duration(value: object, field: str) -> Any:
    """For attrs converters: a timedelta or duration text becomes int ms (an error names
    `field`); anything else is left as it is, for validation to name."""
    if type(value) is int or not isinstance(value, timedelta | str):
        return value
    return duration_ms(value, field)
