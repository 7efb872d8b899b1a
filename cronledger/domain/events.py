"""Events: the facts in the ledger, past tense; each carries `at`, its decision's clock reading.

Events are `attrs.frozen(slots=False)` because stored events are rebuilt by setting `__dict__`
(no `__init__`, so no validators on load: validate at the edge). A field added later gets a
default, the value payloads written before it read as; for any other schema change, bump
`class_version` and add an `upcast_vN_vN+1(state: dict)` static method.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from cronledger.domain.values import Options, RunExit, ScheduleSpec, Target


@attrs.frozen(kw_only=True, slots=False)
class Event:
    """Base of all facts."""

    class_version: ClassVar[int] = 1
    at: int


# --- schedules (appended by the API, one batch per command) ---------------------------------


@attrs.frozen(kw_only=True, slots=False)
class ScheduleAdded(Event):
    spec: ScheduleSpec
    next_fire_at: int | None
    due_at: int | None


@attrs.frozen(kw_only=True, slots=False)
class ScheduleUpdated(Event):
    spec: ScheduleSpec
    next_fire_at: int | None
    due_at: int | None


@attrs.frozen(kw_only=True, slots=False)
class SchedulePaused(Event):
    schedule_id: str
    reason: str = ""


@attrs.frozen(kw_only=True, slots=False)
class ScheduleResumed(Event):
    schedule_id: str
    next_fire_at: int | None
    due_at: int | None


@attrs.frozen(kw_only=True, slots=False)
class ScheduleRemoved(Event):
    schedule_id: str


@attrs.frozen(kw_only=True, slots=False)
class TriggerRequested(Event):
    """A manual trigger, durable at once; the next tick consumes it."""

    schedule_id: str
    request_id: str


@attrs.frozen(kw_only=True, slots=False)
class OptionsChanged(Event):
    options: Options
    changed: tuple[str, ...]


# --- the tick header ------------------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=False)
class TickStarted(Event):
    """Opens a tick's batch: its clock reading, the observations it consumed, its fact count,
    and the node that planned it (None: an engine without a node name, or an older version).
    A `reconcile_only` tick records exits and expired timeouts only (a daemon's start-up, the
    wait of `run --once`)."""

    tick: int
    exits: tuple[RunExit, ...]
    requests: tuple[str, ...]
    decisions: int
    node: str | None = None
    rules: int = 1  # the planner's rules (domain/reconcile.py RULES); 1 before they were kept
    reconcile_only: bool = False  # recorded exits only: nothing due evaluated, nothing dispatched


# --- due evaluation (§3, §4) ----------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=False)
class FireRecorded(Event):
    """A fire produced a queue entry (Pending, or Held when `hold` is set)."""

    schedule_id: str
    nominal: int
    entry_id: str
    represents: int
    late_ms: int
    hold: str | None
    request_id: str | None
    next_fire_at: int | None
    due_at: int | None


@attrs.frozen(kw_only=True, slots=False)
class FireSkipped(Event):
    schedule_id: str
    nominal: int
    reason: str
    request_id: str | None
    next_fire_at: int | None
    due_at: int | None


@attrs.frozen(kw_only=True, slots=False)
class FireCoalesced(Event):
    schedule_id: str
    nominal: int
    into_entry_id: str
    request_id: str | None
    next_fire_at: int | None
    due_at: int | None


@attrs.frozen(kw_only=True, slots=False)
class FireDeferred(Event):
    """A due fire outside the allowed hours; the schedule stays due until `until`."""

    schedule_id: str
    nominal: int
    until: int


@attrs.frozen(kw_only=True, slots=False)
class FireMissed(Event):
    """Fire times that produce no run (late under SKIP, or older than the catch-up window)."""

    schedule_id: str
    count: int
    first: int
    last: int
    grace_ms: int
    next_fire_at: int | None
    due_at: int | None


# --- the dispatch queue (§5) ----------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=False)
class EntryQueued(Event):
    """A task submitted without a schedule (the durable job queue)."""

    entry_id: str
    target: Target
    priority: int
    hold: str | None
    max_attempts: int
    backoff_ms: int
    max_backoff_ms: int
    timeout_ms: int | None
    principal: str


@attrs.frozen(kw_only=True, slots=False)
class EntryHeld(Event):
    entry_id: str
    reason: str


@attrs.frozen(kw_only=True, slots=False)
class EntryReleased(Event):
    entry_id: str
    reason: str


@attrs.frozen(kw_only=True, slots=False)
class EntryCancelled(Event):
    """A waiting entry that will never run (operator cancel, schedule removed)."""

    entry_id: str
    reason: str


# --- runs (§7, §8) --------------------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=False)
class RunAssigned(Event):
    """Write-ahead intent: durable before the process is spawned."""

    run_id: str
    entry_id: str
    attempt: int
    argv: tuple[str, ...]
    call: str | None
    deadline: int | None
    node: str | None = None  # the engine whose runner gets it: the one that adopts it later


@attrs.frozen(kw_only=True, slots=False)
class RunStarted(Event):
    run_id: str
    pid: int | None
    fallback: bool


@attrs.frozen(kw_only=True, slots=False)
class RunCancelled(Event):
    """The run is being stopped (replaced, timeout, operator); it stays active until it exits."""

    run_id: str
    reason: str


@attrs.frozen(kw_only=True, slots=False)
class RunSucceeded(Event):
    """The output tails are bounded (the `output_tail_bytes` option), with the bytes dropped
    before them; `stdout_tail` None: no output was captured (a call, or an older ledger, whose
    counts are None too)."""

    run_id: str
    entry_id: str
    exit_code: int
    duration_ms: int
    stderr_tail: str
    stdout_tail: str | None = None
    stdout_dropped: int | None = None
    stderr_dropped: int | None = None


@attrs.frozen(kw_only=True, slots=False)
class RunFailed(Event):
    """`final` is True when no retry follows: the task is blocked (or cancelled). Output as
    for RunSucceeded."""

    run_id: str
    entry_id: str
    reason: str
    exit_code: int | None
    signal: int | None
    duration_ms: int
    stderr_tail: str
    error: str
    final: bool
    stdout_tail: str | None = None
    stdout_dropped: int | None = None
    stderr_dropped: int | None = None


@attrs.frozen(kw_only=True, slots=False)
class RunLost(Event):
    """A run the engine can no longer account for (e.g. its daemon died before it started)."""

    run_id: str
    entry_id: str
    detail: str
    final: bool


@attrs.frozen(kw_only=True, slots=False)
class RetryPlanned(Event):
    entry_id: str
    attempt: int
    not_before: int


ALL_EVENTS: tuple[type[Event], ...] = (
    ScheduleAdded,
    ScheduleUpdated,
    SchedulePaused,
    ScheduleResumed,
    ScheduleRemoved,
    TriggerRequested,
    OptionsChanged,
    TickStarted,
    FireRecorded,
    FireSkipped,
    FireCoalesced,
    FireDeferred,
    FireMissed,
    EntryQueued,
    EntryHeld,
    EntryReleased,
    EntryCancelled,
    RunAssigned,
    RunStarted,
    RunCancelled,
    RunSucceeded,
    RunFailed,
    RunLost,
    RetryPlanned,
)
