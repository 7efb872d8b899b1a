"""The engine loop: virtual time, wake-ups, draining, subscribers, adoption after a restart."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cronledger.adapters.call_runner import CallRunner
from cronledger.adapters.clock import FakeClock, SystemClock
from cronledger.adapters.engine import STARTED_WAIT_MS, Engine
from cronledger.adapters.fake_runner import FakeRunner, Script
from cronledger.adapters.ledger import open_ledger
from cronledger.adapters.runner import Runners, Started
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.evolve import evolve
from cronledger.domain.explain import explain
from cronledger.domain.triggers import At, Every
from cronledger.domain.values import (
    Call,
    Command,
    ConcurrencyPolicy,
    Options,
    Retry,
    ScheduleSpec,
)
from cronledger.domain.verify import verify
from cronledger.errors import DaemonRunning, LedgerError

T0 = 1_767_225_600_000
SECOND, MINUTE, HOUR = 1000, 60_000, 3_600_000


def _spec(sid: str, trigger: object, **kw: object) -> ScheduleSpec:
    return ScheduleSpec(
        id=sid,
        trigger=trigger,  # type: ignore[arg-type]
        target=Call("work"),
        concurrency=kw.pop("concurrency", ConcurrencyPolicy.FORBID),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def _facts(engine: Engine, kind: type[ev.Event]) -> list[ev.Event]:
    return [e for _, e in engine.ledger.read() if isinstance(e, kind)]


def test_run_until_drives_a_simulated_day_without_sleeping() -> None:
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(Script(30 * SECOND)))
    engine.execute(cmd.AddSchedule(_spec("every-5m", Every(5 * MINUTE, T0))))
    began = time.perf_counter()
    engine.run(until=T0 + 24 * HOUR)
    assert time.perf_counter() - began < 20
    assert clock.now() == T0 + 24 * HOUR
    fires = _facts(engine, ev.FireRecorded)
    assert len(fires) == 24 * 12
    assert all(f.at == f.nominal for f in fires)  # woken exactly at each due time: never late
    assert len(_facts(engine, ev.RunSucceeded)) == 24 * 12 - 1  # the 24:00 run is still going


def test_an_idle_engine_appends_nothing_and_wakes_only_to_check_the_ledger() -> None:
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(), ledger_watch_ms=SECOND)
    for i in range(200):
        engine.execute(cmd.AddSchedule(_spec(f"daily-{i}", Every(24 * HOUR, T0 + 12 * HOUR + i))))
    position = engine.snapshot.position
    ticks = 0
    original = engine.tick

    def counting_tick(**kw: bool) -> object:
        nonlocal ticks
        ticks += 1
        return original(**kw)

    engine.tick = counting_tick  # type: ignore[method-assign]
    engine.run(until=T0 + 10 * MINUTE)
    assert engine.snapshot.position == position, "ticks that decide nothing append nothing"
    assert ticks <= 10 * 60 + 2  # one per ledger check, not a spin


def test_batches_of_due_schedules_are_handled_in_immediate_ticks() -> None:
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(Script(SECOND)))
    engine.execute(cmd.ChangeOptions(Options(batch_size=64, max_workers=1000)))
    for i in range(300):
        engine.execute(cmd.AddSchedule(_spec(f"s{i:03}", Every(MINUTE, T0))))
    engine.run(until=T0 + MINUTE)
    headers = [e for e in _facts(engine, ev.TickStarted) if isinstance(e, ev.TickStarted)]
    fired_at_minute = [e for e in _facts(engine, ev.FireRecorded) if e.at == T0 + MINUTE]
    assert len(fired_at_minute) == 300
    assert len([h for h in headers if h.at == T0 + MINUTE]) == 5  # 64+64+64+64+44


def test_a_command_from_another_thread_wakes_a_sleeping_engine() -> None:
    calls = CallRunner(4)
    done = threading.Event()
    calls.register("work", done.set)
    sleeping = threading.Event()

    class Clock(SystemClock):
        def sleep_until(self, instant: int, wake: threading.Event) -> None:
            sleeping.set()  # the loop goes to sleep (for 15 s)
            super().sleep_until(instant, wake)

    clock = Clock()
    engine = Engine(
        open_ledger("memory://"),
        clock,
        Runners(None, calls, clock.now),
        idle_cap_ms=15_000,
        ledger_watch_ms=15_000,
    )
    calls.set_wake(engine.wake)
    loop = threading.Thread(target=engine.run, daemon=True)
    loop.start()
    assert sleeping.wait(5), "the loop never went to sleep"
    engine.execute(cmd.AddSchedule(_spec("soon", At(clock.now() + 300))))
    assert done.wait(5), "the scheduled call did not run"
    engine.stop()
    loop.join(5)
    assert not loop.is_alive()


def test_draining_stops_dispatching_waits_for_active_runs_then_stops() -> None:
    clock = FakeClock(T0)
    url = f"memory://drain-{time.monotonic_ns()}"
    engine = Engine(open_ledger(url), clock, FakeRunner(Script(90 * SECOND)))
    engine.execute(cmd.AddSchedule(_spec("job", Every(MINUTE, T0))))
    engine.execute(cmd.AddSchedule(_spec("other", At(T0 + 75 * SECOND))))
    engine.run(until=T0 + MINUTE + SECOND)
    assert engine.snapshot.active == 1
    engine.drain()
    engine.run(until=T0 + HOUR, drain_timeout_ms=10 * MINUTE)
    changes = [e.options.draining for e in _facts(engine, ev.OptionsChanged)]  # type: ignore[attr-defined]
    assert changes == [True, False], "draining recorded, then undone when the drain ended"
    assert engine.snapshot.active == 0
    assert clock.now() == T0 + MINUTE + 90 * SECOND  # stopped as soon as the run ended
    assert len(_facts(engine, ev.RunAssigned)) == 1  # "other" fired but was not dispatched
    engine.close()
    restarted = Engine(open_ledger(url), clock, FakeRunner(Script(SECOND)))
    restarted.execute(cmd.ChangeOptions(Options(draining=True)))  # as a crash mid-drain leaves
    restarted.start()
    assert not restarted.snapshot.options.draining, "a restart undoes a leftover draining"


def test_draining_gives_up_waiting_at_the_deadline_and_leaves_runs_to_the_restart() -> None:
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(Script(HOUR)))
    engine.execute(cmd.AddSchedule(_spec("job", Every(MINUTE, T0))))
    engine.run(until=T0 + MINUTE)
    engine.drain()
    engine.run(until=T0 + HOUR, drain_timeout_ms=30 * SECOND)
    assert clock.now() == T0 + MINUTE + 30 * SECOND
    assert engine.snapshot.active == 1


def test_subscribers_receive_runner_facts_once_durable() -> None:
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(Script(SECOND, 1)))
    seen: list[str] = []
    engine.subscribe(lambda e: seen.append(type(e).__name__))
    engine.subscribe(lambda e: 1 / 0)  # a broken subscriber does not stop the engine
    engine.execute(cmd.AddSchedule(_spec("job", Every(MINUTE, T0))))
    engine.run(until=T0 + MINUTE + 2 * SECOND)
    assert seen == ["RunStarted", "RunFailed"]


def _asked_to_drain_with_a_long_run() -> tuple[FakeClock, Engine]:
    """An engine running an hour-long task at T0 + 1 s, asked to drain."""
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(Script(HOUR)))
    engine.submit(Command(("long",)))
    engine.run(until=T0 + SECOND)
    engine.drain()
    return clock, engine


def test_a_drain_ended_by_a_second_signal_is_undone_too_so_other_nodes_go_on() -> None:
    clock, engine = _asked_to_drain_with_a_long_run()
    engine.subscribe(lambda e: engine.stop())  # stands in for the second signal
    engine.submit(Command(("other",)))
    clock.set(T0 + 2 * SECOND)
    engine.tick()  # nothing for a subscriber yet: the long run goes on
    engine.run(until=T0 + HOUR, drain_timeout_ms=HOUR)
    assert not engine.snapshot.options.draining
    other = Engine(engine.ledger, clock, FakeRunner(Script(SECOND)), node="b")
    other.tick()
    assert len(_facts(other, ev.RunAssigned)) == 2, "another engine dispatches at once"


def test_undoing_a_drain_never_reverts_options_another_daemon_recorded_meanwhile() -> None:
    clock = FakeClock(T0)
    ledger = open_ledger("memory://")
    draining = Engine(ledger, clock, FakeRunner(), node="a")
    assert draining.set_draining(True)
    other = Engine(ledger, clock, FakeRunner(), node="b")  # e.g. a daemon started with --config
    other.execute(cmd.ChangeOptions(evolve(other.snapshot.options, max_workers=4, draining=False)))
    assert draining.snapshot.options.draining, "its view is stale"
    assert draining.set_draining(False) == (), "nothing to undo any more: nothing recorded"
    assert draining.snapshot.options.max_workers == 4, "the other daemon's option stands"
    assert draining.set_draining(True)[0].changed == ("draining",)  # type: ignore[attr-defined]
    # a daemon started with --max-workers alone, from a view older than another's change:
    other.execute(cmd.ChangeOptions(evolve(other.snapshot.options, batch_size=7)))
    draining.change_options(lambda options: evolve(options, max_workers=8))
    assert (draining.snapshot.options.max_workers, draining.snapshot.options.batch_size) == (8, 7)


def test_run_once_leaves_a_drain_another_daemon_recorded_meanwhile_in_force() -> None:
    from cronledger.adapters.daemon import run_once

    ledger = open_ledger("memory://")
    engine = Engine(ledger, SystemClock(), FakeRunner(Script(50)))
    other = Engine(ledger, SystemClock(), FakeRunner(), node="b")
    engine.submit(Command(("x",)))

    def drain_once(event: ev.Event) -> None:  # another daemon drains right after the start
        if isinstance(event, ev.RunStarted) and not other.snapshot.options.draining:
            other.set_draining(True)

    engine.subscribe(drain_once)
    run_once(engine, 5_000)
    other.refresh()
    assert other.snapshot.options.draining, "run --once undid a drain that was not its own"
    assert len(_facts(other, ev.RunSucceeded)) == 1


def test_a_restart_records_what_ended_meanwhile_before_judging_a_fire_by_it() -> None:
    clock = FakeClock(T0)
    url = f"memory://restart-{time.monotonic_ns()}"
    first = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)))
    first.execute(cmd.AddSchedule(_spec("job", Every(MINUTE, T0))))
    first.run(until=T0 + MINUTE)
    assert first.snapshot.active == 1
    first.close()  # the daemon ends (its claim with it)
    clock.set(T0 + 2 * MINUTE)  # down meanwhile; the run is over (here: lost) at the restart
    second = Engine(open_ledger(url), clock, FakeRunner(Script(SECOND)))
    second.run(until=T0 + 2 * MINUTE)
    assert [type(e).__name__ for e in _facts(second, ev.FireSkipped)] == []
    headers = [e for e in _facts(second, ev.TickStarted) if e.reconcile_only]  # type: ignore[attr-defined]
    assert len(headers) == 1 and headers[0].exits  # type: ignore[attr-defined]
    assert len(_facts(second, ev.RunAssigned)) == 2, "the 00:02 fire ran: FORBID saw no run"
    assert verify(second.ledger.read()).ok


def test_after_a_restart_runs_nobody_can_account_for_are_lost_and_retried() -> None:
    clock = FakeClock(T0)
    url = f"memory://lost-{time.monotonic_ns()}"
    first = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)))
    first.execute(cmd.AddSchedule(_spec("job", Every(HOUR, T0), retry=Retry(2, SECOND))))
    first.run(until=T0 + HOUR)
    assert first.snapshot.active == 1
    first.close()  # the process dies; a new engine whose runner never heard of the run
    second = Engine(open_ledger(url), clock, FakeRunner(Script(SECOND)))
    second.run(until=T0 + HOUR + 5 * SECOND)
    [lost] = _facts(second, ev.RunLost)
    assert isinstance(lost, ev.RunLost) and not lost.final
    retried = [e for e in _facts(second, ev.RunAssigned) if isinstance(e, ev.RunAssigned)]
    assert [r.attempt for r in retried] == [1, 2]
    assert second.snapshot.active == 0


def test_call_runner_reports_return_exception_unknown_name_and_abandons_on_timeout() -> None:
    gate = threading.Event()
    clock = FakeClock(T0)
    calls = CallRunner(4, clock=clock.now)
    calls.register("ok", lambda: None)
    calls.register("boom", lambda: (_ for _ in ()).throw(ValueError("bad input")))
    entered = threading.Event()

    def hang() -> None:
        entered.set()
        gate.wait(10)

    calls.register("hang", hang)
    engine = Engine(open_ledger("memory://"), clock, Runners(None, calls, clock.now))
    calls.set_wake(engine.wake)
    for name in ("ok", "boom", "hang", "missing"):
        spec = ScheduleSpec(
            id=name,
            trigger=At(T0 + SECOND),
            target=Call(name),
            concurrency=ConcurrencyPolicy.FORBID,
            timeout_ms=5 * SECOND,
        )
        engine.execute(cmd.AddSchedule(spec))
    clock.advance(SECOND)
    engine.tick()
    deadline = time.monotonic() + 5
    while len(_facts(engine, ev.RunSucceeded)) + len(_facts(engine, ev.RunFailed)) < 3:
        assert time.monotonic() < deadline, "calls did not finish"
        calls_done = threading.Event()
        calls_done.wait(0.01)
        engine.tick()
    assert entered.wait(5), "the hanging call never started"
    clock.advance(5 * SECOND)
    engine.tick()  # the hanging call times out: cancelled, abandoned, reconciled
    engine.tick()
    assert calls.threads()[1] == 1  # its thread was running it, and is abandoned
    failures = {e.run_id.split("@")[0]: e for e in _facts(engine, ev.RunFailed)}
    assert isinstance(failures["boom"], ev.RunFailed)
    assert failures["boom"].error == "ValueError: bad input"
    assert failures["missing"].reason == "spawn_failed"  # type: ignore[attr-defined]
    assert "no callable is registered as 'missing'" in failures["missing"].error  # type: ignore[attr-defined]
    said = " ".join(explain(engine.ledger.read(), failures["missing"].run_id).sentences)  # type: ignore[attr-defined]
    assert said.count("no callable is registered as 'missing'") == 1, said  # said once
    assert failures["hang"].reason == "timeout"  # type: ignore[attr-defined]
    assert len(_facts(engine, ev.RunSucceeded)) == 1
    gate.set()
    _wait_for(lambda: calls.threads()[1] == 0, "the abandoned thread never came back")
    calls.close()


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    """Poll a condition another thread makes true (an event wait, never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    tick = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, what
        tick.wait(0.005)


def test_a_timed_out_call_does_not_keep_its_pool_slot() -> None:
    """One worker thread, stuck in a call that times out: the next call still runs (on a new
    thread), and once the stuck call returns the pool is back to one worker."""
    gate, entered, ran = threading.Event(), threading.Event(), threading.Event()

    def hang() -> None:
        entered.set()
        gate.wait(30)

    clock = FakeClock(T0)
    calls = CallRunner(1, clock=clock.now)
    calls.register("hang", hang)
    calls.register("ok", ran.set)
    engine = Engine(open_ledger("memory://"), clock, Runners(None, calls, clock.now))
    calls.set_wake(engine.wake)
    engine.submit(Call("hang"), timeout_ms=SECOND)
    engine.tick()
    assert entered.wait(5), "the call never started"
    clock.advance(SECOND)
    engine.tick()  # timeout: cancelled and reported at once, the thread abandoned
    engine.tick()
    [failed] = _facts(engine, ev.RunFailed)
    assert isinstance(failed, ev.RunFailed) and failed.reason == "timeout"
    assert calls.threads() == (0, 1)
    engine.submit(Call("ok"))
    engine.tick()
    assert ran.wait(5), "the pool's only slot stayed with the abandoned thread"
    _wait_for(lambda: engine.tick() and engine.snapshot.active == 0, "no exit")
    assert len(_facts(engine, ev.RunSucceeded)) == 1
    assert calls.threads() == (1, 1)
    gate.set()  # the stuck call returns: its thread ends (the pool has its one worker)
    _wait_for(lambda: calls.threads() == (1, 0), "the abandoned thread did not end")
    calls.close()


def test_calls_handed_over_in_separate_ticks_run_side_by_side() -> None:
    meet = threading.Barrier(2, timeout=5)
    clock = FakeClock(T0)
    calls = CallRunner(4, clock=clock.now)
    calls.register("meet", meet.wait)
    engine = Engine(open_ledger("memory://"), clock, Runners(None, calls, clock.now))
    calls.set_wake(engine.wake)
    engine.submit(Call("meet"))
    engine.tick()
    engine.submit(Call("meet"))
    engine.tick()  # a second batch while the first call waits for it
    _wait_for(lambda: engine.tick() and engine.snapshot.active == 0, "no exits")
    assert len(_facts(engine, ev.RunSucceeded)) == 2, _facts(engine, ev.RunFailed)
    calls.close()


class _Spinning(AssertionError):
    pass


def _count_ticks(engine: Engine, peaks: list[int]) -> None:
    """Wrap `engine.tick`: record the active runs after every tick (the only place runs are
    assigned), by the ledger and by the runner, and fail fast on a spin (many ticks at one
    clock reading that decide nothing)."""
    tick = engine.tick
    idle_at: list[int] = []

    def counted(**kw: bool) -> object:
        plan = tick(**kw)
        runner = engine.runner
        processes = runner.active() if runner is not None else 0  # what really runs
        peaks.append(max(engine.snapshot.active, processes))
        if plan.events or plan.summary.more_due:
            idle_at.clear()
        else:
            idle_at.append(plan.summary.now)
            if len(idle_at) > 20 and len(set(idle_at[-20:])) == 1:
                raise _Spinning(f"20 idle ticks at {plan.summary.now}: the loop spins")
        return plan

    engine.tick = counted  # type: ignore[method-assign]


@settings(max_examples=30, deadline=None)
@given(
    workers=st.integers(1, 4),
    per_tick=st.integers(1, 4),
    intervals=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    durations=st.lists(st.integers(0, 90), min_size=1, max_size=10),
    codes=st.lists(st.sampled_from([0, 0, 1]), min_size=1, max_size=7),
    attempts=st.integers(1, 3),
    backoff=st.integers(0, 20),
    tasks=st.lists(st.integers(0, 4), max_size=6),
    policy=st.sampled_from(ConcurrencyPolicy),
)
def test_the_loop_never_exceeds_capacity_never_spins_and_reconciles_every_started_run(
    workers: int,
    per_tick: int,
    intervals: list[int],
    durations: list[int],
    codes: list[int],
    attempts: int,
    backoff: int,
    tasks: list[int],
    policy: ConcurrencyPolicy,
) -> None:
    """Schedules of every concurrency policy and submitted tasks (priorities), with failing
    runs retried after a backoff, on a few slots and a small max_per_tick: capacity holds after
    every tick, retries waiting for a slot never make the loop spin, and every run that started
    is reconciled."""
    clock = FakeClock(T0)
    lengths, exits = itertools.cycle(durations), itertools.cycle(codes)
    runner = FakeRunner(lambda _c: Script(next(lengths) * SECOND, next(exits)))
    engine = Engine(open_ledger("memory://"), clock, runner)
    engine.execute(cmd.ChangeOptions(Options(max_workers=workers, max_per_tick=per_tick)))
    retry = Retry(max_attempts=attempts, backoff_ms=backoff * SECOND)
    for i, interval in enumerate(intervals):
        spec = _spec(f"s{i}", Every(interval * SECOND, T0), concurrency=policy, retry=retry)
        engine.execute(cmd.AddSchedule(spec))
    for priority in tasks:
        engine.submit(
            Command(("task",)),
            priority=priority,
            max_attempts=attempts,
            backoff_ms=backoff * SECOND,
        )
    peaks: list[int] = []
    _count_ticks(engine, peaks)
    engine.run(until=T0 + 5 * MINUTE)
    for i in range(len(intervals)):
        engine.execute(cmd.PauseSchedule(f"s{i}"))
    for _ in range(100):  # work off the queue (retries included): up to 900 runs of 90 s
        if not engine.snapshot.entries:
            break
        engine.run(until=clock.now() + HOUR)
    assert not engine.snapshot.entries
    assert peaks and max(peaks) <= workers
    started = {e.run_id for e in _facts(engine, ev.RunStarted) if isinstance(e, ev.RunStarted)}
    ended = {e.run_id for e in _facts(engine, ev.RunSucceeded) + _facts(engine, ev.RunFailed)}
    assert started and started == ended
    assert engine.snapshot.active == 0


def test_a_retry_waiting_for_a_slot_does_not_make_the_loop_spin() -> None:
    """One slot, held by a long run; a failed task's retry is due but has no slot. The loop
    sleeps until that run ends (the retry's passed not_before is no reason to wake)."""
    clock = FakeClock(T0)
    runner = FakeRunner(lambda c: Script(50, 1) if c.argv == ("fail",) else Script(3 * SECOND))
    engine = Engine(open_ledger("memory://"), clock, runner)
    engine.execute(cmd.ChangeOptions(Options(max_workers=1)))
    engine.submit(Command(("fail",)), priority=10, max_attempts=2, backoff_ms=100)
    engine.submit(Command(("long",)))
    peaks: list[int] = []
    _count_ticks(engine, peaks)
    engine.run(until=T0 + 10 * SECOND)
    assert len(peaks) < 20, f"{len(peaks)} ticks for four runs' worth of decisions"
    assigned = [e for e in _facts(engine, ev.RunAssigned) if isinstance(e, ev.RunAssigned)]
    [retry_run] = [e for e in assigned if e.attempt == 2]
    [long_done] = [
        e
        for e in _facts(engine, ev.RunSucceeded)
        if isinstance(e, ev.RunSucceeded) and e.run_id != retry_run.run_id
    ]
    assert retry_run.at == long_done.at  # started in the tick that saw the slot freed


def test_entries_held_back_by_max_per_tick_are_dispatched_at_once_while_slots_are_free() -> None:
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(Script(HOUR)))
    engine.execute(cmd.ChangeOptions(Options(max_workers=10, max_per_tick=2)))
    for _ in range(7):
        engine.submit(Command(("job",)))
    engine.run(until=T0 + 30 * SECOND)
    assigned = [e for e in _facts(engine, ev.RunAssigned) if isinstance(e, ev.RunAssigned)]
    assert len(assigned) == 7
    assert {e.at for e in assigned} == {T0}  # four ticks in a row, none waiting for a wake-up
    ticks = [e for e in _facts(engine, ev.TickStarted) if isinstance(e, ev.TickStarted)]
    assert len({e.tick for e in ticks}) >= 4


