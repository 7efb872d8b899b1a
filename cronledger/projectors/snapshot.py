"""The snapshot projector: `apply(snapshot, event) -> snapshot`, a pure fold.

The live engine and a replay call the same function; an event it does not handle leaves the
snapshot unchanged except for its position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import reduce
from typing import Any

from cronledger.domain import events as ev
from cronledger.domain.evolve import evolve
from cronledger.domain.state import (
    EMPTY,
    ActiveRun,
    Entry,
    EntryStatus,
    ScheduleState,
    Snapshot,
)

Handler = Callable[[Snapshot, Any], Snapshot]
_HANDLERS: dict[type, Handler] = {}


def _on(cls: type) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _HANDLERS[cls] = fn
        return fn

    return register


def apply(snapshot: Snapshot, event: ev.Event) -> Snapshot:
    """Fold one event into the snapshot (position advances by one)."""
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        snapshot = handler(snapshot, event)
    return evolve(snapshot, position=snapshot.position + 1)


def apply_all(snapshot: Snapshot, events: Iterable[ev.Event]) -> Snapshot:
    """Fold many events."""
    return reduce(apply, events, snapshot)


def project(events: Iterable[ev.Event]) -> Snapshot:
    """The snapshot after `events`, from empty."""
    return apply_all(EMPTY, events)


# --- helpers --------------------------------------------------------------------------------


def _put_schedule(s: Snapshot, old: ScheduleState | None, new: ScheduleState) -> Snapshot:
    sid = new.spec.id
    old_key = (old.wake_at, sid) if old is not None and old.wake_at is not None else None
    new_key = (new.wake_at, sid) if new.wake_at is not None else None
    return evolve(s, schedules=s.schedules.set(sid, new), due=s.due.replace(old_key, new_key))


def _advance(
    s: Snapshot, schedule_id: str, next_fire_at: int | None, due_at: int | None, **changes: Any
) -> Snapshot:
    old = s.schedules.get(schedule_id)
    if old is None:
        return s
    new = evolve(
        old,
        next_fire_at=next_fire_at,
        due_at=due_at,
        deferred_since=None,
        deferred_until=None,
        **changes,
    )
    return _put_schedule(s, old, new)


def _drop_request(s: Snapshot, request_id: str | None) -> Snapshot:
    if request_id is None:
        return s
    return evolve(s, requests=tuple(r for r in s.requests if r[0] != request_id))


def _index_entry(s: Snapshot, entry: Entry) -> Snapshot:
    """Put a Pending entry in the ready index, or the delayed one while it waits for not_before."""
    if entry.status is not EntryStatus.PENDING:
        return s
    if entry.not_before is not None:
        return evolve(s, delayed=s.delayed.add((entry.not_before, entry.seq, entry.id)))
    return evolve(s, ready=s.ready.add(entry.ready_key))


def _unindex_entry(s: Snapshot, entry: Entry) -> Snapshot:
    if entry.status is not EntryStatus.PENDING:
        return s
    if entry.not_before is not None:
        return evolve(s, delayed=s.delayed.remove((entry.not_before, entry.seq, entry.id)))
    return evolve(s, ready=s.ready.remove(entry.ready_key))


def _add_entry(s: Snapshot, entry: Entry) -> Snapshot:
    s = evolve(s, entries=s.entries.set(entry.id, entry), seq=entry.seq)
    if entry.schedule_id is not None:
        opened = s.open_by_schedule.get(entry.schedule_id, ())
        s = evolve(
            s, open_by_schedule=s.open_by_schedule.set(entry.schedule_id, (*opened, entry.id))
        )
    return _index_entry(s, entry)


def _replace_entry(s: Snapshot, old: Entry, new: Entry) -> Snapshot:
    s = _unindex_entry(s, old)
    s = evolve(s, entries=s.entries.set(new.id, new))
    return _index_entry(s, new)


def _remove_entry(s: Snapshot, entry_id: str) -> Snapshot:
    entry = s.entries.get(entry_id)
    if entry is None:
        return s
    s = _unindex_entry(s, entry)
    s = evolve(s, entries=s.entries.delete(entry_id))
    sid = entry.schedule_id
    if sid is not None:
        remaining = tuple(e for e in s.open_by_schedule.get(sid, ()) if e != entry_id)
        if remaining:
            s = evolve(s, open_by_schedule=s.open_by_schedule.set(sid, remaining))
        elif sid in s.open_by_schedule:
            s = evolve(s, open_by_schedule=s.open_by_schedule.delete(sid))
    return s


def _end_run(s: Snapshot, run_id: str) -> tuple[Snapshot, ActiveRun | None]:
    run = s.runs.get(run_id)
    if run is None:
        return s, None
    fallback = s.fallback_active - (1 if run.fallback else 0)
    return evolve(s, runs=s.runs.delete(run_id), fallback_active=fallback), run


def _record_outcome(s: Snapshot, run: ActiveRun | None, outcome: str, failed: bool) -> Snapshot:
    if run is None or run.schedule_id is None:
        return s
    old = s.schedules.get(run.schedule_id)
    if old is None:
        return s
    failures = old.consecutive_failures + 1 if failed else 0
    new = evolve(old, last_outcome=outcome, consecutive_failures=failures)
    return evolve(s, schedules=s.schedules.set(run.schedule_id, new))


def _count(s: Snapshot, **deltas: int) -> Snapshot:
    c = s.counters
    return evolve(s, counters=evolve(c, **{k: getattr(c, k) + v for k, v in deltas.items()}))


# --- schedules ------------------------------------------------------------------------------


@_on(ev.ScheduleAdded)
def _schedule_added(s: Snapshot, e: ev.ScheduleAdded) -> Snapshot:
    new = ScheduleState(spec=e.spec, next_fire_at=e.next_fire_at, due_at=e.due_at, added_at=e.at)
    return _put_schedule(s, s.schedules.get(e.spec.id), new)


@_on(ev.ScheduleUpdated)
def _schedule_updated(s: Snapshot, e: ev.ScheduleUpdated) -> Snapshot:
    old = s.schedules.get(e.spec.id)
    if old is None:
        return s
    new = evolve(
        old,
        spec=e.spec,
        next_fire_at=e.next_fire_at,
        due_at=e.due_at,
        deferred_since=None,
        deferred_until=None,
    )
    return _put_schedule(s, old, new)


@_on(ev.SchedulePaused)
def _schedule_paused(s: Snapshot, e: ev.SchedulePaused) -> Snapshot:
    old = s.schedules.get(e.schedule_id)
    if old is None:
        return s
    return _put_schedule(s, old, evolve(old, paused=True))


@_on(ev.ScheduleResumed)
def _schedule_resumed(s: Snapshot, e: ev.ScheduleResumed) -> Snapshot:
    return _advance(s, e.schedule_id, e.next_fire_at, e.due_at, paused=False)


@_on(ev.ScheduleRemoved)
def _schedule_removed(s: Snapshot, e: ev.ScheduleRemoved) -> Snapshot:
    old = s.schedules.get(e.schedule_id)
    if old is None:
        return s
    sid = e.schedule_id
    due = s.due.remove((old.wake_at, sid)) if old.wake_at is not None else s.due
    requests = tuple(r for r in s.requests if r[1] != sid)
    # Runs still going belong to no schedule now, so a schedule re-added under the same id
    # starts with a clean slate.
    entries, runs = s.entries, s.runs
    for entry_id in s.open_by_schedule.get(sid, ()):
        entry = entries[entry_id]
        entries = entries.set(entry_id, evolve(entry, schedule_id=None))
        run = runs.get(entry.run_id) if entry.run_id is not None else None
        if run is not None:
            runs = runs.set(run.run_id, evolve(run, schedule_id=None))
    opened = s.open_by_schedule.delete(sid) if sid in s.open_by_schedule else s.open_by_schedule
    return evolve(
        s,
        schedules=s.schedules.delete(sid),
        due=due,
        requests=requests,
        entries=entries,
        runs=runs,
        open_by_schedule=opened,
    )


@_on(ev.TriggerRequested)
def _trigger_requested(s: Snapshot, e: ev.TriggerRequested) -> Snapshot:
    return evolve(s, requests=(*s.requests, (e.request_id, e.schedule_id)))


@_on(ev.OptionsChanged)
def _options_changed(s: Snapshot, e: ev.OptionsChanged) -> Snapshot:
    return evolve(s, options=e.options)


@_on(ev.TickStarted)
def _tick_started(s: Snapshot, e: ev.TickStarted) -> Snapshot:
    c = s.counters
    return evolve(s, counters=evolve(c, ticks=e.tick, last_tick_at=e.at))


# --- fires ----------------------------------------------------------------------------------


@_on(ev.FireRecorded)
def _fire_recorded(s: Snapshot, e: ev.FireRecorded) -> Snapshot:
    state = s.schedules.get(e.schedule_id)
    if state is None:
        return s
    spec = state.spec
    if e.request_id is None:
        s = _advance(
            s,
            e.schedule_id,
            e.next_fire_at,
            e.due_at,
            last_fired_for=e.nominal,
            fire_count=state.fire_count + 1,
        )
        s = _count(s, fires=1)
    else:
        s = _drop_request(s, e.request_id)
        s = _count(s, fires=1, manual_fires=1)
    entry = Entry(
        id=e.entry_id,
        seq=s.seq + 1,
        schedule_id=e.schedule_id,
        target=spec.target,
        priority=spec.priority,
        status=EntryStatus.HELD if e.hold else EntryStatus.PENDING,
        hold_reason=e.hold,
        queued_at=e.at,
        principal=spec.principal,
        max_attempts=spec.retry.max_attempts,
        backoff_ms=spec.retry.backoff_ms,
        max_backoff_ms=spec.retry.max_backoff_ms,
        timeout_ms=spec.timeout_ms,
        nominal=e.nominal,
    )
    return _add_entry(s, entry)


def _fire_without_run(s: Snapshot, e: ev.FireSkipped | ev.FireCoalesced) -> Snapshot:
    if e.request_id is None:
        return _advance(s, e.schedule_id, e.next_fire_at, e.due_at)
    return _drop_request(s, e.request_id)


@_on(ev.FireSkipped)
def _fire_skipped(s: Snapshot, e: ev.FireSkipped) -> Snapshot:
    return _count(_fire_without_run(s, e), skipped=1)


@_on(ev.FireCoalesced)
def _fire_coalesced(s: Snapshot, e: ev.FireCoalesced) -> Snapshot:
    return _count(_fire_without_run(s, e), coalesced=1)


@_on(ev.FireDeferred)
def _fire_deferred(s: Snapshot, e: ev.FireDeferred) -> Snapshot:
    old = s.schedules.get(e.schedule_id)
    if old is None:
        return s
    since = old.deferred_since if old.deferred_since is not None else e.at
    s = _put_schedule(s, old, evolve(old, deferred_since=since, deferred_until=e.until))
    return _count(s, deferred=1)


@_on(ev.FireMissed)
def _fire_missed(s: Snapshot, e: ev.FireMissed) -> Snapshot:
    return _count(_advance(s, e.schedule_id, e.next_fire_at, e.due_at), missed=e.count)


# --- the queue ------------------------------------------------------------------------------


@_on(ev.EntryQueued)
def _entry_queued(s: Snapshot, e: ev.EntryQueued) -> Snapshot:
    entry = Entry(
        id=e.entry_id,
        seq=s.seq + 1,
        schedule_id=None,
        target=e.target,
        priority=e.priority,
        status=EntryStatus.HELD if e.hold else EntryStatus.PENDING,
        hold_reason=e.hold,
        queued_at=e.at,
        principal=e.principal,
        max_attempts=e.max_attempts,
        backoff_ms=e.backoff_ms,
        max_backoff_ms=e.max_backoff_ms,
        timeout_ms=e.timeout_ms,
    )
    return _add_entry(s, entry)


@_on(ev.EntryHeld)
def _entry_held(s: Snapshot, e: ev.EntryHeld) -> Snapshot:
    old = s.entries.get(e.entry_id)
    if old is None or old.status is not EntryStatus.PENDING:
        return s
    return _replace_entry(s, old, evolve(old, status=EntryStatus.HELD, hold_reason=e.reason))


@_on(ev.EntryReleased)
def _entry_released(s: Snapshot, e: ev.EntryReleased) -> Snapshot:
    old = s.entries.get(e.entry_id)
    if old is None or old.status is not EntryStatus.HELD:
        return s
    return _replace_entry(s, old, evolve(old, status=EntryStatus.PENDING, hold_reason=None))


@_on(ev.EntryCancelled)
def _entry_cancelled(s: Snapshot, e: ev.EntryCancelled) -> Snapshot:
    return _count(_remove_entry(s, e.entry_id), cancelled=1)


# --- runs -----------------------------------------------------------------------------------


@_on(ev.RunAssigned)
def _run_assigned(s: Snapshot, e: ev.RunAssigned) -> Snapshot:
    entry = s.entries.get(e.entry_id)
    if entry is None:
        return s
    s = _replace_entry(
        s,
        entry,
        evolve(
            entry, status=EntryStatus.ASSIGNED, run_id=e.run_id, attempt=e.attempt, not_before=None
        ),
    )
    run = ActiveRun(
        run_id=e.run_id,
        entry_id=e.entry_id,
        schedule_id=entry.schedule_id,
        attempt=e.attempt,
        assigned_at=e.at,
        deadline=e.deadline,
    )
    return _count(evolve(s, runs=s.runs.set(e.run_id, run)), assigned=1)


@_on(ev.RunStarted)
def _run_started(s: Snapshot, e: ev.RunStarted) -> Snapshot:
    run = s.runs.get(e.run_id)
    if run is None:
        return s
    started = evolve(run, started_at=e.at, pid=e.pid, fallback=e.fallback)
    fallback = s.fallback_active + (1 if e.fallback and not run.fallback else 0)
    return evolve(s, runs=s.runs.set(e.run_id, started), fallback_active=fallback)


@_on(ev.RunCancelled)
def _run_cancelled(s: Snapshot, e: ev.RunCancelled) -> Snapshot:
    run = s.runs.get(e.run_id)
    if run is None:
        return s
    return evolve(s, runs=s.runs.set(e.run_id, evolve(run, cancelling=e.reason)))


@_on(ev.RunSucceeded)
def _run_succeeded(s: Snapshot, e: ev.RunSucceeded) -> Snapshot:
    s, run = _end_run(s, e.run_id)
    s = _record_outcome(s, run, "succeeded", failed=False)
    return _count(_remove_entry(s, e.entry_id), succeeded=1)


def _run_ended_badly(
    s: Snapshot,
    run_id: str,
    entry_id: str,
    outcome: str,
    final: bool,
) -> Snapshot:
    s, run = _end_run(s, run_id)
    s = _record_outcome(s, run, outcome, failed=outcome != "cancelled")
    if final:
        return _remove_entry(s, entry_id)
    entry = s.entries.get(entry_id)
    if entry is None:
        return s
    return evolve(s, entries=s.entries.set(entry_id, evolve(entry, run_id=None)))


@_on(ev.RunFailed)
def _run_failed(s: Snapshot, e: ev.RunFailed) -> Snapshot:
    outcome = "cancelled" if e.reason == "cancelled" else "failed"
    return _count(_run_ended_badly(s, e.run_id, e.entry_id, outcome, e.final), failed=1)


@_on(ev.RunLost)
def _run_lost(s: Snapshot, e: ev.RunLost) -> Snapshot:
    return _count(_run_ended_badly(s, e.run_id, e.entry_id, "lost", e.final), lost=1)


@_on(ev.RetryPlanned)
def _retry_planned(s: Snapshot, e: ev.RetryPlanned) -> Snapshot:
    entry = s.entries.get(e.entry_id)
    if entry is None:
        return s
    new = evolve(
        entry, status=EntryStatus.PENDING, attempt=e.attempt, not_before=e.not_before, run_id=None
    )
    s = evolve(s, entries=s.entries.set(e.entry_id, new))
    return _count(_index_entry(s, new), retries=1)
