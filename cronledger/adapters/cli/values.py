"""Durations typed on a command line; errors name the flag and say how to type it."""

from __future__ import annotations

from cronledger.domain.durations import parse_duration
from cronledger.errors import InvalidInput


def duration(text: str, flag: str, *, zero_ok: bool = False) -> int:
    """Duration text ('90s', '1h30m') as ms; negative (and, unless `zero_ok`, zero) refused."""
    least = "0 or more" if zero_ok else "positive"
    if text.strip().startswith("-"):
        raise InvalidInput(flag, f"must be {least}, got {text!r}", f"e.g. {flag} 30s")
    ms = parse_duration(text, flag)
    if ms == 0 and not zero_ok:
        raise InvalidInput(flag, f"must be positive, got {text!r}", f"e.g. {flag} 30s")
    return ms
