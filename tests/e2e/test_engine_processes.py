"""The engine with real subprocesses: policies that kill, hold and retry real processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cronledger.adapters.clock import SystemClock
from cronledger.adapters.daemon import build_engine
from cronledger.adapters.engine import Engine
from cronledger.adapters.ledger import open_ledger
from cronledger.adapters.runner import Runners
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.commands import StartRun
from cronledger.domain.triggers import At, Every
from cronledger.domain.values import Call, Command, ConcurrencyPolicy, Retry, ScheduleSpec


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = build_engine(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "runs")
    loop = threading.Thread(target=engine.run, daemon=True)
    engine.loop = loop  # type: ignore[attr-defined]
    yield engine
    engine.stop()
    if loop.is_alive():
        loop.join(10)
    engine.close()


def _start(engine: Engine) -> None:
    engine.loop.start()  # type: ignore[attr-defined]


def _facts(engine: Engine, kind: type[ev.Event]) -> list[ev.Event]:
    return [e for _, e in engine.ledger.read() if isinstance(e, kind)]


def _wait(
    engine: Engine, kind: type[ev.Event], count: int = 1, timeout: float = 15
) -> list[ev.Event]:
    deadline = time.monotonic() + timeout
    while len(found := _facts(engine, kind)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} {kind.__name__} in {timeout} s"
        time.sleep(0.02)
    return found


def _spec(sid: str, trigger: object, argv: tuple[str, ...], **kw: object) -> ScheduleSpec:
    return ScheduleSpec(
        id=sid,
        trigger=trigger,
        target=Command(argv),  # type: ignore[arg-type]
        concurrency=kw.pop("concurrency", ConcurrencyPolicy.FORBID),  # type: ignore[arg-type]
        **kw,
    )  # type: ignore[arg-type]


def test_replace_kills_the_old_process_and_starts_the_new_one(engine: Engine) -> None:
    now = engine.clock.now()
    engine.execute(
        cmd.AddSchedule(
            _spec("rep", Every(1000, now), ("sleep", "30"), concurrency=ConcurrencyPolicy.REPLACE)
        )
    )
    _start(engine)
    [cancelled] = _wait(engine, ev.RunCancelled)
    [failed] = _wait(engine, ev.RunFailed)
    assert isinstance(cancelled, ev.RunCancelled) and cancelled.reason == "replaced"
    assert isinstance(failed, ev.RunFailed)
    assert (failed.run_id, failed.reason, failed.signal) == (cancelled.run_id, "cancelled", 15)
    assert failed.duration_ms < 5000, "the old process was killed, not waited for"


def test_queue_one_starts_the_held_run_when_the_first_exits(engine: Engine) -> None:
    now = engine.clock.now()
    engine.execute(
        cmd.AddSchedule(
            _spec("q1", Every(1000, now), ("sleep", "1.6"), concurrency=ConcurrencyPolicy.QUEUE_ONE)
        )
    )
    _start(engine)
    released = _wait(engine, ev.EntryReleased, timeout=20)[0]
    assert isinstance(released, ev.EntryReleased)
    started = [e for e in _wait(engine, ev.RunStarted, 2) if isinstance(e, ev.RunStarted)]
    assert started[1].run_id.startswith(released.entry_id)
    first_done = [e for e in _facts(engine, ev.RunSucceeded) if isinstance(e, ev.RunSucceeded)]
    assert first_done and first_done[0].at <= started[1].at, "no overlap"


def test_a_timeout_kills_the_process_and_the_retry_waits_its_backoff(engine: Engine) -> None:
    now = engine.clock.now()
    engine.execute(
        cmd.AddSchedule(
            _spec("slow", At(now + 200), ("sleep", "30"), timeout_ms=500, retry=Retry(2, 700))
        )
    )
    _start(engine)
    failures = [
        e for e in _wait(engine, ev.RunFailed, 2, timeout=20) if isinstance(e, ev.RunFailed)
    ]
    assert [(f.reason, f.final) for f in failures] == [("timeout", False), ("timeout", True)]
    [retry] = _facts(engine, ev.RetryPlanned)
    assigned = [e for e in _facts(engine, ev.RunAssigned) if isinstance(e, ev.RunAssigned)]
    assert isinstance(retry, ev.RetryPlanned) and retry.not_before - retry.at == 700
    assert assigned[1].at >= retry.not_before


def test_spawn_failure_uses_the_fallback_or_records_spawn_failed(engine: Engine) -> None:
    now = engine.clock.now()
    engine.execute(
        cmd.AddSchedule(
            ScheduleSpec(
                id="fallback",
                trigger=At(now + 200),
                concurrency=ConcurrencyPolicy.FORBID,
                target=Command(("/no/such/program",), fallback=("true",)),
            )
        )
    )
    engine.execute(cmd.AddSchedule(_spec("missing", At(now + 200), ("/no/such/program",))))
    _start(engine)
    _wait(engine, ev.RunSucceeded)
    [failed] = _wait(engine, ev.RunFailed)
    assert isinstance(failed, ev.RunFailed)
    assert failed.reason == "spawn_failed" and "/no/such/program" in failed.error
    started = [e for e in _facts(engine, ev.RunStarted) if isinstance(e, ev.RunStarted)]
    assert [s.fallback for s in started] == [True]


def test_submitted_calls_and_commands_run_and_subscribers_see_them(engine: Engine) -> None:
    seen: list[str] = []
    engine.subscribe(lambda e: seen.append(type(e).__name__))

    @engine.task("add")
    def add() -> None:
        pass

    engine.submit(Call("add"), priority=5)
    engine.submit(Command(("sh", "-c", "echo to-stderr >&2; exit 4")))
    _start(engine)
    _wait(engine, ev.RunSucceeded)
    [failed] = _wait(engine, ev.RunFailed)
    assert isinstance(failed, ev.RunFailed)
    assert (failed.exit_code, failed.reason) == (4, "exit")
    assert "to-stderr" in failed.stderr_tail
    assert seen.count("RunStarted") == 2 and "RunFailed" in seen


def test_two_engines_on_one_ledger_and_state_dir_run_each_task_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    marker = tmp_path / "marker"
    # two daemons on one ledger run under two names (one name is one running daemon)
    engines = [build_engine(url, tmp_path / "runs", node=f"n{i}") for i in range(2)]
    job = ("sh", "-c", f'echo "$0" >> {marker}; sleep 0.05', "{run_id}")
    for _ in range(30):
        engines[0].submit(Command(job))
    issued: list[str] = []
    for engine in engines:
        assert isinstance(engine.runner, Runners) and engine.runner.processes is not None
        runner = engine.runner.processes
        carry_out = runner.carry_out

        def counting(commands: Any, now: int, carry_out: Any = carry_out) -> Any:
            issued.extend(c.run_id for c in commands if isinstance(c, StartRun))
            return carry_out(commands, now)

        runner.carry_out = counting  # type: ignore[method-assign]
    loops = [threading.Thread(target=e.run, daemon=True) for e in engines]
    for loop in loops:
        loop.start()
    try:
        _wait(engines[0], ev.RunSucceeded, 30, timeout=30)
    finally:
        for engine in engines:
            engine.stop()
        for loop in loops:
            loop.join(10)
    events = [e for _, e in engines[0].ledger.read()]
    for engine in engines:
        engine.close()
    assigned = [e.run_id for e in events if isinstance(e, ev.RunAssigned)]
    started = [e.run_id for e in events if isinstance(e, ev.RunStarted)]
    succeeded = [e.run_id for e in events if isinstance(e, ev.RunSucceeded)]
    executed = marker.read_text().split()
    assert len(assigned) == len(set(assigned)) == 30
    assert sorted(started) == sorted(succeeded) == sorted(executed) == sorted(assigned)
    assert sorted(issued) == sorted(assigned), "each run was handed to one engine's runner once"
    assert not any(isinstance(e, ev.RunLost | ev.RunFailed) for e in events)


def test_a_daemon_on_another_state_dir_leaves_a_live_node_s_runs_to_it(tmp_path: Path) -> None:
    """Two nodes on one ledger, each with its own state dir (as on two machines): a node that
    starts while the other has a job running does not record that job lost."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    gate = tmp_path / "gate"
    a = build_engine(url, tmp_path / "runs-a", node="a")
    b = build_engine(url, tmp_path / "runs-b", node="b")
    try:
        a.submit(Command(("sh", "-c", f'while [ ! -e "{gate}" ]; do sleep 0.02; done')))
        a.tick()  # assigned, handed to A's supervisor, and RunStarted recorded (outside run())
        [started] = _facts(a, ev.RunStarted)
        assert isinstance(started, ev.RunStarted) and started.pid
        b.start()
        b.tick()
        assert not _facts(b, ev.RunLost), "B recorded A's live job as lost"
        assert b.snapshot.active == 1
        gate.touch()
        deadline = time.monotonic() + 15
        while not _facts(a, ev.RunSucceeded):
            assert time.monotonic() < deadline, "A did not record its job's exit"
            a.tick()
            time.sleep(0.02)
        b.refresh()
        assert b.snapshot.active == 0 and not _facts(b, ev.RunLost)
    finally:
        gate.touch()  # the job ends even when an assertion failed
        for engine in (a, b):
            engine.close()


