"""The engine on each real ledger: durable facts, restart from snapshot, two writers."""

from __future__ import annotations

from collections.abc import Callable

from cronledger.adapters.clock import FakeClock
from cronledger.adapters.engine import Engine
from cronledger.adapters.fake_runner import FakeRunner, Script
from cronledger.adapters.ledger import Ledger, open_ledger
from cronledger.adapters.snapshots import decode_snapshot, encode_snapshot
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.triggers import Every
from cronledger.domain.values import Call, ConcurrencyPolicy, Options, Retry, ScheduleSpec
from cronledger.domain.verify import verify
from cronledger.projectors.snapshot import project

T0 = 1_767_225_600_000
SECOND = 1000


def _spec(sid: str, every_s: int, **kw: object) -> ScheduleSpec:
    return ScheduleSpec(
        id=sid,
        trigger=Every(every_s * SECOND, T0),
        target=Call("work"),
        concurrency=ConcurrencyPolicy.QUEUE_ONE,
        **kw,  # type: ignore[arg-type]
    )


def _run(engine: Engine, clock: FakeClock, seconds: int) -> None:
    for _ in range(seconds):
        clock.advance(SECOND)
        while engine.tick().summary.more_due:
            pass


def test_the_engine_records_every_fact_and_a_replay_equals_its_state(
    make_ledger: Callable[[], Ledger],
) -> None:
    clock = FakeClock(T0)

    def script(c: cmd.StartRun) -> Script:  # "a" fails its first attempts, "b" fails always
        return Script(1500, {"a": 1 if c.attempt == 1 else 0, "b": 3}.get(c.schedule_id or "", 0))

    engine = Engine(make_ledger(), clock, FakeRunner(script))
    engine.execute(cmd.ChangeOptions(Options(max_workers=2)))
    engine.execute(cmd.AddSchedule(_spec("a", 2, retry=Retry(2, SECOND))))
    engine.execute(cmd.AddSchedule(_spec("b", 3)))
    _run(engine, clock, 60)
    events = [e for _, e in engine.ledger.read()]
    assert len(events) == engine.snapshot.position
    assert project(events) == engine.snapshot
    assert verify(engine.ledger.read()).ok
    assert any(isinstance(e, ev.RetryPlanned) for e in events)
    assert any(isinstance(e, ev.RunFailed) and e.final for e in events)
    assert any(isinstance(e, ev.RunSucceeded) for e in events)


def test_a_restarted_engine_resumes_from_its_snapshot_and_the_rest_of_the_ledger(
    make_ledger: Callable[[], Ledger],
) -> None:
    clock = FakeClock(T0)
    ledger = make_ledger()
    engine = Engine(ledger, clock, FakeRunner(Script(500)))
    engine.execute(cmd.AddSchedule(_spec("a", 2)))
    _run(engine, clock, 20)
    at = engine.save_snapshot()
    _run(engine, clock, 20)
    assert ledger.latest_snapshot() is not None
    restarted = Engine(ledger, clock, FakeRunner(Script(500)))
    assert restarted.snapshot == engine.snapshot
    assert at < restarted.snapshot.position
    snap = ledger.latest_snapshot()
    assert snap is not None and decode_snapshot(snap[1]) is not None
    assert encode_snapshot(restarted.snapshot) == encode_snapshot(engine.snapshot)


def test_two_engines_on_one_ledger_never_fire_the_same_time_twice(
    make_ledger: Callable[[], Ledger],
) -> None:
    clock = FakeClock(T0)
    first = make_ledger()
    url = first.url
    a = Engine(first, clock, FakeRunner(Script(100)), node="a")  # one daemon per name
    a.execute(cmd.AddSchedule(_spec("a", 1)))
    b = Engine(open_ledger(url), clock, FakeRunner(Script(100)), node="b")
    for _ in range(30):
        clock.advance(SECOND)
        a.tick()
        b.tick()  # stale: conflicts, catches up, re-plans on the new state
    fires = [e.nominal for _, e in a.ledger.read() if isinstance(e, ev.FireRecorded)]
    assert len(fires) == len(set(fires)) == 30
    b.refresh()
    assert a.snapshot == b.snapshot
