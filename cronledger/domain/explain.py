"""Explain: why a run, queue entry or schedule is where it is, from the ledger alone.

`explain(events, subject, at)` folds the ledger with the snapshot projector, like `verify`. For
each fact that decides about the subject it keeps the snapshot as it was just before (a
schedule's evaluation) or at the tick's dispatch phase (a dispatch, or a tick that left the entry
waiting). From those snapshots and the recorded facts it states the decision, the inputs the
planner saw, the SEMANTICS rule that decided, and plain sentences. Pure: no clock, no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import NoReturn
from zoneinfo import ZoneInfo

import attrs

from cronledger.domain import events as ev
from cronledger.domain import ids
from cronledger.domain.capacity import ready_dispatch_limit
from cronledger.domain.concurrency import AWAITING_PREVIOUS_RUN
from cronledger.domain.dispatch import plan_ready_dispatch
from cronledger.domain.hours import Window, window_contains
from cronledger.domain.instants import iso
from cronledger.domain.jitter import jitter_ms
from cronledger.domain.reconcile import ended_at
from cronledger.domain.state import EMPTY, Entry, EntryStatus, ScheduleState, Snapshot
from cronledger.domain.triggers import At, describe
from cronledger.domain.values import (
    ConcurrencyPolicy,
    MisfirePolicy,
    Options,
    ScheduleSpec,
    misfire_grace,
)
from cronledger.errors import InvalidInput
from cronledger.projectors.snapshot import apply

# --- the answer -----------------------------------------------------------------------------


@attrs.frozen
class Explanation:
    """A decision about one subject, the inputs it saw, the rule that decided it, in sentences."""

    subject: str
    kind: str
    decision: str
    rule: str
    position: int | None
    at: int | None
    inputs: tuple[tuple[str, str], ...]
    sentences: tuple[str, ...]
    timeline: tuple[tuple[int, str], ...] = ()

    def to_json(self) -> dict[str, object]:
        """Stable keys, JSON-serialisable values; the instant as `at` (ISO-8601 UTC text) plus
        `at_ms` (epoch ms), like every other `--json` output. `inputs` are texts for people;
        `inputs_ms` gives, for each input that is one instant or one duration, its number (an
        instant as epoch ms, a duration in ms)."""
        return {
            "subject": self.subject,
            "kind": self.kind,
            "decision": self.decision,
            "rule": self.rule,
            "position": self.position,
            "at": None if self.at is None else iso(self.at),
            "at_ms": self.at,
            "inputs": dict(self.inputs),
            "inputs_ms": {k: v.ms for k, v in self.inputs if isinstance(v, _Valued)},
            "sentences": list(self.sentences),
            "timeline": [{"position": p, "fact": text} for p, text in self.timeline],
        }


# --- the rules, citing SEMANTICS (and ARCHITECTURE where SEMANTICS is silent) ---------------

R_ON_TIME = "§3: a due fire that is on time (now - nominal <= misfire_grace) runs"
R_SEVERAL = "§3 (ARCHITECTURE): several fires on time at once are represented by one run"
R_SKIP = "§3 SKIP: fires that are not on time are recorded missed and produce no run"
R_SKIP_ON_TIME = "§3 SKIP: fires that are not on time are recorded missed; the on-time fire runs"
R_CATCH_UP = "§3 CATCH_UP: all the missed fire times are represented by exactly one run now"
R_WINDOW = (
    "§3 CATCH_UP catch_up_window: missed fires older than the window are skipped as under SKIP"
)
R_HOURS = (
    "§3 active/quiet hours: a due fire outside the allowed window is not run; the schedule "
    "stays due, and when the window opens the fire is late, so the misfire policy decides"
)
R_MANUAL = "§3 manual trigger: ignores the hours gate and the misfire policy; concurrency applies"
R_FORBID = "§4 FORBID: a fire while the previous run is active is skipped"
R_FORBID_WAITING = (
    "§4 FORBID (ARCHITECTURE): a fire while an entry of the schedule is still waiting is skipped"
)
R_REPLACE = "§4 REPLACE: the active run is cancelled (reason replaced) and the new fire is queued"
R_REPLACE_WAITING = (
    "§4 REPLACE (ARCHITECTURE): with an entry still waiting to start, the fire coalesces into it"
)
R_HOLD = (
    "§4 QUEUE_ONE: a fire while the previous run is active is queued Held "
    "(awaiting_previous_run) and released when that run ends"
)
R_COALESCE = "§4 QUEUE_ONE: a fire while an entry is already waiting is coalesced into it"
R_QUEUE_FULL = (
    "§4 QUEUE_ONE: a manual trigger while an entry is already waiting is skipped (queue_full)"
)
R_ALLOW = "§4 ALLOW: the fire is queued regardless of active runs"
R_DISPATCH = "§5/§6: Pending entries start by priority, then FIFO, up to the capacity limit"
R_CAPACITY = (
    "§6 capacity: max(0, min(max_per_tick, max_workers - active - slot_headroom "
    "- fallback_headroom if a fallback runner is in use)) entries may start per tick"
)
R_DRAINING = "§6: the dispatch limit is 0 while draining"
R_ORDER = "§5: entries are dispatched by priority (higher first), then FIFO, within the limit"
R_HELD = "§5: Held entries are never dispatched; a hold is released by a fact"
R_SUBMITTED = "§9: a submitted task waits in the durable queue for dispatch (§5)"
R_RETRY = (
    "§8 Retry: a failed attempt n goes back to Pending with "
    "not_before = failure + min(max_backoff, backoff * 2**(n-1))"
)
R_SUCCESS = "§8: exit code 0 is success; the entry is completed"
R_FAILED = "§8: a failed run with no retry left is final; the task is blocked"
R_TIMEOUT = "§8 timeout: a run past its deadline is cancelled and counts as a failure"
R_REPLACED = "§4 REPLACE: the active run is cancelled (replaced); a cancelled run is never retried"
R_OPERATOR = "§8 (ARCHITECTURE): a run cancelled by an operator ends as cancelled, never retried"
R_LOST = "§7: a run the engine cannot account for is recorded lost, then the retry policy applies"
R_REMOVED_ENTRY = "ARCHITECTURE remove: a removed schedule's waiting entries are cancelled"
R_CANCELLED_ENTRY = "§5: a waiting entry cancelled by a fact never runs"
R_NOT_DUE = "§3: a schedule is due when due_at <= now and it is neither paused nor complete"
R_PAUSED = "§2 (ARCHITECTURE pause): a paused schedule is not evaluated; its fires are not misfires"
R_COMPLETE = "§1/§2: a schedule with no next fire, or no fires remaining, is complete"
R_REMOVED = "ARCHITECTURE remove: a removed schedule decides nothing more"
R_REQUESTED = "§3 manual trigger: the next tick evaluates the request (concurrency applies)"

# --- what the scan keeps --------------------------------------------------------------------

Fact = tuple[int, ev.Event]
FireFact = ev.FireRecorded | ev.FireSkipped | ev.FireCoalesced | ev.FireDeferred
Outcome = ev.RunSucceeded | ev.RunFailed | ev.RunLost


@attrs.define
class _View:
    """What one tick's dispatch phase read: its snapshot and the runs it assigned, in order."""

    position: int
    at: int
    snapshot: Snapshot
    assigned: list[str]


@attrs.define
class _Tick:
    """The tick batch being folded: header position, clock reading, last position."""

    position: int
    at: int
    end: int
    dispatch: Snapshot | None = None
    assigned: list[str] = attrs.Factory(list)

    def view(self, snapshot: Snapshot) -> _View:
        if self.dispatch is None:
            self.dispatch = snapshot
        return _View(self.position, self.at, self.dispatch, self.assigned)


@attrs.define
class _Group:
    """One evaluation of a schedule in one tick: its facts and the snapshot just before."""

    before: Snapshot
    at: int
    facts: list[Fact] = attrs.Factory(list)
    closed: bool = False


@attrs.define
class _Schedule:
    """A schedule's latest evaluation, its lifecycle fact, its manual triggers."""

    id: str
    added: Fact | None = None
    lifecycle: Fact | None = None
    group: _Group | None = None
    requests: dict[str, Fact] = attrs.Factory(dict)
    request_group: _Group | None = None  # the evaluation that acted on the subject request
    watch: str | None = None
    first_run: tuple[int, ev.RunAssigned] | None = None


@attrs.define
class _Run:
    """One attempt: the dispatch phase that assigned it and the facts about it."""

    assigned: ev.RunAssigned
    position: int
    view: _View
    started: tuple[int, ev.RunStarted] | None = None
    cancelled: tuple[int, ev.RunCancelled] | None = None
    replaced_by: ev.FireRecorded | ev.FireCoalesced | None = None
    outcome: tuple[int, Outcome] | None = None
    retry: tuple[int, ev.RetryPlanned] | None = None
    released: list[str] = attrs.Factory(list)


