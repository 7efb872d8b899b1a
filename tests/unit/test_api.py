"""The facade (`import cronledger`) over a memory ledger, a FakeClock and a FakeRunner."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import cronledger
from cronledger import (
    Call,
    ConcurrencyPolicy,
    Cron,
    Every,
    InvalidInput,
    MisfirePolicy,
    Retry,
    UnknownSchedule,
    Window,
)
from cronledger.testing import FakeClock, FakeRunner, Script

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def scheduler(clock: FakeClock) -> Iterator[cronledger.Scheduler]:
    with cronledger.open(
        "memory://", clock=clock, runner=FakeRunner(Script(duration_ms=2000))
    ) as scheduler:
        yield scheduler


def test_a_schedule_fires_runs_and_lands_in_the_history(
    scheduler: cronledger.Scheduler, clock: FakeClock
) -> None:
    state = scheduler.add("sync", "*/5 * * * *", ["sync", "--run", "{run_id}"], retry=3)
    assert state.spec.concurrency is ConcurrencyPolicy.FORBID
    assert state.spec.retry == Retry(max_attempts=3)
    assert state.next_fire_at == T0 + 5 * MINUTE

    clock.advance(5 * MINUTE)
    summary = scheduler.tick()
    assert (summary.fired, summary.dispatched) == (1, 1)
    [run] = scheduler.runs()
    assert run.run_id == "sync@20260101T000500Z#1"
    assert scheduler.health().active_runs == 1

    clock.advance(2000)
    scheduler.tick()
    assert scheduler.runs() == []
    [record] = scheduler.history("sync")
    assert (record.outcome, record.argv) == ("succeeded", ("sync", "--run", record.run_id))
    assert scheduler.schedule("sync").last_outcome == "succeeded"
    assert scheduler.verify().ok


def test_durations_and_instants_are_accepted_in_every_form(scheduler: cronledger.Scheduler) -> None:
    state = scheduler.add(
        "report",
        timedelta(hours=1),
        Call("report"),
        misfire=MisfirePolicy.CATCH_UP,
        misfire_grace="90s",
        catch_up_window=timedelta(hours=6),
        timeout=30_000,
        jitter="1m",
        concurrency="queue-one",
        active_hours=Window("08:00", "20:00", "Europe/Berlin"),
    )
    spec = state.spec
    assert spec.trigger == Every(3_600_000, T0)
    assert (spec.misfire_grace_ms, spec.catch_up_window_ms, spec.timeout_ms, spec.jitter_ms) == (
        90_000,
        21_600_000,
        30_000,
        60_000,
    )
    assert spec.concurrency is ConcurrencyPolicy.QUEUE_ONE
    once = datetime(2026, 1, 2, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert scheduler.add("once", once, ["true"]).next_fire_at == T0 + 32 * 3_600_000
    assert scheduler.add("every", "every 90s", ["true"]).spec.trigger == Every(90_000, T0)


def test_add_with_exist_ok_is_what_a_service_does_at_every_start(
    scheduler: cronledger.Scheduler, clock: FakeClock
) -> None:
    first = scheduler.add("digest", "every 6h", Call("digest"), concurrency="queue_one")
    with pytest.raises(cronledger.DuplicateSchedule):
        scheduler.add("digest", "every 6h", Call("digest"), concurrency="queue_one")
    position = scheduler.snapshot.position
    clock.advance(5 * MINUTE)  # the service restarts later: same settings, nothing recorded
    again = scheduler.add(
        "digest", "every 6h", Call("digest"), concurrency="queue_one", exist_ok=True
    )
    assert scheduler.snapshot.position == position
    assert again.spec == first.spec and again.next_fire_at == first.next_fire_at
    changed = scheduler.add("digest", "every 6h", Call("digest"), priority=2, exist_ok=True)
    assert changed.spec.priority == 2 and changed.spec.trigger == first.spec.trigger  # same phase
    fresh = scheduler.add("other", "every 1h", ["true"], exist_ok=True)  # absent: added
    assert fresh.spec.trigger == Every(3_600_000, T0 + 5 * MINUTE)


def test_update_changes_only_what_it_names(scheduler: cronledger.Scheduler) -> None:
    scheduler.add("job", "0 * * * *", ["job"], priority=3, retry=2)
    state = scheduler.update("job", trigger=Cron("30 * * * *"), timeout="5m")
    assert state.spec.trigger == Cron("30 * * * *")
    assert (state.spec.timeout_ms, state.spec.priority, state.spec.retry.max_attempts) == (
        300_000,
        3,
        2,
    )
    assert state.next_fire_at == T0 + 30 * MINUTE
    with pytest.raises(InvalidInput) as error:
        scheduler.update("job", colour="blue")
    assert error.value.field == "colour"


def test_pause_resume_remove_and_trigger(scheduler: cronledger.Scheduler, clock: FakeClock) -> None:
    scheduler.add("job", "every 1m", ["job"])
    assert scheduler.pause("job", "maintenance").paused
    clock.advance(3 * MINUTE)
    assert scheduler.tick().fired == 0

    request = scheduler.trigger("job")  # a manual trigger runs even while paused
    assert request.startswith("job!")
    assert scheduler.tick().fired == 1

    clock.advance(10_000)
    scheduler.tick()
    state = scheduler.resume("job")
    assert not state.paused and state.next_fire_at == T0 + 4 * MINUTE
    clock.advance(MINUTE)
    assert scheduler.tick().fired == 1

    scheduler.remove("job")
    with pytest.raises(UnknownSchedule):
        scheduler.schedule("job")
    assert [r.outcome for r in scheduler.history("job")] == ["succeeded", "running"]


def test_submitted_tasks_are_queued_then_run(
    scheduler: cronledger.Scheduler, clock: FakeClock
) -> None:
    entry = scheduler.submit(["convert", "a.png"], priority=5, retry=Retry(2, 1000))
    [queued] = scheduler.queue()
    assert (queued.id, queued.priority, queued.max_attempts) == (entry, 5, 2)
    scheduler.tick()
    clock.advance(2000)
    scheduler.tick()
    assert scheduler.queue() == []
    assert [r.entry_id for r in scheduler.history()] == [entry]


def test_registered_callables_run_on_the_fake_runner(clock: FakeClock) -> None:
    calls: list[str] = []
    with cronledger.open("memory://", clock=clock, runner=FakeRunner()) as scheduler:

        @scheduler.task("greet")
        def greet() -> None:
            calls.append("hi")

        def broken() -> None:
            raise RuntimeError("disk full")

        scheduler.register("broken", broken)
        scheduler.submit(Call("greet"))
        scheduler.submit(Call("broken"))
        scheduler.tick()
        clock.advance(1000)
        scheduler.tick()
        outcomes = {r.call: (r.outcome, r.stderr_tail) for r in scheduler.history()}
    assert calls == ["hi"]
    assert outcomes == {
        "greet": ("succeeded", ""),
        "broken": ("failed", "RuntimeError: disk full"),
    }


def test_next_fires_follow_the_trigger_and_the_fire_limit(
    scheduler: cronledger.Scheduler,
) -> None:
    scheduler.add("daily", Cron("30 2 * * *", "Europe/Berlin"), ["backup"], fire_limit=2)
    assert scheduler.next_fires("daily") == [
        datetime(2026, 1, 1, 1, 30, tzinfo=UTC),
        datetime(2026, 1, 2, 1, 30, tzinfo=UTC),
    ]
    scheduler.pause("daily")
    assert scheduler.next_fires("daily") == []


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.add("a", "61 * * * *", ["x"]), "trigger.expr"),
        (lambda s: s.add("a", "every soon", ["x"]), "trigger"),
        (lambda s: s.add("a", datetime(2026, 5, 1), ["x"]), "trigger"),
        (lambda s: s.add("a", "@daily", "echo hi"), "target"),
        (lambda s: s.add("a", "@daily", []), "target.argv"),
        (lambda s: s.add("a", "@daily", ["x"], concurrency="sometimes"), "concurrency"),
        (lambda s: s.add("a", "@daily", ["x"], misfire="later"), "misfire"),
        (lambda s: s.add("a", "@daily", ["x"], misfire_grace=1.5), "misfire_grace"),
        (lambda s: s.add("a", "@daily", ["x"], timeout="soon"), "timeout"),
        (lambda s: s.add("a", "@daily", ["x"], priority=True), "priority"),
        (lambda s: s.add("a", "@daily", ["x"], catch_up_window="1h"), "catch_up_window"),
        (lambda s: s.add("a b", "@daily", ["x"]), "id"),
        (lambda s: s.add("a", "every 500ms", ["x"]), "trigger.interval"),
        (lambda s: s.replay(at=datetime(2026, 1, 1)), "at"),
        (lambda s: s.history(since=datetime(2026, 1, 1)), "since"),
        (lambda s: s.history(limit=0), "limit"),  # the keyword, not the CLI's --limit
        (lambda s: s.replay(position=99), "position"),
        (lambda s: s.replay(position=-1), "position"),
        (lambda s: s.replay(at=T0, position=0), "at"),
        (lambda s: s.run(until=datetime(2026, 1, 1)), "until"),
        (lambda s: s.configure(max_workers=0), "max_workers"),
        (lambda s: s.configure(speed=11), "speed"),
    ],
)
def test_bad_input_is_an_error_naming_the_field(
    scheduler: cronledger.Scheduler, call: object, field: str
) -> None:
    assert callable(call)
    with pytest.raises(InvalidInput) as error:
        call(scheduler)
    assert error.value.field == field
    assert error.value.fix


def test_naive_datetimes_are_rejected_with_the_fix(scheduler: cronledger.Scheduler) -> None:
    with pytest.raises(InvalidInput, match=r"no time zone.*aware datetime"):
        scheduler.add("once", datetime(2026, 6, 1, 9, 0), ["x"])


def test_unknown_and_duplicate_schedules(scheduler: cronledger.Scheduler) -> None:
    scheduler.add("a", "@daily", ["x"])
    with pytest.raises(cronledger.DuplicateSchedule):
        scheduler.add("a", "@daily", ["x"])
    for call in (scheduler.schedule, scheduler.pause, scheduler.trigger, scheduler.history):
        with pytest.raises(UnknownSchedule):
            call("nope")


def test_replay_at_an_earlier_instant_is_the_state_back_then(
    scheduler: cronledger.Scheduler, clock: FakeClock
) -> None:
    scheduler.add("job", "every 1m", ["job"])
    for _ in range(5):
        clock.advance(MINUTE)
        scheduler.tick()
        clock.advance(2000)
        scheduler.tick()
    scheduler.add("later", "@daily", ["x"])
    now = scheduler.snapshot
    then = scheduler.replay(at=datetime(2026, 1, 1, 0, 2, 30, tzinfo=UTC))
    assert (then.counters.succeeded, now.counters.succeeded) == (2, 5)
    assert set(then.schedules) == {"job"} and set(now.schedules) == {"job", "later"}
    assert then.position < now.position
    assert scheduler.replay(position=then.position) == then
    assert scheduler.replay() == now
    report = scheduler.verify()
    assert report.ok and report.ticks == 10


def test_explain_says_why_a_schedule_fired(
    scheduler: cronledger.Scheduler, clock: FakeClock
) -> None:
    pytest.importorskip("cronledger.domain.explain")
    scheduler.add("job", "every 1m", ["job"])
    clock.advance(MINUTE)
    scheduler.tick()
    explanation = scheduler.explain("job")
    assert (explanation.subject, explanation.decision) == ("job", "fired")
    assert scheduler.explain("job@20260101T000100Z#1").kind == "run"


def test_configure_records_the_options(scheduler: cronledger.Scheduler) -> None:
    options = scheduler.configure(max_workers=2, misfire_grace="2m")
    assert (options.max_workers, options.misfire_grace_ms) == (2, 120_000)


def test_a_schedule_without_its_own_grace_follows_the_option_and_can_go_back_to_it(
    scheduler: cronledger.Scheduler, clock: FakeClock
) -> None:
    scheduler.add("job", "every 1m", ["job"], misfire_grace="10s")
    assert scheduler.schedule("job").spec.misfire_grace_ms == 10_000
    assert scheduler.update("job", misfire_grace=None).spec.misfire_grace_ms is None
    scheduler.configure(misfire_grace="5m")
    clock.advance(4 * MINUTE)  # the T0+1m fire is 3 min late: on time under the option's 5 min
    scheduler.tick()
    facts = [e for _, e in scheduler.engine.ledger.read()]
    assert not [e for e in facts if type(e).__name__ == "FireMissed"]  # 10 s: three missed
    [fired] = [e for e in facts if type(e).__name__ == "FireRecorded"]
    assert fired.represents == 4  # type: ignore[attr-defined]


def test_run_until_an_instant_on_the_fake_clock(
    scheduler: cronledger.Scheduler, clock: FakeClock
) -> None:
    scheduler.add("job", "every 10m", ["job"])
    scheduler.run(until=datetime(2026, 1, 1, 1, 0, tzinfo=UTC))
    assert clock.now() == T0 + 60 * MINUTE
    assert [r.outcome for r in scheduler.history("job")] == ["succeeded"] * 5 + ["running"]


def test_open_with_the_real_runners_keeps_schedules_in_the_sqlite_ledger(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'cl.db'}"
    with cronledger.open(url) as scheduler:
        scheduler.add("backup", "30 2 * * *", ["backup", "--all"])
        assert scheduler.state_dir == tmp_path / "cl.db.runs"
        assert repr(scheduler) == f"<Scheduler {url}>"
    with cronledger.open(url, state_dir=tmp_path / "runs") as scheduler:
        assert [s.spec.id for s in scheduler.schedules()] == ["backup"]


def test_the_public_names_exist_and_nothing_else_is_promised() -> None:
    for name in cronledger.__all__:
        assert getattr(cronledger, name) is not None, name
    assert isinstance(cronledger.__version__, str) and cronledger.__version__
    assert cronledger.RunRecord.__name__ == "RunRecord"
    with pytest.raises(AttributeError):
        _ = cronledger.Engine


def test_importing_cronledger_does_not_import_the_engine_or_eventsourcing() -> None:
    code = (
        "import sys, cronledger; "
        "heavy = [m for m in ('eventsourcing', 'cronledger.adapters.engine', 'orjson') "
        "if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_repr_of_a_scheduler_never_shows_a_ledger_password(tmp_path: Path) -> None:
    url = "memory://app:s3cret@repr-test"
    with cronledger.open(url, state_dir=tmp_path / "runs") as scheduler:
        assert repr(scheduler) == "<Scheduler memory://app:***@repr-test>"


def test_exist_ok_updates_a_schedule_another_process_added_meanwhile(clock: FakeClock) -> None:
    url = f"memory://exist-ok-{id(clock)}"
    with (
        cronledger.open(url, clock=clock, runner=FakeRunner()) as one,
        cronledger.open(url, clock=clock, runner=FakeRunner()) as two,
    ):
        two.snapshot  # noqa: B018 (read before the other adds: a stale view)
        one.add("report", "every 1h", Call("report"))
        state = two.add("report", "every 1h", Call("report"), priority=5, exist_ok=True)
        assert state.spec.priority == 5


def test_exist_ok_adds_a_schedule_another_process_removed_meanwhile(clock: FakeClock) -> None:
    url = f"memory://exist-ok-removed-{id(clock)}"
    with (
        cronledger.open(url, clock=clock, runner=FakeRunner()) as one,
        cronledger.open(url, clock=clock, runner=FakeRunner()) as two,
    ):
        one.add("report", "every 1h", Call("report"))
        two.schedules()  # two sees it
        one.remove("report")
        state = two.add("report", "every 2h", Call("report"), exist_ok=True)
        assert state.spec.trigger.interval_ms == 7_200_000  # type: ignore[union-attr]


def test_a_schedule_cannot_take_the_form_of_a_task_id(scheduler: cronledger.Scheduler) -> None:
    """A schedule named task-2 and the second submitted task would share `explain task-2`
    (found by an explorer): such a name is refused when added."""
    with pytest.raises(InvalidInput) as error:
        scheduler.add("task-2", "@daily", ["true"])
    assert error.value.field == "id" and "task_2" in error.value.fix
    scheduler.add("task-two", "@daily", ["true"])  # only task-<digits> is taken
    scheduler.add("task-2b", "@daily", ["true"])
