"""The engine: the composition root that owns a ledger, a clock and a runner, and runs ticks.

One tick: read the clock -> `plan_tick` on the current snapshot -> append the tick's facts in one
transaction at the expected position (on LedgerConflict: catch up and plan again) -> carry out
the runner commands -> record what the runner reports (RunStarted) as facts.
"""

from __future__ import annotations

from collections.abc import Sequence

from cronledger.adapters.clock import Clock, SystemClock
from cronledger.adapters.ledger import Ledger, open_ledger
from cronledger.adapters.replay import catch_up
from cronledger.adapters.runner import Runner, Started
from cronledger.adapters.snapshots import load_snapshot, save_snapshot
from cronledger.domain import events as ev
from cronledger.domain.commands import UserCommand
from cronledger.domain.handlers import handle
from cronledger.domain.state import EMPTY, Snapshot
from cronledger.domain.tick import TickPlan, plan_tick
from cronledger.domain.values import RunExit
from cronledger.errors import LedgerConflict
from cronledger.projectors.snapshot import apply

MAX_CONFLICT_RETRIES = 50


class Engine:
    """Ledger + clock + runner. `tick()` runs one tick; `execute()` carries out a user command."""

    def __init__(
        self, ledger: Ledger, clock: Clock | None = None, runner: Runner | None = None
    ) -> None:
        self.ledger = ledger
        self.clock: Clock = clock or SystemClock()
        self.runner = runner
        self._exits: list[RunExit] = []
        self._snapshot: Snapshot = load_snapshot(ledger) or EMPTY
        self.refresh()

    @classmethod
    def open(cls, url: str, clock: Clock | None = None, runner: Runner | None = None) -> Engine:
        return cls(open_ledger(url), clock, runner)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def refresh(self) -> Snapshot:
        """Fold the events other writers appended since our position."""
        self._snapshot = catch_up(self.ledger, self._snapshot)
        return self._snapshot

    def _append(self, events: Sequence[ev.Event], expected: int) -> None:
        self.ledger.append(events, expected)

    def execute(self, command: UserCommand) -> tuple[ev.Event, ...]:
        """Validate and record a user command; returns the facts appended (maybe none)."""
        for _ in range(MAX_CONFLICT_RETRIES):
            snapshot = self._snapshot
            events = handle(snapshot, command, self.clock.now())
            if not events:
                return events
            try:
                self._append(events, snapshot.position)
            except LedgerConflict:
                self.refresh()
                continue
            for event in events:
                snapshot = apply(snapshot, event)
            self._snapshot = snapshot
            return events
        raise LedgerConflict(self._snapshot.position)

    def tick(self) -> TickPlan:
        """One tick at the clock's current reading."""
        now = self.clock.now()
        if self.runner is not None:
            self._exits.extend(self.runner.poll(now))
        for _ in range(MAX_CONFLICT_RETRIES):
            snapshot = self._snapshot
            plan = plan_tick(snapshot, now, self._exits)
            if plan.events:
                try:
                    self._append(plan.events, snapshot.position)
                except LedgerConflict:
                    self.refresh()
                    continue
            self._snapshot = plan.snapshot
            self._exits.clear()
            break
        else:
            raise LedgerConflict(self._snapshot.position)
        if self.runner is not None and plan.commands:
            started = self.runner.carry_out(plan.commands, now)
            self._record_started(started, now)
        return plan

    def _record_started(self, started: Sequence[Started], now: int) -> None:
        facts = [
            ev.RunStarted(at=now, run_id=s.run_id, pid=s.pid, fallback=s.fallback)
            for s in started
            if s.run_id in self._snapshot.runs
        ]
        if not facts:
            return
        for _ in range(MAX_CONFLICT_RETRIES):
            snapshot = self._snapshot
            try:
                self._append(facts, snapshot.position)
            except LedgerConflict:
                self.refresh()
                continue
            for fact in facts:
                snapshot = apply(snapshot, fact)
            self._snapshot = snapshot
            return

    def save_snapshot(self) -> int:
        """Store the current state at its ledger position; start-up then folds only the rest."""
        save_snapshot(self.ledger, self._snapshot)
        return self._snapshot.position

    def close(self) -> None:
        self.ledger.close()