class _LateStarted(Started):
    """A start whose pid the runner learns `delay_ms` after the spawn (as from a supervisor)."""

    __slots__ = ("_clock", "_known_at")
    _clock: FakeClock
    _known_at: int

    def __init__(self, run_id: str, clock: FakeClock, delay_ms: int) -> None:
        object.__setattr__(self, "run_id", run_id)
        object.__setattr__(self, "_clock", clock)
        object.__setattr__(self, "_known_at", clock.now() + delay_ms)

    @property
    def settled(self) -> bool:
        return bool(self._clock.now() >= self._known_at)

    @property
    def pid(self) -> int | None:  # type: ignore[override]
        return 4242

    @property
    def fallback(self) -> bool:  # type: ignore[override]
        return False


class _LateRunner(FakeRunner):
    def __init__(self, clock: FakeClock, delay_ms: int, script: Script) -> None:
        super().__init__(script)
        self.clock, self.delay_ms = clock, delay_ms

    def carry_out(self, commands: Sequence[cmd.RunnerCommand], now: int) -> list[Started]:
        return [
            _LateStarted(s.run_id, self.clock, self.delay_ms)
            for s in super().carry_out(commands, now)
        ]


@pytest.mark.parametrize("run_for", [10, 30 * SECOND])
def test_a_start_confirmed_late_is_recorded_once_before_its_outcome_and_soon(run_for: int) -> None:
    """The loop does not wait for a runner's late start details: it records RunStarted with a
    later tick (the exit's, for a short run; within STARTED_WAIT_MS of being known, for a long
    one), once, before the run's outcome."""
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, _LateRunner(clock, 20, Script(run_for)))
    published: dict[str, int] = {}
    engine.subscribe(
        lambda e: (
            published.setdefault(e.run_id, clock.now()) if isinstance(e, ev.RunStarted) else None
        )
    )
    engine.execute(cmd.AddSchedule(_spec("every-minute", Every(MINUTE, T0))))
    engine.run(until=T0 + 10 * MINUTE)
    facts = [(p, e) for p, e in engine.ledger.read()]
    started = {e.run_id: p for p, e in facts if isinstance(e, ev.RunStarted)}
    ended = {e.run_id: p for p, e in facts if isinstance(e, ev.RunSucceeded)}
    assigned = {e.run_id: (p, e.at) for p, e in facts if isinstance(e, ev.RunAssigned)}
    assert len(assigned) == 10 and set(started) == set(assigned)  # each start recorded once
    assert all(e.pid == 4242 for _, e in facts if isinstance(e, ev.RunStarted))
    for run_id, (position, at) in assigned.items():
        assert position < started[run_id] < ended.get(run_id, 10**9)
        assert published[run_id] <= at + 20 + STARTED_WAIT_MS, run_id


