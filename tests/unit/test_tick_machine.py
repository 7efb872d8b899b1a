"""The tick planner under a random walk of commands, clock steps and run outcomes.

Invariants are checked after every step; fold equality (`project(log) == live`) and re-planning
(`verify(log)`) are checked along the way and at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from cronledger.adapters.runner import Started
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.commands import CancelRun, RunnerCommand, StartRun
from cronledger.domain.handlers import handle
from cronledger.domain.state import EMPTY, EntryStatus, Snapshot
from cronledger.domain.tick import plan_tick
from cronledger.domain.triggers import Cron, Every
from cronledger.domain.values import (
    Call,
    ConcurrencyPolicy,
    ExitKind,
    MisfirePolicy,
    Options,
    Retry,
    RunExit,
    ScheduleSpec,
)
from cronledger.domain.verify import verify
from cronledger.errors import CronledgerError
from cronledger.projectors import history, tasks
from cronledger.projectors.snapshot import apply, project
from tests.harness import SECOND, T0


class ManualRunner:
    """Runs last until the test finishes, fails or kills them."""

    def __init__(self) -> None:
        self.running: dict[str, StartRun] = {}
        self.exits: list[RunExit] = []
        self.ever_started: list[str] = []

    def carry_out(self, commands: Sequence[RunnerCommand], now: int) -> list[Started]:
        started = []
        for c in commands:
            if isinstance(c, StartRun):
                assert c.run_id not in self.ever_started, f"{c.run_id} started twice"
                self.ever_started.append(c.run_id)
                self.running[c.run_id] = c
                started.append(Started(c.run_id))
            elif isinstance(c, CancelRun) and c.run_id in self.running:
                self.end(c.run_id, now, kind=ExitKind.SIGNALED, signal=15)
        return started

    def end(
        self,
        run_id: str,
        now: int,
        kind: ExitKind = ExitKind.EXITED,
        code: int | None = 0,
        signal: int | None = None,
    ) -> None:
        del self.running[run_id]
        self.exits.append(
            RunExit(
                run_id=run_id,
                kind=kind,
                finished_at=now,
                exit_code=code if kind is ExitKind.EXITED else None,
                signal=signal,
            )
        )

    def poll(self, now: int) -> list[RunExit]:
        out, self.exits = self.exits, []
        return out


specs = st.builds(
    lambda sid, trigger, conc, misfire, grace, prio, attempts, timeout: ScheduleSpec(
        id=sid,
        trigger=trigger,
        target=Call("work"),
        concurrency=conc,
        misfire=misfire,
        misfire_grace_ms=grace * SECOND,
        priority=prio,
        retry=Retry(attempts, 5 * SECOND),
        timeout_ms=timeout * SECOND if timeout else None,
    ),
    sid=st.sampled_from(["a", "b", "c", "d", "e"]),
    trigger=st.one_of(
        st.builds(lambda s: Every(s * SECOND, T0), st.integers(1, 180)),
        st.sampled_from([Cron("* * * * *"), Cron("*/2 * * * *"), Cron("0 * * * *")]),
    ),
    conc=st.sampled_from(ConcurrencyPolicy),
    misfire=st.sampled_from(MisfirePolicy),
    grace=st.integers(0, 120),
    prio=st.integers(0, 3),
    attempts=st.integers(1, 3),
    timeout=st.one_of(st.none(), st.integers(5, 200)),
)


class TickMachine(RuleBasedStateMachine):
    schedules = Bundle("schedules")

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.snapshot: Snapshot = EMPTY
        self.log: list[ev.Event] = []
        self.runner = ManualRunner()
        self.max_workers = 1

    def _record(self, events: Sequence[ev.Event]) -> None:
        self.log.extend(events)
        for e in events:
            self.snapshot = apply(self.snapshot, e)

    def _do(self, command: cmd.UserCommand) -> None:
        with contextlib.suppress(CronledgerError):
            self._record(handle(self.snapshot, command, self.now))

    def _tick(self) -> None:
        for _ in range(20):
            plan = plan_tick(self.snapshot, self.now, self.runner.poll(self.now))
            self.log.extend(plan.events)
            self.snapshot = plan.snapshot
            assert self.snapshot.active <= self.max_workers, "capacity exceeded"
            started = self.runner.carry_out(plan.commands, self.now)
            self._record(
                [
                    ev.RunStarted(at=self.now, run_id=s.run_id, pid=None, fallback=False)
                    for s in started
                ]
            )
            if not plan.summary.more_due and not self.runner.exits:
                break
        overdue = list(self.snapshot.due.iter_upto((self.now, "\U0010ffff")))
        assert overdue == [], f"a tick left due schedules unhandled: {overdue}"
        ready = [
            e
            for e in self.snapshot.entries.values()
            if e.status is EntryStatus.PENDING
            and (e.not_before is None or e.not_before <= self.now)
        ]
        if not self.snapshot.options.draining:
            assert not ready or self.snapshot.active >= self.max_workers, (
                "ready entries wait while capacity is free"
            )

    @initialize(max_workers=st.integers(1, 4), batch=st.integers(1, 4))
    def setup(self, max_workers: int, batch: int) -> None:
        self.max_workers = max_workers
        self._do(cmd.ChangeOptions(Options(max_workers=max_workers, batch_size=batch)))

    @rule(target=schedules, spec=specs)
    def add(self, spec: ScheduleSpec) -> str:
        self._do(cmd.AddSchedule(spec))
        return spec.id

    @rule(sid=schedules)
    def pause(self, sid: str) -> None:
        self._do(cmd.PauseSchedule(sid))

    @rule(sid=schedules)
    def resume(self, sid: str) -> None:
        self._do(cmd.ResumeSchedule(sid))

    @rule(sid=consumes(schedules))
    def remove(self, sid: str) -> None:
        self._do(cmd.RemoveSchedule(sid))

    @rule(sid=schedules)
    def trigger(self, sid: str) -> None:
        self._do(cmd.TriggerSchedule(sid))

    @rule(priority=st.integers(0, 3))
    def submit(self, priority: int) -> None:
        self._do(cmd.SubmitTask(target=Call("task"), priority=priority, max_attempts=2))

    @rule(seconds=st.sampled_from([1, 5, 30, 61, 300, 3600]))
    def advance_clock(self, seconds: int) -> None:
        self.now += seconds * SECOND
        self._tick()

    @precondition(lambda self: bool(self.runner.running))
    @rule(data=st.data(), code=st.sampled_from([0, 0, 1]))
    def finish_run(self, data: st.DataObject, code: int) -> None:
        run_id = data.draw(st.sampled_from(sorted(self.runner.running)))
        self.runner.end(run_id, self.now, code=code)
        self._tick()

    @precondition(lambda self: bool(self.runner.running))
    @rule(data=st.data())
    def lose_run(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from(sorted(self.runner.running)))
        self.runner.end(run_id, self.now, kind=ExitKind.LOST)
        self._tick()

    @rule()
    def restart(self) -> None:
        """Drop the live state and rebuild it from the facts alone."""
        self.snapshot = project(self.log)
        self._tick()

    @invariant()
    def forbid_never_overlaps_and_queue_one_waits_for_at_most_one(self) -> None:
        s = self.snapshot
        for sid, state in s.schedules.items():
            opened = s.open_entries(sid)
            live = [
                e
                for e in opened
                if e.status is EntryStatus.ASSIGNED
                and e.run_id in s.runs
                and s.runs[e.run_id].cancelling is None
            ]
            if state.spec.concurrency is ConcurrencyPolicy.FORBID:
                assert len(opened) <= 1
            if state.spec.concurrency is ConcurrencyPolicy.QUEUE_ONE:
                waiting = [
                    e for e in opened if e.status is not EntryStatus.ASSIGNED and e.attempt == 1
                ]
                assert len(waiting) <= 1
                assert len(live) <= 1

    @invariant()
    def one_run_per_entry_and_runner_agrees_with_the_ledger(self) -> None:
        s = self.snapshot
        entries_with_runs = [r.entry_id for r in s.runs.values()]
        assert len(entries_with_runs) == len(set(entries_with_runs))
        assert set(self.runner.running) <= set(s.runs)

    @invariant()
    def at_most_one_fire_per_schedule_per_tick(self) -> None:
        if not self.log:
            return
        last_tick = max(
            (i for i, e in enumerate(self.log) if isinstance(e, ev.TickStarted)), default=None
        )
        if last_tick is None:
            return
        header = self.log[last_tick]
        assert isinstance(header, ev.TickStarted)
        batch = self.log[last_tick + 1 : last_tick + 1 + header.decisions]
        scheduled = [
            e.schedule_id
            for e in batch
            if isinstance(e, ev.FireRecorded | ev.FireSkipped | ev.FireCoalesced)
            and e.request_id is None
        ]
        assert len(scheduled) == len(set(scheduled))

    @invariant()
    def the_fold_of_all_facts_equals_the_live_state(self) -> None:
        if len(self.log) % 7 == 0:
            assert project(self.log) == self.snapshot

    def teardown(self) -> None:
        assert project(self.log) == self.snapshot
        report = verify(enumerate(self.log, 1))
        assert report.ok, report.divergence
        # drain: every started run is eventually reconciled
        self._do(cmd.ChangeOptions(Options(max_workers=self.max_workers, draining=True)))
        for run_id in sorted(self.runner.running):
            self.runner.end(run_id, self.now)
        self.now += SECOND
        self._tick()
        assert len(self.snapshot.runs) == 0, "every started run is reconciled"
        statuses = tasks.project(self.log)
        runs = history.project(self.log)
        for record in runs.runs.values():
            assert record.outcome in ("succeeded", "failed", "lost")
            assert statuses[record.entry_id] is not None


TickMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
test_tick_machine = TickMachine.TestCase
