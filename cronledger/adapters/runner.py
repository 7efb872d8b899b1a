"""The runner port: carries out StartRun/CancelRun and reports what it observed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from cronledger.domain.commands import RunnerCommand
from cronledger.domain.values import RunExit


@attrs.frozen
class Started:
    """An observation: the run's process (or thread) is running."""

    run_id: str
    pid: int | None = None
    fallback: bool = False


class Runner(Protocol):
    def carry_out(self, commands: Sequence[RunnerCommand], now: int) -> list[Started]:
        """Start and cancel runs; the runs that did start (spawn failures show up as exits)."""
        ...

    def poll(self, now: int) -> list[RunExit]:
        """Exits observed since the last poll, each reported once."""
        ...
