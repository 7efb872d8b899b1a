"""The tick planner (SEMANTICS §7): `plan_tick(snapshot, now, exits) -> TickPlan`, pure.

Phases, in order: load context -> evaluate due schedules -> snapshot -> preparation (capacity)
-> reconcile completed runs -> dispatch ready entries -> summary. Each phase's facts are folded
into a working snapshot with the same projector a replay uses, so later phases see them. The
batch starts with a TickStarted header holding the clock reading and the observations consumed,
so `verify` can re-plan any tick from the ledger alone. A tick that decides nothing returns no
events.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from cronledger.domain import events as ev
from cronledger.domain.capacity import ready_dispatch_limit
from cronledger.domain.commands import RunnerCommand
from cronledger.domain.dispatch import dispatch, plan_ready_dispatch, waited_until
from cronledger.domain.due import evaluate_request, evaluate_schedule, iter_due
from cronledger.domain.evolve import evolve
from cronledger.domain.reconcile import RULES, expire_timeouts, reconcile_exits
from cronledger.domain.state import Snapshot
from cronledger.domain.values import RunExit
from cronledger.projectors.snapshot import apply, apply_all


@attrs.frozen(kw_only=True)
class TickSummary:
    """Counts of what one tick decided (phase 8)."""

    tick: int
    now: int
    fired: int = 0
    skipped: int = 0
    coalesced: int = 0
    deferred: int = 0
    missed: int = 0
    dispatched: int = 0
    reconciled: int = 0
    retries: int = 0
    cancelled: int = 0
    dispatch_limit: int = 0
    more_due: bool = False  # work left that the next tick should do at once (a due batch, or
    # ready entries that max_per_tick held back while slots are free)


@attrs.frozen(kw_only=True)
class TickPlan:
    """The facts to append (header first; empty when nothing was decided), the runner commands,
    the snapshot after the facts, and the summary."""

    events: tuple[ev.Event, ...]
    commands: tuple[RunnerCommand, ...]
    snapshot: Snapshot
    summary: TickSummary


_COUNTED: dict[type, str] = {
    ev.FireRecorded: "fired",
    ev.FireSkipped: "skipped",
    ev.FireCoalesced: "coalesced",
    ev.FireDeferred: "deferred",
    ev.FireMissed: "missed",
    ev.RunAssigned: "dispatched",
    ev.RunSucceeded: "reconciled",
    ev.RunFailed: "reconciled",
    ev.RunLost: "reconciled",
    ev.RetryPlanned: "retries",
    ev.RunCancelled: "cancelled",
}


def _summarise(
    tick: int, now: int, decided: Sequence[ev.Event], limit: int, more_due: bool
) -> TickSummary:
    counts = dict.fromkeys(_COUNTED.values(), 0)
    counted = _COUNTED
    for e in decided:
        name = counted.get(type(e))
        if name is not None:
            counts[name] += e.count if isinstance(e, ev.FireMissed) else 1
    return TickSummary(tick=tick, now=now, dispatch_limit=limit, more_due=more_due, **counts)


def plan_tick(
    snapshot: Snapshot,
    now: int,
    exits: Sequence[RunExit] = (),
    node: str | None = None,
    rules: int = RULES,
    reconcile_only: bool = False,
) -> TickPlan:
    """Decide one tick at clock reading `now`, given the runner exits observed since the last;
    `node` (the planning engine's name) is recorded in the header and on its RunAssigned;
    `rules` (recorded in the header) is for `verify` re-planning an older tick. A
    `reconcile_only` tick records the exits and expired timeouts and decides nothing else (no
    fire, no dispatch): the runs that ended while no daemon watched are settled before the
    first tick judges a fire by them, and `run --once` waits without firing anything."""
    # 1. load context
    options = snapshot.options
    tick = snapshot.counters.ticks + 1
    exits = tuple(exits)
    requests = () if reconcile_only else snapshot.requests
    header = ev.TickStarted(
        at=now,
        tick=tick,
        exits=exits,
        requests=tuple(r for r, _ in requests),
        decisions=0,
        node=node,
        rules=rules,
        reconcile_only=reconcile_only,
    )
    work = apply(snapshot, header)
    decided: list[ev.Event] = []
    commands: list[RunnerCommand] = []

    def take(facts: Sequence[ev.Event], cmds: Sequence[RunnerCommand] = ()) -> None:
        nonlocal work
        if facts:
            decided.extend(facts)
            work = apply_all(work, facts)
        commands.extend(cmds)

    # 2. evaluate due: manual triggers first (they are few), then due schedules in batches
    for request_id, schedule_id in requests:
        take(*evaluate_request(work, request_id, schedule_id, now))
    # A due schedule's decision reads only its own state, entries and runs, and the batch holds
    # each schedule once: every decision sees the same snapshot, and they are folded in one go.
    more_due = False
    fired: list[ev.Event] = []
    fire_cmds: list[RunnerCommand] = []
    before_fires = work
    for handled, (_, schedule_id) in enumerate(() if reconcile_only else iter_due(snapshot, now)):
        if handled == options.batch_size:
            more_due = True
            break
        state = before_fires.schedules.get(schedule_id)
        if state is not None:
            facts, cmds = evaluate_schedule(before_fires, state, now)
            fired.extend(facts)
            fire_cmds.extend(cmds)
    take(fired, fire_cmds)

    # 3-5. snapshot, then reconcile completed runs and expire timeouts; preparation (capacity)
    # is computed after reconciliation, so slots freed by this tick's exits are used at once.
    take(reconcile_exits(work, exits, now, rules))
    timeout_facts, timeout_cmds = expire_timeouts(work, now)
    take(timeout_facts, timeout_cmds)
    limit = ready_dispatch_limit(work.options, work.active, work.fallback_active > 0)

    # 6. dispatch ready entries; when max_per_tick cut the batch while slots are left, the
    # next tick follows at once for the rest (as for a due batch)
    if limit > 0 and not reconcile_only:
        assigned, starts = dispatch(work, now, limit, node)
        take(assigned, starts)
        if len(starts) == limit == options.max_per_tick and not more_due:
            more_due = ready_dispatch_limit(
                work.options, work.active, work.fallback_active > 0
            ) > 0 and bool(plan_ready_dispatch(work, now, 1))

    # 7-8. health is read off the snapshot by the caller; the summary counts the decisions
    summary = _summarise(tick, now, decided, limit, more_due)
    if not decided:
        return TickPlan(events=(), commands=(), snapshot=snapshot, summary=summary)
    header = evolve(header, decisions=len(decided))
    return TickPlan(
        events=(header, *decided), commands=tuple(commands), snapshot=work, summary=summary
    )


def next_wake(snapshot: Snapshot, now: int | None = None) -> int | None:
    """The earliest instant a tick could decide something without a new observation.

    Given `now` (the reading of the tick just planned), a retry whose wait is already over is
    no reason to wake: that tick found it ready and could not start it (no free slot, or
    draining), and only a new observation (an exit, an options change) frees a slot.
    """
    candidates = []
    first_due = snapshot.due.first()
    if first_due is not None:
        candidates.append(first_due[0])
    if now is None:
        first_retry = snapshot.delayed.first()
    else:
        first_retry = snapshot.delayed.first_above(waited_until(now))
    if first_retry is not None:
        candidates.append(first_retry[0])
    candidates.extend(
        run.deadline
        for run in snapshot.runs.values()
        if run.deadline is not None and run.cancelling is None
    )
    return min(candidates) if candidates else None
