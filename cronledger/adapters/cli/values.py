"""Instants and durations typed on a command line; errors name the flag and say how to type it."""

from __future__ import annotations

from datetime import datetime

from cronledger.domain.durations import parse_duration
from cronledger.domain.instants import parse_instant
from cronledger.errors import InvalidInput

OFFSET_FIX = "add an offset like 2026-01-01T00:00:00+00:00 or Z"


def instant(text: str, flag: str) -> int:
    """ISO-8601 text with an offset or Z, as epoch ms; a naive one gets shell advice."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        value = None  # parse_instant says what is wrong with it
    if value is not None and value.utcoffset() is None:
        raise InvalidInput(flag, f"{text!r} has no UTC offset, so it is ambiguous", OFFSET_FIX)
    return parse_instant(text, flag)


def duration(text: str, flag: str, *, zero_ok: bool = False) -> int:
    """Duration text ('90s', '1h30m') as ms; negative (and, unless `zero_ok`, zero) refused."""
    least = "0 or more" if zero_ok else "positive"
    if text.strip().startswith("-"):
        raise InvalidInput(flag, f"must be {least}, got {text!r}", f"e.g. {flag} 30s")
    ms = parse_duration(text, flag)
    if ms == 0 and not zero_ok:
        raise InvalidInput(flag, f"must be positive, got {text!r}", f"e.g. {flag} 30s")
    return ms
