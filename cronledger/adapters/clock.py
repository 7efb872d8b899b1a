"""Clocks: the only place the engine reads the time. Tests use FakeClock."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol

from cronledger.domain.instants import to_ms


class Clock(Protocol):
    def now(self) -> int:
        """UTC epoch milliseconds."""
        ...


class SystemClock:
    """The wall clock, in UTC epoch milliseconds."""

    def now(self) -> int:
        return time.time_ns() // 1_000_000


class FakeClock:
    """A virtual clock that only moves when told to, and never backwards."""

    def __init__(self, start: int | datetime = 1_767_225_600_000) -> None:
        self._now = start if isinstance(start, int) else to_ms(start, "start")

    def now(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        if ms < 0:
            raise ValueError(f"a FakeClock never goes backwards (advance by {ms} ms)")
        self._now += ms
        return self._now

    def set(self, instant: int) -> int:
        if instant < self._now:
            raise ValueError(f"a FakeClock never goes backwards ({instant} < {self._now})")
        self._now = instant
        return self._now