def test_a_node_starting_on_a_shared_state_dir_keeps_another_node_s_run_files(
    tmp_path: Path,
) -> None:
    """B's job ends while B is down (its exit is only in its run files); A starts on the same
    state dir with an active run of its own: its sweep must not delete B's files, so B's
    restart records the exit, not a loss."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    state = tmp_path / "runs"
    b = build_engine(url, state, node="b")
    b.submit(Command(("true",)))
    b.tick()  # spawned; B stops before it sees the exit
    b.close()
    a = build_engine(url, state, node="a")
    sleeper = a.submit(Command(("sleep", "15")))  # (killed below; bounded if a check fails)
    a.tick()
    a.close()
    a = build_engine(url, state, node="a")
    a.start()  # adopts its sleep; B's finished run stays B's
    a.tick()
    assert not _facts(a, ev.RunLost)
    b = build_engine(url, state, node="b")
    b.start()
    deadline = time.monotonic() + 15
    while not _facts(b, ev.RunSucceeded):
        assert not _facts(b, ev.RunLost), "B's run files were swept by A"
        assert time.monotonic() < deadline, "B did not record its run's exit"
        b.tick()
        time.sleep(0.02)
    [sleeping] = [r for r in a.refresh().runs.values() if r.entry_id == sleeper]
    assert sleeping.entry_id == sleeper and sleeping.node == "a" and sleeping.pid
    os.killpg(sleeping.pid, signal.SIGKILL)
    for engine in (a, b):
        engine.close()


def test_a_cancel_recorded_by_another_process_stops_the_daemons_run(
    engine: Engine, tmp_path: Path
) -> None:
    """`cronledger cancel` is an engine without runners on the same ledger: it only records
    RunCancelled; the daemon reads it on its next ledger check and its runner stops the job."""
    _start(engine)
    entry_id = engine.submit(Command(("sleep", "30")))
    [started] = _wait(engine, ev.RunStarted)
    operator = Engine(open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}"), SystemClock())
    try:
        began = time.monotonic()
        operator.execute(cmd.CancelEntry(entry_id))
        [failed] = _wait(engine, ev.RunFailed, timeout=10)
    finally:
        operator.close()
    assert isinstance(failed, ev.RunFailed) and isinstance(started, ev.RunStarted)
    assert (failed.run_id, failed.reason, failed.signal) == (started.run_id, "cancelled", 15)
    assert time.monotonic() - began < 5  # not the job's own 30 s