@attrs.define
class _Entry:
    """A queue entry: how it was made, its holds, its runs, the ticks it waited through."""

    id: str
    origin: Fact
    schedule_id: str | None
    group: _Group | None
    request: Fact | None
    coalesced: list[tuple[int, ev.FireCoalesced]] = attrs.Factory(list)
    holds: list[Fact] = attrs.Factory(list)
    cancelled: tuple[int, ev.EntryCancelled] | None = None
    runs: list[_Run] = attrs.Factory(list)
    waits: dict[int, list[_View]] = attrs.Factory(dict)
    wait_counts: dict[int, int] = attrs.Factory(dict)
    timeline: list[Fact] = attrs.Factory(list)
    done_at: int | None = None


def _schedule_part(entry_id: str) -> str | None:
    for mark in ("@", "!"):
        if mark in entry_id:
            return entry_id.split(mark, 1)[0]
    return None


class _Scan:
    """One fold of the ledger, keeping only what explains the subject (run, entry or schedule)."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        entry_ids = {subject}
        if "#" in subject:
            entry_ids.add(subject.rsplit("#", 1)[0])
        self.entry_ids = entry_ids
        schedule_ids = {subject} | {s for e in entry_ids if (s := _schedule_part(e)) is not None}
        self.schedules = {sid: _Schedule(sid) for sid in schedule_ids}
        self.entries: dict[str, _Entry] = {}
        self.runs: dict[str, tuple[_Entry, _Run]] = {}
        self.snapshot = EMPTY
        self.tick: _Tick | None = None
        self.last_at: int | None = None

    # -- folding --

    def feed(self, position: int, event: ev.Event) -> None:
        if self.tick is not None and position > self.tick.end:
            self.end_tick()
        if isinstance(event, ev.TickStarted):
            self.tick = _Tick(position, event.at, position + event.decisions)
            for rec in self.schedules.values():
                if rec.group is not None:
                    rec.group.closed = True
        else:
            self._observe(position, event)
        self.snapshot = apply(self.snapshot, event)
        self.last_at = event.at

    def end_tick(self) -> None:
        """At a batch's end: note the subject's entry if it was ready but not dispatched."""
        tick, self.tick = self.tick, None
        if tick is None or not self.entries:
            return
        view = tick.view(self.snapshot)
        for record in self.entries.values():
            entry = view.snapshot.entries.get(record.id)
            if entry is None or entry.status is not EntryStatus.PENDING:
                continue
            if entry.not_before is not None and entry.not_before > tick.at:
                continue
            if ids.run_id(entry.id, entry.attempt) in tick.assigned:
                continue
            views = record.waits.get(entry.attempt)
            if views is None:
                record.waits[entry.attempt] = [view, view]  # the first and the latest
            else:
                views[1] = view
            record.wait_counts[entry.attempt] = record.wait_counts.get(entry.attempt, 0) + 1

    def finished(self, position: int) -> bool:
        """The subject's entry is done and its tick batch is over: nothing more to learn."""
        record = self.entries.get(self.subject) or self._run_entry()
        return record is not None and record.done_at is not None and position > record.done_at

    def _run_entry(self) -> _Entry | None:
        found = self.runs.get(self.subject)
        return found[0] if found is not None else None

    def _done(self, record: _Entry, position: int) -> None:
        record.done_at = self.tick.end if self.tick is not None else position

    def _observe(self, position: int, event: ev.Event) -> None:
        if isinstance(event, ev.RunAssigned) and self.tick is not None:
            self.tick.view(self.snapshot)  # the dispatch phase starts at the first assignment
            self.tick.assigned.append(event.run_id)
        self._observe_schedule(position, event)
        self._observe_entry(position, event)

    def _observe_schedule(self, position: int, event: ev.Event) -> None:
        sid = _schedule_of(self.snapshot, event)
        rec = self.schedules.get(sid) if sid is not None else None
        if rec is None:
            return
        if isinstance(event, ev.ScheduleAdded):
            rec.added, rec.lifecycle, rec.group = (position, event), (position, event), None
        elif isinstance(
            event, ev.ScheduleUpdated | ev.SchedulePaused | ev.ScheduleResumed | ev.ScheduleRemoved
        ):
            rec.lifecycle = (position, event)
        elif isinstance(event, ev.TriggerRequested):
            rec.requests[event.request_id] = (position, event)
        elif isinstance(event, ev.RunCancelled | ev.FireMissed | FireFact):
            group = rec.group
            if group is None or group.closed:
                group = rec.group = _Group(self.snapshot, event.at)
            group.facts.append((position, event))
            if isinstance(event, FireFact):
                group.closed = True
                if not isinstance(event, ev.FireDeferred) and event.request_id == self.subject:
                    rec.request_group = group
                rec.watch = event.entry_id if isinstance(event, ev.FireRecorded) else None
                rec.first_run = None
        elif (
            isinstance(event, ev.RunAssigned)
            and event.entry_id == rec.watch
            and rec.first_run is None
        ):
            rec.first_run = (position, event)

    def _observe_entry(self, position: int, event: ev.Event) -> None:
        if isinstance(event, ev.FireRecorded | ev.FireCoalesced):
            self._note_replacement(event)
        if isinstance(event, ev.FireRecorded | ev.EntryQueued):
            if event.entry_id in self.entry_ids:
                self._new_entry(position, event)
            return
        if isinstance(event, ev.FireCoalesced):
            into = self.entries.get(event.into_entry_id)
            if into is not None:
                into.coalesced.append((position, event))
                into.timeline.append((position, event))
            return
        if isinstance(event, ev.RunAssigned):
            record = self.entries.get(event.entry_id)
            if record is not None and self.tick is not None:
                run = _Run(event, position, self.tick.view(self.snapshot))
                record.runs.append(run)
                record.timeline.append((position, event))
                self.runs[event.run_id] = (record, run)
            return
        if isinstance(event, ev.EntryHeld | ev.EntryReleased | ev.EntryCancelled):
            self._entry_fact(position, event)
            return
        if isinstance(event, ev.RetryPlanned):
            record = self.entries.get(event.entry_id)
            if record is not None and record.runs:
                record.runs[-1].retry = (position, event)
                record.timeline.append((position, event))
            return
        if isinstance(event, ev.RunStarted | ev.RunCancelled | Outcome):
            self._run_fact(position, event)

    def _new_entry(self, position: int, event: ev.FireRecorded | ev.EntryQueued) -> None:
        group = request = None
        sid = event.schedule_id if isinstance(event, ev.FireRecorded) else None
        if isinstance(event, ev.FireRecorded):
            rec = self.schedules.get(event.schedule_id)
            if rec is not None:
                group = rec.group
                if event.request_id is not None:
                    request = rec.requests.get(event.request_id)
        record = _Entry(event.entry_id, (position, event), sid, group, request)
        if request is not None:
            record.timeline.append(request)
        record.timeline.append((position, event))
        self.entries[event.entry_id] = record

    def _entry_fact(
        self, position: int, event: ev.EntryHeld | ev.EntryReleased | ev.EntryCancelled
    ) -> None:
        record = self.entries.get(event.entry_id)
        if record is None:
            self._note_release(event)
            return
        record.timeline.append((position, event))
        if isinstance(event, ev.EntryCancelled):
            record.cancelled = (position, event)
            self._done(record, position)
        else:
            record.holds.append((position, event))

    def _note_release(self, event: ev.Event) -> None:
        """A QUEUE_ONE entry released by the end of the subject's run, in the same tick."""
        if not isinstance(event, ev.EntryReleased) or self.tick is None:
            return
        other = self.snapshot.entries.get(event.entry_id)
        sid = other.schedule_id if other is not None else None
        for record in self.entries.values():
            last = record.runs[-1] if record.runs else None
            if last is None or last.outcome is None or sid is None:
                continue
            if sid == record.schedule_id and last.outcome[0] > self.tick.position:
                last.released.append(event.entry_id)

    def _note_replacement(self, event: ev.FireRecorded | ev.FireCoalesced) -> None:
        """The fire that replaced the subject's run (REPLACE): it follows the cancel in its tick."""
        for record, run in self.runs.values():
            cancel = run.cancelled
            if cancel is None or cancel[1].reason != "replaced" or run.replaced_by is not None:
                continue
            if record.schedule_id == event.schedule_id and cancel[1].at == event.at:
                run.replaced_by = event

    def _run_fact(self, position: int, event: ev.RunStarted | ev.RunCancelled | Outcome) -> None:
        found = self.runs.get(event.run_id)
        if found is None:
            return
        record, run = found
        record.timeline.append((position, event))
        if isinstance(event, ev.RunStarted):
            run.started = (position, event)
        elif isinstance(event, ev.RunCancelled):
            run.cancelled = (position, event)
        else:
            run.outcome = (position, event)
            if isinstance(event, ev.RunSucceeded) or event.final:
                self._done(record, position)


