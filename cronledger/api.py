"""The facade: `cronledger.open(url)` returns a `Scheduler`, a thin typed layer over the engine.

Everything delegates: commands to `Engine.execute`, reads to the engine's snapshot, the past to
`adapters/audit.py`. The facade only converts friendly input at the edge: durations as
`timedelta`, int milliseconds or text (`"90s"`, `"1h30m"`); instants as aware `datetime`s (a
naive one is an error), int UTC epoch milliseconds or ISO-8601 text with a zone; policies as
enums or their names. Results are the domain's records, whose instants are int UTC epoch ms.
The engine is imported when a scheduler is opened, so `import cronledger` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import attrs

from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.due import upcoming_fires
from cronledger.domain.durations import as_duration, parse_duration
from cronledger.domain.health import Health, health
from cronledger.domain.hours import Window
from cronledger.domain.instants import as_instant, from_ms, parse_instant, to_ms
from cronledger.domain.state import ActiveRun, Entry, ScheduleState, Snapshot
from cronledger.domain.triggers import At, Cron, Every, Trigger, is_int
from cronledger.domain.values import (
    NO_RETRY,
    Call,
    Command,
    ConcurrencyPolicy,
    MisfirePolicy,
    Options,
    Retry,
    ScheduleSpec,
    Target,
)
from cronledger.errors import DuplicateSchedule, InvalidInput, UnknownSchedule

if TYPE_CHECKING:
    from cronledger.adapters.audit import RunOutput
    from cronledger.adapters.clock import Clock
    from cronledger.adapters.engine import Engine
    from cronledger.adapters.runner import Runner
    from cronledger.domain.explain import (  # type: ignore[import-not-found, unused-ignore]
        Explanation,
    )
    from cronledger.domain.tick import TickSummary
    from cronledger.domain.verify import VerifyReport
    from cronledger.projectors.history import RunRecord

__all__ = ["DEFAULT_URL", "Duration", "Instant", "Scheduler", "TriggerLike", "open"]

DEFAULT_URL = "sqlite:///cronledger.db"

Duration = timedelta | int | str
"""A `timedelta`, int milliseconds, or text such as '250ms', '90s', '5m', '1h30m', '2d'."""
Instant = datetime | int | str
"""An aware `datetime`, int UTC epoch milliseconds, or ISO-8601 text with a zone ('...Z')."""
TriggerLike = Trigger | str | timedelta | datetime
"""A trigger; or a cron expression in UTC ('*/5 * * * *', '@daily'), 'every 5m', 'at <ISO>';
a `timedelta` (every, from now) or an aware `datetime` (once)."""

F = TypeVar("F", bound=Callable[..., object])
E = TypeVar("E", ConcurrencyPolicy, MisfirePolicy)


# --- conversions at the edge -----------------------------------------------------------------


def _duration(value: object, field: str) -> int:
    ms = as_duration(value, field)  # other types come back as they are: refused below
    if is_int(ms):
        return int(ms)
    raise InvalidInput(
        field, f"{value!r} is not a duration", "pass a timedelta, int milliseconds or e.g. '5m'"
    )


def _optional_duration(value: object, field: str) -> int | None:
    return None if value is None else _duration(value, field)


def _instant(value: object, field: str) -> int:
    ms = as_instant(value, field)  # other types come back as they are: refused below
    if is_int(ms):
        return int(ms)
    raise InvalidInput(
        field,
        f"{value!r} is not an instant",
        "pass an aware datetime, UTC epoch milliseconds or ISO-8601 text with a zone",
    )


def _optional_instant(value: object, field: str) -> int | None:
    return None if value is None else _instant(value, field)


def _trigger(value: object, now: int) -> Trigger:
    if isinstance(value, Cron | Every | At):
        return value
    if isinstance(value, timedelta):  # anchored when registered (an update keeps the anchor)
        return Every(_duration(value, "trigger"))
    if isinstance(value, datetime):
        return At(to_ms(value, "trigger"))
    if isinstance(value, str):
        head, _, rest = value.strip().partition(" ")
        if head.lower() == "every":
            return Every(parse_duration(rest, "trigger"))
        if head.lower() == "at":
            return At(parse_instant(rest, "trigger"))
        return Cron(value.strip())
    raise InvalidInput(
        "trigger",
        f"{value!r} is not a trigger",
        "use a cron expression, 'every 5m', Cron(...), Every(...), At(...), a timedelta or an "
        "aware datetime",
    )


def _target(value: object) -> Target:
    if isinstance(value, Command | Call):
        return value
    if isinstance(value, list | tuple) and all(isinstance(a, str) for a in value):
        return Command(tuple(value))
    raise InvalidInput(
        "target",
        f"{value!r} is not a target",
        "use Command([program, *args]), an argv list, or Call(name) for a registered callable",
    )


def _policy(kind: type[E], value: object, field: str) -> E:
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind(value.strip().lower().replace("-", "_"))
        except ValueError:
            pass
    names = ", ".join(p.value for p in kind)
    raise InvalidInput(field, f"{value!r} is not a {field} policy", f"choose one of {names}")


def _int(value: object, field: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidInput(field, f"{value!r} is not an integer", f"pass an int {field}")


def _retry(value: object) -> Retry:
    if value is None:
        return NO_RETRY
    if isinstance(value, Retry):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Retry(max_attempts=value)
    raise InvalidInput(
        "retry",
        f"{value!r} is not a retry policy",
        "pass Retry(max_attempts, backoff_ms) or an int",
    )


def _window(value: object, field: str) -> Window | None:
    if value is None or isinstance(value, Window):
        return value
    raise InvalidInput(field, f"{value!r} is not a Window", 'use Window("08:00", "20:00", "UTC")')


_SETTINGS: dict[str, tuple[str, Callable[[object, int], object]]] = {
    "trigger": ("trigger", _trigger),
    "target": ("target", lambda v, _now: _target(v)),
    "concurrency": (
        "concurrency",
        lambda v, _now: _policy(ConcurrencyPolicy, v, "concurrency"),
    ),
    "misfire": ("misfire", lambda v, _now: _policy(MisfirePolicy, v, "misfire")),
    "misfire_grace": (
        "misfire_grace_ms",
        lambda v, _now: _optional_duration(v, "misfire_grace"),
    ),
    "catch_up_window": (
        "catch_up_window_ms",
        lambda v, _now: _optional_duration(v, "catch_up_window"),
    ),
    "priority": ("priority", lambda v, _now: _int(v, "priority")),
    "retry": ("retry", lambda v, _now: _retry(v)),
    "timeout": ("timeout_ms", lambda v, _now: _optional_duration(v, "timeout")),
    "active_hours": ("active_hours", lambda v, _now: _window(v, "active_hours")),
    "quiet_hours": ("quiet_hours", lambda v, _now: _window(v, "quiet_hours")),
    "jitter": ("jitter_ms", lambda v, _now: _optional_duration(v, "jitter") or 0),
    "fire_limit": ("fire_limit", lambda v, _now: _int(v, "fire_limit", optional=True)),
    "principal": ("principal", lambda v, _now: v),
}


def _spec_fields(settings: Mapping[str, object], now: int) -> dict[str, Any]:
    """Facade settings (add/update keywords) -> ScheduleSpec fields, converted and checked."""
    fields: dict[str, Any] = {}
    for key, value in settings.items():
        if key not in _SETTINGS:
            raise InvalidInput(
                key, "is not a schedule setting", "use one of " + ", ".join(sorted(_SETTINGS))
            )
        name, convert = _SETTINGS[key]
        fields[name] = convert(value, now)
    return fields


# --- the facade -----------------------------------------------------------------------------


class Scheduler:
    """A scheduler on one ledger: schedules, callables, tasks, the loop, and the audit trail.

    Use it from one thread; `stop()` and `drain()` may be called from any thread.
    """

    def __init__(self, engine: Engine, *, state_dir: str | Path | None = None) -> None:
        self.engine = engine
        self.state_dir = None if state_dir is None else Path(state_dir)

    # --- plumbing -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.engine.ledger.url

    @property
    def clock(self) -> Clock:
        return self.engine.clock

    def now(self) -> datetime:
        """The engine clock's reading, as an aware UTC datetime."""
        return from_ms(self.engine.clock.now())

    @property
    def snapshot(self) -> Snapshot:
        """The current state (after folding what other writers appended)."""
        return self.engine.refresh()

    def _execute(self, command: cmd.UserCommand) -> tuple[ev.Event, ...]:
        return self.engine.execute(command)

    # --- schedules --------------------------------------------------------------------------

    def add(
        self,
        name: str,
        trigger: TriggerLike,
        target: Target | Sequence[str],
        *,
        concurrency: ConcurrencyPolicy | str = ConcurrencyPolicy.FORBID,
        misfire: MisfirePolicy | str = MisfirePolicy.SKIP,
        misfire_grace: Duration | None = None,
        catch_up_window: Duration | None = None,
        priority: int = 0,
        retry: Retry | int | None = None,
        timeout: Duration | None = None,
        active_hours: Window | None = None,
        quiet_hours: Window | None = None,
        jitter: Duration | None = None,
        fire_limit: int | None = None,
        principal: str = "system:cron",
        exist_ok: bool = False,
    ) -> ScheduleState:
        """Add schedule `name`. Concurrency defaults to FORBID (no overlapping runs), as in
        the CLI; `retry` may be a Retry or a number of attempts; without `misfire_grace` the
        engine's `misfire_grace` option applies (60 s unless configured). With `exist_ok`, a
        schedule `name` that exists is updated to these settings instead (nothing is recorded
        when they are the same; an `every` keeps its anchor): for a service's start-up."""
        settings = {
            "trigger": trigger,
            "target": target,
            "concurrency": concurrency,
            "misfire": misfire,
            "misfire_grace": misfire_grace,
            "catch_up_window": catch_up_window,
            "priority": priority,
            "retry": retry,
            "timeout": timeout,
            "active_hours": active_hours,
            "quiet_hours": quiet_hours,
            "jitter": jitter,
            "fire_limit": fire_limit,
            "principal": principal,
        }
        spec = ScheduleSpec(id=name, **_spec_fields(settings, self.engine.clock.now()))
        if exist_ok and name in self.engine.snapshot.schedules:
            try:
                self._execute(cmd.UpdateSchedule(spec))
                return self.schedule(name)
            except UnknownSchedule:  # removed meanwhile by another process
                pass
        try:
            return self.add_spec(spec)
        except DuplicateSchedule:
            if not exist_ok:
                raise
            self._execute(cmd.UpdateSchedule(spec))  # added meanwhile by another process
            return self.schedule(name)

    def add_spec(self, spec: ScheduleSpec) -> ScheduleState:
        """Add a schedule from a complete spec."""
        self._execute(cmd.AddSchedule(spec))
        return self.schedule(spec.id)

    def update(self, name: str, **changes: Any) -> ScheduleState:
        """Change some settings of schedule `name` (the keywords of `add`); the rest stay."""
        current = self.schedule(name).spec
        fields = _spec_fields(changes, self.engine.clock.now())
        self._execute(cmd.UpdateSchedule(attrs.evolve(current, **fields)))
        return self.schedule(name)

    def pause(self, name: str, reason: str = "") -> ScheduleState:
        """Stop firing `name` until resumed (fires in the pause are not misfires)."""
        self._execute(cmd.PauseSchedule(name, reason))
        return self.schedule(name)

    def resume(self, name: str) -> ScheduleState:
        """Fire again from the next fire time after now."""
        self._execute(cmd.ResumeSchedule(name))
        return self.schedule(name)

    def remove(self, name: str) -> None:
        """Remove `name`; its waiting entries are cancelled, running ones finish."""
        self._execute(cmd.RemoveSchedule(name))

    def trigger(self, name: str) -> str:
        """Fire `name` now (on the next tick), whatever its hours; returns the request id."""
        for event in self._execute(cmd.TriggerSchedule(name)):
            if isinstance(event, ev.TriggerRequested):
                return event.request_id
        raise AssertionError("TriggerSchedule recorded no TriggerRequested")  # pragma: no cover

    def schedules(self) -> list[ScheduleState]:
        """Every schedule, by id."""
        schedules = self.snapshot.schedules
        return [schedules[k] for k in sorted(schedules)]

    def schedule(self, name: str) -> ScheduleState:
        """One schedule's spec and state; UnknownSchedule if there is none."""
        state = self.snapshot.schedules.get(name)
        if state is None:
            raise UnknownSchedule(name)
        return state

    def next_fires(self, name: str, n: int = 5) -> list[datetime]:
        """The next `n` nominal fire times of `name` (jitter delays each one deterministically;
        `schedule(name).due_at` is the jittered next one). Empty when paused or complete."""
        state = self.schedule(name)
        if state.paused:
            return []
        return [from_ms(fire) for fire in upcoming_fires(state, n)]

    # --- callables and tasks ----------------------------------------------------------------

    def register(self, name: str, function: Callable[..., object]) -> None:
        """Make `function` runnable in-process as `Call(name)`."""
        self.engine.register(name, function)

    def task(self, name: str) -> Callable[[F], F]:
        """Decorator form of `register`: `@scheduler.task("name")`."""
        return self.engine.task(name)

    def submit(
        self,
        target: Target | Sequence[str],
        *,
        priority: int = 0,
        hold: str | None = None,
        retry: Retry | int | None = None,
        timeout: Duration | None = None,
        principal: str = "system:daemon",
    ) -> str:
        """Queue a one-off task (durable at once); returns its entry id."""
        policy = _retry(retry)
        [queued] = self._execute(
            cmd.SubmitTask(
                target=_target(target),
                priority=_int(priority, "priority") or 0,
                hold=hold,
                max_attempts=policy.max_attempts,
                backoff_ms=policy.backoff_ms,
                max_backoff_ms=policy.max_backoff_ms,
                timeout_ms=_optional_duration(timeout, "timeout"),
                principal=principal,
            )
        )
        assert isinstance(queued, ev.EntryQueued)
        return queued.entry_id

    def hold(self, entry_id: str, reason: str = "manual_hold") -> None:
        """Keep a pending entry from being dispatched until released."""
        self._execute(cmd.HoldEntry(entry_id, reason))

    def release(self, entry_id: str, reason: str = "manual_release") -> None:
        self._execute(cmd.ReleaseEntry(entry_id, reason))

    def cancel(self, entry_id: str, reason: str = "operator") -> None:
        """Cancel a waiting entry, or stop its run if it is running."""
        self._execute(cmd.CancelEntry(entry_id, reason))

    def configure(self, **changes: Any) -> Options:
        """Change engine options (max_workers, max_per_tick, slot_headroom, fallback_headroom,
        batch_size, misfire_grace, output_tail_bytes, draining); each change is recorded as a
        fact."""
        fields: dict[str, Any] = {}
        names = {a.name for a in attrs.fields(Options)}
        for key, value in changes.items():
            if key == "misfire_grace":
                fields["misfire_grace_ms"] = _duration(value, key)
            elif key in names:
                fields[key] = value
            else:
                raise InvalidInput(key, "is not an engine option", "use one of " + ", ".join(names))
        self.engine.change_options(lambda options: attrs.evolve(options, **fields))
        return self.snapshot.options

    # --- the loop ---------------------------------------------------------------------------

    def tick(self) -> TickSummary:
        """One tick at the clock's current reading: what it decided. The first claims this
        engine's node name, as `run()` does (DaemonRunning beside a daemon of that name)."""
        return self.engine.tick().summary

    def run(
        self,
        until: Instant | None = None,
        *,
        handle_signals: bool = False,
        drain_timeout: Duration = timedelta(seconds=60),
    ) -> None:
        """Tick until `stop()` (or `drain()`, or SIGTERM with handle_signals), or `until`."""
        self.engine.run(
            until=_optional_instant(until, "until"),
            handle_signals=handle_signals,
            drain_timeout_ms=_duration(drain_timeout, "drain_timeout"),
        )

    def stop(self) -> None:
        """Stop `run()` after the current tick; runs keep going."""
        self.engine.stop()

    def drain(self) -> None:
        """Dispatch nothing new, wait for the active runs, then stop `run()`."""
        self.engine.drain()

    def subscribe(self, subscriber: Callable[[ev.Event], None]) -> None:
        """Receive RunStarted/RunSucceeded/RunFailed/RunLost once they are durable."""
        self.engine.subscribe(subscriber)

    # --- the present ------------------------------------------------------------------------

    def queue(self) -> list[Entry]:
        """Entries not completed, in dispatch order (priority, then FIFO)."""
        return sorted(self.snapshot.entries.values(), key=lambda e: e.ready_key)

    def runs(self) -> list[ActiveRun]:
        """Active runs (assigned, running or being cancelled), oldest first."""
        return sorted(self.snapshot.runs.values(), key=lambda r: (r.assigned_at, r.run_id))

    def health(self) -> Health:
        """Queue depth, oldest pending age and lag at the clock's reading, and the duration of
        the engine's last tick (None before its first)."""
        now = self.engine.clock.now()
        return attrs.evolve(health(self.snapshot, now), tick_ms=self.engine.tick_ms)

    # --- the past ---------------------------------------------------------------------------

    def history(
        self,
        name: str | None = None,
        *,
        since: Instant | None = None,
        limit: int | None = 50,
    ) -> list[RunRecord]:
        """Runs (of schedule `name`, or all), newest last, at most `limit` (None: all)."""
        from cronledger.adapters.audit import run_history

        return run_history(
            self.engine.ledger,
            schedule_id=name,
            since=_optional_instant(since, "since"),
            limit=limit,
        )

    def output(self, run_id: str) -> RunOutput:
        """A run's captured output: the tails its outcome fact recorded, plus its files while
        they exist."""
        from cronledger.adapters.audit import run_output

        return run_output(self.engine.ledger, run_id, self.state_dir)

    def explain(self, subject: str, at: Instant | None = None) -> Explanation:
        """Why a schedule, entry or run is where it is (as of `at`)."""
        from cronledger.adapters.audit import explain_subject

        return explain_subject(self.engine.ledger, subject, _optional_instant(at, "at"))

    def replay(self, at: Instant | None = None, position: int | None = None) -> Snapshot:
        """The state as of instant `at`, or at ledger `position` (default: now)."""
        from cronledger.adapters.audit import state_at

        snapshot, _ = state_at(
            self.engine.ledger, at=_optional_instant(at, "at"), position=position
        )
        return snapshot

    def verify(self) -> VerifyReport:
        """Re-plan every recorded tick from its recorded inputs; `.ok` when all agree."""
        from cronledger.adapters.audit import verify_ledger

        return verify_ledger(self.engine.ledger)

    def save_snapshot(self) -> int:
        """Store the state so start-up and replay skip the prefix; returns its position."""
        self.engine.refresh()
        return self.engine.save_snapshot()

    # --- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the ledger and the runners (running jobs keep going)."""
        self.engine.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        from cronledger.adapters.ledger_store import redact_url

        return f"<Scheduler {redact_url(self.url)}>"


