"""Ledger fixtures shared by the integration tests: one URL per store (memory, SQLite, PostgreSQL).

PostgreSQL is expected on 127.0.0.1:5432, database `test`, user `postgres` (trust auth); each test
gets its own schema, dropped afterwards. Without a server the PostgreSQL cases are skipped, except
under CI (env CI set), where they fail: a green CI must have run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cronledger.adapters.ledger import Ledger, open_ledger
from cronledger.domain.events import (
    ALL_EVENTS,
    EntryCancelled,
    EntryHeld,
    EntryQueued,
    EntryReleased,
    Event,
    FireCoalesced,
    FireDeferred,
    FireMissed,
    FireRecorded,
    FireSkipped,
    OptionsChanged,
    RetryPlanned,
    RunAssigned,
    RunCancelled,
    RunFailed,
    RunLost,
    RunStarted,
    RunSucceeded,
    ScheduleAdded,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleUpdated,
    TickStarted,
    TriggerRequested,
)
from cronledger.domain.hours import Window
from cronledger.domain.triggers import At, Cron, Every
from cronledger.domain.values import (
    Call,
    Command,
    ConcurrencyPolicy,
    ExitKind,
    MisfirePolicy,
    Options,
    Retry,
    RunExit,
    ScheduleSpec,
)

PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
STORES = ("memory", "sqlite", "postgres")

_pg_problem: list[str | None] = []


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used here (None when it can); checked once per session."""
    if not _pg_problem:
        try:
            import psycopg

            with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_problem.append(None)
        except Exception as e:
            _pg_problem.append(f"PostgreSQL not reachable at {PG_URL}: {' '.join(str(e).split())}")
    return _pg_problem[0]


def require_postgres() -> None:
    """Skip without PostgreSQL, but fail under CI, where it must be there."""
    problem = postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem} (CI is set, so the PostgreSQL ledger tests must run)")
    pytest.skip(problem)


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A fresh schema name, dropped (with its tables) after the test."""
    require_postgres()
    import psycopg

    schema = f"cl_test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(
    params=[
        pytest.param(s, marks=[pytest.mark.postgres] if s == "postgres" else []) for s in STORES
    ]
)
def store(request: pytest.FixtureRequest) -> str:
    """The kind of store under test: memory, sqlite or postgres."""
    kind: str = request.param
    return kind


@pytest.fixture
def ledger_url(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL of an empty ledger of the store under test; every handle opened on it shares it."""
    if store == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    if store == "sqlite":
        return "sqlite:///" + str(tmp_path / "ledger.db")
    schema: str = request.getfixturevalue("postgres_schema")
    return f"{PG_URL}?schema={schema}"


@pytest.fixture
def make_ledger(ledger_url: str) -> Iterator[Callable[[], Ledger]]:
    """Opens handles on `ledger_url` (several can be open at once); all closed afterwards."""
    opened: list[Ledger] = []

    def make() -> Ledger:
        ledger = open_ledger(ledger_url)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(make_ledger: Callable[[], Ledger]) -> Ledger:
    """One open handle on an empty ledger of the store under test."""
    return make_ledger()


# --- realistic events -----------------------------------------------------------------------

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


