"""Clocks: the only place the engine reads the time. Tests use FakeClock."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Protocol

from cronledger.domain.instants import to_ms


class Clock(Protocol):
    def now(self) -> int:
        """UTC epoch milliseconds."""
        ...

    def sleep_until(self, instant: int, wake: threading.Event) -> None:
        """Wait until `instant` or until `wake` is set (then clear it)."""
        ...


class SystemClock:
    """The wall clock, in UTC epoch milliseconds."""

    def now(self) -> int:
        return time.time_ns() // 1_000_000

    def sleep_until(self, instant: int, wake: threading.Event) -> None:
        wake.wait(max(0.0, (instant - self.now()) / 1000))
        wake.clear()


class FakeClock:
    """A virtual clock that only moves when told to, and never backwards."""

    def __init__(self, start: int | datetime = 1_767_225_600_000) -> None:
        self._now = start if isinstance(start, int) else to_ms(start, "start")

    def now(self) -> int:
        return self._now

    def sleep_until(self, instant: int, wake: threading.Event) -> None:
        """Virtual time: jump to `instant` at once, unless a wake-up is pending."""
        if wake.is_set():
            wake.clear()
            return
        self._now = max(self._now, instant)

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