def _schedule_of(snapshot: Snapshot, event: ev.Event) -> str | None:
    """The schedule a fact is about, if any (a replaced run: its schedule before the fact)."""
    if isinstance(event, ev.ScheduleAdded | ev.ScheduleUpdated):
        return event.spec.id
    sid = getattr(event, "schedule_id", None)
    if isinstance(sid, str):
        return sid
    if isinstance(event, ev.RunCancelled) and event.reason == "replaced":
        run = snapshot.runs.get(event.run_id)
        return run.schedule_id if run is not None else None
    if isinstance(event, ev.RunAssigned):
        entry = snapshot.entries.get(event.entry_id)
        return entry.schedule_id if entry is not None else None
    return None


def _mentions(event: ev.Event, subject: str) -> bool:
    """Does this fact create the subject (as a schedule, entry, run or manual trigger)?"""
    if isinstance(event, ev.ScheduleAdded):
        return event.spec.id == subject
    if isinstance(event, ev.FireRecorded | ev.EntryQueued):
        return event.entry_id == subject
    if isinstance(event, ev.RunAssigned):
        return event.run_id == subject
    if isinstance(event, ev.TriggerRequested):
        return event.request_id == subject
    return False


# --- formatting -----------------------------------------------------------------------------


class _Valued(str):
    """Text for people that keeps the value it shows in ms (an instant as epoch ms), so that
    `Explanation.to_json` can give scripts the number beside the text."""

    ms: int

    def __new__(cls, text: str, ms: int) -> _Valued:
        self = super().__new__(cls, text)
        self.ms = ms
        return self


def _ts(ms: int | None) -> str:
    """An instant as ISO-8601 UTC, without a zero millisecond part."""
    text = iso(ms)
    text = text[:-5] + "Z" if text.endswith(".000Z") else text
    return text if ms is None else _Valued(text, ms)


def _ts_near(ms: int | None, ref: int) -> str:
    """`ms` as a time of day when it falls on the UTC date of `ref`, else in full."""
    full = _ts(ms)
    return full[11:] if ms is not None and full[:10] == _ts(ref)[:10] else full


def _dur(ms: int) -> str:
    """A duration for people: '350 ms', '4 s', '2.5 s', '1 h 30 min'."""
    return _Valued(_duration_text(ms), ms)


def _duration_text(ms: int) -> str:
    if ms < 0:
        return "-" + _duration_text(-ms)
    if 0 < ms < 1000:
        return f"{ms} ms"
    seconds, milli = divmod(ms, 1000)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}")
    if milli:
        parts.append(f"{seconds}.{milli:03d}".rstrip("0") + " s")
    elif seconds or not parts:
        parts.append(f"{seconds} s")
    return " ".join(parts)


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else many or word + 's'}"


def _window(window: Window) -> str:
    return f"{window.start}-{window.end} {window.timezone}"


