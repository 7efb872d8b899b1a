"""A test world: the pure planner, a fake clock and a fake runner, recording every fact."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cronledger.adapters.clock import FakeClock
from cronledger.adapters.fake_runner import FakeRunner, Script
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.handlers import handle
from cronledger.domain.state import EMPTY, Snapshot
from cronledger.domain.tick import TickPlan, plan_tick
from cronledger.domain.triggers import Cron, Every
from cronledger.domain.values import Call, Command, ConcurrencyPolicy, ScheduleSpec
from cronledger.projectors.snapshot import apply, apply_all

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SECOND = 1000
MINUTE = 60 * SECOND


def spec(schedule_id: str = "job", **kw: Any) -> ScheduleSpec:
    """A schedule spec with test defaults: every minute from T0, FORBID, a Call target."""
    kw.setdefault("trigger", Every(MINUTE, T0))
    kw.setdefault("target", Call("noop"))
    kw.setdefault("concurrency", ConcurrencyPolicy.FORBID)
    return ScheduleSpec(id=schedule_id, **kw)


def cron(expr: str, tz: str = "UTC") -> Cron:
    return Cron(expr, tz)


def command(*argv: str) -> Command:
    return Command(argv)


DEFAULT_SCRIPT = Script()


class World:
    """Drives plan_tick like the engine does, with everything in memory and virtual time."""

    def __init__(
        self, script: Script | Callable[[cmd.StartRun], Script] = DEFAULT_SCRIPT, start: int = T0
    ) -> None:
        self.clock = FakeClock(start)
        self.runner = FakeRunner(script)
        self.snapshot: Snapshot = EMPTY
        self.log: list[ev.Event] = []
        self.plans: list[TickPlan] = []

    @property
    def now(self) -> int:
        return self.clock.now()

    def do(self, command: cmd.UserCommand) -> tuple[ev.Event, ...]:
        events = handle(self.snapshot, command, self.now)
        self.record(events)
        return events

    def record(self, events: tuple[ev.Event, ...] | list[ev.Event]) -> None:
        self.log.extend(events)
        self.snapshot = apply_all(self.snapshot, events)

    def add(self, s: ScheduleSpec) -> None:
        self.do(cmd.AddSchedule(s))

    def tick(self) -> TickPlan:
        now = self.now
        plan = plan_tick(self.snapshot, now, self.runner.poll(now))
        self.log.extend(plan.events)
        self.snapshot = plan.snapshot
        self.plans.append(plan)
        for started in self.runner.carry_out(plan.commands, now):
            fact = ev.RunStarted(at=now, run_id=started.run_id, pid=None, fallback=False)
            self.log.append(fact)
            self.snapshot = apply(self.snapshot, fact)
        return plan

    def run_until(self, instant: int, step: int = SECOND) -> None:
        """Tick every `step` until `instant`, plus extra ticks while a tick says more is due."""
        while self.now < instant:
            self.clock.advance(min(step, instant - self.now))
            while self.tick().summary.more_due:
                pass

    def of(self, kind: type[ev.Event]) -> list[Any]:
        return [e for e in self.log if isinstance(e, kind)]
