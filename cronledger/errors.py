"""One exception hierarchy for cronledger: bad input and broken infrastructure.

Business outcomes (a skipped fire, a full queue) are facts, never exceptions.
"""

from __future__ import annotations


class CronledgerError(Exception):
    """Base of every error cronledger raises on purpose."""


class InvalidInput(CronledgerError, ValueError):
    """Input that cannot be accepted; names the field and says what to fix."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        text = f"{field}: {problem}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class UnknownSchedule(CronledgerError, KeyError):
    """A schedule id that the ledger does not know."""

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(schedule_id)

    def __str__(self) -> str:
        return f"unknown schedule {self.schedule_id!r} (see `cronledger list` for the ids)"


class DuplicateSchedule(CronledgerError, ValueError):
    """A schedule id that is already taken."""

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(
            f"schedule {schedule_id!r} already exists (use update, or remove it first)"
        )


class UnknownEntry(CronledgerError, KeyError):
    """A queue entry or run id that the state does not know."""

    def __init__(self, entry_id: str) -> None:
        self.entry_id = entry_id
        super().__init__(entry_id)

    def __str__(self) -> str:
        return (
            f"unknown queue entry or run {self.entry_id!r} (queued and running entries: "
            "`cronledger status`; an entry that ended has left the queue)"
        )


class LedgerError(CronledgerError):
    """The ledger cannot be opened, read or written."""


class StateDirError(CronledgerError, OSError):
    """The state dir (the run files' directory) cannot be made or used: an operation that
    failed (exit 1); the message names the directory, the system's reason and the fix."""

    def __str__(self) -> str:
        return str(self.strerror)


class LedgerUnavailable(LedgerError):
    """The ledger's database failed while in use, or its server could not be reached: an
    operation that failed (exit 1), not bad input."""


class LedgerConflict(LedgerError):
    """Another writer appended first: reload the state and decide again."""

    def __init__(self, expected: int, actual: int | None = None) -> None:
        self.expected = expected
        self.actual = actual
        where = f"; the ledger is at {actual}" if actual is not None else ""
        super().__init__(f"ledger conflict: expected position {expected}{where}")


class LedgerCorrupted(LedgerError):
    """A stored event cannot be decoded; names its ledger position."""

    def __init__(self, position: int, problem: str) -> None:
        self.position = position
        self.problem = problem
        super().__init__(f"ledger position {position}: {problem}")


class DaemonRunning(CronledgerError):
    """Another daemon runs on this ledger under the same node name (or unnamed)."""

    def __init__(self, node: str | None, message: str | None = None) -> None:
        self.node = node
        who = f"as node {node!r}" if node else "unnamed (without --node)"
        super().__init__(
            message
            or f"another daemon is running on this ledger {who}: stop it first, or give each "
            "daemon its own name with --node NAME (Engine(node=...), cronledger.open(node=...))"
        )


class ClaimLost(DaemonRunning):
    """A running daemon's claim on its node name was lost (its PostgreSQL connection dropped)
    and another daemon took the name meanwhile: this one stops."""

    def __init__(self, node: str | None) -> None:
        who = f"node {node!r}" if node else "the unnamed daemon"
        super().__init__(
            node,
            f"this daemon lost its claim as {who} on the ledger (its connection dropped) and "
            "another daemon took the name meanwhile: stopping. The runs it started go on, and "
            "that daemon adopted them when it started: from the same state dir it watches them; "
            "from another one it cannot see them and recorded them lost (their retries may run "
            "beside them)",
        )
