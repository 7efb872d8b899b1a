"""Test your own schedules and policies against the real engine, on virtual time.

- `FakeClock`: a clock that only moves when told to (never backwards).
- `FakeRunner` and `Script`: runs that start nothing and end as scripted; `register`ed
  functions are called when their run starts (deterministically, in the ticking thread).
- `scheduler(...)`: a `VirtualScheduler` (a `cronledger.Scheduler`) on a `memory://` ledger
  with both fakes, plus `advance`, `advance_to` and `tick_at` to move virtual time.
- Hypothesis strategies: `triggers`, `crons`, `everys`, `ats`, `schedule_specs`,
  `clock_walks`, `scripts`, `scripters`. Hypothesis is needed only for these
  (`pip install hypothesis`).

Virtual time is cheap: a year of an hourly schedule (8,760 runs) takes under two seconds, a
day of an every-minute one about a quarter of a second.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cronledger.adapters.clock import FakeClock
from cronledger.adapters.fake_runner import FakeRunner as _BaseFakeRunner
from cronledger.adapters.fake_runner import Script, Scripter
from cronledger.api import Duration, Instant, Scheduler, _duration, _instant
from cronledger.domain.commands import StartRun
from cronledger.domain.hours import Window, gate_allows
from cronledger.domain.triggers import At, Cron, Every, Trigger
from cronledger.domain.values import (
    Call,
    Command,
    ConcurrencyPolicy,
    MisfirePolicy,
    Retry,
    ScheduleSpec,
    Target,
)
from cronledger.errors import InvalidInput

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from cronledger.domain.tick import TickSummary

__all__ = [
    "T0",
    "ZONES",
    "FakeClock",
    "FakeRunner",
    "Script",
    "Scripter",
    "VirtualScheduler",
    "ats",
    "clock_walks",
    "crons",
    "everys",
    "schedule_ids",
    "schedule_specs",
    "scheduler",
    "scripters",
    "scripts",
    "triggers",
    "windows",
]

T0 = 1_767_225_600_000
"""2026-01-01T00:00:00Z, the FakeClock's default start."""
# Fake-clock loops must not wake every second for a ledger check: nothing else writes to it.
_VIRTUAL_IDLE_MS = 366 * 86_400_000


class FakeRunner(_BaseFakeRunner):
    """The scripted fake runner, plus `register`: a registered function runs when its `Call`
    run starts (return: exit 0; exception: exit 1 with the message on stderr); the run then
    lasts the scripted `duration_ms`."""

    def __init__(self, script: Script | Scripter | None = None) -> None:
        fixed = script if isinstance(script, Script) else Script()
        self._base: Scripter = script if callable(script) else (lambda _command: fixed)
        self.functions: dict[str, Callable[..., object]] = {}
        super().__init__(self._decide)

    def register(self, name: str, function: Callable[..., object]) -> None:
        if not name or not callable(function):
            raise InvalidInput(
                "name",
                f"cannot register {function!r} as {name!r}",
                "pass a non-empty name and a callable",
            )
        self.functions[name] = function

    def _decide(self, command: StartRun) -> Script:
        script = self._base(command)
        target = command.target
        if isinstance(target, Call) and target.name in self.functions:
            try:
                self.functions[target.name]()
            except Exception as error:
                return Script(script.duration_ms, 1, f"{type(error).__name__}: {error}")
            return Script(script.duration_ms, 0, script.stderr)
        return script


