"""Task status projector: success -> done; failure with no retry left -> blocked."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from immutables import Map

from cronledger.domain import events as ev


class TaskStatus(StrEnum):
    PENDING = "pending"
    HELD = "held"
    ASSIGNED = "assigned"
    RUNNING = "running"
    RETRYING = "retrying"
    DONE = "done"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


TaskStatuses = Map[str, TaskStatus]


def apply(state: TaskStatuses, event: ev.Event) -> TaskStatuses:
    """Fold one event into the map entry id -> task status."""
    if isinstance(event, ev.FireRecorded):
        return state.set(event.entry_id, TaskStatus.HELD if event.hold else TaskStatus.PENDING)
    if isinstance(event, ev.EntryQueued):
        return state.set(event.entry_id, TaskStatus.HELD if event.hold else TaskStatus.PENDING)
    if isinstance(event, ev.EntryHeld):
        return state.set(event.entry_id, TaskStatus.HELD)
    if isinstance(event, ev.EntryReleased):
        return state.set(event.entry_id, TaskStatus.PENDING)
    if isinstance(event, ev.EntryCancelled):
        return state.set(event.entry_id, TaskStatus.CANCELLED)
    if isinstance(event, ev.RunAssigned):
        return state.set(event.entry_id, TaskStatus.ASSIGNED)
    if isinstance(event, ev.RunStarted):
        entry_id = event.run_id.rpartition("#")[0]
        if state.get(entry_id) is TaskStatus.ASSIGNED:
            return state.set(entry_id, TaskStatus.RUNNING)
        return state
    if isinstance(event, ev.RunSucceeded):
        return state.set(event.entry_id, TaskStatus.DONE)
    if isinstance(event, ev.RunFailed):
        if not event.final:
            return state.set(event.entry_id, TaskStatus.RETRYING)
        final = TaskStatus.CANCELLED if event.reason == "cancelled" else TaskStatus.BLOCKED
        return state.set(event.entry_id, final)
    if isinstance(event, ev.RunLost):
        return state.set(event.entry_id, TaskStatus.BLOCKED if event.final else TaskStatus.RETRYING)
    return state


def project(events: Iterable[ev.Event]) -> TaskStatuses:
    state: TaskStatuses = Map()
    for event in events:
        state = apply(state, event)
    return state
