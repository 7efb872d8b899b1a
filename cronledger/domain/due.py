"""Due evaluation (SEMANTICS §3-§4): manual triggers and due schedules -> fire facts."""

from __future__ import annotations

from collections.abc import Iterator

from cronledger.domain import events as ev
from cronledger.domain import ids
from cronledger.domain.commands import CancelRun
from cronledger.domain.concurrency import Action, decide_concurrency
from cronledger.domain.hours import gate_allows, gate_opens_at
from cronledger.domain.jitter import due_at
from cronledger.domain.misfire import classify, classify_one, horizon
from cronledger.domain.state import ScheduleState, Snapshot
from cronledger.domain.triggers import next_fire_after
from cronledger.domain.values import misfire_grace

Decision = tuple[list[ev.Event], list[CancelRun]]


def iter_due(snapshot: Snapshot, now: int) -> Iterator[tuple[int, str]]:
    return snapshot.due.iter_upto((now, "\U0010ffff"))


def _fire(
    snapshot: Snapshot,
    state: ScheduleState,
    now: int,
    nominal: int,
    represents: int,
    late_ms: int,
    request: str | None,
    advance: tuple[int | None, int | None],
) -> Decision:
    """One fire through the concurrency policy."""
    spec = state.spec
    next_fire, next_due = advance
    decision = decide_concurrency(snapshot, spec.id, spec.concurrency, request is not None)
    out: list[ev.Event] = []
    commands: list[CancelRun] = []
    for run_id in decision.cancel:
        out.append(ev.RunCancelled(at=now, run_id=run_id, reason="replaced"))
        commands.append(CancelRun(run_id=run_id, reason="replaced"))
    if decision.action is Action.SKIP:
        out.append(
            ev.FireSkipped(
                at=now,
                schedule_id=spec.id,
                nominal=nominal,
                reason=decision.reason,
                request_id=request,
                next_fire_at=next_fire,
                due_at=next_due,
            )
        )
    elif decision.action is Action.COALESCE:
        assert decision.into is not None
        out.append(
            ev.FireCoalesced(
                at=now,
                schedule_id=spec.id,
                nominal=nominal,
                into_entry_id=decision.into,
                request_id=request,
                next_fire_at=next_fire,
                due_at=next_due,
            )
        )
    else:
        entry_id = ids.fire_entry_id(spec.id, nominal) if request is None else request
        hold = decision.reason if decision.action is Action.HOLD else None
        out.append(
            ev.FireRecorded(
                at=now,
                schedule_id=spec.id,
                nominal=nominal,
                entry_id=entry_id,
                represents=represents,
                late_ms=late_ms,
                hold=hold,
                request_id=request,
                next_fire_at=next_fire,
                due_at=next_due,
            )
        )
    return out, commands


def evaluate_request(snapshot: Snapshot, request_id: str, schedule_id: str, now: int) -> Decision:
    """A manual trigger: ignores the hours gate and misfire policy; concurrency applies."""
    state = snapshot.schedules.get(schedule_id)
    if state is None:
        return [], []
    keep = (state.next_fire_at, state.due_at)
    return _fire(snapshot, state, now, now, 1, 0, request_id, keep)


def evaluate_schedule(snapshot: Snapshot, state: ScheduleState, now: int) -> Decision:
    """One due schedule at `now`: gate, misfire policy, then concurrency; at most one fire."""
    spec = state.spec
    first = state.next_fire_at
    if first is None or state.paused or (spec.fire_limit is not None and state.complete):
        return [], []
    gated = spec.active_hours is not None or spec.quiet_hours is not None
    if gated and not gate_allows(spec.active_hours, spec.quiet_hours, now):
        until = gate_opens_at(spec.active_hours, spec.quiet_hours, now)
        return [ev.FireDeferred(at=now, schedule_id=spec.id, nominal=first, until=until)], []

    grace = misfire_grace(spec, snapshot.options)
    nominal = next_fire_after(spec.trigger, first)
    if nominal is None or nominal > now:  # only `first` is due: the usual case
        outcome = classify_one(spec, first, now, grace)
    else:
        last = horizon(spec, first, now)
        outcome = classify(spec, first, last, now, grace)
        nominal = next_fire_after(spec.trigger, last)
    advance = (nominal, due_at(spec.id, nominal, spec.jitter_ms))
    if not outcome.missed and outcome.fire is not None:  # the usual case: one fire, none missed
        return _fire(
            snapshot, state, now, outcome.fire, outcome.represents, outcome.late_ms, None, advance
        )
    out: list[ev.Event] = []
    if outcome.missed:
        assert outcome.missed_first is not None and outcome.missed_last is not None
        out.append(
            ev.FireMissed(
                at=now,
                schedule_id=spec.id,
                count=outcome.missed,
                first=outcome.missed_first,
                last=outcome.missed_last,
                grace_ms=grace,
                next_fire_at=advance[0],
                due_at=advance[1],
            )
        )
    if outcome.fire is None:
        return out, []
    fired, commands = _fire(
        snapshot, state, now, outcome.fire, outcome.represents, outcome.late_ms, None, advance
    )
    return out + fired, commands


def upcoming_fires(state: ScheduleState, count: int) -> list[int]:
    """The next `count` nominal fire times from `next_fire_at` (none once complete), capped by
    the fires the schedule has left. Paused schedules keep theirs: callers decide."""
    if state.complete:
        return []
    if state.fires_remaining is not None:
        count = min(count, state.fires_remaining)
    fires: list[int] = []
    at = state.next_fire_at
    while at is not None and len(fires) < count:
        fires.append(at)
        at = next_fire_after(state.spec.trigger, at)
    return fires
