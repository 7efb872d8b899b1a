"""Concurrency policy (SEMANTICS §4): what a fire does while the schedule has open entries."""

from __future__ import annotations

from enum import StrEnum

import attrs

from cronledger.domain.state import EntryStatus, Snapshot
from cronledger.domain.values import ConcurrencyPolicy

AWAITING_PREVIOUS_RUN = "awaiting_previous_run"


class Action(StrEnum):
    QUEUE = "queue"
    HOLD = "hold"
    COALESCE = "coalesce"
    SKIP = "skip"


@attrs.frozen
class ConcurrencyDecision:
    action: Action
    reason: str = ""
    into: str | None = None
    cancel: tuple[str, ...] = ()


_QUEUE = ConcurrencyDecision(Action.QUEUE)  # frozen: one shared instance for the usual case


def decide_concurrency(
    snapshot: Snapshot, schedule_id: str, policy: ConcurrencyPolicy, manual: bool
) -> ConcurrencyDecision:
    """Apply `policy` to a new fire, given the schedule's active and waiting entries."""
    if policy is ConcurrencyPolicy.ALLOW or schedule_id not in snapshot.open_by_schedule:
        return _QUEUE
    opened = snapshot.open_entries(schedule_id)
    if not opened:
        return _QUEUE
    # A retrying entry continues its task: it counts as the active one, not as waiting.
    active = [e for e in opened if e.status is EntryStatus.ASSIGNED or e.attempt > 1]
    waiting = [e for e in opened if e.status is not EntryStatus.ASSIGNED and e.attempt == 1]

    if policy is ConcurrencyPolicy.FORBID:
        # A waiting entry will run later, so a second one would overlap it: skip as well.
        return ConcurrencyDecision(Action.SKIP, "concurrency_forbid")

    if policy is ConcurrencyPolicy.REPLACE:
        cancel = tuple(
            e.run_id
            for e in active
            if e.run_id is not None
            and (run := snapshot.runs.get(e.run_id)) is not None
            and run.cancelling is None
        )
        if waiting:
            return ConcurrencyDecision(Action.COALESCE, "replace_waiting", waiting[-1].id, cancel)
        return ConcurrencyDecision(Action.QUEUE, "replaced", None, cancel)

    # QUEUE_ONE
    if waiting:
        if manual:
            return ConcurrencyDecision(Action.SKIP, "queue_full")
        return ConcurrencyDecision(Action.COALESCE, "queue_one", waiting[-1].id)
    return ConcurrencyDecision(Action.HOLD, AWAITING_PREVIOUS_RUN)
