"""Workload builders shared by the benchmarks (bench/ is not a package: import it by path).

- `realistic_spec` makes one schedule spec as users write them: a Command target with a few argv
  words, Every or Cron triggers (several zones), mixed concurrency and misfire policies, some
  retries, timeouts, jitter and active hours.
- `tick_snapshot` folds N ScheduleAdded facts (made by the real `handle`) into a snapshot where
  exactly `due` schedules are due at `now` and every other one later.
- `Simulation` drives the real planner with a FakeRunner and a virtual clock, like
  tests/harness.World but with a daemon-like loop (1 s tick grid, idle seconds skipped, restarts
  with misfires, operator commands), and streams the facts to a ledger.
- `cached_ledger` keeps a simulated SQLite ledger under bench/.cache/, keyed by
  `LEDGER_VERSION`, a fingerprint of the sources that shape it, the event count and the
  schedule count, with the simulation's final snapshot pickled next to it so a replay can be
  checked against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import sqlite3
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

import cronledger
from cronledger.adapters.fake_runner import FakeRunner, Script
from cronledger.adapters.ledger import Ledger, open_ledger
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.handlers import handle
from cronledger.domain.hours import Window
from cronledger.domain.state import EMPTY, Snapshot
from cronledger.domain.tick import TickPlan, next_wake, plan_tick
from cronledger.domain.triggers import Cron, Every, Trigger
from cronledger.domain.values import (
    Call,
    Command,
    ConcurrencyPolicy,
    MisfirePolicy,
    Options,
    Retry,
    ScheduleSpec,
)
from cronledger.projectors.snapshot import apply_all

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a Thursday
# The tick benchmark's clock reading: 00:07:30.5 UTC, a minute no cron below fires in.
TICK_NOW = T0 + 7 * MINUTE + 30 * SECOND + 500

# Part of the cache key, with a fingerprint of the sources (see `source_fingerprint`): bump it to
# force new ledgers when something else changes what the simulation writes.
LEDGER_VERSION = "sim-v2"
CACHE_DIR = Path(__file__).resolve().parent / ".cache"

TEAMS = ("billing", "search", "ingest", "reports", "ops", "ml", "web", "mail", "infra", "data")
JOBS = (
    "export",
    "sync",
    "rollup",
    "cleanup",
    "backup",
    "reindex",
    "digest",
    "probe",
    "rotate",
    "warm-cache",
)
PROGRAMS = (
    "/usr/local/bin/backup",
    "/opt/etl/bin/run-job",
    "/usr/bin/python3",
    "/srv/tools/sync.sh",
    "/usr/local/bin/report",
)
# (expression, zone): hourly, daily, weekday, monthly and nth-weekday schedules in several zones.
CRONS = (
    ("*/5 * * * *", "UTC"),
    ("*/15 * * * *", "UTC"),
    ("0 * * * *", "UTC"),
    ("17 * * * *", "Europe/Berlin"),
    ("0 */3 * * *", "UTC"),
    ("0 3 * * *", "Europe/Berlin"),
    ("30 2 * * *", "America/New_York"),
    ("0 9 * * 1-5", "America/New_York"),
    ("45 23 * * 0", "UTC"),
    ("30 2 1 * *", "UTC"),
    ("15 14 * * 5#2", "Asia/Tokyo"),
    ("*/10 8-18 * * 1-5", "Europe/London"),
)
INTERVALS = (
    30 * SECOND,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    6 * HOUR,
    DAY,
)
INTERVAL_WEIGHTS = (4, 10, 10, 14, 10, 8, 6, 6, 3, 2)
POLICIES = (
    ConcurrencyPolicy.FORBID,
    ConcurrencyPolicy.QUEUE_ONE,
    ConcurrencyPolicy.REPLACE,
    ConcurrencyPolicy.ALLOW,
)
POLICY_WEIGHTS = (50, 20, 8, 22)
WINDOWS = (
    Window("08:00", "20:00", "Europe/Berlin"),
    Window("06:00", "22:00", "UTC"),
    Window("22:00", "06:00", "America/New_York"),
)


def schedule_id(i: int) -> str:
    return f"{TEAMS[i % len(TEAMS)]}/{JOBS[(i // len(TEAMS)) % len(JOBS)]}-{i:06d}"


def _argv(rng: random.Random, sid: str) -> tuple[str, ...]:
    program = rng.choice(PROGRAMS)
    kind = rng.randrange(4)
    if kind == 0:
        return (program, "--target", f"/srv/data/{sid}", "--quiet")
    if kind == 1:
        return (program, "--run", "{run_id}", "--for", "{scheduled_for}")
    if kind == 2:
        return (program, "-m", "jobs.run", sid, "--attempt", "{attempt}")
    return (program, sid)


def realistic_spec(
    rng: random.Random,
    sid: str,
    *,
    trigger: Trigger | None = None,
    anchor_ms: int = T0,
    plain: bool = False,
) -> ScheduleSpec:
    """A spec as users write them. `trigger` overrides the random one; an Every trigger is
    anchored at `anchor_ms` plus an offset in [1 s, interval - 1 s]. `plain`: no jitter and no
    hours gate, so the spec is due exactly when its trigger says."""
    if trigger is None:
        if rng.random() < 0.7:
            interval = rng.choices(INTERVALS, INTERVAL_WEIGHTS)[0]
            offset = rng.randrange(SECOND, interval - SECOND + 1, SECOND)
            trigger = Every(interval, anchor_ms + offset)
        else:
            expr, zone = rng.choice(CRONS)
            trigger = Cron(expr, zone)
    env: tuple[tuple[str, str], ...] = ()
    if rng.random() < 0.2:
        env = (("JOB_ENV", "production"), ("LOG_LEVEL", "info"))
    target = Command(
        _argv(rng, sid),
        env=env,
        cwd="/srv/jobs" if rng.random() < 0.3 else None,
        fallback=("/usr/local/bin/notify", "--failed", sid) if rng.random() < 0.05 else None,
    )
    retry = Retry()
    if rng.random() < 0.2:
        retry = Retry(rng.choice((2, 3, 5)), rng.choice((1, 5, 30)) * SECOND, 10 * MINUTE)
    misfire = MisfirePolicy.CATCH_UP if rng.random() < 0.15 else MisfirePolicy.SKIP
    return ScheduleSpec(
        id=sid,
        trigger=trigger,
        target=target,
        concurrency=rng.choices(POLICIES, POLICY_WEIGHTS)[0],
        misfire=misfire,
        catch_up_window_ms=HOUR
        if misfire is MisfirePolicy.CATCH_UP and rng.random() < 0.5
        else None,
        priority=rng.choice((0, 0, 0, 1, 5)),
        retry=retry,
        timeout_ms=rng.choice((MINUTE, 5 * MINUTE, 30 * MINUTE)) if rng.random() < 0.3 else None,
        active_hours=rng.choice(WINDOWS) if not plain and rng.random() < 0.03 else None,
        jitter_ms=rng.choice((5, 30)) * SECOND if not plain and rng.random() < 0.1 else 0,
        principal=f"user:{sid.split('/')[0]}" if rng.random() < 0.5 else "system:cron",
    )


# --- the tick benchmark's snapshot ----------------------------------------------------------

TICK_OPTIONS = Options(max_workers=256, max_per_tick=512, batch_size=128)


def tick_snapshot_events(
    n: int, due: int = 100, now: int = TICK_NOW, seed: int = 1
) -> Iterator[ev.Event]:
    """OptionsChanged, then n ScheduleAdded facts made by `handle`; `due` of them (spread over
    the ids) are due at `now` (Every, 0-29 s late, within the misfire grace), the others later.

    Each add is handled against the empty snapshot: ids are unique by construction, so the
    duplicate check has nothing to find, and the fold is left to the caller (streamed)."""
    rng = random.Random(seed)
    yield from handle(EMPTY, cmd.ChangeOptions(TICK_OPTIONS), now - HOUR)
    stride = max(1, n // due)
    due_ids = set(range(0, stride * due, stride)) if due else set()
    for i in range(n):
        sid = schedule_id(i)
        if i in due_ids:
            interval = rng.choice((5 * MINUTE, 15 * MINUTE, HOUR))
            first = now - rng.randrange(30) * SECOND
            spec = realistic_spec(rng, sid, trigger=Every(interval, first), plain=True)
            added = first - interval // 2
        else:
            spec = realistic_spec(rng, sid, anchor_ms=now)
            added = now - SECOND
        yield from handle(EMPTY, cmd.AddSchedule(spec), added)


def tick_snapshot(n: int, due: int = 100, now: int = TICK_NOW, seed: int = 1) -> Snapshot:
    """The snapshot after `tick_snapshot_events` (indexes built once, as a replay does)."""
    return apply_all(EMPTY, tick_snapshot_events(n, due, now, seed), rebuild_indexes=True)


# --- the simulation -------------------------------------------------------------------------


@attrs.frozen
class Profile:
    """How a schedule's runs behave in the FakeRunner."""

    min_ms: int
    max_ms: int
    fail_rate: float = 0.0
    hang_rate: float = 0.0  # runs until cancelled: only with a timeout or REPLACE