def _start(run_id: str, name: str) -> cmd.StartRun:
    return cmd.StartRun(
        run_id=run_id,
        entry_id=run_id,
        schedule_id=None,
        attempt=1,
        target=Call(name),
        argv=(),
        scheduled_for=T0,
        deadline=None,
    )


def test_call_runner_wakes_the_engine_whenever_exits_wait_unpolled() -> None:
    """Only the first exit after a poll signals a wake (a burst of calls wakes once), yet an
    exit is never left waiting without one: not after a poll, and not for an unknown name
    reported while other calls are still running."""
    gate = threading.Event()
    calls = CallRunner(2)
    calls.register("noop", lambda: None)
    calls.register("gated", lambda: gate.wait(10))
    wakes: list[int] = []
    woke = threading.Event()

    def wake() -> None:
        wakes.append(1)
        woke.set()

    calls.set_wake(wake)
    calls.carry_out([_start("missing#1", "missing"), _start("g#1", "gated")], T0)
    assert woke.wait(5), "an unknown name is reported at once, with a call still running"
    assert [e.run_id for e in calls.poll(T0)] == ["missing#1"]

    for burst in range(3):
        woke.clear()
        wakes.clear()
        calls.carry_out([_start(f"n{burst}-{i}#1", "noop") for i in range(200)], T0)
        assert woke.wait(5), "the first exit after a poll wakes the engine"
        deadline = time.monotonic() + 5
        while calls.active() > 1:  # the gated call is still running
            assert time.monotonic() < deadline, "calls did not finish"
            time.sleep(0.001)
        assert len(calls.poll(T0)) == 200
        assert len(wakes) == 1, "a burst of exits wakes the engine once per poll"
    gate.set()
    deadline = time.monotonic() + 5
    while calls.active():
        assert time.monotonic() < deadline
        time.sleep(0.001)
    calls.close()


