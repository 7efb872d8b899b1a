"""Simulation: the pure tick planner over a virtual clock, with modelled runs and outages.

`simulate(specs, start, end, ...)` answers "what would these schedules do over this period?"
without a ledger, a clock or a process: it adds the schedules at `start` (the same
`handle(AddSchedule)` facts the API records), then drives `plan_tick` exactly as the daemon's loop
does, on a virtual clock that jumps from one decision to the next. Runner commands are carried
out by a model instead of a runner:

- **Period.** Schedules are registered at `start`, so the first fire is the first nominal time
  strictly after `start` (as for a daemon started then); the daemon ticks up to and including
  `end`. A year from 2026-01-01T00:00Z to 2027-01-01T00:00Z is 8760 fires of `0 * * * *`.
  Runs still active at `end` are counted in `active_at_end`.
- **Ticks.** The next tick is at the earliest of `next_wake(snapshot)` (due time, retry,
  deadline) and the next modelled exit, and at once when the tick says `more_due`: the wake-ups
  of `Engine.run` without its idle polling, which decides nothing. A due retry that waits for
  capacity wakes nothing until an exit frees a slot.
- **Runs.** `StartRun` spawns a run that ends `runtime` later, failing (exit code 1) with
  probability `fail_rate`; the facts it produces (`RunStarted`, then the exit observed by the
  tick at its end) are folded like the engine's. `CancelRun` (replace, timeout) ends the run at
  once with SIGTERM. Each run's duration and failure are drawn from a hash of `(seed, run id)`
  rather than from one shared stream: the same seed gives the same figures, and two simulations
  that differ in policy see the same duration and outcome for the same run (`schedule@nominal#
  attempt`), so `compare` shows the effect of the policy, not of reshuffled random numbers.
- **Outages** `[a, b)`: the daemon is down, so nothing ticks inside; it restarts at `b` as the
  real one does. Command runs keep going (the process supervisor outlives the daemon, and a
  restart adopts them): one that ended during the outage is observed at `b` with its real end
  time, one still running is observed when it ends. Call runs die with the process: they are
  reported lost at `b` (`RunLost`, then the retry policy). Fires that fell due during the
  outage are then late at `b`, and the misfire policy decides: missed under SKIP (except any
  still within the grace), one run standing for them under CATCH_UP.
- **Lateness** of a fire is the time from its due time (nominal time plus its jitter, which is
  just the nominal time without jitter) to the assignment (= start, in the model) of its first
  attempt: it counts queueing behind capacity, QUEUE_ONE waits and outages, not retry backoff.
  A catch-up run is measured from the latest nominal time it stands for.

Everything stays in memory and in-process (no ledger, no encoding, the cyclic GC paused).
The cost is the planner's: about 55 µs of `plan_tick` per fire (evaluate, fold, dispatch,
reconcile), so roughly 11-15k fires per second of wall time on the 2-core VM. A year of the 100
mixed schedules of `tests/integration/test_simulate.py` is 1.16M fires, 1.7M ticks and 6.3M
facts: 80-105 s; a year of 100 daily schedules (36.5k fires) takes about 4.5 s.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable, Collection, Sequence
from hashlib import blake2b
from typing import Any

import attrs

from cronledger.adapters.replay import gc_paused
from cronledger.domain import events as ev
from cronledger.domain.commands import (
    AddSchedule,
    CancelRun,
    ChangeOptions,
    PauseSchedule,
    StartRun,
)
from cronledger.domain.durations import parse_duration
from cronledger.domain.handlers import handle
from cronledger.domain.instants import iso, parse_instant
from cronledger.domain.jitter import jitter_ms
from cronledger.domain.state import EMPTY, Snapshot
from cronledger.domain.tick import next_wake, plan_tick
from cronledger.domain.values import Call, ExitKind, Options, RunExit, ScheduleSpec
from cronledger.errors import InvalidInput
from cronledger.projectors.snapshot import apply_all

# --- the run duration model -----------------------------------------------------------------

RUNTIME_KINDS = ("fixed", "uniform", "exp", "normal")
_RUNTIME_FIX = "use e.g. 30s, uniform:10s..2m, exp:45s (mean) or normal:1m,15s (mean, deviation)"
_TWO_64 = float(1 << 64)


@attrs.frozen
class Runtime:
    """How long a modelled run takes, in milliseconds.

    `fixed`: always `a_ms`; `uniform`: between `a_ms` and `b_ms` inclusive; `exp`: exponential
    with mean `a_ms`; `normal`: mean `a_ms`, standard deviation `b_ms`, never below 0.
    """

    kind: str
    a_ms: int
    b_ms: int = 0

    def __attrs_post_init__(self) -> None:
        if self.kind not in RUNTIME_KINDS:
            raise InvalidInput(
                "runtime", f"{self.kind!r} is not a distribution", f"use one of {RUNTIME_KINDS}"
            )
        if self.a_ms < 0 or self.b_ms < 0:
            raise InvalidInput("runtime", "a duration is negative", "use 0 or more")
        if self.kind == "uniform" and self.b_ms < self.a_ms:
            raise InvalidInput(
                "runtime",
                f"uniform range ends ({self.b_ms} ms) before it starts ({self.a_ms} ms)",
                "write the shorter duration first, e.g. uniform:10s..2m",
            )

    @property
    def varies(self) -> bool:
        """False when every sample is the same (no draw needed)."""
        return not (
            self.kind == "fixed"
            or (self.kind == "uniform" and self.a_ms == self.b_ms)
            or (self.kind == "exp" and self.a_ms == 0)
            or (self.kind == "normal" and self.b_ms == 0)
        )

    def sample(self, rng: random.Random) -> int:
        """One duration drawn from `rng` (two uniform draws, used or not)."""
        return self.from_uniforms(rng.random(), rng.random())

    def from_uniforms(self, u: float, v: float) -> int:
        """The duration for two independent uniform draws in [0, 1) (inverse transform)."""
        if self.kind == "fixed":
            return self.a_ms
        if self.kind == "uniform":
            return min(self.b_ms, self.a_ms + int(u * (self.b_ms - self.a_ms + 1)))
        if self.kind == "exp":
            return int(-self.a_ms * math.log(1.0 - u))
        # normal, Box-Muller
        z = math.sqrt(-2.0 * math.log(1.0 - u)) * math.cos(2.0 * math.pi * v)
        return max(0, round(self.a_ms + self.b_ms * z))

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"fixed {self.a_ms} ms"
        if self.kind == "uniform":
            return f"uniform {self.a_ms}..{self.b_ms} ms"
        if self.kind == "exp":
            return f"exponential, mean {self.a_ms} ms"
        return f"normal, mean {self.a_ms} ms, deviation {self.b_ms} ms"


def _runtime_duration(text: str, whole: str) -> int:
    try:
        return parse_duration(text, "runtime")
    except InvalidInput:
        raise InvalidInput(
            "runtime", f"{whole!r}: {text!r} is not a duration", _RUNTIME_FIX
        ) from None


def parse_runtime(text: str, field: str = "runtime") -> Runtime:
    """'30s' or 'fixed:30s', 'uniform:10s..2m', 'exp:45s' (mean), 'normal:1m,15s'; errors
    name `field` (the CLI passes its flag)."""
    try:
        return _runtime(text)
    except InvalidInput as error:
        raise InvalidInput(field, error.problem, error.fix) from None


def _runtime(text: str) -> Runtime:
    raw = text.strip().lower()
    kind, sep, rest = raw.partition(":")
    if not sep:
        kind, rest = "fixed", raw
    if kind not in RUNTIME_KINDS:
        raise InvalidInput("runtime", f"{text!r}: unknown distribution {kind!r}", _RUNTIME_FIX)
    if kind == "uniform":
        low, dots, high = rest.partition("..")
        if not dots:
            raise InvalidInput(
                "runtime", f"{text!r}: a uniform runtime needs a range", "use e.g. uniform:10s..2m"
            )
        return Runtime("uniform", _runtime_duration(low, text), _runtime_duration(high, text))
    if kind == "normal":
        mean, comma, deviation = rest.partition(",")
        if not comma:
            raise InvalidInput(
                "runtime",
                f"{text!r}: a normal runtime needs a mean and a deviation",
                "use e.g. normal:1m,15s",
            )
        return Runtime("normal", _runtime_duration(mean, text), _runtime_duration(deviation, text))
    return Runtime(kind, _runtime_duration(rest, text))


_OUTAGE_FIX = "use START..END with ISO-8601 instants, e.g. 2026-03-01T00:00Z..2026-03-01T06:00Z"


def parse_outage(text: str, field: str = "outage") -> tuple[int, int]:
    """'2026-03-01T00:00Z..2026-03-01T06:00Z' -> (start, end) in epoch ms, start < end; errors
    name `field` (the CLI passes its flag)."""
    try:
        return _outage(text)
    except InvalidInput as error:
        raise InvalidInput(field, error.problem, error.fix) from None


def _outage(text: str) -> tuple[int, int]:
    first, dots, second = text.strip().partition("..")
    if not dots:
        raise InvalidInput("outage", f"{text!r} is not a range", _OUTAGE_FIX)
    bounds = []
    for part in (first, second):
        try:
            bounds.append(parse_instant(part, "outage"))
        except InvalidInput as error:
            raise InvalidInput(
                "outage",
                f"{text!r}: {part.strip()!r} is not an instant ({error.problem})",
                _OUTAGE_FIX,
            ) from None
    a, b = bounds
    if b <= a:
        raise InvalidInput(
            "outage", f"{text!r} ends before it starts", "write the earlier instant first"
        )
    return a, b


# --- results --------------------------------------------------------------------------------

_COUNT_FIELDS = (
    "fires",
    "windows",
    "skipped",
    "coalesced",
    "deferred",
    "missed",
    "runs",
    "succeeded",
    "failed",
    "lost",
    "retries",
    "active_at_end",
    "waiting_at_end",
)
_MAX_FIELDS = ("max_queue", "max_lateness_ms")


@attrs.frozen(kw_only=True)
class ScheduleStats:
    """What one schedule did over the simulated period.

    - `fires`: FireRecorded (a fire queued an entry);
    - `windows`: nominal fire times accounted for: each fire's `represents`, plus skipped and
      coalesced fires (one each) and missed ones; equals the nominal times in the period for a
      schedule without hours gate or jitter (deferred fires are counted when finally decided);
    - `skipped` (FireSkipped), `coalesced` (FireCoalesced), `deferred` (FireDeferred facts),
      `missed` (sum of FireMissed.count);
    - `runs` (RunAssigned: attempts), `succeeded`, `failed` (RunFailed: exits, timeouts,
      replaced), `lost` (RunLost), `retries` (RetryPlanned), `active_at_end` (runs still going
      at the end), `waiting_at_end` (entries still Pending or Held at the end), so that
      runs == succeeded + failed + lost + active_at_end and
      fires + retries == runs + waiting_at_end;
    - `max_queue`: most entries of this schedule waiting (Pending or Held) at once, read after
      each tick;
    - `max_lateness_ms`: longest time from a fire's due time (nominal + jitter) to the start of
      its first attempt.
    """

    schedule_id: str
    fires: int = 0
    windows: int = 0
    skipped: int = 0
    coalesced: int = 0
    deferred: int = 0
    missed: int = 0
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0
    retries: int = 0
    max_queue: int = 0
    max_lateness_ms: int = 0
    active_at_end: int = 0
    waiting_at_end: int = 0

    def to_json(self) -> dict[str, object]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class SimReport:
    """The summary of one simulation: per schedule (sorted by id) and for the whole engine.

    `ticks` counts the ticks that decided something (the TickStarted facts a daemon would have
    written), `events` every fact the ledger would hold (schedule adds and options included),
    `wall_s` the real time the simulation took. `max_queue` is the most entries waiting in the
    whole queue at once and `max_active` the most runs active at once.
    """

    start: int
    end: int
    ticks: int
    events: int
    wall_s: float
    schedules: tuple[ScheduleStats, ...]
    max_queue: int
    max_active: int = 0
    runtime: Runtime = Runtime("fixed", 1000)
    fail_rate: float = 0.0
    outages: tuple[tuple[int, int], ...] = ()
    seed: int = 0

    def stats(self, schedule_id: str) -> ScheduleStats:
        for stats in self.schedules:
            if stats.schedule_id == schedule_id:
                return stats
        raise KeyError(schedule_id)

    @property
    def total(self) -> ScheduleStats:
        """The sums over all schedules (the maxima: the largest; max_queue: the whole queue)."""
        sums: dict[str, Any] = {name: 0 for name in _COUNT_FIELDS}
        lateness = 0
        for stats in self.schedules:
            for name in _COUNT_FIELDS:
                sums[name] += getattr(stats, name)
            lateness = max(lateness, stats.max_lateness_ms)
        return ScheduleStats(
            schedule_id="*", max_queue=self.max_queue, max_lateness_ms=lateness, **sums
        )

    def to_json(self) -> dict[str, object]:
        return {
            "from": iso(self.start),
            "to": iso(self.end),
            "start_ms": self.start,
            "end_ms": self.end,
            "runtime": self.runtime.describe(),
            "fail_rate": self.fail_rate,
            "outages": [{"from": iso(a), "to": iso(b)} for a, b in self.outages],
            "seed": self.seed,
            "ticks": self.ticks,
            "events": self.events,
            "wall_s": round(self.wall_s, 3),
            "max_queue": self.max_queue,
            "max_active": self.max_active,
            "total": self.total.to_json(),
            "schedules": [s.to_json() for s in self.schedules],
        }


# --- the model ------------------------------------------------------------------------------


class _Acc:
    """Mutable per-schedule counters while the simulation runs."""

    __slots__ = (*_COUNT_FIELDS, "max_queue", "max_lateness_ms", "waiting")

    def __init__(self) -> None:
        self.fires = self.windows = self.skipped = self.coalesced = self.deferred = 0
        self.missed = self.runs = self.succeeded = self.failed = self.lost = 0
        self.retries = self.active_at_end = self.waiting_at_end = 0
        self.max_queue = self.max_lateness_ms = 0
        self.waiting = 0

    def freeze(self, schedule_id: str) -> ScheduleStats:
        values = {name: getattr(self, name) for name in (*_COUNT_FIELDS, *_MAX_FIELDS)}
        return ScheduleStats(schedule_id=schedule_id, **values)


class _Entry:
    """What the counters need of one open queue entry."""

    __slots__ = ("acc", "due", "waiting")

    def __init__(self, acc: _Acc, due: int, waiting: bool) -> None:
        self.acc = acc
        self.due = due
        self.waiting = waiting


def _draws(seed: int, run_id: str) -> tuple[float, float, float]:
    """Three uniforms in [0, 1) that depend only on (seed, run id)."""
    digest = blake2b(f"{seed}\x00{run_id}".encode(), digest_size=24).digest()
    return (
        int.from_bytes(digest[:8], "big") / _TWO_64,
        int.from_bytes(digest[8:16], "big") / _TWO_64,
        int.from_bytes(digest[16:], "big") / _TWO_64,
    )


def _check(
    specs: Sequence[ScheduleSpec], start: int, end: int, fail_rate: float, runtime: Runtime
) -> None:
    if end <= start:
        raise InvalidInput("to", f"{iso(end)} is not after {iso(start)}", "pass a later --to")
    if not (0.0 <= fail_rate <= 1.0) or math.isnan(fail_rate):
        raise InvalidInput("fail_rate", f"{fail_rate!r} is not a probability", "use 0 to 1")
    if not isinstance(runtime, Runtime):
        raise InvalidInput("runtime", f"{runtime!r} is not a Runtime", "use parse_runtime()")
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise InvalidInput("id", f"schedule {spec.id!r} appears twice", "give each an id")
        seen.add(spec.id)


def _merge_outages(outages: Sequence[tuple[int, int]], start: int, end: int) -> list[list[int]]:
    merged: list[list[int]] = []
    for a, b in sorted(outages):
        if b <= a:
            raise InvalidInput(
                "outage", f"{iso(a)}..{iso(b)} ends before it starts", "write the earlier first"
            )
        if b <= start or a > end:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([max(a, start), b])
    return merged


def simulate(
    specs: Sequence[ScheduleSpec],
    start: int,
    end: int,
    *,
    runtime: Runtime = Runtime("fixed", 1000),
    fail_rate: float = 0.0,
    outages: Sequence[tuple[int, int]] = (),
    seed: int = 0,
    options: Options | None = None,
    progress: Callable[[int, int], None] | None = None,
    observe: Callable[[tuple[ev.Event, ...]], None] | None = None,
    paused: Collection[str] = (),
) -> SimReport:
    """Run `specs` from `start` to `end` (epoch ms) on a virtual clock; see the module doc.
    The schedules named in `paused` are added paused (a file's `paused = true`).

    `progress(done_ms, total_ms)` is called about every 1% of the period (and at both ends);
    `observe(facts)` receives each deciding tick's facts (TickStarted first), for tracing.
    """
    _check(specs, start, end, fail_rate, runtime)
    began = time.perf_counter()
    with gc_paused():
        sim = _Simulation(specs, start, end, runtime, fail_rate, outages, seed, options, paused)
        sim.run(progress, observe)
    return SimReport(
        start=start,
        end=end,
        ticks=sim.ticks,
        events=sim.events,
        wall_s=time.perf_counter() - began,
        schedules=tuple(sim.accs[sid].freeze(sid) for sid in sorted(sim.accs)),
        max_queue=sim.max_queue,
        max_active=sim.max_active,
        runtime=runtime,
        fail_rate=fail_rate,
        outages=tuple((a, b) for a, b in _merge_outages(outages, start, end)),
        seed=seed,
    )


class _Run:
    """A modelled run: when and how it ends."""

    __slots__ = ("call", "code", "end", "entry_id", "kind", "schedule_id")

    def __init__(
        self,
        end: int,
        kind: ExitKind,
        code: int | None,
        call: bool,
        schedule_id: str | None,
        entry_id: str,
    ) -> None:
        self.end = end
        self.kind = kind
        self.code = code
        self.call = call
        self.schedule_id = schedule_id
        self.entry_id = entry_id

    def exit(self, run_id: str) -> RunExit:
        if self.kind is ExitKind.EXITED:
            return RunExit(run_id=run_id, kind=self.kind, finished_at=self.end, exit_code=self.code)
        if self.kind is ExitKind.SIGNALED:
            return RunExit(run_id=run_id, kind=self.kind, finished_at=self.end, signal=15)
        return RunExit(
            run_id=run_id,
            kind=self.kind,
            finished_at=self.end,
            error="in-process call was running when its engine stopped",
        )


class _Simulation:
    """The loop's state: snapshot, modelled runs, counters.

    Quiet exits: a run that succeeds while nothing waits on it (no other entry of its schedule
    open, nothing ready or retrying waits for a slot, its schedule not due before the next
    tick, no outage in between) changes no decision whether the daemon sees it at once or at
    the next tick: its reconciliation only frees a slot no one needs. Such exits are observed
    at the next tick instead of costing a tick of their own, and the tick the daemon would have
    made for them is still counted in `ticks` and `events`. `lazy_exits = False` turns this off
    (tests check both give the same report).
    """

    lazy_exits = True

    def __init__(
        self,
        specs: Sequence[ScheduleSpec],
        start: int,
        end: int,
        runtime: Runtime,
        fail_rate: float,
        outages: Sequence[tuple[int, int]],
        seed: int,
        options: Options | None,
        paused: Collection[str] = (),
    ) -> None:
        self.start, self.end = start, end
        self.runtime, self.fail_rate, self.seed = runtime, fail_rate, seed
        self.outages = _merge_outages(outages, start, end)
        self.draw = runtime.varies or fail_rate > 0.0
        snapshot: Snapshot = EMPTY
        self.events = 0
        if options is not None:
            facts = handle(snapshot, ChangeOptions(options), start)
            snapshot = apply_all(snapshot, facts)
            self.events += len(facts)
        self.accs: dict[str, _Acc] = {}
        for spec in specs:
            commands: list[AddSchedule | PauseSchedule] = [AddSchedule(spec)]
            if spec.id in paused:
                commands.append(PauseSchedule(spec.id, "paused in the file"))
            for command in commands:
                facts = handle(snapshot, command, start)
                snapshot = apply_all(snapshot, facts)
                self.events += len(facts)
            self.accs[spec.id] = _Acc()
        self.snapshot = snapshot
        self.ticks = 0
        self.max_queue = 0
        self.max_active = 0
        self.waiting = 0
        self.entries: dict[str, _Entry] = {}
        self.running: dict[str, _Run] = {}
        self.exits: list[tuple[int, str]] = []  # a heap of (end, run id); stale items skipped
        self.quiet: list[tuple[int, str]] = []  # ended runs left for the next tick to observe

    # -- the loop --------------------------------------------------------------------------

    def run(
        self,
        progress: Callable[[int, int], None] | None,
        observe: Callable[[tuple[ev.Event, ...]], None] | None,
    ) -> None:
        now = self.start
        span = self.end - self.start
        step = max(1, span // 100)
        reported = 0
        if progress is not None:
            progress(0, span)
        # the daemon is up at `start`; the first tick is at the first wake-up
        at = self._next(now, more_due=False, decided=True)
        while at is not None and at <= self.end:
            now = at
            exits = self._observe(now)
            plan = plan_tick(self.snapshot, now, exits)
            self.snapshot = plan.snapshot
            if plan.events:
                self.ticks += 1
                self._count(plan.events)
                self.events += len(plan.events)
                if observe is not None:
                    observe(plan.events)
                if plan.commands:
                    self._carry_out(plan.commands, now)
            if progress is not None and now - self.start >= reported + step:
                reported = (now - self.start) // step * step
                progress(reported, span)
            at = self._next(now, plan.summary.more_due, bool(plan.events))
        for run in self.running.values():
            entry = self.entries.get(run.entry_id)
            if entry is not None:
                entry.acc.active_at_end += 1
        for acc in self.accs.values():
            acc.waiting_at_end = acc.waiting
        if progress is not None:
            progress(span, span)

    def _next(self, now: int, more_due: bool, decided: bool) -> int | None:
        """The next tick's clock reading (None: nothing will ever happen again)."""
        if more_due:
            return now
        # A retry whose wait is over at `now` waits for a slot (an exit), not for the clock:
        # next_wake leaves it out, and whatever else is due still wakes the simulation.
        wake = next_wake(self.snapshot, now)
        if wake is not None and wake <= now and not decided:
            # already planned at `now` without effect: it waits for a slot, i.e. for an exit
            wake = None
        elif wake is not None and wake < now:
            wake = now
        heap = self.exits
        if (
            self.lazy_exits
            and heap
            and wake is not None
            and wake <= self.end
            and not (self.outages and self.outages[0][0] <= wake)
            and self._nothing_waits(now)
        ):
            self._set_aside_quiet_exits(wake)
        exit_at = heap[0][0] if heap else None
        if exit_at is not None and (wake is None or exit_at < wake):
            wake = max(exit_at, now)
        if wake is None:
            return None
        while self.outages and self.outages[0][0] <= wake:
            down, up = self.outages.pop(0)
            if up <= now:
                continue
            wake = up if self._outage(down, up) else max(wake, up)
        return wake

    def _nothing_waits(self, now: int) -> bool:
        """No ready entry, and no retry whose time has come, waits for a slot."""
        snapshot = self.snapshot
        if snapshot.ready.first() is not None:
            return False
        delayed = snapshot.delayed.first()
        return delayed is None or delayed[0] > now

    def _set_aside_quiet_exits(self, wake: int) -> None:
        """Move the successful exits before `wake` that change no decision to `quiet`."""
        heap, running, snapshot = self.exits, self.running, self.snapshot
        schedules, opened = snapshot.schedules, snapshot.open_by_schedule
        while heap and heap[0][0] < wake:
            ended, run_id = heap[0]
            run = running.get(run_id)
            if run is None or run.end != ended:
                heapq.heappop(heap)  # superseded
                continue
            if run.kind is not ExitKind.EXITED or run.code != 0:
                return
            sid = run.schedule_id
            if sid is not None:
                state = schedules.get(sid)
                if state is not None:
                    wake_at = state.wake_at
                    if wake_at is not None and wake_at <= wake:
                        return
                if opened.get(sid, ()) != (run.entry_id,):
                    return
            heapq.heappop(heap)
            self.quiet.append((ended, run_id))

    def _outage(self, down: int, up: int) -> bool:
        """The daemon is down in [down, up): Call runs die with it (their loss is seen when it
        restarts at `up`), Command runs go on. True if a run was lost."""
        lost = False
        for run_id, run in self.running.items():
            if run.call and run.end >= down:
                run.end, run.kind, run.code = up, ExitKind.LOST, None
                heapq.heappush(self.exits, (up, run_id))
                lost = True
        return lost

    def _observe(self, now: int) -> list[RunExit]:
        """The modelled exits a runner would report at `now`, by end time then run id."""
        heap, running = self.exits, self.running
        ended: list[tuple[int, str]] = []
        quiet = self.quiet
        if quiet:
            ended.extend(quiet)
            # the ticks the daemon would have made for them
            phantom = len({t for t, _ in quiet if t != now})
            self.ticks += phantom
            self.events += phantom
            quiet.clear()
        while heap and heap[0][0] <= now:
            end, run_id = heapq.heappop(heap)
            run = running.get(run_id)
            if run is not None and run.end == end:
                ended.append((end, run_id))
        if not ended:
            return []
        ended.sort()
        exits = []
        for _, run_id in ended:
            exits.append(running.pop(run_id).exit(run_id))
        return exits

    def _carry_out(self, commands: Sequence[StartRun | CancelRun], now: int) -> None:
        """Start modelled runs and stop cancelled ones. RunStarted facts are counted, not
        folded: no decision reads what they record (pid, start time, fallback)."""
        runtime, fail_rate, seed, draw = self.runtime, self.fail_rate, self.seed, self.draw
        heap, running = self.exits, self.running
        for command in commands:
            run_id = command.run_id
            if isinstance(command, StartRun):
                if draw:
                    u, v, w = _draws(seed, run_id)
                    duration = runtime.from_uniforms(u, v)
                    code = 1 if w < fail_rate else 0
                else:
                    duration, code = runtime.a_ms, 0
                ends = now + duration
                call = isinstance(command.target, Call)
                running[run_id] = _Run(
                    ends, ExitKind.EXITED, code, call, command.schedule_id, command.entry_id
                )
                heapq.heappush(heap, (ends, run_id))
                self.events += 1  # RunStarted
            else:
                run = running.get(run_id)
                if run is not None and run.end > now:
                    run.end, run.kind, run.code = now, ExitKind.SIGNALED, None
                    heapq.heappush(heap, (now, run_id))

    # -- counting --------------------------------------------------------------------------

    def _count(self, events: Sequence[ev.Event]) -> None:
        accs, entries = self.accs, self.entries
        touched: list[_Acc] = []
        for e in events:
            kind = type(e)
            if kind is ev.TickStarted:
                continue
            if kind is ev.RunAssigned:
                assert isinstance(e, ev.RunAssigned)
                entry = entries.get(e.entry_id)
                if entry is None:
                    continue
                acc = entry.acc
                acc.runs += 1
                if entry.waiting:
                    entry.waiting = False
                    acc.waiting -= 1
                    self.waiting -= 1
                if e.attempt == 1 and e.at - entry.due > acc.max_lateness_ms:
                    acc.max_lateness_ms = e.at - entry.due
            elif kind is ev.FireRecorded:
                assert isinstance(e, ev.FireRecorded)
                acc = accs[e.schedule_id]
                acc.fires += 1
                acc.windows += e.represents
                spec = self.snapshot.schedules[e.schedule_id].spec
                due = e.nominal + jitter_ms(spec.id, e.nominal, spec.jitter_ms)
                entries[e.entry_id] = _Entry(acc, due, True)
                acc.waiting += 1
                self.waiting += 1
                touched.append(acc)
            elif kind is ev.RunSucceeded:
                assert isinstance(e, ev.RunSucceeded)
                entry = entries.pop(e.entry_id, None)
                if entry is not None:
                    entry.acc.succeeded += 1
            elif kind is ev.RunFailed or kind is ev.RunLost:
                assert isinstance(e, ev.RunFailed | ev.RunLost)
                entry = entries.get(e.entry_id)
                if entry is None:
                    continue
                if kind is ev.RunFailed:
                    entry.acc.failed += 1
                else:
                    entry.acc.lost += 1
                if e.final:
                    del entries[e.entry_id]
            elif kind is ev.RetryPlanned:
                assert isinstance(e, ev.RetryPlanned)
                entry = entries.get(e.entry_id)
                if entry is not None:
                    entry.acc.retries += 1
                    if not entry.waiting:
                        entry.waiting = True
                        entry.acc.waiting += 1
                        self.waiting += 1
                        touched.append(entry.acc)
            elif kind is ev.FireSkipped:
                assert isinstance(e, ev.FireSkipped)
                acc = accs[e.schedule_id]
                acc.skipped += 1
                acc.windows += 1
            elif kind is ev.FireCoalesced:
                assert isinstance(e, ev.FireCoalesced)
                acc = accs[e.schedule_id]
                acc.coalesced += 1
                acc.windows += 1
            elif kind is ev.FireMissed:
                assert isinstance(e, ev.FireMissed)
                acc = accs[e.schedule_id]
                acc.missed += e.count
                acc.windows += e.count
            elif kind is ev.FireDeferred:
                assert isinstance(e, ev.FireDeferred)
                accs[e.schedule_id].deferred += 1
            elif kind is ev.EntryCancelled:
                assert isinstance(e, ev.EntryCancelled)
                entry = entries.pop(e.entry_id, None)
                if entry is not None and entry.waiting:
                    entry.acc.waiting -= 1
                    self.waiting -= 1
        # queue depths as they stand after the tick
        for acc in touched:
            if acc.waiting > acc.max_queue:
                acc.max_queue = acc.waiting
        if self.waiting > self.max_queue:
            self.max_queue = self.waiting
        active = len(self.snapshot.runs)
        if active > self.max_active:
            self.max_active = active


# --- comparing two simulations --------------------------------------------------------------

_DELTA_FIELDS = (*_COUNT_FIELDS, *_MAX_FIELDS)


@attrs.frozen(kw_only=True)
class ScheduleDelta:
    """One schedule in both simulations (None where it is absent) and `other - base` per figure."""

    schedule_id: str
    base: ScheduleStats | None
    other: ScheduleStats | None
    delta: tuple[tuple[str, int], ...]

    @property
    def changed(self) -> bool:
        return self.base is None or self.other is None or any(d for _, d in self.delta)

    def to_json(self) -> dict[str, object]:
        return {
            "schedule_id": self.schedule_id,
            "base": None if self.base is None else self.base.to_json(),
            "other": None if self.other is None else self.other.to_json(),
            "delta": dict(self.delta),
            "changed": self.changed,
        }


@attrs.frozen(kw_only=True)
class Comparison:
    """What changing the schedules (or options) from `base` to `other` changes, per schedule."""

    base: SimReport
    other: SimReport
    schedules: tuple[ScheduleDelta, ...]
    total: ScheduleDelta

    @property
    def changed(self) -> tuple[ScheduleDelta, ...]:
        return tuple(s for s in self.schedules if s.changed)

    def to_json(self) -> dict[str, object]:
        return {
            "base": self.base.to_json(),
            "other": self.other.to_json(),
            "total": self.total.to_json(),
            "schedules": [s.to_json() for s in self.schedules],
            "changed": [s.schedule_id for s in self.changed],
        }


def _delta(
    schedule_id: str, base: ScheduleStats | None, other: ScheduleStats | None
) -> ScheduleDelta:
    empty = ScheduleStats(schedule_id=schedule_id)
    b, o = base or empty, other or empty
    delta = tuple((name, getattr(o, name) - getattr(b, name)) for name in _DELTA_FIELDS)
    return ScheduleDelta(schedule_id=schedule_id, base=base, other=other, delta=delta)


def compare(base: SimReport, other: SimReport) -> Comparison:
    """Per schedule (sorted by id, from either report): both figures and `other - base`."""
    ids = sorted({s.schedule_id for s in base.schedules} | {s.schedule_id for s in other.schedules})
    by_base = {s.schedule_id: s for s in base.schedules}
    by_other = {s.schedule_id: s for s in other.schedules}
    return Comparison(
        base=base,
        other=other,
        schedules=tuple(_delta(i, by_base.get(i), by_other.get(i)) for i in ids),
        total=_delta("*", base.total, other.total),
    )
