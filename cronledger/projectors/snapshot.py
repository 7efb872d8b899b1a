"""The snapshot projector: `apply(snapshot, event) -> snapshot`, a pure fold.

The live engine and a replay call the same handlers. For speed, a fold copies the snapshot's
fields once into a private draft (a dict no one else sees), handlers update the draft, and the
draft becomes the new snapshot: the input snapshot is never changed. `apply_all` folds a whole
batch into one draft, and the draft collects the edits of the three sorted indexes to apply them
once at the end (a tick's batch moves thousands of keys). A replay from empty (`project`) skips
the upkeep of the indexes and builds them once at the end; tests check it equals the
incrementally kept state.
An event no handler knows only moves the position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs
from immutables import Map

from cronledger.domain import events as ev
from cronledger.domain.evolve import build, evolve, make
from cronledger.domain.sorted_keys import SortedKeys
from cronledger.domain.state import (
    EMPTY,
    ActiveRun,
    Counters,
    Entry,
    EntryStatus,
    ScheduleState,
    Snapshot,
)

Draft = dict[str, Any]
Handler = Callable[[Draft, Any], None]
_HANDLERS: dict[type, Handler] = {}


def _on(cls: type) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _HANDLERS[cls] = fn
        return fn

    return register


def apply(snapshot: Snapshot, event: ev.Event) -> Snapshot:
    """Fold one event into the snapshot (position advances by one)."""
    d: Draft = snapshot.__dict__.copy()
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(d, event)
    d["position"] = snapshot.position + 1
    return _finish(d)


def apply_all(
    snapshot: Snapshot, events: Iterable[ev.Event], *, rebuild_indexes: bool = False
) -> Snapshot:
    """Fold many events into one new snapshot.

    With `rebuild_indexes`, the due/ready/delayed indexes are built once at the end instead of
    being kept up to date event by event (for long replays).
    """
    d: Draft = snapshot.__dict__.copy()
    if rebuild_indexes:
        d["due"] = d["ready"] = d["delayed"] = None
        for name in _MAPS:  # a long fold works on plain dicts, made persistent at the end
            d[name] = dict(d[name].items())
    handlers = _HANDLERS
    position = snapshot.position
    for event in events:
        handler = handlers.get(type(event))
        if handler is not None:
            handler(d, event)
        position += 1
    d["position"] = position
    if rebuild_indexes:
        _rebuild_indexes(d)
    return _finish(d)


def project(events: Iterable[ev.Event]) -> Snapshot:
    """The snapshot after `events`, from empty."""
    return apply_all(EMPTY, events, rebuild_indexes=True)


def rebuild_indexes(snapshot: Snapshot) -> Snapshot:
    """The same snapshot with its due/ready/delayed indexes built from the records."""
    d: Draft = snapshot.__dict__.copy()
    _rebuild_indexes(d)
    return build(Snapshot, d)


def _rebuild_indexes(d: Draft) -> None:
    _finish_maps(d)
    d["due"] = SortedKeys.of(
        (s.wake_at, sid) for sid, s in d["schedules"].items() if s.wake_at is not None
    )
    pending = [e for e in d["entries"].values() if e.status is EntryStatus.PENDING]
    d["ready"] = SortedKeys.of(e.ready_key for e in pending if e.not_before is None)
    d["delayed"] = SortedKeys.of(
        (e.not_before, e.seq, e.id) for e in pending if e.not_before is not None
    )


# --- helpers on the draft -------------------------------------------------------------------

# The declared defaults, in the order `make` puts them first: the hot handlers build records
# from a copy of these instead of calling `make` (same fields, same order).
_ENTRY_DEFAULTS: dict[str, Any] = {
    a.name: a.default for a in attrs.fields(Entry) if a.default is not attrs.NOTHING
}
_RUN_DEFAULTS: dict[str, Any] = {
    a.name: a.default for a in attrs.fields(ActiveRun) if a.default is not attrs.NOTHING
}


def _count(d: Draft, name: str, delta: int = 1) -> None:
    """Add to a health counter; `_finish` folds the sums into Counters once per batch."""
    sums = d.get("_counts")
    if sums is None:
        d["_counts"] = {name: delta}
    else:
        sums[name] = sums.get(name, 0) + delta


def _finish_counts(d: Draft) -> None:
    sums = d.pop("_counts", None)
    if sums:
        counts = d["counters"].__dict__.copy()
        for name, delta in sums.items():
            counts[name] += delta
        d["counters"] = build(Counters, counts)


def _m(d: Draft, name: str) -> Any:
    """The draft's map `name` as a MapMutation (made on first write; finished by _finish)."""
    m = d[name]
    if type(m) is Map:
        m = d[name] = m.mutate()
    return m


