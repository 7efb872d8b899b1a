"""User commands -> facts: `handle(snapshot, command, now) -> events`, pure.

Bad input raises (cronledger.errors); a command that changes nothing returns no events.
"""

from __future__ import annotations

from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain import ids
from cronledger.domain.evolve import evolve
from cronledger.domain.jitter import due_at
from cronledger.domain.state import EntryStatus, ScheduleState, Snapshot
from cronledger.domain.triggers import Trigger, anchored, next_fire_after
from cronledger.domain.validation import (
    changed_fields,
    validate_options,
    validate_slots,
    validate_spec,
    validate_submit,
)
from cronledger.domain.values import ScheduleSpec
from cronledger.errors import DuplicateSchedule, InvalidInput, UnknownEntry, UnknownSchedule

Events = tuple[ev.Event, ...]


def _schedule(snapshot: Snapshot, schedule_id: str) -> ScheduleState:
    state = snapshot.schedules.get(schedule_id)
    if state is None:
        raise UnknownSchedule(schedule_id)
    return state


def _next(schedule_id: str, trigger: Trigger, jitter: int, after: int) -> tuple[int | None, ...]:
    nominal = next_fire_after(trigger, after)
    return nominal, due_at(schedule_id, nominal, jitter)


def _with_anchor(spec: ScheduleSpec, old: Trigger | None, now: int) -> ScheduleSpec:
    """`spec` with its trigger `anchored` (an `Every` given without an anchor)."""
    trigger = anchored(spec.trigger, now, old)
    return spec if trigger is spec.trigger else evolve(spec, trigger=trigger)


def handle(snapshot: Snapshot, command: cmd.UserCommand, now: int) -> Events:
    """The facts that carry out `command` at clock reading `now`."""
    if isinstance(command, cmd.AddSchedule):
        spec = _with_anchor(command.spec, None, now)
        validate_spec(spec, now_ms=now)
        if spec.id in snapshot.schedules:
            raise DuplicateSchedule(spec.id)
        if ids.is_task_id(spec.id):  # (explain NAME would find the task, not the schedule)
            raise InvalidInput(
                "id",
                f"{spec.id!r} has the form of a submitted task's id (task-N)",
                "choose another name, e.g. " + spec.id.replace("task-", "task_", 1),
            )
        nominal, due = _next(spec.id, spec.trigger, spec.jitter_ms, now)
        return (ev.ScheduleAdded(at=now, spec=spec, next_fire_at=nominal, due_at=due),)

    if isinstance(command, cmd.UpdateSchedule):
        old = _schedule(snapshot, command.spec.id)
        spec = _with_anchor(command.spec, old.spec.trigger, now)
        if spec == old.spec:
            return ()
        validate_spec(spec, now_ms=now, new_trigger=spec.trigger != old.spec.trigger)
        if spec.trigger == old.spec.trigger and spec.jitter_ms == old.spec.jitter_ms:
            nominal, due = old.next_fire_at, old.due_at
        else:
            nominal, due = _next(spec.id, spec.trigger, spec.jitter_ms, now)
        return (ev.ScheduleUpdated(at=now, spec=spec, next_fire_at=nominal, due_at=due),)

    if isinstance(command, cmd.PauseSchedule):
        state = _schedule(snapshot, command.schedule_id)
        if state.paused:
            return ()
        return (ev.SchedulePaused(at=now, schedule_id=command.schedule_id, reason=command.reason),)

    if isinstance(command, cmd.ResumeSchedule):
        state = _schedule(snapshot, command.schedule_id)
        if not state.paused:
            return ()
        # Fires that fell in the pause are not misfires: the pause was deliberate.
        if state.next_fire_at is not None and state.next_fire_at > now:
            nominal, due = state.next_fire_at, state.due_at
        else:
            spec = state.spec
            nominal, due = _next(spec.id, spec.trigger, spec.jitter_ms, now)
        return (
            ev.ScheduleResumed(
                at=now, schedule_id=command.schedule_id, next_fire_at=nominal, due_at=due
            ),
        )

    if isinstance(command, cmd.RemoveSchedule):
        _schedule(snapshot, command.schedule_id)
        waiting = [
            ev.EntryCancelled(at=now, entry_id=e.id, reason="schedule_removed")
            for e in snapshot.open_entries(command.schedule_id)
            if e.status in (EntryStatus.PENDING, EntryStatus.HELD)
        ]
        return (*waiting, ev.ScheduleRemoved(at=now, schedule_id=command.schedule_id))

    if isinstance(command, cmd.TriggerSchedule):
        _schedule(snapshot, command.schedule_id)
        request = ids.request_id(command.schedule_id, snapshot.position + 1)
        return (ev.TriggerRequested(at=now, schedule_id=command.schedule_id, request_id=request),)

    if isinstance(command, cmd.SubmitTask):
        return (_submit(snapshot, command, now),)

    if isinstance(command, cmd.HoldEntry):
        entry = snapshot.entries.get(command.entry_id)
        if entry is None:
            raise UnknownEntry(command.entry_id)
        if entry.status is not EntryStatus.PENDING:
            return ()
        return (ev.EntryHeld(at=now, entry_id=entry.id, reason=command.reason),)

    if isinstance(command, cmd.ReleaseEntry):
        entry = snapshot.entries.get(command.entry_id)
        if entry is None:
            raise UnknownEntry(command.entry_id)
        if entry.status is not EntryStatus.HELD:
            return ()
        return (ev.EntryReleased(at=now, entry_id=entry.id, reason=command.reason),)

    if isinstance(command, cmd.CancelEntry):
        entry = snapshot.entries.get(command.entry_id)
        if entry is None:
            raise UnknownEntry(command.entry_id)
        if entry.status is EntryStatus.ASSIGNED and entry.run_id is not None:
            # Running: the engine that records this stops it through its runner, and a daemon
            # that reads it from the ledger does the same; the exit is reconciled as cancelled.
            # (the reason is prefixed: "timeout" and "replaced" are the policies' own words)
            reason = "operator" if command.reason == "operator" else f"operator: {command.reason}"
            return (ev.RunCancelled(at=now, run_id=entry.run_id, reason=reason),)
        return (ev.EntryCancelled(at=now, entry_id=entry.id, reason=command.reason),)

    if isinstance(command, cmd.ChangeOptions):
        options = command.options
        if command.keep_draining:
            options = evolve(options, draining=snapshot.options.draining)
        validate_options(options)
        changed = changed_fields(snapshot.options, options)
        if not changed:
            return ()
        validate_slots(options, changed)
        return (ev.OptionsChanged(at=now, options=options, changed=changed),)

    raise InvalidInput("command", f"{command!r} is not a command", "see cronledger.commands")


def _submit(snapshot: Snapshot, command: cmd.SubmitTask, now: int) -> ev.EntryQueued:
    validate_submit(command)
    return ev.EntryQueued(
        at=now,
        entry_id=ids.task_entry_id(snapshot.position + 1),
        target=command.target,
        priority=command.priority,
        hold=command.hold,
        max_attempts=command.max_attempts,
        backoff_ms=command.backoff_ms,
        max_backoff_ms=command.max_backoff_ms,
        timeout_ms=command.timeout_ms,
        principal=command.principal,
    )