class VirtualScheduler(Scheduler):
    """A Scheduler on a FakeClock and a FakeRunner, with ways to move virtual time."""

    def __init__(self, clock: FakeClock, runner: FakeRunner, url: str = "memory://") -> None:
        from cronledger.adapters.engine import Engine
        from cronledger.adapters.ledger import open_ledger

        engine = Engine(
            open_ledger(url),
            clock,
            runner,
            idle_cap_ms=_VIRTUAL_IDLE_MS,
            ledger_watch_ms=_VIRTUAL_IDLE_MS,
        )
        super().__init__(engine)
        self.fake_clock = clock
        self.fake_runner = runner

    def settle(self) -> list[TickSummary]:
        """Tick at the current instant until nothing more is due now."""
        summaries = [self.tick()]
        while summaries[-1].more_due:
            summaries.append(self.tick())
        return summaries

    def tick_at(self, instant: Instant) -> list[TickSummary]:
        """Jump to `instant` and tick there only, as a daemon that slept until then would
        (a long jump is an outage: fires in between are late)."""
        self.fake_clock.set(self._not_before_now(instant))
        return self.settle()

    def _not_before_now(self, instant: Instant) -> int:
        target = _instant(instant, "instant")
        if target < self.fake_clock.now():
            raise InvalidInput(
                "instant",
                f"{target} is before the virtual clock's reading {self.fake_clock.now()}",
                "virtual time never goes back: pass a later instant",
            )
        return target

    def advance_to(self, instant: Instant) -> list[TickSummary]:
        """Move to `instant`, ticking at every moment something can happen on the way: due
        times, retries, deadlines and scripted run ends (a daemon that never sleeps late)."""
        from cronledger.domain.tick import next_wake

        target = self._not_before_now(instant)
        summaries = self.settle()
        while True:
            now = self.fake_clock.now()
            exit_at = self.fake_runner.next_exit_at()
            if exit_at is not None and exit_at <= now:
                # a run cancelled by this instant's tick (timeout, REPLACE) ends at once: record
                # it now, not when something else happens
                summaries += self.settle()
                continue
            candidates = [
                t
                for t in (next_wake(self.engine.snapshot), exit_at)
                if t is not None and now < t <= target
            ]
            if not candidates:
                break
            self.fake_clock.set(min(candidates))
            summaries += self.settle()
        if self.fake_clock.now() < target:
            summaries += self.tick_at(target)
        return summaries

    def advance(self, by: Duration) -> list[TickSummary]:
        """`advance_to(now + by)`."""
        return self.advance_to(self.fake_clock.now() + _duration(by, "by"))


def scheduler(
    start: Instant = T0,
    script: Script | Scripter | None = None,
    *,
    url: str = "memory://",
) -> VirtualScheduler:
    """A VirtualScheduler from `start` (default 2026-01-01T00:00Z) whose runs end as `script`
    says (default: succeed after 1 s), on a fresh in-memory ledger."""
    return VirtualScheduler(FakeClock(_instant(start, "start")), FakeRunner(script), url)


# --- Hypothesis strategies ----------------------------------------------------------------


def _require_hypothesis() -> None:
    """Hypothesis is optional: say how to get it when a strategy is asked for."""
    try:
        import hypothesis  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "cronledger.testing's strategies need Hypothesis: pip install hypothesis "
            "(or install cronledger[dev])"
        ) from error


ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")
"""Zones with DST gaps and folds (Lord Howe shifts by 30 minutes) and one without."""
_ALIASES = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly")


def _field(low: int, high: int, steps: Sequence[int]) -> SearchStrategy[str]:
    """One cron field from a safe grammar: *, */n, a value, a list, or a range a-b (a < b)."""
    from hypothesis import strategies as st

    value = st.integers(low, high)
    return st.one_of(
        st.just("*"),
        st.sampled_from([f"*/{n}" for n in steps]),
        value.map(str),
        st.lists(value, min_size=2, max_size=4, unique=True).map(
            lambda vs: ",".join(map(str, sorted(vs)))
        ),
        st.lists(value, min_size=2, max_size=2, unique=True).map(lambda r: f"{min(r)}-{max(r)}"),
    )


def crons(zones: Sequence[str] = ZONES) -> SearchStrategy[Cron]:
    """Valid 5-field cron expressions or @aliases, in one of `zones`. Days of month are 1-28,
    so every expression matches in every month it names."""
    _require_hypothesis()
    from hypothesis import strategies as st

    fields = st.tuples(
        _field(0, 59, (2, 5, 7, 15, 30)),
        _field(0, 23, (2, 3, 6, 12)),
        _field(1, 28, (2, 7, 10)),
        _field(1, 12, (2, 3, 6)),
        _field(0, 6, (2, 3)),
    )
    expr = st.one_of(st.sampled_from(_ALIASES), fields.map(" ".join))
    return st.builds(Cron, expr, st.sampled_from(list(zones)))