_MAPS = ("schedules", "entries", "open_by_schedule", "runs")


def _finish_maps(d: Draft) -> None:
    for name in _MAPS:
        m = d[name]
        if type(m) is dict:
            d[name] = Map(m)
        elif type(m) is not Map:
            d[name] = m.finish()


def _edits(d: Draft, index: str) -> dict[Any, bool]:
    """The pending edits of a sorted index (key -> present), applied by `_finish` in one go:
    a batch moving many keys pays one pass, and a key added then removed costs nothing."""
    pending = d.get("_edits")
    if pending is None:
        pending = d["_edits"] = {}
    edits: dict[Any, bool] | None = pending.get(index)
    if edits is None:
        edits = pending[index] = {}
    return edits


def _finish_edits(d: Draft) -> None:
    pending = d.pop("_edits", None)
    if pending:
        for index, edits in pending.items():
            d[index] = d[index].update(edits)


def _finish(d: Draft) -> Snapshot:
    _finish_maps(d)
    _finish_counts(d)
    _finish_edits(d)
    return build(Snapshot, d)


def _wake_at(s: ScheduleState) -> int | None:
    """`ScheduleState.wake_at` in one call (the fold asks it twice per fire)."""
    due = s.due_at
    if s.paused or due is None or s.next_fire_at is None:
        return None
    limit = s.spec.fire_limit
    if limit is not None and s.fire_count >= limit:
        return None
    until = s.deferred_until
    return until if until is not None and until > due else due


def _put_schedule(d: Draft, old: ScheduleState | None, new: ScheduleState) -> None:
    sid = new.spec.id
    if d["due"] is None:  # bulk replay: the due index is rebuilt at the end
        _m(d, "schedules")[sid] = new
        return
    old_wake = _wake_at(old) if old is not None else None
    new_wake = _wake_at(new)
    _m(d, "schedules")[sid] = new
    if old_wake != new_wake:
        due = _edits(d, "due")
        if old_wake is not None:
            due[(old_wake, sid)] = False
        if new_wake is not None:
            due[(new_wake, sid)] = True


def _advance(
    d: Draft, schedule_id: str, next_fire_at: int | None, due_at: int | None, **changes: Any
) -> None:
    old = d["schedules"].get(schedule_id)
    if old is None:
        return
    new = evolve(
        old,
        next_fire_at=next_fire_at,
        due_at=due_at,
        deferred_since=None,
        deferred_until=None,
        **changes,
    )
    _put_schedule(d, old, new)


def _drop_request(d: Draft, request_id: str | None) -> None:
    if request_id is not None:
        d["requests"] = tuple(r for r in d["requests"] if r[0] != request_id)


def _index_entry(d: Draft, entry: Entry) -> None:
    """A Pending entry goes in the ready index, or the delayed one while it awaits not_before."""
    if entry.status is not EntryStatus.PENDING or d["ready"] is None:
        return
    if entry.not_before is not None:
        _edits(d, "delayed")[(entry.not_before, entry.seq, entry.id)] = True
    else:
        _edits(d, "ready")[entry.ready_key] = True


def _unindex_entry(d: Draft, entry: Entry) -> None:
    if entry.status is not EntryStatus.PENDING or d["ready"] is None:
        return
    if entry.not_before is not None:
        _edits(d, "delayed")[(entry.not_before, entry.seq, entry.id)] = False
    else:
        _edits(d, "ready")[entry.ready_key] = False


def _add_entry(d: Draft, entry: Entry) -> None:
    _m(d, "entries")[entry.id] = entry
    d["seq"] = entry.seq
    sid = entry.schedule_id
    if sid is not None:
        opened = _m(d, "open_by_schedule")
        opened[sid] = (*opened.get(sid, ()), entry.id)
    _index_entry(d, entry)


