"""The engine: the composition root that owns a ledger, a clock and a runner, and runs ticks.

One tick: read the clock -> `plan_tick` on the current snapshot -> append the tick's facts in one
transaction at the expected position (on LedgerConflict: catch up and plan again) -> carry out
the runner commands -> record what the runner reports (RunStarted) as facts. Inside `run()`
the RunStarted facts ride with the next tick's append, and a start the runner confirms late
(the process supervisor answers a batch while the loop goes on) waits for a later one.

`run()` repeats ticks and sleeps until the earliest of: the next due time, retry or run deadline,
a runner exit or other wake-up, a change in the ledger (another process added a schedule), the
idle cap, or `until`. It never spins: with nothing due it wakes once per ledger check.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from types import FrameType
from typing import TypeVar

import orjson

from cronledger.adapters.clock import Clock, SystemClock
from cronledger.adapters.collector import CycleCollector
from cronledger.adapters.daemon_claim import Claim
from cronledger.adapters.ledger import Ledger, open_ledger
from cronledger.adapters.replay import catch_up
from cronledger.adapters.runner import Runner, Started
from cronledger.adapters.snapshots import load_snapshot, save_snapshot
from cronledger.domain import events as ev
from cronledger.domain.commands import (
    CancelRun,
    ChangeOptions,
    StartRun,
    SubmitTask,
    UserCommand,
)
from cronledger.domain.evolve import evolve
from cronledger.domain.handlers import handle
from cronledger.domain.health import Health, health
from cronledger.domain.reconcile import bound_exits
from cronledger.domain.state import EMPTY, ActiveRun, Snapshot
from cronledger.domain.tick import TickPlan, next_wake, plan_tick
from cronledger.domain.values import Options, RunExit, Target
from cronledger.errors import ClaimLost, DaemonRunning, InvalidInput, LedgerConflict
from cronledger.projectors.snapshot import apply_all

MAX_CONFLICT_RETRIES = 50
IDLE_CAP_MS = 15_000
LEDGER_WATCH_MS = 1_000
STARTED_WAIT_MS = 50  # a RunStarted whose details came late is recorded within this
RUNNER_EVENTS = (ev.RunStarted, ev.RunSucceeded, ev.RunFailed, ev.RunLost)

CRASH_POINTS = ("before_append", "after_append", "after_spawn")

log = logging.getLogger("cronledger.engine")


class CrashPoint:
    """Crash tests: `CRONLEDGER_CRASH_AT=after_append:3` SIGKILLs the process the 3rd time a
    tick with runner commands reaches that point (before_append, after_append, after_spawn)."""

    def __init__(self, spec: str | None) -> None:
        self.point, self.count = None, 0
        if spec:
            point, _, count = spec.partition(":")
            if point not in CRASH_POINTS:
                raise ValueError(f"CRONLEDGER_CRASH_AT: {point!r} is not one of {CRASH_POINTS}")
            self.point, self.count = point, int(count or "1")

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        self.count -= 1
        if self.count == 0:
            os.kill(os.getpid(), signal.SIGKILL)


Subscriber = Callable[[ev.Event], None]
F = TypeVar("F", bound=Callable[..., object])
Decide = Callable[[Snapshot], tuple[Sequence[ev.Event], Snapshot | None]]
SignalHandler = Callable[[int, FrameType | None], object] | int | None


CLAIM_WAIT_S = 3.0  # how long start() waits for a node name another daemon is releasing
BORROW_TRIES = 3  # attempts at another identity's claim at start-up (see _borrow)
CLAIM_CHECK_S = 5.0  # how often run() checks its claims are still held (a dropped connection)


class Engine:
    """Ledger + clock + runner. `tick()` runs one tick; `run()` runs until stopped."""

    def __init__(
        self,
        ledger: Ledger,
        clock: Clock | None = None,
        runner: Runner | None = None,
        *,
        idle_cap_ms: int = IDLE_CAP_MS,
        ledger_watch_ms: int = LEDGER_WATCH_MS,
        node: str | None = None,
    ) -> None:
        self.ledger = ledger
        # This engine's name, recorded on the runs it dispatches and claimed on the ledger
        # while it runs (see start()); None is the unnamed daemon.
        self.node = node
        self.claim_wait_s = CLAIM_WAIT_S
        self.facts_appended = 0  # by this engine (other writers' facts are not counted)
        self.claim_check_s = CLAIM_CHECK_S
        self.clock: Clock = clock or SystemClock()
        self.runner = runner
        self.idle_cap_ms = idle_cap_ms
        self.ledger_watch_ms = ledger_watch_ms
        self._exits: list[RunExit] = []
        self._subscribers: list[Subscriber] = []
        self._wake = threading.Event()
        self._stop = False
        self._drain_requested = False
        self._drain_recorded = False  # this engine's run() recorded draining=True
        self._last_tick_at: int | None = None
        self.last_tick_ms: float = 0.0
        # Inside run(): runs started but whose RunStarted is not yet appended. They ride with the
        # next tick's facts when that tick follows at once (one commit instead of two).
        self._unrecorded: list[tuple[Started, int]] = []
        self._defer_started = False
        self._caught_up = False  # the last tick folded foreign facts after planning
        self._crash = CrashPoint(os.environ.get("CRONLEDGER_CRASH_AT"))
        self._claim: Claim | None = None  # this node name's, from start() to close()
        self._held: set[str] = set()  # active runs this engine's runner holds (started, adopted)
        self._borrowed: dict[str, Claim] = {}  # claims held for adopted runs
        self._claims_checked_at = 0.0  # time.monotonic() of the last check_claims()
        self._snapshot: Snapshot = catch_up(ledger, load_snapshot(ledger) or EMPTY)
        # Runs our runner was told to stop; those being cancelled at start-up are `adopt`'s.
        self._cancels_sent = {r.run_id for r in self._snapshot.runs.values() if r.cancelling}
        set_wake = getattr(runner, "set_wake", None)
        if callable(set_wake):  # the runner cuts the loop's sleep short when exits are ready
            set_wake(self.wake)

    @classmethod
    def open(cls, url: str, clock: Clock | None = None, runner: Runner | None = None) -> Engine:
        return cls(open_ledger(url), clock, runner)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    # --- state ------------------------------------------------------------------------------

    def refresh(self) -> Snapshot:
        """Fold the events other writers appended since our position; a run they cancelled
        (`cronledger cancel` while this daemon runs it) is stopped by our runner."""
        before = self._snapshot.position
        self._snapshot = catch_up(self.ledger, self._snapshot)
        if self._snapshot.position != before:
            # runs that ended meanwhile (e.g. another node's) need no cancel remembered
            self._cancels_sent.intersection_update(self._snapshot.runs.keys())
            self._send_cancels(
                CancelRun(run_id=r.run_id, reason=r.cancelling)
                for r in self._snapshot.runs.values()
                if r.cancelling is not None
            )
        return self._snapshot

    def _send_cancels(self, cancels: Iterable[CancelRun]) -> None:
        todo = [c for c in cancels if c.run_id not in self._cancels_sent]
        if todo and self.runner is not None:
            self._cancels_sent.update(c.run_id for c in todo)
            self.runner.carry_out(todo, self.clock.now())

    def _append(self, make: Decide) -> tuple[ev.Event, ...]:
        """Append what `make(snapshot)` decides, at the snapshot's position; retry on conflict.

        `make` returns the facts and, when it already folded them, the snapshot after them.
        """
        for _ in range(MAX_CONFLICT_RETRIES):
            snapshot = self._snapshot
            events, after = make(snapshot)
            if not events:
                return ()
            try:
                self.ledger.append(events, snapshot.position)
            except LedgerConflict:
                before = snapshot.position
                self.refresh()
                log.debug(
                    "ledger conflict at position %d (now %d): deciding again",
                    before,
                    self._snapshot.position,
                )
                continue
            self._snapshot = after if after is not None else apply_all(snapshot, events)
            self.facts_appended += len(events)
            self._publish(events)
            return tuple(events)
        raise LedgerConflict(self._snapshot.position)

    def execute(self, command: UserCommand) -> tuple[ev.Event, ...]:
        """Validate and record a user command; returns the facts appended (maybe none)."""
        return self.execute_all((command,))

    def _cancel_runs(self, events: Sequence[ev.Event]) -> None:
        """An operator's cancel of a running entry: stop its process now (the tick reconciles).
        An engine without runners (the CLI) only records it: the daemon's `refresh` acts."""
        self._send_cancels(
            CancelRun(run_id=e.run_id, reason=e.reason)
            for e in events
            if isinstance(e, ev.RunCancelled)
        )

    def execute_all(self, commands: Sequence[UserCommand]) -> tuple[ev.Event, ...]:
        """Validate and record several commands in one transaction (all or nothing)."""

        def decide(snapshot: Snapshot) -> tuple[list[ev.Event], Snapshot]:
            now = self.clock.now()
            facts: list[ev.Event] = []
            for command in commands:
                new = handle(snapshot, command, now)
                facts.extend(new)
                snapshot = apply_all(snapshot, new)
            return facts, snapshot

        events = self._append(decide)
        if events:
            self._cancel_runs(events)
            self.wake()
        return events

    def change_options(self, change: Callable[[Options], Options]) -> tuple[ev.Event, ...]:
        """Record `change(options in force)`: applied to the options in force when the fact is
        appended (decided again on a conflict), so options another daemon recorded meanwhile
        are never reverted by a change that did not touch them."""

        def decide(snapshot: Snapshot) -> tuple[list[ev.Event], Snapshot]:
            command = ChangeOptions(change(snapshot.options))
            facts = list(handle(snapshot, command, self.clock.now()))
            return facts, apply_all(snapshot, facts)

        return self._append(decide)

    def set_draining(self, draining: bool) -> tuple[ev.Event, ...]:
        """Record draining on or off, changing nothing else (`change_options`)."""
        return self.change_options(lambda options: evolve(options, draining=draining))

    def submit(
        self,
        target: Target,
        *,
        priority: int = 0,
        hold: str | None = None,
        max_attempts: int = 1,
        backoff_ms: int = 1000,
        max_backoff_ms: int = 3_600_000,
        timeout_ms: int | None = None,
    ) -> str:
        """Queue a one-off task without a schedule (durable at once); returns its entry id."""
        [queued] = self.execute(
            SubmitTask(
                target=target,
                priority=priority,
                hold=hold,
                max_attempts=max_attempts,
                backoff_ms=backoff_ms,
                max_backoff_ms=max_backoff_ms,
                timeout_ms=timeout_ms,
            )
        )
        assert isinstance(queued, ev.EntryQueued)
        return queued.entry_id

    def register(self, name: str, function: Callable[..., object]) -> None:
        """Make `function` runnable in-process as `Call(name)`."""
        calls = getattr(self.runner, "calls", None) or self.runner
        register = getattr(calls, "register", None)
        if not callable(register):
            raise InvalidInput(
                "runner",
                "this engine has no in-process call runner",
                "build the engine with a CallRunner (see daemon.build_engine)",
            )
        register(name, function)

    def task(self, name: str) -> Callable[[F], F]:
        """Decorator form of `register`: `@engine.task("name")`."""

        def decorate(function: F) -> F:
            self.register(name, function)
            return function

        return decorate

    def save_snapshot(self) -> int:
        """Store the current state at its ledger position; start-up then folds only the rest."""
        save_snapshot(self.ledger, self._snapshot)
        return self._snapshot.position

    # --- subscribers and wake-ups -------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Receive runner facts (started, succeeded, failed, lost) once they are durable."""
        self._subscribers.append(subscriber)

    def _publish(self, events: Sequence[ev.Event]) -> None:
        if not self._subscribers:
            return
        for event in events:
            if isinstance(event, RUNNER_EVENTS):
                for subscriber in self._subscribers:
                    try:
                        subscriber(event)
                    except Exception:  # a broken monitor must not stop the scheduler
                        log.exception("subscriber %r failed on %s", subscriber, event)

    def wake(self) -> None:
        """Cut the current sleep short (thread-safe)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop `run()` after the current tick; runs keep going (restart reconciles them)."""
        self._stop = True
        self.wake()

    def drain(self) -> None:
        """Stop dispatching, wait for active runs (up to the drain deadline), then stop."""
        self._drain_requested = True
        self.wake()

    # --- one tick -----------------------------------------------------------------------------

    def tick(self, *, reconcile_only: bool = False) -> TickPlan:
        """One tick at the clock's current reading (`reconcile_only`: record the runs' exits
        and expired timeouts, fire and dispatch nothing; see `plan_tick`)."""
        began = time.perf_counter()
        # Inside run() a tick does not read the position first: one that appends is checked by
        # the append (a foreign write since our snapshot is a LedgerConflict: catch up, decide
        # again), and one that appends nothing checks after planning (below).
        in_loop = self._defer_started
        if not in_loop and self.runner is not None and self._claim is None and self.ledger.shared:
            # an engine that starts runs is a daemon: one per name on a ledger others can
            # reach (a private memory ledger, a test's, needs none: nothing could collide,
            # and a dropped test scheduler would pin its claim and its store)
            self.claim()
        if not in_loop and self.ledger.position() != self._snapshot.position:
            self.refresh()
        now = self.clock.now()
        if self.runner is not None:
            self._exits.extend(self.runner.poll(now))
        plans: list[TickPlan] = []
        later: list[tuple[Started, int]] = []

        def decide(snapshot: Snapshot) -> tuple[Sequence[ev.Event], Snapshot]:
            nonlocal later
            started: list[ev.Event] = []
            if self._unrecorded:
                ending = {x.run_id for x in self._exits}
                started, later = self._started_facts(snapshot, ending=ending, wait=False)
            base = apply_all(snapshot, started) if started else snapshot
            # runners read up to OUTPUT_TAIL_LIMIT of output; the header and the facts keep
            # what the option in force allows (decided again after a conflict)
            exits = bound_exits(self._exits, snapshot.options.output_tail_bytes)
            plans.append(plan_tick(base, now, exits, self.node, reconcile_only=reconcile_only))
            if plans[-1].commands:
                self._crash.reached("before_append")
            if started:
                return [*started, *plans[-1].events], plans[-1].snapshot
            return plans[-1].events, plans[-1].snapshot

        appended = self._append(decide)
        plan = plans[-1]
        self._exits.clear()
        self._unrecorded = later
        if in_loop and not appended and self.ledger.position() != self._snapshot.position:
            # Nothing went through the append's check: catch up now (a foreign cancel is sent
            # to the runner, and what the new facts allow is decided by the next tick, at once:
            # e.g. a retry that was waiting for a slot another process's options change freed).
            self.refresh()
            self._caught_up = True
        if self.runner is not None:
            if plan.commands:
                self._crash.reached("after_append")
                self._cancels_sent.update(
                    c.run_id for c in plan.commands if isinstance(c, CancelRun)
                )
                started = self.runner.carry_out(plan.commands, now)
                self._held.update(c.run_id for c in plan.commands if isinstance(c, StartRun))
                self._crash.reached("after_spawn")
                if self._defer_started:
                    self._unrecorded.extend((s, now) for s in started)
                else:
                    self._record_started(started, now)
            ended = False
            for event in plan.events:
                if isinstance(event, ev.RunSucceeded | ev.RunFailed | ev.RunLost):
                    self.runner.forget(event.run_id)
                    self._cancels_sent.discard(event.run_id)
                    self._held.discard(event.run_id)
                    ended = True
            if ended and self._borrowed:
                self._return_claims()
        self.last_tick_ms = (time.perf_counter() - began) * 1000
        self._last_tick_at = now
        if plan.events:
            self._log_tick(plan)
        return plan

    @property
    def last_health(self) -> Health | None:
        """Health as of the last tick, with its duration (computed on demand: it walks the
        queue)."""
        if self._last_tick_at is None:
            return None
        return evolve(health(self._snapshot, self._last_tick_at), tick_ms=self.tick_ms)

    @property
    def tick_ms(self) -> float | None:
        """The wall time of the last tick, in ms (None before the first)."""
        return None if self._last_tick_at is None else round(self.last_tick_ms, 3)

    def _started_facts(
        self,
        snapshot: Snapshot,
        started: Sequence[tuple[Started, int]] | None = None,
        *,
        ending: Collection[str] = (),
        wait: bool = True,
    ) -> tuple[list[ev.Event], list[tuple[Started, int]]]:
        """RunStarted for the starts (default: the deferred ones) whose run is still active
        and not yet started. Without `wait`, a start whose details the runner does not know
        yet is left for later (returned second) unless its run ends in this batch."""
        runs = snapshot.runs
        facts: list[ev.Event] = []
        later: list[tuple[Started, int]] = []
        for s, at in self._unrecorded if started is None else started:
            if not wait and not s.settled and s.run_id not in ending:
                later.append((s, at))
                continue
            run = runs.get(s.run_id)
            if run is not None and run.started_at is None:
                facts.append(ev.RunStarted(at=at, run_id=s.run_id, pid=s.pid, fallback=s.fallback))
        return facts, later

    def _flush_started(self, *, wait: bool = True) -> None:
        """Append the deferred RunStarted facts now (no tick follows at once); without `wait`
        only those already known (the loop wakes every STARTED_WAIT_MS for the rest)."""
        if not self._unrecorded:
            return
        later: list[tuple[Started, int]] = []

        def decide(snapshot: Snapshot) -> tuple[list[ev.Event], None]:
            nonlocal later
            facts, later = self._started_facts(snapshot, wait=wait)
            return facts, None

        self._append(decide)
        self._unrecorded = later

    def _record_started(self, started: Sequence[Started], now: int) -> None:
        if started:
            at = [(s, now) for s in started]
            self._append(lambda snapshot: (self._started_facts(snapshot, at)[0], None))

    def _log_tick(self, plan: TickPlan) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        s = plan.summary
        h = self.last_health  # walks the queue: only when the line is logged
        line: dict[str, object] = {
            "tick": s.tick, "at": s.now, "fired": s.fired, "skipped": s.skipped,
            "coalesced": s.coalesced, "deferred": s.deferred, "missed": s.missed,
            "dispatched": s.dispatched, "reconciled": s.reconciled, "retries": s.retries,
            "cancelled": s.cancelled, "tick_ms": round(self.last_tick_ms, 3),
        }  # fmt: skip
        if h is not None:
            line.update(
                active=h.active_runs,
                pending=h.pending,
                held=h.held,
                assigned=h.assigned,
                oldest_pending_ms=h.oldest_pending_ms,
                lag_ms=h.lag_ms,
                position=h.position,
            )
        log.info(orjson.dumps(line).decode())

    # --- the loop -----------------------------------------------------------------------------

    def start(self) -> None:
        """Before looping: claim this engine's node name on the ledger (DaemonRunning while
        another daemon holds it), undo a draining left by a previous stop, adopt the active
        runs no running daemon owns, and record what they did meanwhile."""
        self.claim()
        if self.ledger.position() != self._snapshot.position:
            self.refresh()  # (a later start(): what others recorded since decides the adoption)
        if self._snapshot.options.draining:
            self.set_draining(False)
        if self.runner is not None and self._snapshot.runs:
            now = self.clock.now()
            own, others = self._runs_to_adopt()
            if others:
                log.info("%d active runs of other daemons are left to them", len(others))
            self._held.update(r.run_id for r in own)
            self._record_started(self.runner.adopt(own, now, keep=others), now)
            # what ended while no daemon watched is recorded before any fire is judged by it
            # (FORBID would otherwise skip the next fire for a run long over)
            self.tick(reconcile_only=True)

    def claim(self) -> None:
        """Hold the claim of this engine's node name on the ledger until close() (start() takes
        it; DaemonRunning while another daemon holds it after `claim_wait_s`)."""
        if self._claim is not None:
            return
        deadline = time.monotonic() + self.claim_wait_s  # another may be releasing it now
        while (release := self.ledger.claim(self.node or "")) is None:
            if time.monotonic() >= deadline:
                raise DaemonRunning(self.node)
            time.sleep(0.05)
        self._claim = release

    def _runs_to_adopt(self) -> tuple[list[ActiveRun], list[str]]:
        """(runs to adopt, ids of runs left to a running daemon).

        Own runs are adopted (on a later start(), those the runner holds already are not).
        So are those of an identity no daemon runs as, where this engine may take them: a
        named engine the unnamed runs, the unnamed engine every other node's. Its claim is
        borrowed, and held until the last run adopted under it has ended (`_return_claims`),
        so a daemon started meanwhile under that identity cannot take them a second time. A
        named engine leaves the other names' runs to them (their state dirs are theirs)."""
        by_node: dict[str | None, list[ActiveRun]] = {}
        for run in sorted(self._snapshot.runs.values(), key=lambda r: r.run_id):
            if run.run_id in self._held:
                continue  # dispatched or adopted by this engine: its runner holds it
            by_node.setdefault(run.node, []).append(run)
        own: list[ActiveRun] = []
        others: list[str] = []
        new: list[str] = []  # borrowed by this call
        try:
            for node, runs in by_node.items():
                key = node or ""
                if node == self.node or key in self._borrowed:
                    own += runs
                    continue
                release = None
                if self.node is None or node is None:
                    release = self._borrow(key)
                if release is None:
                    others += [r.run_id for r in runs]
                else:
                    self._borrowed[key] = release
                    new.append(key)
                    own += runs
        except BaseException:
            for key in new:  # (claims borrowed by an earlier start() still cover live runs)
                self._borrowed.pop(key)()
            raise
        return own, others

    def _borrow(self, key: str) -> Claim | None:
        """Another identity's claim, tried a few times over ~50 ms: a probe (`status`) holds
        a shared lock on it for an instant."""
        for attempt in range(BORROW_TRIES):
            if attempt:
                time.sleep(0.025)
            claim = self.ledger.claim(key)
            if claim is not None:
                return claim
        return None

    def check_claims(self, *, if_due: bool = False) -> None:
        """Still holding our claims (`if_due`: only when `claim_check_s` has passed since the
        last check)? A PostgreSQL claim dies with its connection; `held()` re-takes it where
        it can. Where another daemon took our name meanwhile, raise ClaimLost (stop: that
        daemon owns our runs now). A borrowed claim lost is given up."""
        now = time.monotonic()
        if if_due and now - self._claims_checked_at < self.claim_check_s:
            return
        self._claims_checked_at = now
        for key, claim in list(self._borrowed.items()):
            if not claim.held():
                del self._borrowed[key]
                log.warning(
                    "the claim of %s, held for the runs adopted from it, was taken by another "
                    "daemon: it may adopt them",
                    f"node {key!r}" if key else "the unnamed daemon",
                )
        if self._claim is not None and not self._claim.held():
            self._claim = None
            raise ClaimLost(self.node)

    def _return_claims(self, *, everything: bool = False) -> None:
        """Release the borrowed claims whose adopted runs have all ended (or all of them)."""
        if not self._borrowed:
            return
        runs = self._snapshot.runs
        busy = {r.node or "" for r in runs.values() if r.run_id in self._held}
        for key in [k for k in self._borrowed if everything or k not in busy]:
            self._borrowed.pop(key)()

    def _own_active(self) -> int:
        """Active runs this engine waits for when draining: those its runner holds (another
        daemon's are that daemon's)."""
        return len(self._held.intersection(self._snapshot.runs))

    def run(
        self,
        until: int | None = None,
        *,
        handle_signals: bool = False,
        drain_timeout_ms: int = 60_000,
    ) -> None:
        """Tick until stopped (or until the clock reaches `until`)."""
        previous = self._install_signals() if handle_signals else {}
        self._stop = False
        try:
            self.start()
            gc.freeze()  # the state loaded at start-up is long-lived: keep it out of collections
            self._defer_started = True
            try:
                with CycleCollector() as collector:
                    self._loop(until, drain_timeout_ms, collector)
            except ClaimLost:  # the ledger works: record what this daemon owes it, then stop
                try:
                    self._wind_down()
                except Exception:
                    log.exception("stopping after the claim was lost: could not wind down")
                raise
            self._wind_down()
        finally:
            self._defer_started = False
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _wind_down(self) -> None:
        """At the loop's end: the RunStarted facts not yet recorded, and the drain this loop
        recorded undone (the drain is over, or a second signal or a lost claim cut it short),
        or every other daemon on the ledger would stay held back. (Another daemon's drain is
        that daemon's to undo.)"""
        self._flush_started()
        if self._drain_recorded and self._snapshot.options.draining:
            self.set_draining(False)
            log.info("drain over: draining undone")
        self._drain_recorded = False

    def _loop(self, until: int | None, drain_timeout_ms: int, collector: CycleCollector) -> None:
        drain_deadline: int | None = None
        while not self._stop:
            if self._drain_requested and drain_deadline is None:
                # recorded before the next tick plans: no dispatch follows a drain request
                drain_deadline = self.clock.now() + drain_timeout_ms
                self._drain_recorded = bool(self.set_draining(True))
                log.info("draining: %d active runs", self._snapshot.active)
            self.check_claims(if_due=True)  # before a tick dispatches under a name no longer ours
            plan = self.tick()
            collector.between_ticks()  # cycles are collected here, never in the middle of a tick
            again = plan.summary.more_due or self._caught_up  # work left, or foreign facts
            self._caught_up = False
            if again:
                continue  # the rest of the due batch (or what the caught-up facts allow), at once
            if self._unrecorded and not self._wake.is_set():
                self._flush_started(wait=False)  # nothing wakes the loop at once: record now
            now = self.clock.now()
            if drain_deadline is not None and (self._own_active() == 0 or now >= drain_deadline):
                self._drain_requested = False  # honoured: a later run() dispatches again
                return
            if until is not None and now >= until:
                return
            wake = self._next_wake(now, until, plan.summary.now, drain_deadline)
            self.clock.sleep_until(wake, self._wake)

    def _next_wake(
        self, now: int, until: int | None, planned_at: int, drain_deadline: int | None = None
    ) -> int:
        """When to tick next; `planned_at` is the last tick's reading (what it could not start
        then waits for an observation, not for the clock); a drain gives up at its deadline."""
        candidates = [now + self.idle_cap_ms, now + self.ledger_watch_ms]
        if self._unrecorded:  # starts the runner has not confirmed yet: record them soon
            candidates.append(now + STARTED_WAIT_MS)
        wake = next_wake(self._snapshot, planned_at)
        if wake is not None:
            candidates.append(wake)
        runner_next = getattr(self.runner, "next_exit_at", None)
        if callable(runner_next):
            at = runner_next()
            if isinstance(at, int):
                candidates.append(at)
        candidates.extend(at for at in (until, drain_deadline) if at is not None)
        return max(now, min(candidates))

    def _install_signals(self) -> dict[int, SignalHandler]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if self._drain_requested:
                log.warning("second signal %d: stopping now; runs are left to the restart", signum)
                self.stop()
            else:
                log.info("signal %d: draining", signum)
                self.drain()

        previous: dict[int, SignalHandler] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, on_signal)
        return previous

    def close(self) -> None:
        try:
            if self.runner is not None:
                self.runner.close()
        finally:
            try:
                self._return_claims(everything=True)
                if self._claim is not None:
                    self._claim()
                    self._claim = None
            finally:
                self.ledger.close()
