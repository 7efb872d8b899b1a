"""Replay read benchmark: fill a SQLite ledger, then time `ledger.read()` (read + decode).

Run from the repository root: `python bench/replay_read.py [N] [PATH]` (default 1,000,000 events
in a temporary file). The replay goal is folding >= 150k events/s, so read+decode must stay
well above it (>= 300k events/s).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cronledger.domain.events import Event

BATCH = 1000


def realistic_events(n_events: int) -> Iterator[Event]:
    """A tick's worth of facts at a time: tick header, fire, assignment, start, success."""
    from cronledger.domain.events import (
        FireRecorded,
        RunAssigned,
        RunStarted,
        RunSucceeded,
        TickStarted,
    )
    from cronledger.domain.values import ExitKind, RunExit

    t0 = 1_767_225_600_000
    made = 0
    tick = 0
    while True:
        tick += 1
        at = t0 + tick * 1000
        sid = f"sched-{tick % 97:03d}"
        entry = f"{sid}@{at}"
        run = f"run-{tick:08d}"
        exits = (
            (
                RunExit(
                    run_id=f"run-{tick - 1:08d}",
                    kind=ExitKind.EXITED,
                    finished_at=at - 5,
                    exit_code=0,
                ),
            )
            if tick > 1
            else ()
        )
        batch: list[Event] = [
            TickStarted(at=at, tick=tick, exits=exits, requests=(), decisions=4),
            FireRecorded(
                at=at,
                schedule_id=sid,
                nominal=at,
                entry_id=entry,
                represents=1,
                late_ms=3,
                hold=None,
                request_id=None,
                next_fire_at=at + 60_000,
                due_at=at + 60_000,
            ),
            RunAssigned(
                at=at,
                run_id=run,
                entry_id=entry,
                attempt=1,
                argv=("/usr/local/bin/backup", "--target", f"/srv/data/{sid}", "--quiet"),
                call=None,
                deadline=at + 300_000,
            ),
            RunStarted(at=at + 2, run_id=run, pid=10_000 + tick % 50_000, fallback=False),
            RunSucceeded(
                at=at + 900,
                run_id=run,
                entry_id=entry,
                exit_code=0,
                duration_ms=898,
                stderr_tail="",
            ),
        ]
        for event in batch:
            if made == n_events:
                return
            made += 1
            yield event


def measure_read(n_events: int, path: str, repeat: int = 3) -> dict[str, Any]:
    """Fill a fresh SQLite ledger at `path` with n events, then read and decode them all.

    The read is timed `repeat` times; `read_decode_events_per_s` is the median run.
    """
    from cronledger.adapters.ledger import open_ledger

    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    url = "sqlite:///" + str(Path(path).resolve())
    with open_ledger(url) as ledger:
        started = time.perf_counter()
        position = 0
        batch: list[Event] = []
        for event in realistic_events(n_events):
            batch.append(event)
            if len(batch) == BATCH:
                position = ledger.append(batch, position)
                batch = []
        position = ledger.append(batch, position)
        append_s = time.perf_counter() - started

        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            count = 0
            for _ in ledger.read():
                count += 1
            runs.append(time.perf_counter() - started)
            assert count == n_events, (count, n_events)
    read_s = statistics.median(runs)
    return {
        "events": n_events,
        "append_s": round(append_s, 3),
        "append_events_per_s": round(n_events / append_s),
        "read_decode_s": round(read_s, 3),
        "read_decode_events_per_s": round(n_events / read_s),
        "read_decode_events_per_s_runs": [round(n_events / r) for r in runs],
        "file_mb": round(os.path.getsize(path) / 1e6, 1),
    }


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    n = int(argv[1].replace("_", "")) if len(argv) > 1 else 1_000_000
    if len(argv) > 2:
        print(measure_read(n, argv[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(measure_read(n, os.path.join(tmp, "replay.db")))


if __name__ == "__main__":
    main(sys.argv)