def everys(
    start: Instant = T0, *, min_interval_ms: int = 1000, max_interval_ms: int = 86_400_000
) -> SearchStrategy[Every]:
    """Intervals of at least 1 s, anchored anywhere within one interval of `start`."""
    _require_hypothesis()
    from hypothesis import strategies as st

    if min_interval_ms < 1000 or max_interval_ms < min_interval_ms:
        raise InvalidInput(
            "min_interval_ms", "must be at least 1000 and at most max_interval_ms", "Every >= 1 s"
        )
    origin = _instant(start, "start")
    usual = [
        i for i in (1000, 60_000, 300_000, 3_600_000) if min_interval_ms <= i <= max_interval_ms
    ]
    interval = st.one_of(
        st.sampled_from(usual or [min_interval_ms]), st.integers(min_interval_ms, max_interval_ms)
    )
    return interval.flatmap(
        lambda i: st.integers(origin - i, origin + i).map(lambda anchor: Every(i, anchor))
    )


def ats(start: Instant = T0, *, horizon_ms: int = 7 * 86_400_000) -> SearchStrategy[At]:
    """One-shot instants strictly after `start`, within `horizon_ms`."""
    _require_hypothesis()
    from hypothesis import strategies as st

    origin = _instant(start, "start")
    return st.integers(origin + 1, origin + horizon_ms).map(At)


def triggers(start: Instant = T0, *, zones: Sequence[str] = ZONES) -> SearchStrategy[Trigger]:
    """Any trigger that can be registered at `start`: cron, every (>= 1 s) or at (future)."""
    _require_hypothesis()
    from hypothesis import strategies as st

    return st.one_of(crons(zones), everys(start), ats(start))


def schedule_ids() -> SearchStrategy[str]:
    """Valid schedule ids."""
    _require_hypothesis()
    from hypothesis import strategies as st

    return st.from_regex(r"\A[a-z0-9][a-z0-9_.:/-]{0,20}\Z")


def windows(zones: Sequence[str] = ZONES) -> SearchStrategy[Window]:
    """Active or quiet hours: [start, end) on the quarter hour, maybe wrapping midnight."""
    _require_hypothesis()
    from hypothesis import strategies as st

    hhmm = st.tuples(st.integers(0, 23), st.sampled_from((0, 15, 30, 45))).map(
        lambda t: f"{t[0]:02d}:{t[1]:02d}"
    )
    window = st.builds(Window, hhmm, hhmm, st.sampled_from(list(zones)))
    return window.filter(lambda w: w.start != w.end)


def _hours() -> SearchStrategy[tuple[Window | None, Window | None]]:
    """Active hours, quiet hours, neither, or both in one zone leaving some time open (a pair
    that never allows a fire is rejected by the engine)."""
    from hypothesis import strategies as st

    def some_time_open(pair: tuple[Window, Window]) -> bool:
        day = range(T0, T0 + 86_400_000, 15 * 60_000)  # windows are on the quarter hour
        return any(gate_allows(pair[0], pair[1], t) for t in day)

    both = (
        st.sampled_from(ZONES)
        .flatmap(lambda zone: st.tuples(windows([zone]), windows([zone])))
        .filter(some_time_open)
    )
    return st.one_of(
        st.just((None, None)),
        st.tuples(windows(), st.none()),
        st.tuples(st.none(), windows()),
        both,
    )