def _wall(window: Window, ms: int) -> str:
    """The wall-clock time of `ms` in the window's zone."""
    reading = datetime.fromtimestamp(ms // 1000, ZoneInfo(window.timezone))
    return f"{reading:%H:%M} {window.timezone}"


def _gate(spec: ScheduleSpec) -> str:
    parts = []
    if spec.active_hours is not None:
        parts.append(f"active hours {_window(spec.active_hours)}")
    if spec.quiet_hours is not None:
        parts.append(f"quiet hours {_window(spec.quiet_hours)}")
    return ", ".join(parts) or "none"


def _misfire(spec: ScheduleSpec) -> str:
    text = spec.misfire.name
    if spec.misfire is MisfirePolicy.CATCH_UP and spec.catch_up_window_ms is not None:
        text += f" (catch_up_window {_dur(spec.catch_up_window_ms)})"
    return text


def _fact_line(event: ev.Event) -> str:
    """One line for a timeline: the instant and what the fact says."""
    return f"{_ts(event.at)} {_fact_text(event)}"


def _fact_text(e: ev.Event) -> str:
    if isinstance(e, ev.FireRecorded):
        how = f", held ({e.hold})" if e.hold else ""
        who = f" by manual trigger {e.request_id}" if e.request_id else ""
        return f"fire for {_ts(e.nominal)} queued entry {e.entry_id}{who}{how}"
    if isinstance(e, ev.FireSkipped):
        return f"fire for {_ts(e.nominal)} skipped ({e.reason})"
    if isinstance(e, ev.FireCoalesced):
        return f"fire for {_ts(e.nominal)} coalesced into entry {e.into_entry_id}"
    if isinstance(e, ev.FireDeferred):
        return f"fire for {_ts(e.nominal)} deferred until {_ts(e.until)} (hours gate)"
    if isinstance(e, ev.FireMissed):
        return f"{_plural(e.count, 'fire')} missed, {_ts(e.first)} to {_ts(e.last)}"
    if isinstance(e, ev.TriggerRequested):
        return f"manual trigger {e.request_id} requested for {e.schedule_id}"
    if isinstance(e, ev.EntryQueued):
        return f"task {e.entry_id} submitted (priority {e.priority})"
    if isinstance(e, ev.EntryHeld | ev.EntryReleased | ev.EntryCancelled):
        verb = {ev.EntryHeld: "held", ev.EntryReleased: "released"}.get(type(e), "cancelled")
        return f"entry {e.entry_id} {verb} ({e.reason})"
    if isinstance(e, ev.RunAssigned):
        deadline = f", deadline {_ts(e.deadline)}" if e.deadline is not None else ""
        return f"run {e.run_id} assigned (attempt {e.attempt}{deadline})"
    if isinstance(e, ev.RunStarted):
        pid = f" pid {e.pid}" if e.pid is not None else ""
        return f"run {e.run_id} started{pid}" + (" on the fallback runner" if e.fallback else "")
    if isinstance(e, ev.RunCancelled):
        return f"run {e.run_id} cancelled ({e.reason})"
    if isinstance(e, ev.RunSucceeded):
        return f"run {e.run_id} succeeded after {_dur(e.duration_ms)}"
    if isinstance(e, ev.RunFailed):
        final = "final" if e.final else "a retry follows"
        return f"run {e.run_id} failed ({e.reason}, {_exit(e)}; {final})"
    if isinstance(e, ev.RunLost):
        return f"run {e.run_id} lost ({e.detail or 'no detail'})"
    if isinstance(e, ev.RetryPlanned):
        return f"attempt {e.attempt} of {e.entry_id} planned, not before {_ts(e.not_before)}"
    return type(e).__name__


def _exit(e: ev.RunFailed) -> str:
    if e.signal is not None:
        return f"signal {e.signal}"
    if e.exit_code is not None:
        return f"exit code {e.exit_code}"
    return e.error or "no exit status"


# --- inputs and sentences shared by schedules and runs --------------------------------------


@attrs.define
class _Parts:
    """An explanation under construction."""

    decision: str
    rule: str
    position: int | None
    at: int | None
    inputs: list[tuple[str, str]] = attrs.Factory(list)
    sentences: list[str] = attrs.Factory(list)


def _blocker(snapshot: Snapshot, entry: Entry) -> str:
    """What an open entry of a schedule was doing, as a clause: 'run X was still running'."""
    run = snapshot.runs.get(entry.run_id) if entry.run_id is not None else None
    if run is not None:
        if run.cancelling is not None:
            return f"run {run.run_id} was still being cancelled ({run.cancelling})"
        if run.started_at is not None:
            return f"run {run.run_id} was still running"
        return f"run {run.run_id} was assigned and starting"
    if entry.status is EntryStatus.HELD:
        return f"entry {entry.id} was already waiting (held: {entry.hold_reason})"
    if entry.attempt > 1:
        return (
            f"entry {entry.id} was waiting to retry "
            f"(attempt {entry.attempt}, not before {_ts(entry.not_before)})"
        )
    return f"entry {entry.id} was already waiting to be dispatched"


def _open_state(snapshot: Snapshot, entry: Entry) -> str:
    run = snapshot.runs.get(entry.run_id) if entry.run_id is not None else None
    if run is not None:
        since = run.started_at if run.started_at is not None else run.assigned_at
        state = "being cancelled" if run.cancelling else "running" if run.started_at else "assigned"
        return f"{run.run_id} ({state} since {_ts(since)})"
    if entry.status is EntryStatus.HELD:
        return f"{entry.id} (held: {entry.hold_reason})"
    if entry.not_before is not None:
        return f"{entry.id} (retry attempt {entry.attempt} not before {_ts(entry.not_before)})"
    return f"{entry.id} (pending since {_ts(entry.queued_at)})"


def _split_open(snapshot: Snapshot, sid: str) -> tuple[list[Entry], list[Entry]]:
    """(active, waiting) open entries, as the concurrency policy counts them (§4)."""
    opened = snapshot.open_entries(sid)
    active = [e for e in opened if e.status is EntryStatus.ASSIGNED or e.attempt > 1]
    waiting = [e for e in opened if e.status is not EntryStatus.ASSIGNED and e.attempt == 1]
    return active, waiting


def _schedule_inputs(
    spec: ScheduleSpec, state: ScheduleState | None, options: Options
) -> list[tuple[str, str]]:
    out = [("schedule", spec.id), ("trigger", describe(spec.trigger))]
    if state is not None:
        out.append(("next fire (nominal)", _ts(state.next_fire_at)))
        if spec.jitter_ms:
            out.append(("due at (nominal + jitter)", _ts(state.due_at)))
        last = state.last_fired_for
        out.append(("last fire", _ts(last) if last is not None else "never"))
    out += [
        ("misfire policy", _misfire(spec)),
        ("grace", _grace(spec, options)),
        ("concurrency", spec.concurrency.name),
        ("hours gate", _gate(spec)),
    ]
    return out


def _capacity(snapshot: Snapshot) -> tuple[int, str]:
    """The §6 limit at a dispatch phase, and its arithmetic with the figures in force."""
    o = snapshot.options
    fallback = snapshot.fallback_active > 0
    limit = ready_dispatch_limit(o, snapshot.active, fallback)
    if o.draining:
        return limit, "draining"
    terms = f"max_workers {o.max_workers} - active {snapshot.active}"
    room = o.max_workers - snapshot.active
    if o.slot_headroom:
        terms += f" - slot_headroom {o.slot_headroom}"
        room -= o.slot_headroom
    if fallback and o.fallback_headroom:
        terms += f" - fallback_headroom {o.fallback_headroom}"
        room -= o.fallback_headroom
    text = f"{terms} = {room}"
    if room > o.max_per_tick:
        text += f", capped by max_per_tick {o.max_per_tick}"
    return limit, text


def _order(view: _View, entry_id: str) -> tuple[int, int, list[Entry]]:
    """(1-based place in dispatch order, ready entries, entries ahead) at a dispatch phase."""
    snap = view.snapshot
    ready = plan_ready_dispatch(snap, view.at, max(1, len(snap.entries)))
    place = next((i for i, e in enumerate(ready, 1) if e.id == entry_id), 0)
    return place, len(ready), ready[: max(0, place - 1)]


# --- a schedule's evaluation ----------------------------------------------------------------


def _group_parts(rec: _Schedule, group: _Group) -> _Parts:
    """The decision of one evaluation: deferred, missed, fired, late, held, replaced, ..."""
    snap, now = group.before, group.at
    fire = next((e for _, e in reversed(group.facts) if isinstance(e, FireFact)), None)
    missed = next((e for _, e in group.facts if isinstance(e, ev.FireMissed)), None)
    cancels = [e for _, e in group.facts if isinstance(e, ev.RunCancelled)]
    position = group.facts[-1][0]
    state = snap.schedules.get(rec.id)
    spec = state.spec if state is not None else _spec_of(rec)
    parts = _Parts("", "", position, now)
    parts.inputs = _schedule_inputs(spec, state, snap.options)
    parts.inputs.insert(2, ("decided at", _ts(now)))
    if isinstance(fire, ev.FireDeferred):
        _deferred(parts, spec, state, fire, snap.options)
        return parts
    if missed is not None:
        _missed(parts, spec, missed, now)
    if fire is None:
        _after_deferral(parts, spec, state)
        return parts
    active, waiting = _split_open(snap, spec.id)
    parts.inputs.append(("active runs", ", ".join(_open_state(snap, e) for e in active) or "none"))
    parts.inputs.append(
        ("waiting entries", ", ".join(_open_state(snap, e) for e in waiting) or "none")
    )
    request = rec.requests.get(fire.request_id) if fire.request_id else None
    if isinstance(fire, ev.FireRecorded):
        _recorded(parts, spec, state, fire, request, cancels, snap)
    elif isinstance(fire, ev.FireSkipped):
        _skipped(parts, spec, fire, request, snap)
    else:
        _coalesced(parts, spec, fire, request, cancels, snap)
    if fire.request_id is None:
        _after_deferral(parts, spec, state)
    return parts


def _spec_of(rec: _Schedule) -> ScheduleSpec:
    added = rec.added[1] if rec.added is not None else None
    assert isinstance(added, ev.ScheduleAdded)
    return added.spec


def _grace(spec: ScheduleSpec, options: Options) -> str:
    ms = misfire_grace(spec, options)
    if spec.misfire_grace_ms is not None:
        return _dur(ms)
    return _Valued(f"{_dur(ms)} (the engine's default)", ms)


def _lateness(spec: ScheduleSpec, nominal: int, now: int) -> int:
    return max(0, now - nominal - jitter_ms(spec.id, nominal, spec.jitter_ms))


def _deferred(
    parts: _Parts,
    spec: ScheduleSpec,
    state: ScheduleState | None,
    fact: ev.FireDeferred,
    options: Options,
) -> None:
    now = fact.at
    parts.decision, parts.rule = "deferred", R_HOURS
    since = state.deferred_since if state is not None and state.deferred_since else now
    parts.inputs += [
        ("nominal", _ts(fact.nominal)),
        ("gate opens at", _ts(fact.until)),
        ("deferred since", _ts(since)),
    ]
    active, quiet = spec.active_hours, spec.quiet_hours
    if active is not None and not window_contains(active, now):
        why = f"{_wall(active, now)} is outside its active hours {_window(active)}"
    elif quiet is not None:
        why = f"{_wall(quiet, now)} is inside its quiet hours {_window(quiet)}"
    else:
        why = "the hours gate was closed"
    parts.sentences.append(
        f"{spec.id}'s fire for {_ts_near(fact.nominal, now)} was deferred at {_ts(now)}: "
        f"{why}, so it does not run now (§3)."
    )
    late = _lateness(spec, fact.nominal, fact.until)
    grace = misfire_grace(spec, options)
    if late <= grace:
        then = "it will run on time"
    elif spec.misfire is MisfirePolicy.CATCH_UP:
        then = "the CATCH_UP policy will run it once"
    else:
        then = "the SKIP policy will record it missed (a fire on time then still runs)"
    parts.sentences.append(
        f"The schedule stays due; the gate opens at {_ts(fact.until)}, when the fire will be "
        f"{_dur(late)} late (grace {_dur(grace)}), so {then}."
    )


def _after_deferral(parts: _Parts, spec: ScheduleSpec, state: ScheduleState | None) -> None:
    """A fire decided when the hours gate opened: say how long it had been held back."""
    if state is None or state.deferred_since is None:
        return
    parts.inputs.append(("deferred since", _ts(state.deferred_since)))
    parts.sentences.append(
        f"The hours gate ({_gate(spec)}) had deferred it since {_ts(state.deferred_since)}; "
        f"the gate opened at {_ts(state.deferred_until)}, so the fire was late and the "
        f"misfire policy ({spec.misfire.name}) decided (§3)."
    )


def _missed(parts: _Parts, spec: ScheduleSpec, fact: ev.FireMissed, now: int) -> None:
    window = spec.catch_up_window_ms
    late = _lateness(spec, fact.last, now)
    parts.decision = "missed"
    span = _ts(fact.first) + (f" to {_ts(fact.last)}" if fact.count > 1 else "")
    parts.inputs += [
        ("missed", f"{fact.count} ({span})"),
        ("lateness of the last missed", _dur(late)),
        ("grace (recorded)", _dur(fact.grace_ms)),
    ]
    one = fact.count == 1
    span = f"the fire time {_ts(fact.first)}" if one else f"{fact.count} fire times, {span}"
    they, the_latest = ("it", "it") if one else ("they", "the latest of them")
    if spec.misfire is MisfirePolicy.CATCH_UP and window is not None:
        parts.rule = R_WINDOW
        why = (
            f"{they} {'was' if one else 'were'} older than the catch-up window of {_dur(window)} "
            f"(before {_ts(now - window)}), so {they} {'was' if one else 'were'} skipped as under "
            "SKIP (§3)"
        )
    else:
        parts.rule = R_SKIP
        why = (
            f"at {_ts(now)} {the_latest} was {_dur(late)} late, more than the grace of "
            f"{_dur(fact.grace_ms)}, and the misfire policy is SKIP, so {they} "
            f"{'produces' if one else 'produce'} no run (§3)"
        )
    parts.sentences.append(f"{spec.id} missed {span}: {why}.")


def _fire_clause(
    spec: ScheduleSpec,
    fire: ev.FireRecorded | ev.FireSkipped | ev.FireCoalesced,
    request: Fact | None,
) -> str:
    if fire.request_id is None:
        return f"{spec.id}'s fire for {_ts_near(fire.nominal, fire.at)}"
    asked = f", requested at {_ts(request[1].at)}" if request is not None else ""
    return f"{spec.id}'s manual trigger {fire.request_id}{asked},"


def _recorded(
    parts: _Parts,
    spec: ScheduleSpec,
    state: ScheduleState | None,
    fire: ev.FireRecorded,
    request: Fact | None,
    cancels: list[ev.RunCancelled],
    snap: Snapshot,
) -> None:
    now, grace = fire.at, misfire_grace(spec, snap.options)
    parts.inputs += [("nominal", _ts(fire.nominal)), ("entry", fire.entry_id)]
    if fire.request_id is not None:
        parts.decision, parts.rule = "fired", R_MANUAL
        parts.inputs.append(("manual trigger", fire.request_id))
        asked = f" (requested at {_ts(request[1].at)})" if request is not None else ""
        parts.sentences.append(
            f"{spec.id} fired at {_ts(now)} on manual trigger {fire.request_id}{asked}; a manual "
            "trigger ignores the hours gate and the misfire policy and does not move the "
            "schedule's next fire (§3)."
        )
    else:
        _timing(parts, spec, state, fire, grace)
    _concurrency(parts, spec, fire, cancels, snap)


def _timing(
    parts: _Parts,
    spec: ScheduleSpec,
    state: ScheduleState | None,
    fire: ev.FireRecorded,
    grace: int,
) -> None:
    """Lateness against the grace, and the misfire rule that let the fire run."""
    now, late, count = fire.at, fire.late_ms, fire.represents
    verdict = "on time" if late <= grace else "later than the grace"
    parts.inputs += [
        ("lateness", f"{_dur(late)} (now - nominal - jitter), grace {_dur(grace)}: {verdict}"),
        ("represents", _plural(count, "fire time")),
    ]
    head = f"{spec.id} fired at {_ts(now)} for {_ts_near(fire.nominal, now)}, {_dur(late)} late"
    catch_up = spec.misfire is MisfirePolicy.CATCH_UP
    if late > grace:
        parts.decision = "late"
        text = (
            f"{head} (grace {_dur(grace)}): later than the grace, but the misfire policy is "
            f"CATCH_UP, so one run stands for {_plural(count, 'fire time')} (§3)."
        )
    else:
        parts.decision = "fired"
        text = f"{head} (grace {_dur(grace)}): on time."
        if count > 1 and catch_up:
            text += f" The misfire policy is CATCH_UP, so this run stands for {count} fire times."
        elif count > 1:
            text += f" It stands for {count} fire times that were all on time."
    parts.sentences.append(text)
    if catch_up and (late > grace or count > 1):
        rule = f"{R_CATCH_UP}; {R_WINDOW}" if parts.rule == R_WINDOW else R_CATCH_UP
        deferred = state is not None and state.deferred_since is not None
        parts.rule = f"{R_HOURS}; {rule}" if deferred and late > grace else rule
    elif parts.rule == R_SKIP:
        parts.rule = R_SKIP_ON_TIME
    else:
        parts.rule = R_SEVERAL if count > 1 else R_ON_TIME


def _concurrency(
    parts: _Parts,
    spec: ScheduleSpec,
    fire: ev.FireRecorded,
    cancels: list[ev.RunCancelled],
    snap: Snapshot,
) -> None:
    active, _ = _split_open(snap, spec.id)
    blockers = " and ".join(_blocker(snap, e) for e in active)
    policy = spec.concurrency
    if fire.hold is not None:
        parts.decision, parts.rule = "held", R_HOLD
        parts.inputs.append(("hold", fire.hold))
        parts.sentences.append(
            f"{_cap(blockers) or 'The previous run was still active'}, and the policy is "
            f"QUEUE_ONE, so entry {fire.entry_id} was queued Held ({fire.hold}); it is released "
            "when that run ends (§4)."
        )
    elif cancels:
        parts.decision, parts.rule = "replaced", R_REPLACE
        names = ", ".join(c.run_id for c in cancels)
        parts.inputs.append(("cancelled", names))
        parts.sentences.append(
            f"Run {names} was still running and the policy is REPLACE, so it was cancelled "
            f"(reason replaced) and entry {fire.entry_id} was queued (§4)."
        )
    elif active and policy is ConcurrencyPolicy.ALLOW:
        parts.rule = R_ALLOW if fire.request_id is None else parts.rule
        parts.sentences.append(
            f"{_cap(blockers)}, but the policy is ALLOW, so entry "
            f"{fire.entry_id} was queued anyway and may overlap it (§4)."
        )
    else:
        parts.sentences.append(
            f"Nothing of {spec.id} was running or waiting, so entry {fire.entry_id} was queued "
            f"Pending (concurrency {policy.name}, §4)."
        )


def _skipped(
    parts: _Parts, spec: ScheduleSpec, fire: ev.FireSkipped, request: Fact | None, snap: Snapshot
) -> None:
    active, waiting = _split_open(snap, spec.id)
    parts.decision = "skipped"
    parts.inputs += [("nominal", _ts(fire.nominal)), ("reason", fire.reason)]
    if fire.request_id is not None:
        parts.inputs.append(("manual trigger", fire.request_id))
    head = f"{_fire_clause(spec, fire, request)} was skipped at {_ts(fire.at)}"
    if fire.reason == "queue_full":
        parts.rule = R_QUEUE_FULL
        clause = " and ".join(_blocker(snap, e) for e in waiting) or "an entry was waiting"
        parts.sentences.append(
            f"{head}: {clause}, the policy is QUEUE_ONE, and a manual trigger is not coalesced "
            "but recorded as skipped (queue_full) so you see it (§4)."
        )
        return
    parts.rule = R_FORBID if active else R_FORBID_WAITING
    clause = " and ".join(_blocker(snap, e) for e in active or waiting) or "a run was active"
    extra = "" if active else "; a second entry would overlap it later"
    parts.sentences.append(f"{head}: {clause} and the policy is FORBID (§4{extra}).")


def _coalesced(
    parts: _Parts,
    spec: ScheduleSpec,
    fire: ev.FireCoalesced,
    request: Fact | None,
    cancels: list[ev.RunCancelled],
    snap: Snapshot,
) -> None:
    parts.decision = "coalesced"
    parts.inputs += [("nominal", _ts(fire.nominal)), ("coalesced into", fire.into_entry_id)]
    into = snap.entries.get(fire.into_entry_id)
    waiting = _blocker(snap, into) if into is not None else f"entry {fire.into_entry_id} waited"
    head = f"{_fire_clause(spec, fire, request)} was coalesced into entry {fire.into_entry_id}"
    if spec.concurrency is ConcurrencyPolicy.REPLACE:
        parts.rule = R_REPLACE_WAITING
        names = ", ".join(c.run_id for c in cancels)
        also = f"; run {names} was cancelled (replaced)" if names else ""
        parts.sentences.append(f"{head}: {waiting} and the policy is REPLACE (§4{also}).")
        return
    parts.rule = R_COALESCE
    active, _ = _split_open(snap, spec.id)
    behind = f" while {' and '.join(_blocker(snap, e) for e in active)}" if active else ""
    parts.sentences.append(
        f"{head}: {waiting}{behind}, and the policy is QUEUE_ONE, so one waiting entry stands "
        "for both (§4)."
    )


# --- a schedule -----------------------------------------------------------------------------


def _explain_schedule(scan: _Scan, rec: _Schedule, at: int | None) -> Explanation:
    state = scan.snapshot.schedules.get(rec.id)
    group = rec.group
    life_pos, life = rec.lifecycle if rec.lifecycle is not None else (None, None)
    if group is not None and group.facts:
        parts = _group_parts(rec, group)
        later = life_pos is not None and life_pos > (parts.position or 0)
        if state is None or (state.paused and later):
            earlier = parts.sentences[0] if parts.sentences else ""
            parts = _status_parts(rec, state, life_pos, life, scan.snapshot.options)
            parts.sentences.append(f"Its last decision, at {_ts(group.at)}: {earlier}")
        else:
            if rec.first_run is not None:
                position, assigned = rec.first_run
                parts.sentences.append(
                    f"Entry {assigned.entry_id} became run {assigned.run_id}, dispatched at "
                    f"{_ts(assigned.at)} (ledger position {position})."
                )
            _next_sentence(parts, rec.id, state)
    else:
        parts = _status_parts(rec, state, life_pos, life, scan.snapshot.options)
    pending = [r for r, s in scan.snapshot.requests if s == rec.id]
    for request_id in pending:
        asked = rec.requests.get(request_id)
        when = f" requested at {_ts(asked[1].at)}" if asked is not None else ""
        parts.sentences.append(
            f"Manual trigger {request_id}{when} is waiting for the next tick (§3)."
        )
    timeline = tuple((p, _fact_line(e)) for p, e in group.facts) if group is not None else ()
    if at is not None:
        parts.inputs.append(("explained at", _ts(at)))
    return _finish(rec.id, "schedule", parts, timeline)


def _explain_request(scan: _Scan, rec: _Schedule, request_id: str, at: int | None) -> Explanation:
    """A manual trigger that made no entry (one that did is explained as that entry): skipped
    or coalesced by the concurrency policy, waiting for the next tick, or dropped with its
    schedule."""
    asked_pos, asked = rec.requests[request_id]
    asked_line = (asked_pos, _fact_line(asked))
    group = rec.request_group
    if group is not None:
        parts = _group_parts(rec, group)
        timeline = (asked_line, *((p, _fact_line(e)) for p, e in group.facts))
    else:
        timeline = (asked_line,)
        waiting = any(r == request_id for r, _ in scan.snapshot.requests)
        parts = _Parts("waiting" if waiting else "dropped", R_REQUESTED, asked_pos, asked.at)
        parts.inputs = [("schedule", rec.id), ("requested at", _ts(asked.at))]
        if waiting:
            parts.sentences.append(
                f"Manual trigger {request_id} was requested at {_ts(asked.at)} and is waiting "
                f"for the next tick, which fires {rec.id} unless its concurrency policy "
                "skips or coalesces the fire (§3, §4): is a daemon running on this ledger?"
            )
        else:
            life = rec.lifecycle[1] if rec.lifecycle is not None else None
            when = f" at {_ts(life.at)}" if isinstance(life, ev.ScheduleRemoved) else ""
            parts.rule = R_REMOVED
            parts.sentences.append(
                f"Manual trigger {request_id} was requested at {_ts(asked.at)}, but {rec.id} "
                f"was removed{when} before a tick acted on it: it was dropped."
            )
    if at is not None:
        parts.inputs.append(("explained at", _ts(at)))
    return _finish(request_id, "manual trigger", parts, timeline)


def _status_parts(
    rec: _Schedule,
    state: ScheduleState | None,
    position: int | None,
    life: ev.Event | None,
    options: Options,
) -> _Parts:
    """No evaluation yet (or the schedule stopped since): not_due, paused, complete, removed."""
    at = life.at if life is not None else None
    if state is None:
        parts = _Parts("removed", R_REMOVED, position, at)
        parts.inputs = [("schedule", rec.id), ("removed at", _ts(at))]
        parts.sentences.append(
            f"{rec.id} was removed at {_ts(at)}; it decides nothing more, and its waiting "
            "entries were cancelled."
        )
        return parts
    spec = state.spec
    inputs = _schedule_inputs(spec, state, options)
    if state.paused:
        reason = life.reason if isinstance(life, ev.SchedulePaused) and life.reason else ""
        parts = _Parts("paused", R_PAUSED, position, at, inputs)
        why = f" ({reason})" if reason else ""
        parts.sentences.append(
            f"{spec.id} has been paused since {_ts(at)}{why}: it is not evaluated, and fires that "
            "fall in the pause are not misfires."
        )
        return parts
    if state.complete:
        parts = _Parts("complete", R_COMPLETE, position, at, inputs)
        parts.sentences.append(f"{spec.id} is complete: {_complete_why(state)}.")
        return parts
    parts = _Parts("not_due", R_NOT_DUE, None, None, inputs)
    jitter = f" (due at {_ts(state.due_at)} with jitter)" if spec.jitter_ms else ""
    parts.sentences.append(
        f"{spec.id} has not been due yet: it was added at {_ts(state.added_at)}, and its next "
        f"fire is {_ts(state.next_fire_at)}{jitter} ({describe(spec.trigger)})."
    )
    return parts


def _complete_why(state: ScheduleState) -> str:
    trigger = state.spec.trigger
    if isinstance(trigger, At):
        return f"its one-shot trigger fires once, at {_ts(trigger.instant_ms)}"
    if state.next_fire_at is None:
        return f"its trigger, {describe(trigger)}, has no fire left"
    return f"it reached its fire limit of {state.spec.fire_limit}"


def _next_sentence(parts: _Parts, sid: str, state: ScheduleState | None) -> None:
    if state is None:
        return
    if state.complete:
        parts.sentences.append(f"No fire remains: {sid} is complete ({_complete_why(state)}).")
        return
    if state.paused:
        parts.sentences.append(f"{sid} is paused, so it does not fire on its own until resumed.")
        return
    if parts.decision == "deferred":
        return
    parts.inputs.append(("next fire after", _ts(state.next_fire_at)))
    parts.sentences.append(f"Its next fire is {_ts(state.next_fire_at)}.")


# --- a queue entry, and one run of it -------------------------------------------------------


def _explain_entry(scan: _Scan, record: _Entry, run: _Run | None, at: int | None) -> Explanation:
    now = at if at is not None else scan.last_at or 0
    current = scan.snapshot.entries.get(record.id)
    parts = _Parts("", "", None, None)
    if run is not None:
        parts.inputs += [
            ("run", run.assigned.run_id),
            ("entry", record.id),
            ("attempt", f"{run.assigned.attempt} of {_max_attempts(run.view, record)}"),
        ]
        parts.sentences.append(
            f"Run {run.assigned.run_id} is attempt {run.assigned.attempt} of entry {record.id}."
        )
    else:
        parts.inputs.append(("entry", record.id))
    _origin(parts, scan, record)
    _hold_story(parts, record)
    runs = record.runs if run is None else record.runs[: record.runs.index(run) + 1]
    for each in runs:
        if each is not run and run is not None:
            parts.sentences.append(_attempt_summary(each))
            continue
        tag = "" if run is not None else f" (attempt {each.assigned.attempt})"
        _wait_story(parts, record, each.assigned.attempt, tag)
        _dispatch_story(parts, record, each, tag)
        _outcome_story(parts, record, each, tag)
    if run is not None:
        _run_decision(parts, run)
    else:
        _entry_decision(parts, record, current, now)
    timeline = tuple((p, _fact_line(e)) for p, e in record.timeline)
    kind = "run" if run is not None else "entry"
    subject = run.assigned.run_id if run is not None else record.id
    return _finish(subject, kind, parts, timeline)


def _max_attempts(view: _View, record: _Entry) -> int:
    entry = view.snapshot.entries.get(record.id)
    return entry.max_attempts if entry is not None else 1


def _origin(parts: _Parts, scan: _Scan, record: _Entry) -> None:
    """How the entry came to be: a scheduled fire, a manual trigger, or a submitted task."""
    position, origin = record.origin
    if isinstance(origin, ev.EntryQueued):
        parts.inputs += [
            ("origin", f"task submitted at {_ts(origin.at)} (position {position})"),
            ("priority", str(origin.priority)),
        ]
        hold = f", held ({origin.hold})" if origin.hold else ""
        parts.sentences.append(
            f"Entry {record.id} was submitted at {_ts(origin.at)} as a task without a schedule "
            f"(priority {origin.priority}, max_attempts {origin.max_attempts}{hold})."
        )
        return
    assert isinstance(origin, ev.FireRecorded)
    kind = "manual trigger" if origin.request_id else "scheduled fire"
    parts.inputs.append(("origin", f"{kind} of {origin.schedule_id} (position {position})"))
    if record.group is None:
        parts.sentences.append(f"Entry {record.id} was queued by a {kind} at {_ts(origin.at)}.")
        return
    rec = scan.schedules.get(origin.schedule_id) or _Schedule(origin.schedule_id)
    fire = _group_parts(rec, record.group)
    taken = {"schedule", "trigger", "lateness", "grace", "misfire policy", "concurrency"}
    taken |= {"hours gate", "nominal", "active runs", "missed", "hold", "manual trigger"}
    parts.inputs += [(name, value) for name, value in fire.inputs if name in taken]
    parts.inputs.append(("fire decided at", _ts(origin.at)))
    parts.sentences += fire.sentences
    if record.coalesced:
        nominals = ", ".join(_ts_near(e.nominal, e.at) for _, e in record.coalesced)
        parts.inputs.append(("coalesced fires", nominals))
        parts.sentences.append(
            f"{_plural(len(record.coalesced), 'later fire')} of {origin.schedule_id} "
            f"{'was' if len(record.coalesced) == 1 else 'were'} coalesced into it ({nominals}), "
            "so this entry stands for them too (§4)."
        )


def _hold_story(parts: _Parts, record: _Entry) -> None:
    held_since: int | None = None
    origin = record.origin[1]
    hold = getattr(origin, "hold", None)
    if hold:
        held_since = origin.at
    for _, fact in record.holds:
        if isinstance(fact, ev.EntryHeld):
            held_since = fact.at
        elif isinstance(fact, ev.EntryReleased):
            since = f" held since {_ts(held_since)} and" if held_since is not None else ""
            why = (
                "the previous run finished (§4 QUEUE_ONE)"
                if fact.reason == "previous_run_finished"
                else f"{fact.reason} (§5)"
            )
            parts.sentences.append(
                f"It was{since} released at {_ts(fact.at)} because {why}; it was Pending from then."
            )
            parts.inputs.append(("released at", _ts(fact.at)))
            held_since = None


def _wait_story(parts: _Parts, record: _Entry, attempt: int, tag: str = "") -> None:
    """The recorded ticks in which the entry was ready but not dispatched, with why."""
    views = record.waits.get(attempt)
    if not views:
        return
    count = record.wait_counts[attempt]
    parts.sentences.append(
        f"Attempt {attempt} was ready but not dispatched in {_plural(count, 'recorded tick')}."
    )
    for view in views[:1] if views[0] is views[-1] else views:
        reason, _ = _wait_reason(view, record.id)
        parts.sentences.append(f"At {_ts(view.at)} (tick at position {view.position}), {reason}.")
    limit, arithmetic = _capacity(views[0].snapshot)
    parts.inputs.append(
        (f"capacity when it waited{tag}", f"{_ts(views[0].at)}: {arithmetic} -> limit {limit}")
    )


def _wait_reason(view: _View, entry_id: str) -> tuple[str, str]:
    """Why a ready entry was not picked in a tick, and the rule."""
    limit, text = _capacity(view.snapshot)
    if view.snapshot.options.draining:
        return "the engine was draining, so nothing new was dispatched (§6)", R_DRAINING
    if limit == 0:
        return f"no slot was free ({text}, so the limit was 0; §6)", R_CAPACITY
    place, ready, ahead = _order(view, entry_id)
    names = ", ".join(f"{e.id} (priority {e.priority})" for e in ahead[:3])
    more = f" and {len(ahead) - 3} more" if len(ahead) > 3 else ""
    return (
        f"{_plural(limit, 'slot')} went to the {_plural(len(ahead), 'entry', 'entries')} ahead "
        f"of it ({names}{more}); it was {_nth(place)} of {ready} ready entries and the limit was "
        f"{limit} ({text}; §5: priority, then FIFO)",
        R_ORDER,
    )


def _dispatch_story(parts: _Parts, record: _Entry, run: _Run, tag: str = "") -> None:
    fact, view = run.assigned, run.view
    limit, text = _capacity(view.snapshot)
    place, ready, _ = _order(view, record.id)
    count = len(view.assigned)
    entry = view.snapshot.entries.get(record.id)
    base, label = _ready_since(record, run, entry)
    waited = f", {_dur(fact.at - base)} after {label} {_ts(base)}" if base is not None else ""
    priority = f"priority {entry.priority}" if entry is not None else "priority ?"
    parts.sentences.append(
        f"Run {fact.run_id} was dispatched at {_ts(fact.at)}{waited}; it was "
        f"{_nth(place)} in dispatch order ({priority}) of {ready} ready "
        f"{'entry' if ready == 1 else 'entries'}, and capacity allowed {limit} "
        f"({text}) (§5, §6)."
    )
    parts.inputs += [
        (f"dispatched at{tag}", f"{_ts(fact.at)} (position {run.position})"),
        (f"capacity{tag}", f"{text} -> limit {limit}"),
        (f"dispatch order{tag}", f"{_nth(place)} of {ready} ready, {count} started in that tick"),
    ]
    if base is not None:
        parts.inputs.append((f"start delay{tag}", _dur(fact.at - base)))
    if fact.deadline is not None:
        parts.inputs.append((f"deadline{tag}", _ts(fact.deadline)))


def _ready_since(record: _Entry, run: _Run, entry: Entry | None) -> tuple[int | None, str]:
    """The instant the attempt could first start, and what that instant was."""
    index = record.runs.index(run)
    if index > 0 and record.runs[index - 1].retry is not None:
        retry = record.runs[index - 1].retry
        assert retry is not None
        return retry[1].not_before, "its retry became due at"
    origin = record.origin[1]
    if isinstance(origin, ev.FireRecorded) and origin.request_id is None:
        return origin.nominal, "its nominal time"
    if entry is not None:
        return entry.queued_at, "it was queued at"
    return None, ""


def _outcome_story(parts: _Parts, record: _Entry, run: _Run, tag: str = "") -> None:
    attempt = run.assigned.attempt
    if run.started is not None:
        started = run.started[1]
        pid = f" (pid {started.pid})" if started.pid is not None else ""
        fallback = " on the fallback runner" if started.fallback else ""
        parts.sentences.append(f"It started at {_ts(started.at)}{pid}{fallback}.")
        parts.inputs.append((f"started at{tag}", _ts(started.at)))
    if run.cancelled is not None:
        parts.sentences.append(_cancel_sentence(run))
    if run.outcome is None:
        return
    outcome = run.outcome[1]
    parts.inputs.append((f"outcome{tag}", _outcome_text(run, outcome)))
    parts.sentences.append(_outcome_sentence(run, outcome, _max_attempts(run.view, record)))
    if run.retry is not None:
        retry = run.retry[1]
        delay = retry.not_before - retry.at
        parts.sentences.append(
            f"Attempt {retry.attempt} was planned not before {_ts(retry.not_before)} "
            f"(backoff {_dur(delay)} after attempt {attempt}, §8 Retry)."
        )
        parts.inputs.append(
            (f"retry{tag}", f"attempt {retry.attempt} not before {_ts(retry.not_before)}")
        )
    for released in run.released:
        parts.sentences.append(f"Its end released held entry {released} (§4 QUEUE_ONE).")


def _cancel_sentence(run: _Run) -> str:
    assert run.cancelled is not None
    fact = run.cancelled[1]
    if fact.reason == "timeout":
        deadline = run.assigned.deadline
        return (
            f"It was cancelled at {_ts(fact.at)} because it passed its deadline "
            f"{_ts(deadline)} ({_dur((deadline or fact.at) - run.assigned.at)} after assignment); "
            "a timeout counts as a failure (§8)."
        )
    if fact.reason == "replaced":
        by = run.replaced_by
        newer = "a newer fire of its schedule"
        if isinstance(by, ev.FireRecorded):
            newer = f"the fire for {_ts_near(by.nominal, by.at)} (entry {by.entry_id})"
        elif by is not None:
            newer = f"the fire for {_ts_near(by.nominal, by.at)}"
        return (
            f"It was cancelled at {_ts(fact.at)} because {newer} replaced it and the policy is "
            "REPLACE (§4); a cancelled run is never retried."
        )
    return f"It was cancelled at {_ts(fact.at)} ({fact.reason}); a cancelled run is not retried."


RECORDED_LATE_MS = 5000  # an end recorded this much after the process ended says both


def _ended(run: _Run, outcome: ev.RunSucceeded | ev.RunFailed) -> str:
    """When the process ended (`ended_at`), and the recording instant too where they differ
    by RECORDED_LATE_MS or more."""
    started = run.started[1].at if run.started is not None else None
    end = ended_at(started, run.assigned.at, outcome.duration_ms, outcome.at)
    if outcome.at - end < RECORDED_LATE_MS:
        return _ts(end)  # (history's finished_at too)
    return f"{_ts(end)} (recorded at {_ts(outcome.at)})"


def _outcome_text(run: _Run, outcome: Outcome) -> str:
    if isinstance(outcome, ev.RunSucceeded):
        return (
            f"succeeded at {_ended(run, outcome)}, exit code 0, after {_dur(outcome.duration_ms)}"
        )
    if isinstance(outcome, ev.RunLost):
        return f"lost at {_ts(outcome.at)}: {outcome.detail or 'no detail'}"
    return (
        f"failed at {_ended(run, outcome)}, reason {outcome.reason}, {_exit(outcome)}, "
        f"after {_dur(outcome.duration_ms)}"
    )


def _outcome_sentence(run: _Run, outcome: Outcome, max_attempts: int) -> str:
    if isinstance(outcome, ev.RunSucceeded):
        return (
            f"It succeeded at {_ended(run, outcome)} with exit code 0 after "
            f"{_dur(outcome.duration_ms)}; the entry is complete (§8)."
        )
    tail = _retry_tail(outcome.final, run.assigned.attempt, max_attempts)
    if isinstance(outcome, ev.RunLost):
        return (
            f"It was lost at {_ts(outcome.at)} ({outcome.detail or 'no detail'}): the engine could "
            f"not account for it, so it is recorded lost (§7){tail}"
        )
    shown = _exit(outcome)
    error = f" ({outcome.error})" if outcome.error and outcome.error != shown else ""
    stderr = outcome.stderr_tail.strip().splitlines()
    last = f'; stderr ends "{stderr[-1][:200]}"' if stderr else ""
    if outcome.reason == "cancelled":
        return (
            f"Its process ended at {_ended(run, outcome)} ({_exit(outcome)}) and was recorded "
            f"as cancelled, never retried{last}."
        )
    how = {
        "timeout": "timed out",
        "spawn_failed": "could not be spawned",
        "exit": "failed",
    }.get(outcome.reason, f"failed ({outcome.reason})")
    past = ""
    if outcome.reason == "timeout" and run.cancelled is None:  # (rules 3: no cancel was sent)
        past = (
            f", past its deadline {_ts(run.assigned.deadline)} with no cancel sent (it ended "
            "while no daemon watched it, or before the cancel reached it), so it counts as a "
            "timeout (§8)"
        )
    return (
        f"It {how} at {_ended(run, outcome)} with {shown}{error} after "
        f"{_dur(outcome.duration_ms)}{past}{last}{tail}"
    )


def _retry_tail(final: bool, attempt: int, max_attempts: int) -> str:
    if not final:
        return f"; attempt {attempt} of {max_attempts}, so a retry follows (§8)."
    if max_attempts > 1:
        return f"; no retry left (max_attempts {max_attempts}), so the task is blocked (§8)."
    return "; no retry is configured (max_attempts 1), so the task is blocked (§8)."


def _attempt_summary(run: _Run) -> str:
    fact = run.assigned
    if run.outcome is None:
        return f"Attempt {fact.attempt} (run {fact.run_id}) was dispatched at {_ts(fact.at)}."
    text = f"Attempt {fact.attempt} (run {fact.run_id}) {_outcome_text(run, run.outcome[1])}"
    if run.retry is not None:
        text += f"; attempt {run.retry[1].attempt} was planned not before "
        text += f"{_ts(run.retry[1].not_before)} (§8 Retry)"
    return text + "."


def _run_decision(parts: _Parts, run: _Run) -> None:
    """A run's decision is its outcome (or where it stands), with the rule that decided it."""
    if run.outcome is not None:
        position, outcome = run.outcome
        parts.position, parts.at = position, outcome.at
        parts.decision, parts.rule = _outcome_rule(outcome, run)
        return
    if run.cancelled is not None:
        position, fact = run.cancelled
        parts.position, parts.at, parts.decision = position, fact.at, "cancelling"
        parts.rule = {"timeout": R_TIMEOUT, "replaced": R_REPLACED}.get(fact.reason, R_OPERATOR)
        return
    if run.started is not None:
        parts.position, parts.at = run.started[0], run.started[1].at
        parts.decision, parts.rule = "running", R_DISPATCH
        return
    parts.position, parts.at = run.position, run.assigned.at
    parts.decision, parts.rule = "dispatched", R_DISPATCH


def _outcome_rule(outcome: Outcome, run: _Run) -> tuple[str, str]:
    if isinstance(outcome, ev.RunSucceeded):
        return "succeeded", R_SUCCESS
    if isinstance(outcome, ev.RunLost):
        return "lost", R_LOST
    if outcome.reason == "cancelled":
        reason = run.cancelled[1].reason if run.cancelled is not None else "operator"
        return "cancelled", R_REPLACED if reason == "replaced" else R_OPERATOR
    if outcome.reason == "timeout":
        return "failed", R_TIMEOUT + ("" if outcome.final else f"; {R_RETRY}")
    return "failed", R_FAILED if outcome.final else R_RETRY


def _entry_decision(parts: _Parts, record: _Entry, current: Entry | None, now: int) -> None:
    """An entry's decision: cancelled, its last run's outcome, or where it waits now."""
    if record.cancelled is not None:
        position, fact = record.cancelled
        parts.position, parts.at, parts.decision = position, fact.at, "cancelled"
        parts.rule = R_REMOVED_ENTRY if fact.reason == "schedule_removed" else R_CANCELLED_ENTRY
        parts.sentences.append(
            f"It was cancelled at {_ts(fact.at)} ({fact.reason}) while waiting, so it never "
            + ("ran again." if record.runs else "ran.")
        )
        return
    last = record.runs[-1] if record.runs else None
    if current is None or current.status is EntryStatus.ASSIGNED:
        if last is not None:
            _run_decision(parts, last)
        return
    if current.status is EntryStatus.HELD:
        _held_decision(parts, record, current)
        return
    waits = record.waits.get(current.attempt)
    if waits:
        view = waits[-1]
        reason, rule = _wait_reason(view, record.id)
        parts.decision, parts.rule, parts.at = "deferred", rule, view.at
        parts.position = view.position
        parts.sentences.append(
            f"It is still waiting to be dispatched: at {_ts(view.at)}, {reason}."
        )
        return
    if last is not None and last.retry is not None:
        position, retry = last.retry
        parts.decision, parts.rule, parts.position, parts.at = (
            "retried",
            R_RETRY,
            position,
            retry.at,
        )
        due = "is due" if retry.not_before <= now else "becomes due"
        parts.sentences.append(
            f"Attempt {retry.attempt} {due} at {_ts(retry.not_before)}; it waits in the queue "
            "until then (§8 Retry)."
        )
        return
    position, origin = record.origin
    parts.decision, parts.position, parts.at = "queued", position, origin.at
    parts.rule = R_SUBMITTED if isinstance(origin, ev.EntryQueued) else R_DISPATCH
    parts.sentences.append(
        f"It is Pending (priority {current.priority}) and no recorded tick has had it ready "
        "without dispatching it yet (§5)."
    )


def _held_decision(parts: _Parts, record: _Entry, current: Entry) -> None:
    holds = [(p, e) for p, e in record.holds if isinstance(e, ev.EntryHeld)]
    position, fact = holds[-1] if holds else record.origin
    parts.decision, parts.position, parts.at = "held", position, fact.at
    reason = current.hold_reason or "held"
    parts.rule = R_HOLD if reason == AWAITING_PREVIOUS_RUN else R_HELD
    parts.inputs.append(("hold", reason))
    parts.sentences.append(
        f"It is Held ({reason}) since {_ts(fact.at)}: a Held entry is never dispatched until a "
        "fact releases it (§5)."
    )


def _finish(
    subject: str, kind: str, parts: _Parts, timeline: tuple[tuple[int, str], ...]
) -> Explanation:
    seen: set[str] = set()
    inputs = []
    for name, value in parts.inputs:
        if name not in seen:
            seen.add(name)
            inputs.append((name, value))
    return Explanation(
        subject=subject,
        kind=kind,
        decision=parts.decision,
        rule=parts.rule,
        position=parts.position,
        at=parts.at,
        inputs=tuple(inputs),
        sentences=tuple(parts.sentences),
        timeline=timeline,
    )


# --- the entry point ------------------------------------------------------------------------


def explain(
    events: Iterable[tuple[int, ev.Event]], subject: str, at: int | None = None
) -> Explanation:
    """Why `subject` (a run id, entry id or schedule id) is where it is, at `at` or the end."""
    scan = _Scan(subject)
    stream: Iterator[tuple[int, ev.Event]] = iter(events)
    cut: Fact | None = None
    for position, event in stream:
        if at is not None and event.at > at:
            cut = (position, event)
            break
        if scan.finished(position):
            break
        scan.feed(position, event)
    scan.end_tick()
    found = scan.runs.get(subject)
    if found is not None:
        return _explain_entry(scan, found[0], found[1], at)
    if "#" not in subject and subject in scan.entries:
        return _explain_entry(scan, scan.entries[subject], None, at)
    rec = scan.schedules.get(subject)
    if rec is not None and rec.added is not None:
        return _explain_schedule(scan, rec, at)
    sid = _schedule_part(subject) if "!" in subject else None
    rec = scan.schedules.get(sid) if sid is not None else None
    if rec is not None and subject in rec.requests:
        return _explain_request(scan, rec, subject, at)
    _unknown(subject, at, cut, stream)


def _unknown(
    subject: str, at: int | None, cut: Fact | None, rest: Iterator[tuple[int, ev.Event]]
) -> NoReturn:
    """Raise the error for a subject the ledger does not hold (or not yet at `at`)."""
    later = itertools.chain([cut], rest) if cut is not None else iter(())
    for position, event in later:
        if _mentions(event, subject):
            raise InvalidInput(
                "at",
                f"{subject!r} does not exist yet at {_ts(at)}: it first appears at "
                f"{_ts(event.at)} (ledger position {position})",
                "choose a later --at, or leave --at out",
            )
    raise InvalidInput(
        "subject",
        f"{subject!r} is not a run, entry, schedule or manual trigger in this ledger",
        "list schedules with `cronledger list` or runs with `cronledger history`",
    )