TASK_PROFILE = Profile(200, 20 * SECOND, fail_rate=0.1)
STDERR = (
    "error: connection refused (db-primary:5432)\n",
    "Traceback (most recent call last):\n  ...\nTimeoutError: upstream did not answer\n",
    "rsync: [sender] write error: Broken pipe (32)\n",
)


def _period(trigger: Trigger) -> int:
    if isinstance(trigger, Every):
        return trigger.interval_ms
    return 10 * MINUTE  # crons here fire every 5 min .. monthly: run for minutes at most


def _profile(rng: random.Random, spec: ScheduleSpec) -> Profile:
    period = _period(spec.trigger)
    r = rng.random()
    if r < 0.55:
        profile = Profile(200, 3 * SECOND)
    elif r < 0.85:
        profile = Profile(2 * SECOND, max(3 * SECOND, min(period // 3, 2 * MINUTE)))
    else:  # slow: overlaps its next fire now and then (forbid skips, queue_one holds, ...)
        longest = min(period * 3 // 2, 20 * MINUTE)
        profile = Profile(min(period // 2, longest // 2), longest)
    if rng.random() < 0.08:
        profile = attrs.evolve(profile, fail_rate=rng.choice((0.1, 0.3, 0.6)))
    if (spec.timeout_ms is not None or spec.concurrency is ConcurrencyPolicy.REPLACE) and (
        rng.random() < 0.2
    ):
        profile = attrs.evolve(profile, hang_rate=0.05)
    return profile


class Simulation:
    """The planner + a FakeRunner + a virtual clock, streaming every fact to `sink`.

    The loop is the daemon's: read the runner's exits, plan a tick, record its facts, carry out
    its commands, record RunStarted for the runs that started. Ticks fall on a 1 s grid and idle
    seconds are skipped (the next tick is at the next wake-up, exit or operator action). Every
    few hours the daemon is down for some minutes (misfires, catch-ups, late exits), and an
    operator triggers, pauses, resumes, updates, removes and re-adds schedules and submits tasks.
    """

    def __init__(
        self, n_schedules: int, seed: int = 7, sink: Callable[[list[ev.Event]], None] | None = None
    ) -> None:
        self.rng = random.Random(seed)
        self.now = T0
        self.snapshot: Snapshot = EMPTY
        self.sink = sink
        self.pending: list[ev.Event] = []
        self.profiles: dict[str, Profile] = {}
        self.runner = FakeRunner(self._script)
        self.ticks = 0
        self._pid = 4000
        self._next_operator = T0 + 3 * MINUTE
        self._next_outage = T0 + 2 * HOUR + 17 * MINUTE
        self._later: list[tuple[int, cmd.UserCommand]] = []
        self._n = n_schedules
        self._task = 0
        self.do(cmd.ChangeOptions(Options(max_workers=256, max_per_tick=256, batch_size=64)))
        for i in range(n_schedules):
            self.add(realistic_spec(self.rng, schedule_id(i), anchor_ms=T0))

    # --- recording --------------------------------------------------------------------------

    def record(
        self, events: tuple[ev.Event, ...] | list[ev.Event], folded: Snapshot | None
    ) -> None:
        if not events:
            return
        self.snapshot = folded if folded is not None else apply_all(self.snapshot, events)
        if self.sink is not None:
            self.pending.extend(events)
            if len(self.pending) >= 5000:
                self.flush()

    def flush(self) -> None:
        if self.sink is not None and self.pending:
            self.sink(self.pending)
        self.pending = []

    def do(self, command: cmd.UserCommand) -> None:
        self.record(handle(self.snapshot, command, self.now), None)

    def add(self, spec: ScheduleSpec) -> None:
        self.profiles[spec.id] = _profile(self.rng, spec)
        self.do(cmd.AddSchedule(spec))

    # --- the runner -------------------------------------------------------------------------

    def _script(self, command: cmd.StartRun) -> Script:
        profile = self.profiles.get(command.schedule_id or "", TASK_PROFILE)
        h = zlib.crc32(command.run_id.encode())
        u = (h % 10_000) / 10_000
        duration = profile.min_ms + (h >> 14) % (profile.max_ms - profile.min_ms + 1)
        if u < profile.hang_rate:
            return Script(duration, None)
        if u < profile.hang_rate + profile.fail_rate:
            return Script(duration, 1 + h % 3, STDERR[h % len(STDERR)])
        return Script(duration, 0)

    # --- the loop ---------------------------------------------------------------------------

    def tick(self) -> TickPlan:
        now = self.now
        plan = plan_tick(self.snapshot, now, self.runner.poll(now))
        self.ticks += 1
        self.record(plan.events, plan.snapshot)
        if plan.commands:
            started = self.runner.carry_out(plan.commands, now)
            self.runner.started.clear()
            self.runner.cancelled.clear()
            runs = self.snapshot.runs
            facts = []
            for s in started:
                if s.run_id in runs:
                    self._pid = 4000 + (self._pid - 3999) % 60_000
                    facts.append(
                        ev.RunStarted(at=now, run_id=s.run_id, pid=self._pid, fallback=False)
                    )
            self.record(facts, None)
        return plan

    def _operate(self) -> None:
        rng, snap = self.rng, self.snapshot
        sid = schedule_id(rng.randrange(self._n))
        state = snap.schedules.get(sid)
        r = rng.random()
        if state is None:
            return
        if r < 0.3:
            self.do(cmd.TriggerSchedule(sid))
        elif r < 0.55:
            self._task += 1
            target = (
                Command(("/usr/local/bin/reindex", "--shard", str(self._task % 64)))
                if rng.random() < 0.7
                else Call("cache.invalidate")
            )
            self.do(
                cmd.SubmitTask(
                    target=target,
                    priority=rng.choice((0, 3, 10)),
                    max_attempts=rng.choice((1, 3)),
                    backoff_ms=2 * SECOND,
                    timeout_ms=10 * MINUTE,
                    principal="user:ops",
                )
            )
        elif r < 0.7 and not state.paused:
            self.do(cmd.PauseSchedule(sid, "maintenance"))
            self._later.append((self.now + rng.randrange(10, 90) * MINUTE, cmd.ResumeSchedule(sid)))
        elif r < 0.85:
            spec = realistic_spec(rng, sid, anchor_ms=self.now)
            self.profiles[sid] = _profile(rng, spec)
            self.do(cmd.UpdateSchedule(spec))
        elif r < 0.92:
            self.do(cmd.RemoveSchedule(sid))
            again = realistic_spec(rng, sid, anchor_ms=self.now)
            self._later.append((self.now + rng.randrange(5, 60) * MINUTE, cmd.AddSchedule(again)))
        elif r < 0.95:
            workers = rng.choice((128, 192, 256))
            self.do(cmd.ChangeOptions(attrs.evolve(snap.options, max_workers=workers)))

    def _due_commands(self) -> None:
        if not self._later:
            return
        ready = [c for c in self._later if c[0] <= self.now]
        if not ready:
            return
        self._later = [c for c in self._later if c[0] > self.now]
        for _, command in ready:
            if isinstance(command, cmd.AddSchedule):
                if command.spec.id not in self.snapshot.schedules:
                    self.add(command.spec)
            elif (
                isinstance(command, cmd.ResumeSchedule)
                and command.schedule_id in self.snapshot.schedules
            ):
                self.do(command)

    def step(self) -> None:
        """One tick (plus more while a tick says more is due), then move the clock on."""
        while self.tick().summary.more_due:
            pass
        self._due_commands()
        if self.now >= self._next_operator:
            self._operate()
            self._next_operator = self.now + self.rng.randrange(2, 8) * MINUTE
        if self.now >= self._next_outage:  # the daemon is down for a while
            self.now += self.rng.randrange(3, 12) * MINUTE
            self._next_outage = self.now + self.rng.randrange(2, 5) * HOUR
            return
        wakes = [self._next_operator, self.runner.next_exit_at(), next_wake(self.snapshot)]
        wakes.extend(t for t, _ in self._later)
        wake = min(w for w in wakes if w is not None)
        grid = -(-(wake - T0) // SECOND) * SECOND + T0  # the 1 s tick grid, rounded up
        self.now = max(self.now + SECOND, grid)

    def run(self, n_events: int, progress: Callable[[int, int], None] | None = None) -> Snapshot:
        """Step until at least `n_events` facts were recorded; flush; the final snapshot."""
        report = 0
        while self.snapshot.position < n_events:
            self.step()
            if progress is not None and self.snapshot.position >= report:
                progress(self.snapshot.position, self.now)
                report += 50_000
        self.flush()
        return self.snapshot


# --- the cached ledger ----------------------------------------------------------------------


# What decides the facts the simulation writes and the snapshot a replay builds.
_SOURCES = (
    "domain/*.py",
    "projectors/*.py",
    "errors.py",
    "adapters/codec.py",
    "adapters/fake_runner.py",
    "adapters/runner.py",
    "adapters/ledger.py",
    "adapters/ledger_store.py",
    "adapters/replay.py",
)


def source_fingerprint() -> str:
    """A hash of the sources that decide what the simulation writes and a replay builds:
    cronledger's domain, projectors and storage, and this file."""
    root = Path(cronledger.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted({p for pattern in _SOURCES for p in root.glob(pattern)}):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:12]


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def generate_ledger(
    path: Path, n_events: int, n_schedules: int, log: Callable[[str], None]
) -> tuple[Snapshot, dict[str, Any]]:
    """Simulate into a fresh SQLite ledger at `path` (synchronous=off: only reads are timed)."""
    _remove_db(path)
    started = time.perf_counter()
    with open_ledger(f"sqlite:///{path}?synchronous=off") as ledger:
        written = 0

        def sink(batch: list[ev.Event]) -> None:
            nonlocal written
            written = ledger.append(batch, written)

        def progress(position: int, now: int) -> None:
            hours = (now - T0) / HOUR
            log(
                f"  generating ledger: {position:>9,}/{n_events:,} events, "
                f"{hours:5.1f} h virtual, {time.perf_counter() - started:5.1f} s"
            )

        sim = Simulation(n_schedules, sink=sink)
        final = sim.run(n_events, progress)
        assert ledger.position() == final.position, (ledger.position(), final.position)
    elapsed = time.perf_counter() - started
    counters = attrs.asdict(final.counters)
    meta = {
        "version": LEDGER_VERSION,
        "events": final.position,
        "schedules": n_schedules,
        "ticks": sim.ticks,
        "virtual_hours": round((sim.now - T0) / HOUR, 2),
        "generate_s": round(elapsed, 1),
        "source": source_fingerprint(),
        "counters": counters,
    }
    log(
        f"  generated {final.position:,} events in {elapsed:.1f} s "
        f"({sim.ticks:,} ticks, {meta['virtual_hours']} h virtual)"
    )
    return final, meta


def cached_ledger(
    n_events: int,
    n_schedules: int,
    cache_dir: Path = CACHE_DIR,
    regenerate: bool = False,
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
) -> tuple[Path, Snapshot, dict[str, Any]]:
    """(ledger file, the simulation's final snapshot, metadata), generating them when missing.

    The key is `LEDGER_VERSION`, the sizes and a fingerprint of the cronledger sources that
    shape the log and the snapshot: the pickled final snapshot is only comparable with a replay
    by the same code. Files of other keys for the same sizes are removed when a new one is made.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    sizes = f"{n_events}-{n_schedules}"
    stem = cache_dir / f"ledger-{LEDGER_VERSION}-{source_fingerprint()}-{sizes}"
    db, snap_file, meta_file = (Path(f"{stem}{s}") for s in (".db", ".snapshot.pickle", ".json"))
    if not regenerate and db.exists() and snap_file.exists() and meta_file.exists():
        try:
            meta = json.loads(meta_file.read_text())
            with snap_file.open("rb") as f:
                final = pickle.load(f)
        except Exception as e:  # a damaged cache is rebuilt, never trusted
            log(f"  cached ledger unreadable ({e!r}): regenerating")
        else:
            log(f"  using cached ledger {db.name} ({meta['events']:,} events)")
            return db, final, meta
    for old in cache_dir.glob(f"ledger-*-{sizes}.*"):
        old.unlink()
    log(f"  generating {db.name} (once per cronledger source version)")
    tmp = Path(f"{stem}.tmp.db")
    final, meta = generate_ledger(tmp, n_events, n_schedules, log)
    _checkpoint(tmp)
    tmp_snap = Path(f"{snap_file}.tmp")
    with tmp_snap.open("wb") as f:
        pickle.dump(final, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, db)
    os.replace(tmp_snap, snap_file)
    meta_file.write_text(json.dumps(meta, indent=1) + "\n")
    return db, final, meta


def _checkpoint(path: Path) -> None:
    """Fold the -wal file into the database file, so the one file can be renamed."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    for suffix in ("-wal", "-shm"):  # left only if a connection did not close: the data is in
        extra = Path(f"{path}{suffix}")  # the main file after a TRUNCATE checkpoint
        if extra.exists() and (suffix == "-shm" or extra.stat().st_size == 0):
            extra.unlink()


def open_for_read(db: Path) -> Ledger:
    return open_ledger(f"sqlite:///{db}")
