"""A scripted scenario through the cronledger core on an SQLite ledger, in virtual time.

Three hours of a small fleet of schedules (with a 20-minute outage) run in a few seconds against
a fake clock and a fake runner; every decision is a fact in the ledger. The script then prints
the run history, what each schedule's facts say, and whether every recorded tick re-plans to
the same decisions (`verify`). Run it with `make demo`; pass `--keep` to keep the ledger file.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from cronledger.adapters.clock import FakeClock
from cronledger.adapters.engine import Engine
from cronledger.adapters.fake_runner import FakeRunner, Script
from cronledger.adapters.ledger import open_ledger
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.commands import StartRun
from cronledger.domain.hours import Window
from cronledger.domain.instants import iso, to_ms
from cronledger.domain.triggers import Cron, Every
from cronledger.domain.values import (
    Call,
    Command,
    ConcurrencyPolicy,
    MisfirePolicy,
    Options,
    Retry,
    ScheduleSpec,
)
from cronledger.domain.verify import verify
from cronledger.projectors import history

SECOND, MINUTE = 1000, 60_000
START = to_ms(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))  # a Monday, 08:00 in Berlin


def schedules() -> list[ScheduleSpec]:
    P = ConcurrencyPolicy
    return [
        ScheduleSpec(
            id="heartbeat",
            trigger=Every(2 * MINUTE, START),
            target=Call("ping"),
            concurrency=P.FORBID,
        ),
        ScheduleSpec(
            id="flaky-sync",
            trigger=Every(15 * MINUTE, START),
            target=Command(("sync", "--run", "{run_id}")),
            concurrency=P.FORBID,
            retry=Retry(max_attempts=3, backoff_ms=30 * SECOND),
        ),
        ScheduleSpec(
            id="slow-forbid",
            trigger=Every(10 * MINUTE, START),
            target=Command(("reindex",)),
            concurrency=P.FORBID,
        ),
        ScheduleSpec(
            id="slow-queue-one",
            trigger=Every(10 * MINUTE, START),
            target=Command(("export", "{scheduled_for}")),
            concurrency=P.QUEUE_ONE,
        ),
        ScheduleSpec(
            id="berlin-report",
            trigger=Cron("30 8-10 * * 1-5", "Europe/Berlin"),
            target=Call("report"),
            concurrency=P.FORBID,
            priority=5,
        ),
        ScheduleSpec(
            id="quiet-digest",
            trigger=Cron("*/20 * * * *"),
            target=Call("digest"),
            concurrency=P.FORBID,
            quiet_hours=Window("08:00", "08:45", "UTC"),
        ),
        ScheduleSpec(
            id="catch-up-billing",
            trigger=Every(5 * MINUTE, START),
            target=Call("bill"),
            concurrency=P.FORBID,
            misfire=MisfirePolicy.CATCH_UP,
        ),
    ]


def script(run: StartRun) -> Script:
    """Scripted outcomes: the slow ones overlap their next fire; flaky-sync fails twice."""
    if run.schedule_id in ("slow-forbid", "slow-queue-one"):
        return Script(duration_ms=25 * MINUTE)
    if run.schedule_id == "flaky-sync" and run.attempt < 3:
        return Script(duration_ms=20 * SECOND, exit_code=1, stderr="connection reset by peer")
    return Script(duration_ms=5 * SECOND)


def main(keep: bool = False) -> int:
    folder = Path(tempfile.mkdtemp(prefix="cronledger-demo-"))
    try:
        return run(folder)
    finally:
        if keep:
            print(f"ledger kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path) -> int:
    url = f"sqlite:///{folder / 'ledger.db'}"
    clock = FakeClock(START)
    engine = Engine(open_ledger(url), clock, FakeRunner(script))
    print(f"ledger: {url}")
    began = time.perf_counter()

    engine.execute(cmd.ChangeOptions(Options(max_workers=4)))
    for spec in schedules():
        engine.execute(cmd.AddSchedule(spec))
    engine.execute(cmd.SubmitTask(target=Command(("migrate", "--once")), priority=9))

    outage = (START + 70 * MINUTE, START + 90 * MINUTE)
    end = START + 3 * 60 * MINUTE
    while clock.now() < end:
        clock.advance(SECOND)
        if outage[0] <= clock.now() < outage[1]:
            continue  # the daemon is down: no ticks
        if clock.now() == START + 40 * MINUTE:
            engine.execute(cmd.TriggerSchedule("berlin-report"))
        while engine.tick().summary.more_due:
            pass
    elapsed = time.perf_counter() - began

    events = [e for _, e in engine.ledger.read()]
    print(f"simulated {iso(START)} .. {iso(end)} (outage {iso(outage[0])} .. {iso(outage[1])})")
    print(f"{len(events)} facts in {elapsed:.2f} s of real time\n")

    runs = history.project(events)
    print(f"{'assigned':24} {'run':36} {'outcome':10} {'reason':8} {'ms':>7}")
    for record in runs.for_schedule(None)[:24]:
        print(
            f"{iso(record.assigned_at):24} {record.run_id[:36]:36} {record.outcome:10} "
            f"{record.reason or '':8} {record.duration_ms or '':>7}"
        )
    print(f"... {len(runs.runs)} runs in all\n")

    per: dict[str, Counter[str]] = {}
    for e in events:
        sid = getattr(e, "schedule_id", None)
        if sid is None and isinstance(e, ev.RunSucceeded | ev.RunFailed):
            sid = runs.runs[e.run_id].schedule_id or "(submitted)"
        if sid is not None and not isinstance(e, ev.RunAssigned | ev.RunStarted):
            name = type(e).__name__
            per.setdefault(sid, Counter())[name] += e.count if isinstance(e, ev.FireMissed) else 1
    names = [
        "FireRecorded",
        "FireSkipped",
        "FireCoalesced",
        "FireDeferred",
        "FireMissed",
        "RunSucceeded",
        "RunFailed",
    ]
    print(
        f"{'schedule':18}"
        + "".join(f"{n.replace('Fire', '').replace('Run', ''):>11}" for n in names)
    )
    for sid in sorted(per):
        print(f"{sid:18}" + "".join(f"{per[sid][n]:>11}" for n in names))

    report = verify(engine.ledger.read())
    verdict = "OK" if report.ok else f"DIVERGED at {report.divergence}"
    print(f"\nverify: {report.ticks} ticks re-planned from their recorded inputs: {verdict}")
    engine.close()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(keep="--keep" in sys.argv[1:]))