def _replace_entry(d: Draft, old: Entry, new: Entry) -> None:
    _unindex_entry(d, old)
    _m(d, "entries")[new.id] = new
    _index_entry(d, new)


def _remove_entry(d: Draft, entry_id: str) -> None:
    entry = d["entries"].get(entry_id)
    if entry is None:
        return
    _unindex_entry(d, entry)
    del _m(d, "entries")[entry_id]
    sid = entry.schedule_id
    if sid is None:
        return
    ids = d["open_by_schedule"].get(sid)
    if ids is None:
        return
    if len(ids) == 1:  # the usual case: the schedule's only open entry
        if ids[0] == entry_id:
            del _m(d, "open_by_schedule")[sid]
        return
    remaining = tuple(e for e in ids if e != entry_id)
    if remaining:
        _m(d, "open_by_schedule")[sid] = remaining
    else:
        del _m(d, "open_by_schedule")[sid]


def _end_run(d: Draft, run_id: str) -> ActiveRun | None:
    run: ActiveRun | None = d["runs"].get(run_id)
    if run is None:
        return None
    del _m(d, "runs")[run_id]
    if run.fallback:
        d["fallback_active"] -= 1
    return run


def _record_outcome(d: Draft, run: ActiveRun | None, outcome: str, failed: bool) -> None:
    if run is None or run.schedule_id is None:
        return
    old = d["schedules"].get(run.schedule_id)
    if old is None:
        return
    failures = old.consecutive_failures + 1 if failed else 0
    if old.last_outcome == outcome and old.consecutive_failures == failures:
        return  # the usual case (another success): the record would be an equal copy
    new = evolve(old, last_outcome=outcome, consecutive_failures=failures)
    _m(d, "schedules")[run.schedule_id] = new


# --- schedules ------------------------------------------------------------------------------


@_on(ev.ScheduleAdded)
def _schedule_added(d: Draft, e: ev.ScheduleAdded) -> None:
    new = make(
        ScheduleState, spec=e.spec, next_fire_at=e.next_fire_at, due_at=e.due_at, added_at=e.at
    )
    _put_schedule(d, d["schedules"].get(e.spec.id), new)


@_on(ev.ScheduleUpdated)
def _schedule_updated(d: Draft, e: ev.ScheduleUpdated) -> None:
    old = d["schedules"].get(e.spec.id)
    if old is not None:
        new = evolve(
            old,
            spec=e.spec,
            next_fire_at=e.next_fire_at,
            due_at=e.due_at,
            deferred_since=None,
            deferred_until=None,
        )
        _put_schedule(d, old, new)


@_on(ev.SchedulePaused)
def _schedule_paused(d: Draft, e: ev.SchedulePaused) -> None:
    old = d["schedules"].get(e.schedule_id)
    if old is not None:
        _put_schedule(d, old, evolve(old, paused=True))


@_on(ev.ScheduleResumed)
def _schedule_resumed(d: Draft, e: ev.ScheduleResumed) -> None:
    _advance(d, e.schedule_id, e.next_fire_at, e.due_at, paused=False)


@_on(ev.ScheduleRemoved)
def _schedule_removed(d: Draft, e: ev.ScheduleRemoved) -> None:
    sid = e.schedule_id
    old = d["schedules"].get(sid)
    if old is None:
        return
    if old.wake_at is not None and d["due"] is not None:
        _edits(d, "due")[(old.wake_at, sid)] = False
    del _m(d, "schedules")[sid]
    d["requests"] = tuple(r for r in d["requests"] if r[1] != sid)
    # Runs still going belong to no schedule now, so a schedule re-added under the same id
    # starts with a clean slate.
    opened = d["open_by_schedule"]
    for entry_id in opened.get(sid, ()):
        entry = d["entries"][entry_id]
        _m(d, "entries")[entry_id] = evolve(entry, schedule_id=None)
        run = d["runs"].get(entry.run_id) if entry.run_id is not None else None
        if run is not None:
            _m(d, "runs")[run.run_id] = evolve(run, schedule_id=None)
    if sid in opened:
        del _m(d, "open_by_schedule")[sid]


