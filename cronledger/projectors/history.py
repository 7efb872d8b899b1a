"""Run history projector: one record per run, from assignment to outcome."""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from immutables import Map

from cronledger.domain import events as ev
from cronledger.domain.evolve import evolve
from cronledger.domain.reconcile import ended_at


@attrs.frozen(kw_only=True)
class RunRecord:
    seq: int
    run_id: str
    entry_id: str
    schedule_id: str | None
    attempt: int
    scheduled_for: int | None
    assigned_at: int
    argv: tuple[str, ...]
    call: str | None
    node: str | None = None  # the daemon that dispatched it (None: the unnamed one)
    started_at: int | None = None
    pid: int | None = None
    fallback: bool = False
    finished_at: int | None = None  # when the process ended, as the runner saw it
    recorded_at: int | None = None  # when its outcome fact was recorded (a tick's reading)
    outcome: str = "assigned"
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    duration_ms: int | None = None
    stderr_tail: str = ""
    error: str = ""
    cancel_reason: str | None = None
    stdout_tail: str | None = None  # None: no output captured (a call; an older ledger)
    stdout_dropped: int | None = None
    stderr_dropped: int | None = None


@attrs.frozen(kw_only=True)
class History:
    """Runs by id (`seq` is the assignment order) and what each entry belongs to."""

    runs: Map[str, RunRecord] = attrs.field(factory=Map)
    count: int = 0
    entries: Map[str, tuple[str | None, int | None]] = attrs.field(factory=Map)

    def for_schedule(self, schedule_id: str | None) -> list[RunRecord]:
        records = sorted(self.runs.values(), key=lambda r: r.seq)
        if schedule_id is None:
            return records
        return [r for r in records if r.schedule_id == schedule_id]


EMPTY_HISTORY = History()


def _finish(h: History, run_id: str, **changes: object) -> History:
    record = h.runs.get(run_id)
    if record is None:
        return h
    return evolve(h, runs=h.runs.set(run_id, evolve(record, **changes)))


def _ended(h: History, e: ev.RunSucceeded | ev.RunFailed) -> dict[str, object]:
    """When the process ended (`ended_at`) and when that was recorded."""
    record = h.runs.get(e.run_id)
    if record is None:
        return {}
    end = ended_at(record.started_at, record.assigned_at, e.duration_ms, e.at)
    return {"finished_at": end, "recorded_at": e.at}


def apply(h: History, e: ev.Event) -> History:
    """Fold one event into the run history."""
    if isinstance(e, ev.FireRecorded):
        return evolve(h, entries=h.entries.set(e.entry_id, (e.schedule_id, e.nominal)))
    if isinstance(e, ev.EntryQueued):
        return evolve(h, entries=h.entries.set(e.entry_id, (None, e.at)))
    if isinstance(e, ev.RunAssigned):
        schedule_id, nominal = h.entries.get(e.entry_id, (None, None))
        record = RunRecord(
            seq=h.count + 1,
            run_id=e.run_id,
            entry_id=e.entry_id,
            schedule_id=schedule_id,
            attempt=e.attempt,
            scheduled_for=nominal,
            assigned_at=e.at,
            argv=e.argv,
            call=e.call,
            node=e.node,
        )
        return evolve(h, runs=h.runs.set(e.run_id, record), count=h.count + 1)
    if isinstance(e, ev.RunStarted):
        return _finish(
            h, e.run_id, started_at=e.at, pid=e.pid, fallback=e.fallback, outcome="running"
        )
    if isinstance(e, ev.RunCancelled):
        return _finish(h, e.run_id, cancel_reason=e.reason)
    if isinstance(e, ev.RunSucceeded):
        return _finish(
            h,
            e.run_id,
            **_ended(h, e),
            outcome="succeeded",
            exit_code=e.exit_code,
            duration_ms=e.duration_ms,
            stderr_tail=e.stderr_tail,
            stdout_tail=e.stdout_tail,
            stdout_dropped=e.stdout_dropped,
            stderr_dropped=e.stderr_dropped,
        )
    if isinstance(e, ev.RunFailed):
        return _finish(
            h,
            e.run_id,
            **_ended(h, e),
            outcome="failed",
            reason=e.reason,
            exit_code=e.exit_code,
            signal=e.signal,
            duration_ms=e.duration_ms,
            stderr_tail=e.stderr_tail,
            error=e.error,
            stdout_tail=e.stdout_tail,
            stdout_dropped=e.stdout_dropped,
            stderr_dropped=e.stderr_dropped,
        )
    if isinstance(e, ev.RunLost):
        return _finish(
            h,
            e.run_id,
            finished_at=e.at,  # unknown: the run was not seen to end
            recorded_at=e.at,
            outcome="lost",
            reason="lost",
            error=e.detail,
        )
    return h


def project(events: Iterable[ev.Event]) -> History:
    h = EMPTY_HISTORY
    for e in events:
        h = apply(h, e)
    return h
