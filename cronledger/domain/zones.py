"""Time-zone arithmetic shared by triggers and hours windows: offsets and their changes."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


def seconds(delta: timedelta | None) -> int:
    """A UTC offset in whole seconds (0 for None)."""
    return 0 if delta is None else delta.days * 86_400 + delta.seconds


def offset_at(tz: ZoneInfo, epoch_s: int) -> int:
    """The zone's UTC offset, in seconds, at an instant."""
    return seconds(datetime.fromtimestamp(epoch_s, tz).utcoffset())


def offset_change(tz: ZoneInfo, low: int, high: int, old_offset: int) -> int:
    """The instant (epoch s) in (low, high] where the offset leaves `old_offset` (bisection;
    assumes one change in the interval)."""
    while high - low > 1:
        mid = (low + high) // 2
        if offset_at(tz, mid) == old_offset:
            low = mid
        else:
            high = mid
    return high