@_on(ev.TriggerRequested)
def _trigger_requested(d: Draft, e: ev.TriggerRequested) -> None:
    d["requests"] = (*d["requests"], (e.request_id, e.schedule_id))


@_on(ev.OptionsChanged)
def _options_changed(d: Draft, e: ev.OptionsChanged) -> None:
    d["options"] = e.options


@_on(ev.TickStarted)
def _tick_started(d: Draft, e: ev.TickStarted) -> None:
    _finish_counts(d)
    d["counters"] = evolve(d["counters"], ticks=e.tick, last_tick_at=e.at)


# --- fires ----------------------------------------------------------------------------------


@_on(ev.FireRecorded)
def _fire_recorded(d: Draft, e: ev.FireRecorded) -> None:
    state = d["schedules"].get(e.schedule_id)
    if state is None:
        return
    spec = state.spec
    if e.request_id is None:
        fields = state.__dict__.copy()  # evolve, inlined: this is the fold's hottest record
        fields["next_fire_at"] = e.next_fire_at
        fields["due_at"] = e.due_at
        fields["deferred_since"] = None
        fields["deferred_until"] = None
        fields["last_fired_for"] = e.nominal
        fields["fire_count"] = state.fire_count + 1
        _put_schedule(d, state, build(ScheduleState, fields))
        _count(d, "fires")
    else:
        _drop_request(d, e.request_id)
        _count(d, "fires")
        _count(d, "manual_fires")
    retry = spec.retry
    fields = _ENTRY_DEFAULTS.copy()  # `make(Entry, ...)`, inlined (same fields, same order)
    fields["id"] = e.entry_id
    fields["seq"] = d["seq"] + 1
    fields["schedule_id"] = e.schedule_id
    fields["target"] = spec.target
    fields["priority"] = spec.priority
    fields["status"] = EntryStatus.HELD if e.hold else EntryStatus.PENDING
    fields["hold_reason"] = e.hold
    fields["queued_at"] = e.at
    fields["principal"] = spec.principal
    fields["max_attempts"] = retry.max_attempts
    fields["backoff_ms"] = retry.backoff_ms
    fields["max_backoff_ms"] = retry.max_backoff_ms
    fields["timeout_ms"] = spec.timeout_ms
    fields["nominal"] = e.nominal
    _add_entry(d, build(Entry, fields))


def _fire_without_run(d: Draft, e: ev.FireSkipped | ev.FireCoalesced) -> None:
    if e.request_id is None:
        _advance(d, e.schedule_id, e.next_fire_at, e.due_at)
    else:
        _drop_request(d, e.request_id)


@_on(ev.FireSkipped)
def _fire_skipped(d: Draft, e: ev.FireSkipped) -> None:
    _fire_without_run(d, e)
    _count(d, "skipped")


@_on(ev.FireCoalesced)
def _fire_coalesced(d: Draft, e: ev.FireCoalesced) -> None:
    _fire_without_run(d, e)
    _count(d, "coalesced")


@_on(ev.FireDeferred)
def _fire_deferred(d: Draft, e: ev.FireDeferred) -> None:
    old = d["schedules"].get(e.schedule_id)
    if old is None:
        return
    since = old.deferred_since if old.deferred_since is not None else e.at
    _put_schedule(d, old, evolve(old, deferred_since=since, deferred_until=e.until))
    _count(d, "deferred")


@_on(ev.FireMissed)
def _fire_missed(d: Draft, e: ev.FireMissed) -> None:
    _advance(d, e.schedule_id, e.next_fire_at, e.due_at)
    _count(d, "missed", e.count)


# --- the queue ------------------------------------------------------------------------------


