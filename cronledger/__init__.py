"""cronledger: an event-sourced scheduling engine.

    import cronledger
    with cronledger.open("sqlite:///cronledger.db") as scheduler:
        scheduler.add("backup", cronledger.Cron("30 2 * * *", "Europe/Berlin"),
                      cronledger.Command(["backup", "--run", "{run_id}"]))
        scheduler.run()

The names below are the public API; everything else is private. `cronledger.testing` holds a
fake clock, a fake runner and Hypothesis strategies for testing your own schedules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cronledger.api import Duration, Instant, Scheduler, TriggerLike, open
from cronledger.domain.health import Health
from cronledger.domain.hours import Window
from cronledger.domain.state import ActiveRun, Entry, EntryStatus, ScheduleState, Snapshot
from cronledger.domain.triggers import At, Cron, Every, Trigger
from cronledger.domain.values import (
    Call,
    Command,
    ConcurrencyPolicy,
    MisfirePolicy,
    Options,
    Retry,
    ScheduleSpec,
    Target,
)
from cronledger.errors import (
    ClaimLost,
    CronledgerError,
    DaemonRunning,
    DuplicateSchedule,
    InvalidInput,
    LedgerConflict,
    LedgerCorrupted,
    LedgerError,
    LedgerUnavailable,
    StateDirError,
    UnknownEntry,
    UnknownSchedule,
)

if TYPE_CHECKING:
    __version__: str
    from cronledger.domain.tick import TickSummary
    from cronledger.domain.verify import VerifyReport
    from cronledger.projectors.history import RunRecord

__all__ = [
    "ActiveRun",
    "At",
    "Call",
    "Command",
    "ConcurrencyPolicy",
    "CronledgerError",
    "Cron",
    "ClaimLost",
    "DaemonRunning",
    "DuplicateSchedule",
    "Duration",
    "Entry",
    "EntryStatus",
    "Every",
    "Health",
    "Instant",
    "InvalidInput",
    "LedgerConflict",
    "LedgerCorrupted",
    "LedgerError",
    "LedgerUnavailable",
    "MisfirePolicy",
    "Options",
    "Retry",
    "RunRecord",
    "ScheduleSpec",
    "ScheduleState",
    "Scheduler",
    "Snapshot",
    "StateDirError",
    "Target",
    "TickSummary",
    "Trigger",
    "TriggerLike",
    "UnknownEntry",
    "UnknownSchedule",
    "VerifyReport",
    "Window",
    "__version__",
    "open",
]

# Loaded on first use (PEP 562): they pull in the tick planner, verify and importlib.metadata.
_LAZY = {
    "RunRecord": "cronledger.projectors.history",
    "TickSummary": "cronledger.domain.tick",
    "VerifyReport": "cronledger.domain.verify",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value: object = getattr(importlib.import_module(_LAZY[name]), name)
    elif name == "__version__":
        value = _version()
    else:
        raise AttributeError(f"module 'cronledger' has no attribute {name!r}")
    globals()[name] = value
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cronledger")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