def test_a_run_no_runner_can_take_is_reported_without_waiting_for_a_timed_wake_up() -> None:
    """An engine with calls only, asked to run a command: the router's spawn_failed exit wakes
    the loop at once (the next timed wake-up, a ledger check, is 10 s away)."""
    calls = CallRunner(2)
    engine = Engine(
        open_ledger("memory://"),
        SystemClock(),
        Runners(None, calls, SystemClock().now),
        ledger_watch_ms=10_000,
    )
    failed = threading.Event()
    engine.subscribe(lambda e: failed.set() if isinstance(e, ev.RunFailed) else None)
    loop = threading.Thread(target=engine.run)
    loop.start()
    try:
        began = time.monotonic()
        engine.submit(Command(("true",)))
        assert failed.wait(5), "the spawn_failed exit waited for a timed wake-up"
        assert time.monotonic() - began < 5
    finally:
        engine.stop()
        loop.join(10)
        calls.close()
    [fact] = _facts(engine, ev.RunFailed)
    assert fact.reason == "spawn_failed"  # type: ignore[attr-defined]
    assert "no runner for commands" in fact.error  # type: ignore[attr-defined]


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_a_foreign_write_during_run_is_never_decided_around(store: str, tmp_path: object) -> None:
    """Inside run() a tick does not read the position before planning; another writer's pause
    right after our append is caught by the next append's position check, and the engine
    decides again: no fire of the paused schedule follows."""
    url = f"sqlite:///{tmp_path}/l.db" if store == "sqlite" else "memory://trust-window"
    clock = FakeClock(T0)
    engine = Engine(open_ledger(url), clock, FakeRunner(Script(100)))
    other = Engine(open_ledger(url), FakeClock(T0))
    engine.execute(cmd.AddSchedule(_spec("job", Every(SECOND, T0))))
    paused_at: list[int] = []

    def pause_once(event: ev.Event) -> None:
        if isinstance(event, ev.RunSucceeded) and not paused_at:
            other.refresh()
            other.execute(cmd.PauseSchedule("job"))
            paused_at.append(other.snapshot.position)

    engine.subscribe(pause_once)
    engine.run(until=T0 + 20 * SECOND)
    assert paused_at, "the pause was never made"
    later_fires = [
        p for p, e in engine.ledger.read() if isinstance(e, ev.FireRecorded) and p > paused_at[0]
    ]
    assert later_fires == []
    assert engine.snapshot.schedules["job"].paused
    assert engine.snapshot.position == engine.ledger.position()