@_on(ev.EntryQueued)
def _entry_queued(d: Draft, e: ev.EntryQueued) -> None:
    entry = make(
        Entry,
        id=e.entry_id,
        seq=d["seq"] + 1,
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
    _add_entry(d, entry)


@_on(ev.EntryHeld)
def _entry_held(d: Draft, e: ev.EntryHeld) -> None:
    old = d["entries"].get(e.entry_id)
    if old is not None and old.status is EntryStatus.PENDING:
        _replace_entry(d, old, evolve(old, status=EntryStatus.HELD, hold_reason=e.reason))


@_on(ev.EntryReleased)
def _entry_released(d: Draft, e: ev.EntryReleased) -> None:
    old = d["entries"].get(e.entry_id)
    if old is not None and old.status is EntryStatus.HELD:
        _replace_entry(d, old, evolve(old, status=EntryStatus.PENDING, hold_reason=None))


@_on(ev.EntryCancelled)
def _entry_cancelled(d: Draft, e: ev.EntryCancelled) -> None:
    _remove_entry(d, e.entry_id)
    _count(d, "cancelled")


# --- runs -----------------------------------------------------------------------------------


@_on(ev.RunAssigned)
def _run_assigned(d: Draft, e: ev.RunAssigned) -> None:
    entry = d["entries"].get(e.entry_id)
    if entry is None:
        return
    fields = entry.__dict__.copy()  # evolve, inlined
    fields["status"] = EntryStatus.ASSIGNED
    fields["run_id"] = e.run_id
    fields["attempt"] = e.attempt
    fields["not_before"] = None
    _unindex_entry(d, entry)  # _replace_entry: an Assigned entry is in no index
    _m(d, "entries")[e.entry_id] = build(Entry, fields)
    run = _RUN_DEFAULTS.copy()  # `make(ActiveRun, ...)`, inlined (same fields, same order)
    run["run_id"] = e.run_id
    run["entry_id"] = e.entry_id
    run["schedule_id"] = entry.schedule_id
    run["attempt"] = e.attempt
    run["assigned_at"] = e.at
    run["deadline"] = e.deadline
    run["call"] = e.call
    run["node"] = e.node
    _m(d, "runs")[e.run_id] = build(ActiveRun, run)
    _count(d, "assigned")


@_on(ev.RunStarted)
def _run_started(d: Draft, e: ev.RunStarted) -> None:
    run = d["runs"].get(e.run_id)
    if run is None:
        return
    if e.fallback and not run.fallback:
        d["fallback_active"] += 1
    started = evolve(run, started_at=e.at, pid=e.pid, fallback=e.fallback)
    _m(d, "runs")[e.run_id] = started


@_on(ev.RunCancelled)
def _run_cancelled(d: Draft, e: ev.RunCancelled) -> None:
    run = d["runs"].get(e.run_id)
    if run is not None:
        _m(d, "runs")[e.run_id] = evolve(run, cancelling=e.reason)


@_on(ev.RunSucceeded)
def _run_succeeded(d: Draft, e: ev.RunSucceeded) -> None:
    _record_outcome(d, _end_run(d, e.run_id), "succeeded", failed=False)
    _remove_entry(d, e.entry_id)
    _count(d, "succeeded")


def _run_ended_badly(d: Draft, run_id: str, entry_id: str, outcome: str, final: bool) -> None:
    _record_outcome(d, _end_run(d, run_id), outcome, failed=outcome != "cancelled")
    if final:
        _remove_entry(d, entry_id)
        return
    entry = d["entries"].get(entry_id)
    if entry is not None:
        _m(d, "entries")[entry_id] = evolve(entry, run_id=None)


@_on(ev.RunFailed)
def _run_failed(d: Draft, e: ev.RunFailed) -> None:
    outcome = "cancelled" if e.reason == "cancelled" else "failed"
    _run_ended_badly(d, e.run_id, e.entry_id, outcome, e.final)
    _count(d, "failed")


@_on(ev.RunLost)
def _run_lost(d: Draft, e: ev.RunLost) -> None:
    _run_ended_badly(d, e.run_id, e.entry_id, "lost", e.final)
    _count(d, "lost")


@_on(ev.RetryPlanned)
def _retry_planned(d: Draft, e: ev.RetryPlanned) -> None:
    entry = d["entries"].get(e.entry_id)
    if entry is None:
        return
    new = evolve(
        entry, status=EntryStatus.PENDING, attempt=e.attempt, not_before=e.not_before, run_id=None
    )
    _m(d, "entries")[e.entry_id] = new
    _index_entry(d, new)
    _count(d, "retries")
