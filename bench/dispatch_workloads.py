"""The measurements behind bench/dispatch.py, each run in a fresh child process.

`python bench/dispatch.py --child KIND 'JSON'` calls `CHILDREN[KIND](**params)` and prints its
result as one JSON line on stdout (progress on stderr). A fresh process per measurement keeps one
side's threads, heap and imports out of the other's figures, and makes `time.process_time()` the
CPU of exactly one scheduler.

- `cronledger_due`: N jobs due now (submitted tasks, or one-shot `At` schedules) on a fresh SQLite
  ledger; time from `engine.run()` until the N-th RunSucceeded is durable.
- `apscheduler_due`: N date jobs (run_date = now) in an APScheduler 3 BackgroundScheduler, added
  while the scheduler is paused; time from `resume()` until the N-th EVENT_JOB_EXECUTED.
- `cronledger_steady`: S `Every(1 s)` schedules on SQLite for T seconds; fires/s, lateness and
  durability read back from the ledger; CPU = process time / wall time.
- `cronledger_idle`: S daily crons, none due soon, `engine.run` on the system clock: CPU.
- `cronledger_processes`: N `true` commands as submitted tasks; `popen_ceiling`: raw Popen;
  `supervisor_floor`: the run supervisor alone, driven by a minimal client (context).
- `parts`: each piece of the due-now and steady paths timed in isolation (fastest of a few).

`instrument="phases"` (cronledger_due, cronledger_steady) wraps the engine's phases in timers
(see `PhaseTimers`); `instrument="cprofile"` runs the loop under cProfile. `gc_mode` ("freeze",
"off") is for experiments on the cyclic GC's share; the benchmark itself leaves the GC alone.
"""

from __future__ import annotations

import cProfile
import gc
import io
import json
import os
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cronledger.adapters import engine as engine_module
from cronledger.adapters import supervisor as sup
from cronledger.adapters.daemon import build_engine
from cronledger.adapters.engine import Engine
from cronledger.adapters.ledger import open_ledger
from cronledger.domain import events as ev
from cronledger.domain import tick as tick_module
from cronledger.domain.commands import AddSchedule, ChangeOptions
from cronledger.domain.triggers import At, Cron, Every
from cronledger.domain.values import Call, Command, ConcurrencyPolicy, Options, ScheduleSpec

SECOND = 1000
APSCHEDULER_REQUIREMENTS = ("apscheduler>=3.11,<4", "sqlalchemy")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def noop() -> None:
    """The job: does nothing (importable as `dispatch_workloads:noop`, as APScheduler's
    SQLAlchemy job store needs a textual reference)."""


