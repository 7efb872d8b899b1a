"""Instants are int UTC epoch milliseconds; aware datetimes exist only at the edge."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cronledger.errors import InvalidInput

# Instants a datetime can show: years 1 to 9999 (UTC epoch ms); beyond, nothing could print them.
MIN_INSTANT_MS = -62_135_596_800_000
MAX_INSTANT_MS = 253_402_300_799_999


def bounded_instant(ms: int, field: str) -> int:
    """`ms`, unless no datetime can show it."""
    if not MIN_INSTANT_MS <= ms <= MAX_INSTANT_MS:
        raise InvalidInput(
            field, f"{ms} ms is not an instant between the years 1 and 9999", "use UTC epoch ms"
        )
    return ms


def to_ms(value: datetime, field: str = "instant") -> int:
    """Convert an aware datetime to UTC epoch ms; a naive one is an error, not a guess."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidInput(
            field,
            f"naive datetime {value.isoformat()} has no time zone",
            "pass an aware datetime, e.g. datetime(..., tzinfo=ZoneInfo('Europe/Berlin'))",
        )
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime of an epoch-ms instant."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def iso(ms: int | None) -> str:
    """ISO-8601 UTC text of an instant, to the millisecond ('-' for None)."""
    if ms is None:
        return "-"
    text = from_ms(ms).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_instant(text: str, field: str = "instant") -> int:
    """Parse ISO-8601 text with an explicit offset or 'Z' into epoch ms."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            field, f"{text!r} is not an ISO-8601 instant", "use e.g. 2026-11-22T09:00:00Z"
        ) from None
    if value.utcoffset() is None:  # text gets text advice (to_ms's is for datetime objects)
        raise InvalidInput(
            field,
            f"{text!r} has no UTC offset, so it is ambiguous (a naive time)",
            "add an offset like 2026-01-01T00:00:00+00:00 or Z",
        )
    return to_ms(value, field)


def as_instant(value: object, field: str) -> Any:
    """For attrs converters: an aware datetime or ISO text becomes epoch ms (an error names
    `field`); anything else is left as it is, for validation to name."""
    if type(value) is int:
        return value
    if isinstance(value, datetime):
        return to_ms(value, field)
    if isinstance(value, str):
        return parse_instant(value, field)
    return value
