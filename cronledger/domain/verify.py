"""Verify: re-fold the ledger and re-plan every recorded tick from its recorded inputs.

A tick's batch is its TickStarted header plus `decisions` facts. Re-planning the tick on the
snapshot folded from everything before the header, at the header's clock reading and with its
recorded exits, must reproduce the header and the facts exactly; the first difference is
reported with both versions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from cronledger.domain import events as ev
from cronledger.domain.state import EMPTY, Snapshot
from cronledger.domain.tick import plan_tick
from cronledger.projectors.snapshot import apply


@attrs.frozen
class Divergence:
    """The first recorded fact that re-planning does not reproduce."""

    position: int
    tick: int
    tick_position: int
    recorded: ev.Event | None
    replanned: ev.Event | None


@attrs.frozen
class VerifyReport:
    events: int
    ticks: int
    divergence: Divergence | None
    snapshot: Snapshot

    @property
    def ok(self) -> bool:
        return self.divergence is None


def verify(
    events: Iterable[tuple[int, ev.Event]],
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check that every recorded tick follows from its recorded inputs."""
    snapshot = EMPTY
    expected: list[ev.Event] = []
    index = 0
    tick_no = tick_pos = 0
    ticks = count = 0
    for position, event in events:
        count += 1
        if index < len(expected):
            if event != expected[index]:
                return VerifyReport(
                    count,
                    ticks,
                    Divergence(position, tick_no, tick_pos, event, expected[index]),
                    snapshot,
                )
            index += 1
        elif isinstance(event, ev.TickStarted):
            ticks += 1
            tick_no, tick_pos = event.tick, position
            plan = plan_tick(
                snapshot, event.at, event.exits, event.node, event.rules, event.reconcile_only
            )
            expected, index = list(plan.events), 0
            if not expected or event != expected[0]:
                replanned = expected[0] if expected else None
                return VerifyReport(
                    count,
                    ticks,
                    Divergence(position, tick_no, tick_pos, event, replanned),
                    snapshot,
                )
            index = 1
        elif expected and index == len(expected):
            expected, index = [], 0
        snapshot = apply(snapshot, event)
        if progress is not None and count % 10_000 == 0:
            progress(count)
    if index < len(expected):
        return VerifyReport(
            count,
            ticks,
            Divergence(tick_pos + index, tick_no, tick_pos, None, expected[index]),
            snapshot,
        )
    return VerifyReport(count, ticks, None, snapshot)