def percentile(values: list[int] | list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    low = int(k)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (k - low)


@contextmanager
def scratch_dir(base: str | None, prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tmpfs_dir() -> str | None:
    """/dev/shm when it is a writable tmpfs, else None (the default temp dir is used)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return str(shm)
    return None


def make_engine(
    db_dir: Path,
    state_dir: Path,
    threads: int,
    options: dict[str, Any],
    synchronous: str | None = None,
) -> Engine:
    """What a user does: `build_engine` on a SQLite file (default durability unless
    `synchronous` says otherwise), register the callable, set the options."""
    query = f"?synchronous={synchronous}" if synchronous else ""
    url = f"sqlite:///{db_dir / 'ledger.db'}{query}"
    engine = build_engine(url, state_dir, max_threads=threads)
    engine.register("noop", noop)
    engine.execute(ChangeOptions(Options(**options)))
    return engine


def ledger_counts(url: str) -> dict[str, int]:
    """How many events of each kind the ledger holds (read back after the engine closed)."""
    counts: dict[str, int] = {}
    with open_ledger(url) as ledger:
        for _, event in ledger.read():
            name = type(event).__name__
            counts[name] = counts.get(name, 0) + 1
    return counts


class Completions:
    """Counts durable RunSucceeded facts (the engine publishes them after the append) and stops
    the engine at `target`; failures are counted too."""

    def __init__(self, engine: Engine, target: int) -> None:
        self.engine = engine
        self.target = target
        self.succeeded = 0
        self.failed = 0
        self.done_at: float | None = None
        engine.subscribe(self)

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunSucceeded):
            self.succeeded += 1
        elif isinstance(event, ev.RunFailed | ev.RunLost):
            self.failed += 1
        else:
            return
        if self.succeeded + self.failed >= self.target and self.done_at is None:
            self.done_at = time.perf_counter()
            self.engine.stop()


class AppendWatch:
    """Times every SQLite insert + commit of the ledger (the checked append in one transaction,
    `_append_rows`; the recorder's `insert_events` on other stores): a slow disk (an fsync
    stalled by other I/O on the machine) shows up as lateness, and this tells it apart from
    slow code."""

    def __init__(self, engine: Engine) -> None:
        ledger: Any = engine.ledger
        owner, attr = _insert_of(ledger)
        insert = getattr(owner, attr)
        self.ms: list[float] = []

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return insert(*args, **kwargs)
            finally:
                self.ms.append((time.perf_counter() - began) * 1000)

        setattr(owner, attr, timed)

    def summary(self) -> dict[str, float]:
        ms = self.ms
        return {
            "appends": len(ms),
            "p50_ms": round(percentile(ms, 0.5), 3),
            "p99_ms": round(percentile(ms, 0.99), 3),
            "max_ms": round(max(ms), 1) if ms else 0.0,
            "over_100ms": sum(1 for m in ms if m > 100),
        }


def _insert_of(ledger: Any) -> tuple[Any, str]:
    """Where the ledger's insert + commit happens: (object, attribute) to wrap."""
    if getattr(ledger, "_append_rows", None) is not None:
        return ledger, "_append_rows"
    return ledger.events_recorder, "insert_events"


def set_gc(mode: str) -> None:
    """For experiments only (the table uses "default", what a user gets): "freeze" moves every
    object alive now (the loaded schedules) to the permanent generation, so full collections
    stop rescanning them; "off" disables the cyclic collector for the run."""
    if mode == "freeze":
        gc.collect()
        gc.freeze()
    elif mode == "off":
        gc.disable()
    elif mode != "default":
        raise ValueError(f"gc mode {mode!r}: use default, freeze or off")


def run_engine(engine: Engine, until: int | None, timeout_s: float) -> dict[str, float]:
    """engine.run() with a watchdog; wall time, process CPU and the main thread's CPU."""
    watchdog = threading.Timer(timeout_s, engine.stop)
    watchdog.daemon = True
    watchdog.start()
    wall0, cpu0, main0 = time.perf_counter(), time.process_time(), time.thread_time()
    ticks0 = engine.snapshot.counters.ticks
    try:
        engine.run(until=until)
    finally:
        watchdog.cancel()
    wall = time.perf_counter() - wall0
    return {
        "started": wall0,
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu0,
        "main_thread_cpu_s": time.thread_time() - main0,
        "ticks": engine.snapshot.counters.ticks - ticks0,
    }


# --- profiling ---------------------------------------------------------------------------------


class PhaseTimers:
    """Wall time and calls per engine phase, by wrapping the functions the engine calls.

    Top level (one tick): `tick` = everything in Engine.tick; inside it `plan_tick` (split into
    its own phases below), `append.encode` (codec), `append.sqlite` (the ledger's insert +
    commit, i.e. the fsync), `append.position` (the position reads: before a tick outside run(),
    after one that appended nothing inside it, and before each append on stores other than
    SQLite), `carry_out`
    (thread pool submit / spawns), `record_started` (the RunStarted append, which includes
    encode and sqlite again), `poll`, `health`, `publish`. Outside ticks: `sleep` (the wait for
    a wake-up) and the count of wake-ups. Nested phases are included in their parents. `gc` is
    the time in cyclic garbage collections (`gc2`: full ones), wherever they struck.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr)
        seconds, calls = self.seconds, self.calls
        seconds.setdefault(name, 0.0)
        calls.setdefault(name, 0)
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = clock()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[name] += clock() - began
                calls[name] += 1

        had_own = attr in getattr(owner, "__dict__", {})
        setattr(owner, attr, timed)
        if had_own:
            self._undo.append(lambda: setattr(owner, attr, original))
        else:
            self._undo.append(lambda: delattr(owner, attr))

    def install(self, engine: Engine) -> None:
        ledger: Any = engine.ledger
        self.wrap(engine, "tick", "tick")
        self.wrap(engine, "_record_started", "record_started")
        self.wrap(engine, "_publish", "publish")
        self.wrap(engine, "refresh", "refresh")
        self.wrap(engine_module, "plan_tick", "plan_tick")
        self.wrap(engine_module, "health", "health")
        self.wrap(engine_module, "apply_all", "fold_after_append")
        self.wrap(ledger, "append", "append")
        self.wrap(ledger, "position", "append.position")
        self.wrap(ledger.codec, "encode", "append.encode")
        self.wrap(*_insert_of(ledger), "append.sqlite")
        if engine.runner is not None:
            self.wrap(engine.runner, "carry_out", "carry_out")
            self.wrap(engine.runner, "poll", "poll")
            self.wrap(engine.runner, "forget", "forget")
        self.wrap(engine.clock, "sleep_until", "sleep")
        for name in (
            "apply",
            "apply_all",
            "evaluate_schedule",
            "reconcile_exits",
            "expire_timeouts",
            "dispatch",
            "_summarise",
        ):
            self.wrap(tick_module, name, f"plan.{name.lstrip('_')}")

        self._gc_began = 0.0
        self.seconds["gc"] = 0.0
        self.calls["gc"] = 0
        gc.callbacks.append(self._on_gc)
        self._undo.append(lambda: gc.callbacks.remove(self._on_gc))

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        """Cyclic GC pauses (any thread), by generation: gc = all, gc2 = full collections."""
        if phase == "start":
            self._gc_began = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_began
        self.seconds["gc"] += took
        self.calls["gc"] += 1
        if info["generation"] == 2:
            self.seconds["gc2"] = self.seconds.get("gc2", 0.0) + took
            self.calls["gc2"] = self.calls.get("gc2", 0) + 1

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def report(self, jobs: int) -> dict[str, dict[str, float]]:
        return {
            name: {
                "s": round(s, 4),
                "calls": self.calls[name],
                "us_per_job": round(s / jobs * 1e6, 2) if jobs else 0.0,
            }
            for name, s in sorted(self.seconds.items(), key=lambda kv: -kv[1])
        }


def profiled(run: Callable[[], dict[str, float]], top: int) -> tuple[dict[str, float], str]:
    """`run()` under cProfile (main thread only); the result and the top functions by tottime
    and by cumtime."""
    profile = cProfile.Profile()
    result = profile.runcall(run)
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return result, out.getvalue()


def measure(
    engine: Engine, until: int | None, timeout_s: float, instrument: str | None, top: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """`run_engine`, plain (instrument None), under `PhaseTimers` ("phases") or under cProfile
    ("cprofile"); per-job figures are per RunSucceeded recorded during the run."""
    succeeded0 = engine.snapshot.counters.succeeded

    def jobs() -> int:
        return engine.snapshot.counters.succeeded - succeeded0

    if instrument is None:
        return run_engine(engine, until, timeout_s), {}
    if instrument == "phases":
        timers = PhaseTimers()
        timers.install(engine)
        try:
            timing = run_engine(engine, until, timeout_s)
        finally:
            timers.uninstall()
        return timing, {"phases": timers.report(jobs()), "jobs": jobs()}
    if instrument == "cprofile":
        timing, text = profiled(lambda: run_engine(engine, until, timeout_s), top)
        return timing, {"cprofile": text, "jobs": jobs()}
    raise ValueError(f"instrument {instrument!r}: use phases or cprofile")


# --- (1) due now: cronledger -------------------------------------------------------------------


def cronledger_due(
    n: int,
    mode: str,
    threads: int,
    options: dict[str, Any],
    instrument: str | None = None,
    top: int = 40,
    timeout_s: float = 300.0,
    gc_mode: str = "default",
) -> dict[str, Any]:
    """N no-op jobs due now: `submit(Call)` tasks (mode "task") or one-shot At schedules
    (mode "at"); elapsed from engine.run() until the N-th RunSucceeded is durable."""
    with scratch_dir(None, "cronledger-due-") as tmp:
        engine = make_engine(tmp, tmp / "runs", threads, options)
        began = time.perf_counter()
        latest = 0
        if mode == "task":
            for _ in range(n):
                engine.submit(Call("noop"))
        elif mode == "at":
            for i in range(n):
                latest = engine.clock.now() + 20
                spec = ScheduleSpec(
                    id=f"job-{i}",
                    trigger=At(latest),
                    target=Call("noop"),
                    concurrency=ConcurrencyPolicy.FORBID,
                )
                engine.execute(AddSchedule(spec))
        else:
            raise ValueError(f"mode {mode!r}: use task or at")
        setup_s = time.perf_counter() - began
        while engine.clock.now() <= latest:  # every At instant has passed: all due now
            time.sleep(0.005)
        done = Completions(engine, n)
        gc.collect()
        set_gc(gc_mode)
        position0 = engine.snapshot.position
        timing, extra = measure(engine, None, timeout_s, instrument, top)
        assert done.done_at is not None, f"only {done.succeeded} of {n} succeeded in time"
        elapsed = done.done_at - timing["started"]
        position = engine.snapshot.position
        engine.close()
        counts = ledger_counts(f"sqlite:///{tmp / 'ledger.db'}")
    succeeded = counts.get("RunSucceeded", 0)
    assert succeeded == n, f"the ledger holds {succeeded} RunSucceeded, expected {n}"
    return {
        "n": n,
        "mode": mode,
        "threads": threads,
        "options": options,
        "setup_s": setup_s,
        "setup_per_s": n / setup_s,
        "elapsed_s": elapsed,
        "jobs_per_s": n / elapsed,
        "end_to_end_jobs_per_s": n / (setup_s + elapsed),
        "cpu": timing["cpu_s"] / timing["wall_s"],
        "main_thread_cpu": timing["main_thread_cpu_s"] / timing["wall_s"],
        "ticks": timing["ticks"],
        "events": position - position0,
        "ledger_counts": counts,
        **extra,
    }


# --- (1) due now: APScheduler ------------------------------------------------------------------


def ensure_apscheduler() -> str | None:
    """Import APScheduler 3 (installing it and SQLAlchemy into this interpreter's environment
    with pip if missing): its version, or None when it cannot be had."""
    try:
        import apscheduler  # type: ignore[import-not-found]
        import sqlalchemy  # type: ignore[import-not-found]
    except ImportError:
        log(f"  installing {' '.join(APSCHEDULER_REQUIREMENTS)} (benchmark only) ...")
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", *APSCHEDULER_REQUIREMENTS],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            log(f"  pip failed: {done.stderr.strip()[-500:]}")
            return None
        try:
            import apscheduler
            import sqlalchemy  # noqa: F401
        except ImportError:
            return None
    version = getattr(apscheduler, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("apscheduler")
    return str(version)


def apscheduler_due(
    n: int,
    store: str,
    pool: int,
    running: bool = False,
    timeout_s: float = 300.0,
    db_dir: str | None = None,
) -> dict[str, Any]:
    """N date jobs with run_date now. Paused (default): added while the scheduler is paused,
    elapsed from resume() until the N-th EVENT_JOB_EXECUTED. `running`: added to a running
    scheduler, elapsed from the first add_job until the N-th EVENT_JOB_EXECUTED (the scheduler
    works while they are added). `store`: memory, sqlite (rollback journal) or sqlite_wal."""
    from apscheduler.events import (  # type: ignore[import-not-found]
        EVENT_JOB_ERROR,
        EVENT_JOB_EXECUTED,
        EVENT_JOB_MISSED,
    )
    from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-not-found]
    from apscheduler.jobstores.memory import MemoryJobStore  # type: ignore[import-not-found]
    from apscheduler.schedulers.background import (  # type: ignore[import-not-found]
        BackgroundScheduler,
    )

    with scratch_dir(db_dir, "apscheduler-due-") as tmp:
        engine = None
        if store == "memory":
            jobstore: Any = MemoryJobStore()
        else:
            import sqlalchemy
            from apscheduler.jobstores.sqlalchemy import (  # type: ignore[import-not-found]
                SQLAlchemyJobStore,
            )

            engine = sqlalchemy.create_engine(f"sqlite:///{tmp / 'jobs.db'}")
            if store == "sqlite_wal":

                def wal(dbapi_connection: Any, _record: Any) -> None:
                    cursor = dbapi_connection.cursor()
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.close()

                sqlalchemy.event.listen(engine, "connect", wal)
            elif store != "sqlite":
                raise ValueError(f"store {store!r}: use memory, sqlite or sqlite_wal")
            jobstore = SQLAlchemyJobStore(engine=engine)

        scheduler = BackgroundScheduler(
            jobstores={"default": jobstore},
            executors={"default": ThreadPoolExecutor(pool)},
            job_defaults={"misfire_grace_time": None, "coalesce": False},
            timezone="UTC",
        )
        lock = threading.Lock()
        finished = threading.Event()
        counts = {"executed": 0, "error": 0, "missed": 0}
        done_at: list[float] = []

        def listener(event: Any) -> None:
            key = {EVENT_JOB_EXECUTED: "executed", EVENT_JOB_ERROR: "error"}.get(
                event.code, "missed"
            )
            with lock:
                counts[key] += 1
                if sum(counts.values()) == n:
                    done_at.append(time.perf_counter())
                    finished.set()

        scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        scheduler.start(paused=not running)
        gc.collect()
        began = time.perf_counter()
        cpu0 = time.process_time()
        now = datetime.now(UTC)
        for i in range(n):
            scheduler.add_job(noop, "date", run_date=now, id=f"job-{i}")
        add_s = time.perf_counter() - began
        if running:
            wall0 = began
        else:
            gc.collect()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            scheduler.resume()
        ok = finished.wait(timeout_s)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        scheduler.shutdown(wait=True)
        if engine is not None:
            if store == "sqlite_wal":
                with engine.connect() as c:
                    mode = c.exec_driver_sql("PRAGMA journal_mode").scalar()
                assert mode == "wal", mode
            engine.dispose()
    assert ok, f"APScheduler ({store}) executed {counts} of {n} in {timeout_s} s"
    assert counts["executed"] == n, counts
    elapsed = done_at[0] - wall0
    return {
        "n": n,
        "store": store,
        "pool": pool,
        "running": running,
        "add_s": add_s,
        "add_per_s": n / add_s,
        "elapsed_s": elapsed,
        "jobs_per_s": n / elapsed,
        "cpu": cpu / wall,
        "counts": counts,
    }


# --- (2) steady state --------------------------------------------------------------------------


def add_schedules(engine: Engine, specs: list[ScheduleSpec]) -> float:
    """One AddSchedule per spec, as a user or a config loader does; seconds taken."""
    began = time.perf_counter()
    for i, spec in enumerate(specs):
        engine.execute(AddSchedule(spec))
        if (i + 1) % 5000 == 0:
            log(f"    {i + 1:,} schedules added")
    return time.perf_counter() - began


def cronledger_steady(
    schedules: int,
    seconds: int,
    anchor: str,
    threads: int,
    options: dict[str, Any],
    instrument: str | None = None,
    top: int = 40,
    gc_mode: str = "default",
) -> dict[str, Any]:
    """`schedules` Every(1 s) no-op schedules for `seconds`; the window is the fires whose
    nominal time is in [W0, W0 + seconds), W0 = the first whole second >= 1 s after the start.
    anchor "aligned": all on the whole second; "spread": anchors spread over the second."""
    with scratch_dir(None, "cronledger-steady-") as tmp:
        engine = make_engine(tmp, tmp / "runs", threads, options)
        if anchor not in ("aligned", "spread"):
            raise ValueError(f"anchor {anchor!r}: use aligned or spread")
        specs = [
            ScheduleSpec(
                id=f"every-{i:05d}",
                trigger=Every(SECOND, i * SECOND // schedules if anchor == "spread" else 0),
                target=Call("noop"),
                concurrency=ConcurrencyPolicy.FORBID,
            )
            for i in range(schedules)
        ]
        setup_s = add_schedules(engine, specs)
        appends = AppendWatch(engine)
        now = engine.clock.now()
        w0 = (now // SECOND + 2) * SECOND
        w1 = w0 + seconds * SECOND
        drain_ms = 2 * SECOND
        position0 = engine.snapshot.position
        gc.collect()
        set_gc(gc_mode)
        timeout_s = (w1 + drain_ms - engine.clock.now()) / 1000 + 10.0  # if it never catches up
        timing, extra = measure(engine, w1 + drain_ms, timeout_s, instrument, top)
        engine.close()
        log("    reading the ledger back")
        fires, checks = _steady_from_ledger(f"sqlite:///{tmp / 'ledger.db'}", position0, w0, w1)
    expected = schedules * seconds
    lateness = {
        k: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99), "max": max(v)}
        if v
        else {"p50": None, "p99": None, "max": None}  # nothing fired in the window
        for k, v in fires.items()
    }
    return {
        "schedules": schedules,
        "seconds": seconds,
        "anchor": anchor,
        "threads": threads,
        "options": options,
        "setup_s": setup_s,
        "expected_fire_times": expected,
        "fires_per_s": checks["runs"] / seconds,
        "fire_times_per_s": checks["fire_times_covered"] / seconds,
        "fire_times_unserved": expected - checks["fire_times_covered"],
        "lateness_ms": lateness,
        "cpu": timing["cpu_s"] / timing["wall_s"],
        "main_thread_cpu": timing["main_thread_cpu_s"] / timing["wall_s"],
        "wall_s": timing["wall_s"],
        "cpu_us_per_run": timing["cpu_s"] / max(1, checks["runs_in_whole_run"]) * 1e6,
        "ticks": timing["ticks"],
        "sqlite_appends": appends.summary(),
        "gc_mode": gc_mode,
        **checks,
        **extra,
    }


def _steady_from_ledger(
    url: str, after: int, w0: int, w1: int, interval: int = SECOND
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Lateness of every nominal fire time in [w0, w1): until the FireRecorded that stands for
    it, its RunAssigned and its RunSucceeded. A FireRecorded that `represents` r > 1 fire times
    (the misfire policy folds fire times the engine was too late for into one run) stands for
    nominal, nominal - interval, ...: each is a sample, late by its own distance. Also the checks:
    runs fired, fire times covered, skipped/missed/coalesced, runs without a durable outcome."""
    times_of_entry: dict[str, list[int]] = {}
    fire_late: list[int] = []
    assign_late: list[int] = []
    done_late: list[int] = []
    other = {"skipped": 0, "coalesced": 0, "missed": 0, "deferred": 0, "multi": 0}
    runs = failed = total = 0
    with open_ledger(url) as ledger:
        for _, e in ledger.read(after=after):
            kind = type(e)
            if kind is ev.FireRecorded:
                total += 1
                if w0 <= e.nominal < w1 + interval * (e.represents - 1):
                    nominals = [
                        t
                        for t in range(e.nominal, e.nominal - e.represents * interval, -interval)
                        if w0 <= t < w1
                    ]
                    if nominals:
                        runs += 1
                        other["multi"] += e.represents > 1
                        times_of_entry[e.entry_id] = nominals
                        fire_late.extend(e.at - t for t in nominals)
            elif kind is ev.RunAssigned:
                nominals = times_of_entry.get(e.entry_id)
                if nominals is not None:
                    assign_late.extend(e.at - t for t in nominals)
            elif kind is ev.RunSucceeded:
                nominals = times_of_entry.pop(e.entry_id, None)
                if nominals is not None:
                    done_late.extend(e.at - t for t in nominals)
            elif kind is ev.RunFailed or kind is ev.RunLost:
                if times_of_entry.pop(e.entry_id, None) is not None:
                    failed += 1
            elif kind is ev.FireSkipped and w0 <= e.nominal < w1:
                other["skipped"] += 1
            elif kind is ev.FireCoalesced and w0 <= e.nominal < w1:
                other["coalesced"] += 1
            elif kind is ev.FireDeferred and w0 <= e.nominal < w1:
                other["deferred"] += 1
            elif kind is ev.FireMissed and w0 <= e.first < w1:
                other["missed"] += e.count
    checks = {
        "runs": runs,
        "runs_in_whole_run": total,
        "fire_times_covered": len(fire_late),
        "fire_times_assigned": len(assign_late),
        "fire_times_succeeded": len(done_late),
        "runs_with_several_fire_times": other.pop("multi"),
        "failed": failed,
        "not_durable": len(times_of_entry),
        **other,
    }
    return {"fire": fire_late, "assign": assign_late, "done": done_late}, checks


# --- (3) idle ----------------------------------------------------------------------------------


def cronledger_idle(schedules: int, seconds: int) -> dict[str, Any]:
    """`schedules` daily crons at a wall time hours away; engine.run for `seconds` on the
    system clock; CPU fraction of one core, and how often it woke."""
    with scratch_dir(None, "cronledger-idle-") as tmp:
        engine = make_engine(tmp, tmp / "runs", 16, {})
        hour = (datetime.now(UTC).hour + 12) % 24
        specs = [
            ScheduleSpec(
                id=f"daily-{i:05d}",
                trigger=Cron(f"{i % 60} {hour} * * *"),
                target=Call("noop"),
                concurrency=ConcurrencyPolicy.FORBID,
            )
            for i in range(schedules)
        ]
        setup_s = add_schedules(engine, specs)
        ticks = [0]
        tick = engine.tick

        def counted() -> Any:
            ticks[0] += 1
            return tick()

        engine.tick = counted  # type: ignore[method-assign]
        gc.collect()
        timing = run_engine(engine, engine.clock.now() + seconds * SECOND, seconds + 60.0)
        decided = timing["ticks"]
        engine.close()
    return {
        "schedules": schedules,
        "seconds": seconds,
        "setup_s": setup_s,
        "cpu": timing["cpu_s"] / timing["wall_s"],
        "cpu_s": timing["cpu_s"],
        "wall_s": timing["wall_s"],
        "wakeups": ticks[0],
        "ticks_with_facts": decided,
    }


# --- (4) subprocesses --------------------------------------------------------------------------


def cronledger_processes(
    n: int,
    workers: int,
    state_base: str | None,
    instrument: str | None = None,
    top: int = 40,
    synchronous: str | None = None,
) -> dict[str, Any]:
    """N `true` commands as submitted tasks with max_workers `workers`; elapsed from
    engine.run() until the N-th RunSucceeded is durable. The ledger is a SQLite file in the
    default temp dir; the run files (state_dir) under `state_base` (tmpfs when available).
    `instrument` as in `measure`; the supervisor's CPU is reported as `supervisor_cpu` (cores,
    over the same wall time) when /proc shows it. `synchronous` ("normal") trades the ledger's
    power-cut durability for no sync per commit (committed facts still survive a crash of the
    process), as context for what the commit's sync costs."""
    with (
        scratch_dir(None, "cronledger-proc-") as tmp,
        scratch_dir(state_base, "cronledger-proc-state-") as state,
    ):
        engine = make_engine(tmp, state, 4, {"max_workers": workers}, synchronous)
        began = time.perf_counter()
        for _ in range(n):
            engine.submit(Command(("true",)))
        setup_s = time.perf_counter() - began
        done = Completions(engine, n)
        gc.collect()
        supervisor0 = _supervisor_cpu_s(engine)
        timing, extra = measure(engine, None, 600.0, instrument, top)
        supervisor = _supervisor_cpu_s(engine)
        assert done.done_at is not None and done.failed == 0, (done.succeeded, done.failed)
        elapsed = done.done_at - timing["started"]
        engine.close()
    result = {
        "n": n,
        "workers": workers,
        "state_dir_base": state_base or tempfile.gettempdir(),
        "setup_s": setup_s,
        "elapsed_s": elapsed,
        "wall_s": timing["wall_s"],
        "jobs_per_s": n / elapsed,
        "cpu": timing["cpu_s"] / timing["wall_s"],
        "main_thread_cpu": timing["main_thread_cpu_s"] / timing["wall_s"],
        "ticks": timing["ticks"],
        **extra,
    }
    if supervisor is not None and supervisor0 is not None:
        result["supervisor_cpu"] = (supervisor - supervisor0) / timing["wall_s"]
    return result


def _supervisor_cpu_s(engine: Engine) -> float | None:
    """The run supervisor's own CPU seconds so far (Linux /proc), or None."""
    runner = getattr(engine.runner, "processes", None) or engine.runner
    pid = getattr(runner, "supervisor_pid", None)
    if pid is None:  # started, not connected yet: its lock file holds its pid
        try:
            pid = int((runner.runs_dir / ".supervisor.lock").read_text().split()[0])
        except (OSError, ValueError, IndexError, AttributeError):
            return None
    return _proc_cpu_s(pid)


def supervisor_floor(n: int, workers: int, state_base: str | None) -> dict[str, Any]:
    """The run supervisor alone, driven by a minimal client that keeps `workers` `true` jobs in
    flight (no engine, no ledger; the client deletes each run's files as the runner does): what
    the process path costs below the engine, as context for `cronledger_processes`."""
    exe = shutil.which("true")
    assert exe is not None
    with scratch_dir(state_base, "cronledger-floor-") as tmp:
        runs = tmp / "runs"
        runs.mkdir(mode=0o700)
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", sup.__file__, str(runs)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert proc.stdout is not None
        ready = proc.stdout.readline().decode().split()
        assert ready and ready[0] == "ready", ready
        pid = int(ready[1])
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(sup.socket_path(str(runs)))
        hello = {"op": "hello", "env": dict(os.environ), "cwd": os.getcwd()}
        sock.sendall(json.dumps(hello).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            buf += sock.recv(4096)
        buf = buf.split(b"\n", 1)[1]
        dir_fd = os.open(runs, os.O_RDONLY | os.O_DIRECTORY)
        started = done = in_flight = 0

        def spawn(k: int) -> None:
            nonlocal started, in_flight
            items = [[f"r{i}", f"r{i}", ["true"], exe, False, None, None]
                     for i in range(started, started + k)]  # fmt: skip
            started += k
            in_flight += k
            sock.sendall(json.dumps({"op": "spawn", "runs": items}).encode() + b"\n")

        cpu0 = _proc_cpu_s(pid)
        began = time.perf_counter()
        spawn(min(workers, n))
        while done < n:
            data = sock.recv(1 << 18)
            assert data, "the supervisor hung up"
            *lines, buf = (buf + data).split(b"\n")
            for line in lines:
                message = json.loads(line)
                if message["op"] != "exits":
                    continue
                for run_id, code, *_ in message["runs"]:
                    assert code == 0, (run_id, code)
                    for suffix in (".st", ".out", ".err"):
                        os.unlink(run_id + suffix, dir_fd=dir_fd)
                done += len(message["runs"])
                in_flight -= len(message["runs"])
                if started < n:
                    spawn(min(workers - in_flight, n - started))
        elapsed = time.perf_counter() - began
        cpu = _proc_cpu_s(pid)
        sock.close()
        os.close(dir_fd)
        proc.terminate()  # no job left: it would exit by itself after IDLE_EXIT_S
        proc.wait(timeout=30)
    return {
        "n": n,
        "workers": workers,
        "elapsed_s": elapsed,
        "jobs_per_s": n / elapsed,
        "supervisor_cpu": None if cpu is None or cpu0 is None else (cpu - cpu0) / elapsed,
    }


def _proc_cpu_s(pid: int) -> float | None:
    """A process's own CPU seconds so far (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def popen_ceiling(n: int, threads: int) -> dict[str, Any]:
    """`subprocess.Popen(["true"]).wait()` n times with `threads` in flight (1 = sequential)."""
    remaining = [n]
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            subprocess.Popen(["true"]).wait()

    began = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - began
    return {"n": n, "threads": threads, "elapsed_s": elapsed, "per_s": n / elapsed}


# --- the pieces, timed directly --------------------------------------------------------------


def _best(run: Callable[[], object], reps: int, setup: Callable[[], object] | None = None) -> float:
    """The fastest of `reps` timed calls of run() (or run(setup())), with the GC paused: a
    robust figure on a busy machine, the cost of the code itself."""
    times = []
    for _ in range(reps):
        arg = setup() if setup is not None else None
        gc.collect()
        gc.disable()
        began = time.perf_counter()
        if setup is not None:
            run(arg)  # type: ignore[call-arg]
        else:
            run()
        times.append(time.perf_counter() - began)
        gc.enable()
    return min(times)


def parts(k: int, reps: int = 7) -> dict[str, Any]:
    """µs per job of each piece of the due-now and steady paths, timed in isolation on k jobs
    (fastest of `reps`): the planner on prepared snapshots, the codec, the SQLite append, the
    CallRunner, ProcessRunner.forget and a full GC pass."""
    import itertools

    from cronledger.adapters.call_runner import CallRunner
    from cronledger.adapters.codec import default_codec
    from cronledger.adapters.process_runner import ProcessRunner
    from cronledger.domain.commands import StartRun, SubmitTask
    from cronledger.domain.due import evaluate_schedule, iter_due
    from cronledger.domain.handlers import handle
    from cronledger.domain.health import health
    from cronledger.domain.state import EMPTY, Snapshot
    from cronledger.domain.tick import plan_tick
    from cronledger.domain.values import ExitKind, RunExit
    from cronledger.projectors.snapshot import apply, apply_all

    now = 1_767_225_600_000
    out: dict[str, float] = {}

    def put(name: str, seconds: float) -> None:
        out[name] = round(seconds / k * 1e6, 2)
        log(f"  {name:<48} {out[name]:8.2f} µs/job")

    def with_options(**options: int) -> Snapshot:
        changed = ev.OptionsChanged(at=now, options=Options(**options), changed=("max_workers",))
        return apply(EMPTY, changed)

    big = {"max_workers": 8 * k, "max_per_tick": 8 * k, "batch_size": 8 * k}
    s = with_options(**big)
    for _ in range(k):
        s = apply_all(s, handle(s, SubmitTask(target=Call("noop")), now))
    p1 = plan_tick(s, now)
    assert p1.summary.dispatched == k, p1.summary
    put("plan_tick: dispatch k tasks", _best(lambda: plan_tick(s, now), reps))
    exits = [
        RunExit(run_id=c.run_id, kind=ExitKind.EXITED, finished_at=now + 1, exit_code=0)
        for c in p1.commands
    ]
    started = [
        ev.RunStarted(at=now, run_id=c.run_id, pid=None, fallback=False) for c in p1.commands
    ]
    put(
        "fold k RunStarted (after the append)", _best(lambda: apply_all(p1.snapshot, started), reps)
    )
    s2 = apply_all(p1.snapshot, started)
    p2 = plan_tick(s2, now + 2, exits)
    assert p2.summary.reconciled == k, p2.summary
    put("plan_tick: reconcile k exits", _best(lambda: plan_tick(s2, now + 2, exits), reps))
    put("health() with k assigned entries", _best(lambda: health(s2, now), reps))
    codec = default_codec()
    batches = [list(p1.events), started, list(p2.events)]
    put(
        "encode the 3 appends (3k events + 2 headers)",
        _best(lambda: [codec.encode(e) for b in batches for e in b], reps),
    )
    with scratch_dir(None, "cronledger-parts-") as tmp:
        ledger: Any = open_ledger(f"sqlite:///{tmp / 'ledger.db'}")

        def append_all() -> None:
            position = ledger.position()
            for batch in batches:
                position = ledger.append(batch, position)

        put("ledger.append of the 3 batches (SQLite, FULL)", _best(append_all, reps))
        from eventsourcing.persistence import StoredEvent

        def stored() -> list[list[Any]]:
            position = ledger.position()
            rows = []
            for batch in batches:
                rows.append([])
                for e in batch:
                    position += 1
                    rows[-1].append(StoredEvent("cronledger", position, *codec.encode(e)))
            return rows

        recorder = ledger.events_recorder
        put(
            "  of which insert_events + commit",
            _best(lambda rows: [recorder.insert_events(r) for r in rows], reps, stored),
        )
        ledger.close()

        counter = itertools.count()

        def start_runs() -> list[StartRun]:
            batch = next(counter)
            return [
                StartRun(
                    run_id=f"r{batch}-{i}", entry_id=f"e{i}", schedule_id=None, attempt=1,
                    target=Call("noop"), argv=(), scheduled_for=None, deadline=None,
                )
                for i in range(k)
            ]  # fmt: skip

        for threads in (1, 2, 4, 16):
            calls = CallRunner(threads)
            calls.register("noop", noop)

            def run_all(commands: list[StartRun], calls: CallRunner = calls) -> None:
                calls.carry_out(commands, now)
                while calls.active():
                    time.sleep(0.0002)
                calls.poll(now)

            put(
                f"CallRunner({threads}): carry_out + k no-ops done",
                _best(run_all, reps, start_runs),
            )
            if threads == 4:
                put(
                    "CallRunner(4): carry_out alone (main thread)",
                    _best(lambda c, calls=calls: calls.carry_out(c, now), reps, start_runs),
                )
                time.sleep(0.2)
            calls.close()
        processes = ProcessRunner(tmp / "state")
        put(
            "ProcessRunner.forget() of a Call run",
            _best(lambda: [processes.forget(f"task-{i}#1") for i in range(k)], reps),
        )
        processes.close()

    s = with_options(**big)
    added: list[ev.Event] = []
    for i in range(k):
        spec = ScheduleSpec(
            id=f"every-{i:05d}",
            trigger=Every(SECOND, 0),
            target=Call("noop"),
            concurrency=ConcurrencyPolicy.FORBID,
        )
        added.extend(handle(s, AddSchedule(spec), now - 1500))
    s = apply_all(s, added)
    p3 = plan_tick(s, now)
    assert p3.summary.fired == k and p3.summary.dispatched == k, p3.summary
    put("plan_tick: k Every(1 s) fires + dispatch", _best(lambda: plan_tick(s, now), reps))
    due = [s.schedules[sid] for _, sid in iter_due(s, now)]
    put(
        "  evaluate_schedule alone",
        _best(lambda: [evaluate_schedule(s, st, now) for st in due], reps),
    )
    facts = [f for st in due for f in evaluate_schedule(s, st, now)[0]]
    put("  fold k FireRecorded in one batch", _best(lambda: apply_all(s, facts), reps))

    def one_by_one() -> None:
        w = s
        for f in facts:
            w = apply_all(w, (f,))

    put("  fold k FireRecorded one by one (as take() does)", _best(one_by_one, reps))
    gc.collect()
    began = time.perf_counter()
    gc.collect()
    out["gc_full_ms"] = round((time.perf_counter() - began) * 1000, 2)
    out["gc_objects"] = len(gc.get_objects())
    log(f"  a full GC pass: {out['gc_full_ms']} ms over {out['gc_objects']:,} objects")
    return {"k": k, "us_per_job": out}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "cronledger_due": cronledger_due,
    "apscheduler_due": apscheduler_due,
    "apscheduler_version": lambda: {"version": ensure_apscheduler()},
    "cronledger_steady": cronledger_steady,
    "cronledger_idle": cronledger_idle,
    "cronledger_processes": cronledger_processes,
    "popen_ceiling": popen_ceiling,
    "supervisor_floor": supervisor_floor,
    "parts": parts,
}


def median_of(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The result whose `key` is the median (the upper one of an even count)."""
    ordered = sorted(results, key=lambda r: r[key])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["repeats"] = [round(r[key], 1) for r in results]
    chosen["spread"] = (
        round(statistics.pstdev([r[key] for r in results]) / chosen[key], 3)
        if len(results) > 1
        else 0.0
    )
    return chosen
