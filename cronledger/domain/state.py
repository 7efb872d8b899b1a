"""The snapshot: the read model every decision reads (built by projectors/snapshot.py).

Maps are `immutables.Map` (a HAMT: O(log32 n) persistent updates) and the two orderings the
planner needs, due time and dispatch order, are `SortedKeys`; so folding one event touches a
handful of nodes, old snapshots stay valid, and a tick reads only the front of each index.
"""

from __future__ import annotations

from enum import StrEnum

import attrs
from immutables import Map

from cronledger.domain.sorted_keys import SortedKeys
from cronledger.domain.values import Options, ScheduleSpec, Target


class EntryStatus(StrEnum):
    """Queue entry status (SEMANTICS §5); Completed entries leave the queue read model."""

    PENDING = "pending"
    ASSIGNED = "assigned"
    HELD = "held"
    COMPLETED = "completed"


@attrs.frozen(kw_only=True, slots=False)
class ScheduleState:
    """One schedule's spec and where it stands (SEMANTICS §2)."""

    spec: ScheduleSpec
    next_fire_at: int | None
    due_at: int | None
    added_at: int
    paused: bool = False
    last_fired_for: int | None = None
    last_outcome: str | None = None
    deferred_since: int | None = None
    deferred_until: int | None = None
    consecutive_failures: int = 0
    fire_count: int = 0

    @property
    def fires_remaining(self) -> int | None:
        limit = self.spec.fire_limit
        return None if limit is None else max(0, limit - self.fire_count)

    @property
    def complete(self) -> bool:
        return self.next_fire_at is None or self.fires_remaining == 0

    @property
    def upcoming_fire_at(self) -> int | None:
        """The next fire time to show: None once complete (`next_fire_at` keeps the trigger's
        place after the last fire `fire_limit` allows)."""
        return None if self.complete else self.next_fire_at

    @property
    def upcoming_due_at(self) -> int | None:
        """`due_at` (the next fire with its jitter), None once complete."""
        return None if self.complete else self.due_at

    @property
    def wake_at(self) -> int | None:
        """When the planner must look at this schedule next (None: never, until changed)."""
        if self.paused or self.complete or self.due_at is None:
            return None
        if self.deferred_until is not None and self.deferred_until > self.due_at:
            return self.deferred_until
        return self.due_at


@attrs.frozen(kw_only=True, slots=False)
class Entry:
    """A dispatch queue entry: one task, run once per attempt."""

    id: str
    seq: int
    schedule_id: str | None
    target: Target
    priority: int
    status: EntryStatus
    queued_at: int
    principal: str
    max_attempts: int
    backoff_ms: int
    max_backoff_ms: int
    timeout_ms: int | None
    nominal: int | None = None
    hold_reason: str | None = None
    attempt: int = 1
    not_before: int | None = None
    run_id: str | None = None

    @property
    def ready_key(self) -> tuple[int, int, str]:
        """Dispatch order: priority (higher first), then enqueue sequence (FIFO)."""
        return (-self.priority, self.seq, self.id)


@attrs.frozen(kw_only=True, slots=False)
class ActiveRun:
    """A run that is Assigned or running (or being cancelled) until its exit is reconciled."""

    run_id: str
    entry_id: str
    schedule_id: str | None
    attempt: int
    assigned_at: int
    deadline: int | None
    call: str | None = None
    started_at: int | None = None
    pid: int | None = None
    fallback: bool = False
    cancelling: str | None = None
    node: str | None = None  # RunAssigned.node


@attrs.frozen(kw_only=True, slots=False)
class Counters:
    """Health counters folded from the facts."""

    ticks: int = 0
    last_tick_at: int | None = None
    fires: int = 0
    manual_fires: int = 0
    skipped: int = 0
    coalesced: int = 0
    deferred: int = 0
    missed: int = 0
    assigned: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0
    retries: int = 0
    cancelled: int = 0


NO_COUNTS = Counters()
DEFAULT_OPTIONS = Options()


@attrs.frozen(kw_only=True, slots=False)
class Snapshot:
    """Everything the planner reads; equal for the live engine and a replay of the same events."""

    position: int = 0
    options: Options = DEFAULT_OPTIONS
    schedules: Map[str, ScheduleState] = attrs.field(factory=Map)
    due: SortedKeys[tuple[int, str]] = attrs.field(factory=SortedKeys)
    entries: Map[str, Entry] = attrs.field(factory=Map)
    ready: SortedKeys[tuple[int, int, str]] = attrs.field(factory=SortedKeys)
    delayed: SortedKeys[tuple[int, int, str]] = attrs.field(factory=SortedKeys)
    open_by_schedule: Map[str, tuple[str, ...]] = attrs.field(factory=Map)
    runs: Map[str, ActiveRun] = attrs.field(factory=Map)
    fallback_active: int = 0
    requests: tuple[tuple[str, str], ...] = ()
    seq: int = 0
    counters: Counters = NO_COUNTS

    def open_entries(self, schedule_id: str) -> list[Entry]:
        """Entries of a schedule that are not completed, in enqueue order."""
        return [self.entries[e] for e in self.open_by_schedule.get(schedule_id, ())]

    @property
    def active(self) -> int:
        """Assigned and running entries, including runs being cancelled (SEMANTICS §6)."""
        return len(self.runs)


EMPTY = Snapshot()