def one_of_each_event() -> list[Event]:
    """A realistic instance of every class in ALL_EVENTS (some classes twice, to vary unions)."""
    nightly = ScheduleSpec(
        id="backup-nightly",
        trigger=Cron("30 2 * * *", "Europe/Berlin"),
        target=Command(
            argv=("/usr/local/bin/backup", "--target", "/srv/data", "{run_id}"),
            env=(("BACKUP_LEVEL", "full"), ("LANG", "C.UTF-8")),
            cwd="/srv",
            fallback=("/usr/bin/logger", "backup could not start"),
        ),
        concurrency=ConcurrencyPolicy.FORBID,
        misfire=MisfirePolicy.CATCH_UP,
        catch_up_window_ms=6 * 3_600_000,
        priority=5,
        retry=Retry(max_attempts=3, backoff_ms=30_000, max_backoff_ms=600_000),
        timeout_ms=3_600_000,
        active_hours=Window("01:00", "05:00", "Europe/Berlin"),
        jitter_ms=60_000,
        principal="user:alice",
    )
    poll = ScheduleSpec(
        id="poll-feeds",
        trigger=Every(300_000, T0),
        target=Call("feeds.poll"),
        concurrency=ConcurrencyPolicy.QUEUE_ONE,
        quiet_hours=Window("22:00", "06:30", "America/New_York"),
        fire_limit=1000,
    )
    once = ScheduleSpec(
        id="migrate-once",
        trigger=At(T0 + 86_400_000),
        target=Command(argv=("manage.py", "migrate", "--noinput")),
        concurrency=ConcurrencyPolicy.ALLOW,
    )
    exits = (
        RunExit(run_id="run-1", kind=ExitKind.EXITED, finished_at=T0 + 900, exit_code=0),
        RunExit(
            run_id="run-2",
            kind=ExitKind.SIGNALED,
            finished_at=T0 + 950,
            signal=9,
            stderr_tail="Killed\n",
            stderr_dropped=4096,
        ),
        RunExit(
            run_id="run-3",
            kind=ExitKind.SPAWN_FAILED,
            finished_at=T0 + 960,
            error="FileNotFoundError: [Errno 2] No such file or directory: 'backup'",
        ),
    )
    return [
        ScheduleAdded(at=T0, spec=nightly, next_fire_at=T0 + 5_400_000, due_at=T0 + 5_431_000),
        ScheduleAdded(at=T0, spec=once, next_fire_at=T0 + 86_400_000, due_at=T0 + 86_400_000),
        ScheduleUpdated(at=T0 + 1, spec=poll, next_fire_at=T0 + 300_000, due_at=T0 + 300_000),
        SchedulePaused(at=T0 + 2, schedule_id="poll-feeds", reason="policy: target not allowed"),
        ScheduleResumed(at=T0 + 3, schedule_id="poll-feeds", next_fire_at=None, due_at=None),
        ScheduleRemoved(at=T0 + 4, schedule_id="migrate-once"),
        TriggerRequested(at=T0 + 5, schedule_id="backup-nightly", request_id="req-7f3a"),
        OptionsChanged(
            at=T0 + 6,
            options=Options(max_workers=4, max_per_tick=64, draining=True),
            changed=("max_workers", "max_per_tick", "draining"),
        ),
        TickStarted(at=T0 + 1000, tick=42, exits=exits, requests=("req-7f3a",), decisions=7),
        TickStarted(at=T0 + 2000, tick=43, exits=(), requests=(), decisions=0),
        FireRecorded(
            at=T0 + 1000,
            schedule_id="backup-nightly",
            nominal=T0 + 900,
            entry_id="backup-nightly@1767226500000",
            represents=3,
            late_ms=100,
            hold="awaiting_previous_run",
            request_id="req-7f3a",
            next_fire_at=T0 + 86_400_000,
            due_at=T0 + 86_431_000,
        ),
        FireSkipped(
            at=T0 + 1000,
            schedule_id="poll-feeds",
            nominal=T0 + 600,
            reason="concurrency_forbid",
            request_id=None,
            next_fire_at=T0 + 300_600,
            due_at=T0 + 300_600,
        ),
        FireCoalesced(
            at=T0 + 1000,
            schedule_id="poll-feeds",
            nominal=T0 + 700,
            into_entry_id="poll-feeds@1767225600600",
            request_id=None,
            next_fire_at=None,
            due_at=None,
        ),
        FireDeferred(
            at=T0 + 1000, schedule_id="backup-nightly", nominal=T0 + 800, until=T0 + 3_600_000
        ),
        FireMissed(
            at=T0 + 1000,
            schedule_id="poll-feeds",
            count=12,
            first=T0 - 3_600_000,
            last=T0 - 300_000,
            grace_ms=60_000,
            next_fire_at=T0 + 300_000,
            due_at=T0 + 300_000,
        ),
        EntryQueued(
            at=T0 + 1100,
            entry_id="job-1",
            target=Command(argv=("convert", "in.png", "out.webp"), env=(("OMP_THREADS", "2"),)),
            priority=-1,
            hold="approval",
            max_attempts=5,
            backoff_ms=1000,
            max_backoff_ms=60_000,
            timeout_ms=None,
            principal="user:bob",
        ),
        EntryQueued(
            at=T0 + 1101,
            entry_id="job-2",
            target=Call("reports.weekly"),
            priority=0,
            hold=None,
            max_attempts=1,
            backoff_ms=1000,
            max_backoff_ms=3_600_000,
            timeout_ms=120_000,
            principal="system:daemon",
        ),
        EntryHeld(at=T0 + 1200, entry_id="job-1", reason="manual hold"),
        EntryReleased(at=T0 + 1300, entry_id="job-1", reason="approved by user:carol"),
        EntryCancelled(at=T0 + 1400, entry_id="job-2", reason="schedule removed"),
        RunAssigned(
            at=T0 + 1500,
            run_id="run-4",
            entry_id="backup-nightly@1767226500000",
            attempt=1,
            argv=("/usr/local/bin/backup", "--target", "/srv/data", "run-4", "ünïcødé ✓"),
            call=None,
            deadline=T0 + 3_601_500,
        ),
        RunAssigned(
            at=T0 + 1501,
            run_id="run-5",
            entry_id="job-2",
            attempt=2,
            argv=(),
            call="reports.weekly",
            deadline=None,
        ),
        RunStarted(at=T0 + 1502, run_id="run-4", pid=31337, fallback=False),
        RunStarted(at=T0 + 1503, run_id="run-5", pid=None, fallback=True),
        RunCancelled(at=T0 + 1600, run_id="run-4", reason="replaced"),
        RunSucceeded(
            at=T0 + 1700,
            run_id="run-5",
            entry_id="job-2",
            exit_code=0,
            duration_ms=197,
            stderr_tail="",
        ),
        RunFailed(
            at=T0 + 1800,
            run_id="run-4",
            entry_id="backup-nightly@1767226500000",
            reason="timeout",
            exit_code=None,
            signal=15,
            duration_ms=3_600_000,
            stderr_tail="rsync: [sender] write error: Broken pipe (32)\n",
            error="",
            final=False,
        ),
        RunLost(
            at=T0 + 1900, run_id="run-6", entry_id="job-1", detail="daemon restarted", final=True
        ),
        RetryPlanned(
            at=T0 + 1800,
            entry_id="backup-nightly@1767226500000",
            attempt=2,
            not_before=T0 + 31_800,
        ),
    ]


def covers_all_events(events: list[Event]) -> bool:
    return {type(e) for e in events} == set(ALL_EVENTS)


def simple_events(count: int, start: int = 0, tag: str = "run") -> list[Event]:
    """`count` distinct small events (RunSucceeded), numbered from `start`."""
    return [
        RunSucceeded(
            at=T0 + i,
            run_id=f"{tag}-{i}",
            entry_id=f"entry-{i}",
            exit_code=0,
            duration_ms=i,
            stderr_tail="",
        )
        for i in range(start, start + count)
    ]
