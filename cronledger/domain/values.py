"""Frozen value objects: policies, targets, the schedule spec and the engine options."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Any

import attrs

from cronledger.domain.durations import as_duration
from cronledger.domain.hours import Window
from cronledger.domain.triggers import Trigger


class MisfirePolicy(StrEnum):
    """What to do with fire times that were missed (SEMANTICS §3)."""

    SKIP = "skip"
    CATCH_UP = "catch_up"


class ConcurrencyPolicy(StrEnum):
    """What to do when a schedule fires while its previous run is active (SEMANTICS §4)."""

    FORBID = "forbid"
    REPLACE = "replace"
    QUEUE_ONE = "queue_one"
    ALLOW = "allow"


def _backoff(value: int | timedelta | str) -> Any:
    return as_duration(value, "retry.backoff")


def _max_backoff(value: int | timedelta | str) -> Any:
    return as_duration(value, "retry.max_backoff")


@attrs.frozen
class Retry:
    """Exponential retry: attempt n waits min(max_backoff, backoff * 2**(n-1)) after failing.
    The backoffs take int ms, a timedelta or text ("5m")."""

    max_attempts: int = 1
    backoff_ms: int = attrs.field(default=1000, converter=_backoff)
    max_backoff_ms: int = attrs.field(default=3_600_000, converter=_max_backoff)

    def delay_after(self, failed_attempt: int) -> int:
        """Backoff before the attempt that follows `failed_attempt` (1-based)."""
        exponent = min(failed_attempt - 1, 62)
        return int(min(self.max_backoff_ms, self.backoff_ms * (1 << exponent)))


NO_RETRY = Retry()


def _env_pairs(value: object) -> object:
    """`env` as given: None, a mapping or (name, value) pairs -> a tuple of pairs; anything
    else is left as it is, for validation to name."""
    if value is None:
        return ()
    if isinstance(value, Mapping):  # sorted: the order of a mapping is no change
        return tuple(sorted(value.items(), key=lambda item: str(item[0])))
    if isinstance(value, tuple | list):
        return tuple(tuple(p) if isinstance(p, tuple | list) else p for p in value)
    return value


def _argv(value: object) -> object:
    """A list or tuple (any iterable but text) -> a tuple; text (it would be split into
    characters) and None are left as they are, for validation."""
    if isinstance(value, tuple):
        return value
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return value
    return tuple(value)


@attrs.frozen
class Command:
    """A subprocess target: argv only (never a shell), optional env (a mapping or pairs), cwd
    and fallback argv."""

    argv: tuple[str, ...] = attrs.field(converter=_argv)
    env: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_env_pairs)
    cwd: str | None = None
    fallback: tuple[str, ...] | None = attrs.field(default=None, converter=_argv)


@attrs.frozen
class Call:
    """An in-process callable registered with the engine under `name`."""

    name: str


Target = Command | Call


@attrs.frozen(kw_only=True)
class ScheduleSpec:
    """Everything a user says about one schedule; validated at the edge (domain/validation.py)."""

    id: str
    trigger: Trigger
    target: Target
    concurrency: ConcurrencyPolicy
    misfire: MisfirePolicy = MisfirePolicy.SKIP
    misfire_grace_ms: int | None = None  # None: the engine's misfire_grace option (60 s)
    catch_up_window_ms: int | None = None
    priority: int = 0
    retry: Retry = NO_RETRY
    timeout_ms: int | None = None
    active_hours: Window | None = None
    quiet_hours: Window | None = None
    jitter_ms: int = 0
    fire_limit: int | None = None
    principal: str = "system:cron"


OUTPUT_TAIL_BYTES = 4096  # the default bound of each output tail an outcome fact keeps
OUTPUT_TAIL_LIMIT = 65536  # the largest bound the option takes


@attrs.frozen(kw_only=True)
class Options:
    """Engine options; every change is an OptionsChanged fact (SEMANTICS §6)."""

    max_workers: int = 16
    max_per_tick: int = 512
    slot_headroom: int = 0
    fallback_headroom: int = 0
    batch_size: int = 64
    misfire_grace_ms: int = 60_000  # for schedules that set no grace of their own
    draining: bool = False
    output_tail_bytes: int = OUTPUT_TAIL_BYTES  # of each stream, kept by an outcome fact


def misfire_grace(spec: ScheduleSpec, options: Options) -> int:
    """The grace a schedule's fires get: its own, else the engine's default (an option)."""
    return options.misfire_grace_ms if spec.misfire_grace_ms is None else spec.misfire_grace_ms


class ExitKind(StrEnum):
    """How a run ended, as a runner observed it."""

    EXITED = "exited"
    SIGNALED = "signaled"
    SPAWN_FAILED = "spawn_failed"
    RAISED = "raised"
    LOST = "lost"


@attrs.frozen(kw_only=True, slots=False)
class RunExit:
    """An observation: a runner saw run `run_id` end. The tick turns it into facts.

    The tails are the ends of the run's output (`*_dropped`: the bytes before them).
    `stdout_tail` is None where the runner captured no output (in-process calls, whose
    `stderr_tail` is the traceback; exits recorded before stdout was kept).
    """

    run_id: str
    kind: ExitKind
    finished_at: int
    exit_code: int | None = None
    signal: int | None = None
    stderr_tail: str = ""
    stderr_dropped: int = 0
    error: str = ""
    stdout_tail: str | None = None
    stdout_dropped: int = 0

    @property
    def succeeded(self) -> bool:
        return self.kind is ExitKind.EXITED and self.exit_code == 0
