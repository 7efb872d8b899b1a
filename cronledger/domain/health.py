"""Health read off a snapshot at a clock reading (SEMANTICS §7, phase 7)."""

from __future__ import annotations

import attrs

from cronledger.domain.state import EntryStatus, Snapshot


@attrs.frozen(kw_only=True)
class Health:
    """The figures of SEMANTICS §7 phase 7. `tick_ms` (the wall time of the engine's last tick)
    is filled in by the engine (`Engine.last_health`), which measures it: None elsewhere."""

    position: int
    schedules: int
    active_runs: int
    pending: int
    held: int
    assigned: int
    oldest_pending_ms: int | None
    lag_ms: int
    draining: bool
    tick_ms: float | None = None


def health(snapshot: Snapshot, now: int) -> Health:
    """Queue depth by status, oldest pending age and scheduler lag (now - earliest due unfired)."""
    pending = held = assigned = 0
    oldest: int | None = None
    for entry in snapshot.entries.values():
        if entry.status is EntryStatus.PENDING:
            pending += 1
            if oldest is None or entry.queued_at < oldest:
                oldest = entry.queued_at
        elif entry.status is EntryStatus.HELD:
            held += 1
        else:
            assigned += 1
    first = snapshot.due.first()
    lag = max(0, now - first[0]) if first is not None else 0
    return Health(
        position=snapshot.position,
        schedules=len(snapshot.schedules),
        active_runs=snapshot.active,
        pending=pending,
        held=held,
        assigned=assigned,
        oldest_pending_ms=None if oldest is None else max(0, now - oldest),
        lag_ms=lag,
        draining=snapshot.options.draining,
    )