def test_a_foreign_cancel_reaches_the_runner_within_a_second_without_any_append() -> None:
    """A tick that appends nothing reads the position after planning: another writer's cancel
    of a run this engine holds is sent to the runner at the next ledger check (1 s)."""
    clock = FakeClock(T0)
    runner = FakeRunner(Script(60 * SECOND))
    engine = Engine(open_ledger("memory://foreign-cancel"), clock, runner)
    other = Engine(open_ledger("memory://foreign-cancel"), FakeClock(T0))
    engine.execute(cmd.AddSchedule(_spec("job", Every(HOUR, T0 + SECOND))))
    cancelled_at: list[int] = []

    def cancel_once(event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted) and not cancelled_at:
            other.refresh()
            entry_id = other.snapshot.runs[event.run_id].entry_id
            other.execute(cmd.CancelEntry(entry_id))
            cancelled_at.append(clock.now())

    engine.subscribe(cancel_once)
    sent_at: list[int] = []
    carry_out = runner.carry_out

    def noting_cancels(commands: Sequence[cmd.RunnerCommand], now: int) -> list[Started]:
        sent_at.extend(now for c in commands if isinstance(c, cmd.CancelRun))
        return carry_out(commands, now)

    runner.carry_out = noting_cancels  # type: ignore[method-assign]
    engine.run(until=T0 + 10 * SECOND)
    assert cancelled_at, "the cancel was never recorded"
    assert [c.reason for c in runner.cancelled] == ["operator"]
    assert len(sent_at) == 1
    assert 0 <= sent_at[0] - cancelled_at[0] <= engine.ledger_watch_ms
    assert not _facts(engine, ev.RunSucceeded)  # it was stopped, not left to run its 60 s