def schedule_specs(
    start: Instant = T0,
    *,
    ids: SearchStrategy[str] | None = None,
    trigger: SearchStrategy[Trigger] | None = None,
    target: SearchStrategy[Target] | None = None,
    concurrency: Sequence[ConcurrencyPolicy] = tuple(ConcurrencyPolicy),
    misfire: Sequence[MisfirePolicy] = tuple(MisfirePolicy),
    hours: bool = True,
) -> SearchStrategy[ScheduleSpec]:
    """Schedule specs the engine accepts at `start`: any trigger, policy, grace, retry,
    timeout, jitter, fire limit and (if `hours`) active and/or quiet hours. Narrow a part by
    passing it: `ids`, `trigger`, `target` are strategies, `concurrency`/`misfire` choices."""
    _require_hypothesis()
    from hypothesis import strategies as st

    id_strategy = ids if ids is not None else schedule_ids()
    trigger_strategy = trigger if trigger is not None else triggers(start)
    command = Command(("job",))  # type: ignore[arg-type, unused-ignore]  # attrs converter
    default_targets: list[Target] = [Call("job"), command]
    target_strategy = target if target is not None else st.sampled_from(default_targets)
    hours_strategy = _hours() if hours else st.just((None, None))
    retry = st.builds(
        Retry, st.integers(1, 4), st.sampled_from([0, 1000, 30_000]), st.just(600_000)
    )

    @st.composite
    def build(draw: st.DrawFn) -> ScheduleSpec:
        misfire_policy = draw(st.sampled_from(list(misfire)))
        active_hours, quiet_hours = draw(hours_strategy)
        catch_up = st.none() | st.integers(1000, 86_400_000)
        return ScheduleSpec(
            id=draw(id_strategy),
            trigger=draw(trigger_strategy),
            target=draw(target_strategy),
            concurrency=draw(st.sampled_from(list(concurrency))),
            misfire=misfire_policy,
            misfire_grace_ms=draw(st.sampled_from([None, 0, 1000, 60_000, 600_000])),
            catch_up_window_ms=draw(catch_up) if misfire_policy is MisfirePolicy.CATCH_UP else None,
            priority=draw(st.integers(0, 10)),
            retry=draw(retry),
            timeout_ms=draw(st.none() | st.integers(1000, 3_600_000)),
            active_hours=active_hours,
            quiet_hours=quiet_hours,
            jitter_ms=draw(st.sampled_from([0, 0, 500, 30_000])),
            fire_limit=draw(st.none() | st.integers(1, 20)),
        )

    return build()


def clock_walks(
    start: Instant = T0,
    max_steps: int = 50,
    max_step_ms: int = 3_600_000,
    *,
    min_steps: int = 1,
    min_step_ms: int = 1,
) -> SearchStrategy[list[int]]:
    """Strictly increasing instants after `start`: when a daemon ticks. Long steps are
    outages (fires in between are late), short ones a busy loop."""
    _require_hypothesis()
    from hypothesis import strategies as st

    if min_step_ms < 1 or max_step_ms < min_step_ms:
        raise InvalidInput("min_step_ms", "must be >= 1 and <= max_step_ms", "time moves forward")
    origin = _instant(start, "start")
    steps = st.lists(st.integers(min_step_ms, max_step_ms), min_size=min_steps, max_size=max_steps)
    return steps.map(lambda s: [origin + t for t in itertools.accumulate(s)])


def scripts(
    max_duration_ms: int = 3_600_000, *, exit_codes: Sequence[int | None] = (0, 0, 0, 1)
) -> SearchStrategy[Script]:
    """How a fake run ends: after up to `max_duration_ms`, with one of `exit_codes` (None: it
    runs until cancelled)."""
    _require_hypothesis()
    from hypothesis import strategies as st

    return st.builds(
        Script,
        st.integers(0, max_duration_ms),
        st.sampled_from(list(exit_codes)),
        st.sampled_from(["", "warning: disk almost full\n"]),
    )


def scripters(
    max_duration_ms: int = 3_600_000, *, exit_codes: Sequence[int | None] = (0, 0, 0, 1)
) -> SearchStrategy[Scripter]:
    """A script per run for FakeRunner: the drawn scripts in turn, by start order, repeating."""
    _require_hypothesis()
    from hypothesis import strategies as st

    def cycle(drawn: list[Script]) -> Scripter:
        order = itertools.cycle(drawn)
        return lambda _command: next(order)

    drawn = st.lists(scripts(max_duration_ms, exit_codes=exit_codes), min_size=1, max_size=8)
    return drawn.map(cycle)