def open(
    url: str = DEFAULT_URL,
    *,
    state_dir: str | Path | None = None,
    clock: Clock | None = None,
    runner: Runner | None = None,
    max_threads: int = 16,
    node: str | None = None,
) -> Scheduler:
    """Open a scheduler on the ledger at `url` (memory://, sqlite:///path.db, postgresql://...).

    By default it runs commands as supervised subprocesses (their files under `state_dir`,
    default beside an SQLite ledger) and `Call` targets on `max_threads` threads, on the system
    clock. Pass `clock` (e.g. a FakeClock) and/or `runner` (e.g. a FakeRunner) for tests.
    `node` names this engine on the runs it starts; `run()`, and the first `tick()` on a
    ledger others can reach (not an anonymous memory://), claim the name until `close()` (one
    running daemon per name, None included: DaemonRunning otherwise); `run()` also adopts its
    own active runs, plus those of daemons not running that it may take (README: "several
    daemons").
    """
    from cronledger.adapters.daemon import build_engine, default_state_dir
    from cronledger.adapters.engine import Engine
    from cronledger.adapters.ledger import open_ledger

    directory = Path(state_dir) if state_dir is not None else default_state_dir(url)
    if clock is None and runner is None:
        return Scheduler(build_engine(url, directory, max_threads, node), state_dir=directory)
    if runner is not None:
        return Scheduler(Engine(open_ledger(url), clock, runner, node=node), state_dir=directory)
    # A given clock with the real runners (what build_engine wires on the system clock).
    from cronledger.adapters.call_runner import CallRunner
    from cronledger.adapters.process_runner import ProcessRunner
    from cronledger.adapters.runner import Runners

    assert clock is not None
    calls = CallRunner(max_threads, clock=clock.now)
    processes = ProcessRunner(directory, clock=clock.now)
    runners = Runners(processes, calls, clock.now)
    engine = Engine(open_ledger(url), clock, runners, node=node)
    return Scheduler(engine, state_dir=directory)