def test_health_after_a_tick_has_its_figures_and_the_tick_line_logs_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Active runs, queue depth by status, oldest pending age, lag, tick duration, position;
    one structured line per deciding tick with the summary counts and those figures."""
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(Script(HOUR)))
    engine.execute(cmd.ChangeOptions(Options(max_workers=1, batch_size=1)))
    assert engine.last_health is None and engine.tick_ms is None
    engine.execute(cmd.AddSchedule(_spec("a", Every(MINUTE, T0))))
    engine.execute(cmd.AddSchedule(_spec("b", Every(MINUTE, T0))))
    engine.submit(Call("work"), hold="manual_hold")
    clock.advance(MINUTE + 5 * SECOND)  # both due 5 s ago; batch_size 1: one per tick
    with caplog.at_level("INFO", logger="cronledger.engine"):
        first = engine.tick()
    h = engine.last_health
    assert h is not None and first.summary.fired == 1 and first.summary.more_due
    assert h.tick_ms is not None and h.tick_ms > 0
    assert (h.active_runs, h.assigned, h.held, h.pending) == (1, 1, 1, 0)
    assert h.lag_ms == 5 * SECOND  # b is still due at T0 + 1 min, unfired
    assert h.position == engine.ledger.position()
    engine.tick()  # b fires; its entry waits for the one slot
    clock.advance(30 * SECOND)
    with caplog.at_level("INFO", logger="cronledger.engine"):
        engine.tick()
    h = engine.last_health
    assert h is not None
    assert (h.pending, h.oldest_pending_ms, h.lag_ms) == (1, 30 * SECOND, 0)
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.getMessage()[:1] == "{"]
    assert lines[0]["fired"] == 1 and lines[0]["dispatched"] == 1 and lines[0]["lag_ms"] == 5000
    assert set(lines[0]) >= {
        "tick", "at", "fired", "skipped", "dispatched", "reconciled", "tick_ms",
        "active", "pending", "held", "assigned", "oldest_pending_ms", "lag_ms", "position",
    }  # fmt: skip


def test_a_drain_request_is_recorded_before_any_dispatch_of_a_backlog() -> None:
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(Script(HOUR)))
    engine.execute(cmd.ChangeOptions(Options(max_workers=100)))
    for _ in range(30):
        engine.submit(Command(("job",)))
    engine.drain()
    engine.run(until=T0 + MINUTE, drain_timeout_ms=SECOND)
    events = [e for _, e in engine.ledger.read()]
    assert any(isinstance(e, ev.OptionsChanged) and e.options.draining for e in events)
    assert not any(isinstance(e, ev.RunAssigned) for e in events), "dispatched after the request"
    assert clock.now() == T0, "nothing active: it stops at once"


def test_a_drain_requested_while_the_loop_sleeps_dispatches_nothing_into_freed_slots() -> None:
    """The request comes while the loop sleeps until a run's exit; the tick that reconciles
    the exit would fill the freed slot: draining is recorded before it plans."""
    engine: Engine

    class SignalledClock(FakeClock):
        def sleep_until(self, instant: int, wake: threading.Event) -> None:
            if instant >= T0 + MINUTE and not engine._drain_requested:
                engine.drain()  # SIGTERM while asleep (it sets the wake-up)
            super().sleep_until(instant, wake)
            if self.now() < instant:  # woken by the request: the exit is due by then
                self.advance(instant - self.now())

    clock = SignalledClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(Script(MINUTE)))
    engine.execute(cmd.ChangeOptions(Options(max_workers=1)))
    for _ in range(3):
        engine.submit(Command(("job",)))
    engine.run(until=T0 + HOUR, drain_timeout_ms=HOUR)
    events = [e for _, e in engine.ledger.read()]
    drained = next(
        i for i, e in enumerate(events) if isinstance(e, ev.OptionsChanged) and e.options.draining
    )
    assert sum(isinstance(e, ev.RunAssigned) for e in events) == 1
    assert any(isinstance(e, ev.RunSucceeded) for e in events[drained:]), "exit after request"
    assert len(engine.snapshot.entries) == 2, "the other two wait for a later run()"


def test_a_drain_cut_short_by_until_carries_over_to_the_next_run() -> None:
    _clock, engine = _asked_to_drain_with_a_long_run()
    engine.run(until=T0 + 10 * SECOND, drain_timeout_ms=MINUTE)  # returns before the deadline
    engine.submit(Command(("new",)))
    engine.run(until=T0 + 20 * SECOND, drain_timeout_ms=MINUTE)
    assert not engine.snapshot.options.draining, "each run() undoes what it recorded"
    assert len(_facts(engine, ev.RunAssigned)) == 1, "the new task was dispatched mid-drain"


def test_a_drain_is_over_when_run_returns_a_later_run_dispatches_again() -> None:
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(Script(SECOND)))
    engine.drain()
    engine.run(until=T0 + MINUTE, drain_timeout_ms=SECOND)  # nothing active: stops at once
    assert not engine.snapshot.options.draining  # undone as run() returned
    engine.submit(Command(("job",)))
    engine.run(until=T0 + MINUTE)
    assert not engine.snapshot.options.draining
    assert len(_facts(engine, ev.RunSucceeded)) == 1
    assert clock.now() == T0 + MINUTE, "ran until `until`, not stopped by the old drain"


def test_draining_wakes_at_its_deadline_not_at_the_next_check() -> None:
    clock = FakeClock(T0)
    engine = Engine(
        open_ledger("memory://"),
        clock,
        FakeRunner(Script(HOUR)),
        idle_cap_ms=10 * MINUTE,
        ledger_watch_ms=10 * MINUTE,
    )
    engine.submit(Command(("job",)))
    engine.run(until=T0 + SECOND)
    engine.drain()
    engine.run(until=T0 + HOUR, drain_timeout_ms=30 * SECOND)
    assert clock.now() == T0 + SECOND + 30 * SECOND
    assert engine.snapshot.active == 1


class _WritesOnce(FakeClock):
    """A fake clock that lets another process write to the ledger once, at `at`."""

    def __init__(self, start: int, at: int, write: Callable[[], None]) -> None:
        super().__init__(start)
        self.at, self.write = at, write
        self.written_at: int | None = None

    def sleep_until(self, instant: int, wake: threading.Event) -> None:
        super().sleep_until(instant, wake)
        if self.written_at is None and self.now() >= self.at:
            self.written_at = self.now()
            self.write()


def test_facts_another_process_appended_are_acted_on_in_the_next_tick_at_once() -> None:
    """A retry waits for the only slot; another process raises max_workers. The tick that
    catches up plans nothing more, and the next one follows at once and starts the retry (not
    a ledger check later)."""
    ledger = open_ledger("memory://")

    def widen() -> None:
        other = Engine(ledger, FakeClock(T0 + 5 * SECOND))
        other.execute(cmd.ChangeOptions(Options(max_workers=2)))

    clock = _WritesOnce(T0, T0 + 5 * SECOND, widen)
    runner = FakeRunner(lambda c: Script(50, 1) if c.argv == ("fail",) else Script(HOUR))
    engine = Engine(ledger, clock, runner)
    engine.execute(cmd.ChangeOptions(Options(max_workers=1)))
    engine.submit(Command(("fail",)), priority=10, max_attempts=2, backoff_ms=100)
    engine.submit(Command(("long",)))
    engine.run(until=T0 + 20 * SECOND)
    assert clock.written_at is not None
    assigned = [e for e in _facts(engine, ev.RunAssigned) if isinstance(e, ev.RunAssigned)]
    [retry] = [e for e in assigned if e.attempt == 2]
    assert retry.at == clock.written_at  # the same reading: no second ledger check (1 s) needed


def test_a_submitted_task_retries_with_its_backoff_capped_at_max_backoff() -> None:
    clock = FakeClock(T0)
    engine = Engine(open_ledger("memory://"), clock, FakeRunner(Script(0, 1)))
    engine.submit(
        Command(("job",)), max_attempts=4, backoff_ms=10 * SECOND, max_backoff_ms=15 * SECOND
    )
    engine.run(until=T0 + MINUTE)
    retries = _facts(engine, ev.RetryPlanned)
    assert [r.not_before - r.at for r in retries if isinstance(r, ev.RetryPlanned)] == [
        10 * SECOND,
        15 * SECOND,
        15 * SECOND,
    ]


# --- nodes: which active runs a starting engine adopts -------------------------------------


def _running_a_long_call(engine: Engine) -> Engine:
    """`engine` after one tick that dispatched a submitted call its runner keeps running."""
    engine.submit(Call("long"))
    engine.tick()
    return engine


def test_a_starting_engine_leaves_another_named_node_s_runs_alone_and_adopts_its_own() -> None:
    clock = FakeClock(T0)
    url = f"memory://nodes-{time.monotonic_ns()}"
    ledger = open_ledger(url)
    a = _running_a_long_call(Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)), node="a"))
    [run] = a.snapshot.runs.values()
    assert run.node == "a"
    [assigned] = _facts(a, ev.RunAssigned)
    assert isinstance(assigned, ev.RunAssigned) and assigned.node == "a"

    b = Engine(ledger, clock, FakeRunner(Script(SECOND)), node="b")
    b.start()  # another node: its runner never held A's run, which is A's to settle
    assert not _facts(b, ev.RunLost) and b.snapshot.active == 1
    b.submit(Call("short"))
    clock.advance(SECOND)
    b.tick()
    clock.advance(SECOND)
    b.tick()
    assert [r.node for r in b.snapshot.runs.values()] == ["a"]

    a.close()  # (as its process ends: its claim goes with it)
    restarted_a = Engine(ledger, clock, FakeRunner(Script(SECOND)), node="a")
    restarted_a.start()  # its own run, unknown to its (fake) runner: lost, then the policy
    restarted_a.tick()
    [lost] = _facts(restarted_a, ev.RunLost)
    assert isinstance(lost, ev.RunLost) and lost.run_id == run.run_id
    assert restarted_a.snapshot.active == 0
    assert verify(restarted_a.ledger.read()).ok


def test_a_second_daemon_under_the_same_name_is_refused_until_the_first_ends() -> None:
    clock = FakeClock(T0)
    url = f"memory://claims-{time.monotonic_ns()}"
    first = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)))
    first.start()
    for node in (None, "a"):
        if node == "a":
            named = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)), node="a")
            named.start()
        second = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)), node=node)
        second.claim_wait_s = 0
        with pytest.raises(DaemonRunning, match="--node NAME"):
            second.start()
        second.close()
    first.close()
    again = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)))
    again.start()  # the first one ended: its name is free
    again.close()


def test_a_running_daemon_s_runs_are_left_to_it_whatever_the_names() -> None:
    clock = FakeClock(T0)
    url = f"memory://claims-{time.monotonic_ns()}"
    unnamed = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)))
    unnamed.start()
    unnamed.submit(Call("long"))
    unnamed.tick()
    a = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)), node="a")
    a.start()  # the unnamed daemon is alive: its run is not a's to settle
    a.submit(Call("long"))
    a.tick()
    assert not _facts(a, ev.RunLost) and a.snapshot.active == 2
    unnamed.close()  # it ends (its runner knew its run; this one does not)
    b = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)), node="b")
    b.start()  # the unnamed run is nobody's now: b takes it; a's stays a's
    [lost] = _facts(b, ev.RunLost)
    assert lost.run_id not in {r.run_id for r in b.snapshot.runs.values()}
    assert [r.node for r in b.snapshot.runs.values()] == ["a"]
    second_unnamed = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)))
    second_unnamed.start()  # a is running: its run is left to it
    assert len(_facts(second_unnamed, ev.RunLost)) == 1
    a.close()
    second_unnamed.close()
    third = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)))
    third.start()  # a ended: the unnamed daemon collects what no daemon runs any more
    assert len(_facts(third, ev.RunLost)) == 2 and third.snapshot.active == 0
    assert verify(third.ledger.read()).ok


def test_a_borrowed_claim_is_held_until_the_runs_adopted_under_it_have_ended() -> None:
    clock = FakeClock(T0)
    url = f"memory://borrow-{time.monotonic_ns()}"
    supervisor = FakeRunner(Script(MINUTE))  # survives its daemon: a shared state dir
    unnamed = Engine(open_ledger(url), clock, supervisor)
    unnamed.start()
    unnamed.submit(Call("long"))
    unnamed.tick()
    unnamed.close()  # killed; its job goes on under the supervisor
    named = Engine(open_ledger(url), clock, supervisor, node="n")
    named.start()  # adopts the unnamed run (its runner still holds it): nothing lost
    assert not _facts(named, ev.RunLost) and named.snapshot.active == 1
    again = Engine(open_ledger(url), clock, FakeRunner(Script(SECOND)))
    again.claim_wait_s = 0
    with pytest.raises(DaemonRunning):
        again.start()  # the unnamed claim is held for the adopted run: not taken twice
    clock.advance(MINUTE)
    named.tick()  # the adopted run ends: the claim goes back
    assert len(_facts(named, ev.RunSucceeded)) == 1
    again.start()
    assert not _facts(again, ev.RunLost)
    named.close()
    again.close()


@pytest.mark.parametrize("asked_too", [False, True])
def test_run_returning_undoes_only_a_drain_it_recorded(asked_too: bool) -> None:
    clock = FakeClock(T0)
    url = f"memory://drains-{time.monotonic_ns()}"
    a = Engine(open_ledger(url), clock, FakeRunner(Script(SECOND)), node="a")
    b = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)), node="b")
    a.submit(Call("job"))

    def b_drains(event: ev.Event) -> None:  # another daemon starts draining meanwhile
        if isinstance(event, ev.RunStarted):
            b.execute(cmd.ChangeOptions(evolve(b.refresh().options, draining=True)))
            if asked_too:
                a.drain()  # the ledger already says draining: a records nothing

    a.subscribe(b_drains)
    a.run(until=T0 + 5 * SECOND)
    assert a.snapshot.options.draining, "b's drain is b's to undo"
    changes = [e.options.draining for e in _facts(a, ev.OptionsChanged)]  # type: ignore[attr-defined]
    assert changes == [True], "a recorded no drain of its own, and undid none"


@pytest.mark.parametrize("first", ["run", "tick"])
def test_a_later_run_keeps_the_calls_its_runner_still_runs(first: str) -> None:
    gate = threading.Event()
    clock = FakeClock(T0)
    calls = CallRunner(2, clock=clock.now)
    calls.register("slow", lambda: gate.wait(10))
    engine = Engine(open_ledger("memory://"), clock, Runners(None, calls, clock.now))
    engine.submit(Call("slow"))
    try:
        if first == "run":
            engine.run(until=T0 + SECOND)
        else:
            engine.tick()  # dispatched without run(): the runner holds it all the same
        assert engine.snapshot.active == 1
        engine.run(until=T0 + 2 * SECOND)  # start() again: the call is its runner's, not lost
        assert not _facts(engine, ev.RunLost) and engine.snapshot.active == 1
    finally:
        gate.set()
    deadline = time.monotonic() + 10
    while not _facts(engine, ev.RunSucceeded):
        assert time.monotonic() < deadline
        engine.run(until=clock.now() + SECOND)
    engine.close()


def test_a_claim_failing_on_a_later_start_keeps_the_claims_earlier_runs_need() -> None:
    clock = FakeClock(T0)
    url = f"memory://borrow2-{time.monotonic_ns()}"
    supervisor = FakeRunner(Script(HOUR))
    x = Engine(open_ledger(url), clock, supervisor, node="x")
    x.start()
    x.submit(Call("long"))
    x.tick()
    x.close()  # x ends; its job goes on
    unnamed = Engine(open_ledger(url), clock, supervisor)
    unnamed.start()  # adopts x's live run, borrowing x's claim
    y = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)), node="y")
    y.start()
    y.submit(Call("other"))
    y.tick()
    y.close()
    real_claim = unnamed.ledger.claim

    def failing(key: str) -> Callable[[], None] | None:
        if key == "y":
            raise LedgerError("the database went away")
        return real_claim(key)

    unnamed.ledger.claim = failing  # type: ignore[method-assign]
    with pytest.raises(LedgerError):
        unnamed.start()  # a second start() meets y's run and cannot claim y
    again_x = Engine(open_ledger(url), clock, FakeRunner(Script(SECOND)), node="x")
    again_x.claim_wait_s = 0
    with pytest.raises(DaemonRunning):
        again_x.start()  # x's claim still covers the run the unnamed engine holds


def test_close_releases_the_claims_even_when_the_runner_fails_to_close() -> None:
    clock = FakeClock(T0)
    url = f"memory://close-{time.monotonic_ns()}"
    runner = FakeRunner(Script(SECOND))
    engine = Engine(open_ledger(url), clock, runner)
    engine.start()

    def broken() -> None:
        raise OSError("the runner could not close")

    runner.close = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        engine.close()
    Engine(open_ledger(url), clock, FakeRunner(Script(SECOND))).start()  # the name is free


def test_an_engine_that_only_ticks_is_refused_beside_a_daemon_of_its_name() -> None:
    """tick() without run() starts runs too: it claims the name first (found by an explorer:
    a Scheduler.tick() beside `cronledger run` started a job no daemon watched, later recorded
    lost though it succeeded)."""
    clock = FakeClock(T0)
    url = f"memory://tick-claims-{time.monotonic_ns()}"
    daemon = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)), node="n1")
    daemon.start()
    ticker = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)), node="n1")
    ticker.claim_wait_s = 0
    ticker.submit(Call("work"))
    position = ticker.ledger.position()
    with pytest.raises(DaemonRunning):
        ticker.tick()
    assert ticker.ledger.position() == position, "refused before recording anything"
    other = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)), node="n2")
    assert other.tick().summary.dispatched == 1, "another name ticks (and claims n2)"
    assert other.ledger.claimed("n2")
    daemon.close()
    assert ticker.tick().summary.dispatched == 0  # n1 free now: claimed; nothing left to start
    assert ticker.ledger.claimed("n1")
    recorder = Engine(open_ledger(url), clock, None)  # no runner (the CLI): claims nothing
    recorder.tick()
    assert not recorder.ledger.claimed("")
    for engine in (ticker, other, recorder):
        engine.close()


def test_an_engine_on_a_private_memory_ledger_claims_nothing_when_it_ticks() -> None:
    """No other handle can reach an anonymous memory:// ledger, so its engine's ticks claim no
    name: a test scheduler dropped without close() pins nothing (a review found 50 dropped
    schedulers pinning 50 memory ledgers through their claims). Shared ones claim."""
    import gc

    from cronledger.adapters import daemon_claim
    from cronledger.testing import scheduler

    before = len(daemon_claim._HELD)
    for _ in range(5):
        s = scheduler()
        s.add("x", "every 1m", ["true"])
        s.advance("10m")
        del s
    gc.collect()
    assert len(daemon_claim._HELD) == before, "nothing claimed, nothing pinned"
    url = f"memory://shared-{time.monotonic_ns()}"
    shared = Engine(open_ledger(url), FakeClock(T0), FakeRunner(Script(HOUR)), node="n")
    shared.tick()
    probe = open_ledger(url)
    assert probe.claimed("n"), "a ledger others can reach: its ticks claim"
    shared.close()
    assert not probe.claimed("n")


def test_runs_without_a_node_are_adopted_by_any_engine() -> None:
    clock = FakeClock(T0)
    url = f"memory://unnamed-{time.monotonic_ns()}"
    ledger = open_ledger(url)
    old = Engine(open_ledger(url), clock, FakeRunner(Script(HOUR)))  # unnamed, as before nodes
    old.submit(Call("long"))
    old.tick()
    assert [r.node for r in old.snapshot.runs.values()] == [None]
    old.close()  # (its process ended)
    named = Engine(ledger, clock, FakeRunner(Script(SECOND)), node="n")
    named.start()
    named.tick()
    assert len(_facts(named, ev.RunLost)) == 1


def test_verify_replans_the_node_a_tick_recorded_and_catches_a_changed_one() -> None:
    clock = FakeClock(T0)
    ledger = open_ledger("memory://")
    engine = Engine(ledger, clock, FakeRunner(Script(SECOND)), node="n1")
    engine.submit(Call("x"))
    engine.run(until=T0 + MINUTE)
    assert verify(ledger.read()).ok
    events = [e for _, e in ledger.read()]
    forged = open_ledger("memory://")
    forged.append([evolve(e, node="n2") if isinstance(e, ev.RunAssigned) else e for e in events], 0)
    report = verify(forged.read())
    assert not report.ok and report.divergence is not None
    assert isinstance(report.divergence.recorded, ev.RunAssigned)


def test_a_named_engine_s_drain_waits_for_its_own_runs_only() -> None:
    clock = FakeClock(T0)
    ledger = open_ledger("memory://")
    _running_a_long_call(Engine(ledger, clock, FakeRunner(Script(HOUR)), node="b"))
    a = Engine(ledger, clock, FakeRunner(Script(HOUR)), node="a")
    a.drain()
    a.run(until=T0 + HOUR, drain_timeout_ms=10 * MINUTE)
    assert clock.now() == T0, "waited for another node's run"
    assert a.snapshot.active == 1 and not _facts(a, ev.RunLost)


def test_an_engine_forgets_the_cancels_it_sent_once_the_runs_ended_elsewhere() -> None:
    clock = FakeClock(T0)
    ledger = open_ledger("memory://")
    b = Engine(ledger, clock, FakeRunner(Script(HOUR)), node="b")
    entry = b.submit(Command(("long",)))
    b.tick()
    a = Engine(ledger, clock, FakeRunner(Script(HOUR)), node="a")
    Engine(ledger, clock).execute(cmd.CancelEntry(entry))  # `cronledger cancel`
    a.refresh()  # A sends the cancel to its runner (which does not hold the run)
    [run_id] = a.snapshot.runs
    assert run_id in a._cancels_sent
    b.refresh()  # B stops its run and records the outcome
    b.tick()
    a.refresh()
    assert not a.snapshot.runs and run_id not in a._cancels_sent, "kept for a run long gone"


def test_an_engine_counts_the_facts_it_appended_not_other_writers() -> None:
    """`run --json` reports `facts` from this count (a review: a position difference counted
    other daemons' and the CLI's facts too)."""
    url = f"memory://counted-{time.monotonic_ns()}"
    mine = Engine(open_ledger(url), FakeClock(T0), None)
    other = Engine(open_ledger(url), FakeClock(T0), None)
    other.submit(Call("a"))
    other.submit(Call("b"))
    mine.refresh()
    assert (mine.facts_appended, other.facts_appended) == (0, 2)
    mine.submit(Call("c"))
    assert (mine.facts_appended, mine.snapshot.position) == (1, 3)
