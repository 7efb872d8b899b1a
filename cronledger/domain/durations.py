"""Durations are int milliseconds; text like '90s', '5m', '1h30m' is parsed at the edge."""

from __future__ import annotations

import re
from datetime import timedelta

from cronledger.errors import InvalidInput

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")


def parse_duration(text: str, field: str = "duration") -> int:
    """Parse '250ms', '90s', '5m', '1h30m', '2d' (or plain seconds) into milliseconds."""
    raw = text.strip().lower()
    if raw.isdigit():
        return int(raw) * 1000
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
    return total


def duration_ms(value: timedelta | int | str, field: str = "duration") -> int:
    """Accept a timedelta, int milliseconds or duration text."""
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, bool):
        raise InvalidInput(field, "a bool is not a duration", "pass a timedelta or e.g. '5m'")
    if isinstance(value, int):
        return value
    return parse_duration(value, field)
