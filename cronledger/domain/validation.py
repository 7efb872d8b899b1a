"""Validation at the edge: every error names the field and says what to fix."""

from __future__ import annotations

import re
from collections.abc import Collection

import attrs

from cronledger.domain.commands import SubmitTask
from cronledger.domain.durations import bounded
from cronledger.domain.hours import gate_opens_at, validate_window
from cronledger.domain.instants import bounded_instant
from cronledger.domain.triggers import At, is_int, validate_trigger
from cronledger.domain.values import (
    OUTPUT_TAIL_LIMIT,
    Call,
    Command,
    ConcurrencyPolicy,
    MisfirePolicy,
    Options,
    Retry,
    ScheduleSpec,
    Target,
)
from cronledger.errors import InvalidInput

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
_PRINCIPAL = re.compile(r"^(user|system|service):[A-Za-z0-9_.@-]+$")


def validate_schedule_id(schedule_id: str, field: str = "id") -> None:
    """Ids become part of entry and run ids, so they avoid '@', '!', '#' and spaces."""
    if not isinstance(schedule_id, str) or not _ID.match(schedule_id):
        raise InvalidInput(
            field,
            f"{schedule_id!r} is not a valid schedule id",
            "use 1-128 letters, digits and _ . : / - starting with a letter or digit",
        )


_LARGEST = 2**53  # what every JSON reader keeps exact


def _whole(value: object, field: str, fix: str) -> None:
    if not is_int(value):
        raise InvalidInput(field, f"{value!r} is not a whole number", fix)
    if abs(value) > _LARGEST:  # type: ignore[arg-type]
        raise InvalidInput(field, f"{value!r} is too large", fix)


def _duration(value: int | None, field: str, fix: str) -> None:
    """A non-negative duration in ms, at most MAX_DURATION_MS."""
    _non_negative(value, field, fix)
    if value is not None:
        bounded(value, field)


def _non_negative(value: int | None, field: str, fix: str) -> None:
    if value is not None:
        _whole(value, field, fix)
        if value < 0:
            raise InvalidInput(field, f"{value!r} is negative", fix)


def _positive_timeout(value: int | None) -> None:
    fix = "use a positive duration (e.g. '90s') or none"
    if value is not None:
        _duration(value, "timeout", fix)
        if value <= 0:
            raise InvalidInput("timeout", f"{value} is not positive", fix)


def validate_retry(max_attempts: int, backoff_ms: int, max_backoff_ms: int, prefix: str) -> None:
    """The retry policy of a schedule (`prefix` "retry.") or of a submitted task ("")."""
    _whole(max_attempts, f"{prefix}max_attempts", "use 1 for no retry, or more")
    if max_attempts < 1:
        raise InvalidInput(
            f"{prefix}max_attempts", f"{max_attempts} is less than 1", "use 1 for no retry, or more"
        )
    _duration(backoff_ms, f"{prefix}backoff", "use 0 or more, e.g. '30s'")
    _duration(max_backoff_ms, f"{prefix}max_backoff", "use 0 or more, e.g. '1h'")
    if max_backoff_ms < backoff_ms:
        raise InvalidInput(
            f"{prefix}max_backoff",
            f"is smaller than {prefix}backoff",
            "make max_backoff at least backoff",
        )


def validate_principal(principal: object) -> None:
    if not isinstance(principal, str) or not _PRINCIPAL.match(principal):
        raise InvalidInput(
            "principal",
            f"{principal!r} is not a principal",
            "use user:NAME, system:NAME or service:NAME",
        )


def _validate_argv(argv: tuple[str, ...], field: str) -> None:
    if isinstance(argv, str | bytes):
        raise InvalidInput(
            field,
            f"{argv!r} is one string, not a list of arguments (there is no shell)",
            "give the program and its arguments as a list, e.g. ['echo', 'hi'] "
            "(shlex.split('echo hi') makes one)",
        )
    if not isinstance(argv, tuple):
        raise InvalidInput(field, f"{argv!r} is not a command", "give a list, e.g. ['echo', 'hi']")
    if not all(isinstance(a, str) and "\0" not in a for a in argv) or not argv[0]:
        raise InvalidInput(
            field,
            f"{list(argv)!r} is not a list of strings with a program first",
            "pass argv as strings (no NUL characters), program first",
        )


def _validate_env(env: object, field: str) -> None:
    fix = "give a mapping of names to strings, e.g. {'LANG': 'C'}, or (name, value) pairs"
    if not isinstance(env, tuple):
        raise InvalidInput(field, f"{env!r} is not a mapping or a list of pairs", fix)
    for pair in env:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise InvalidInput(field, f"{pair!r} is not a (name, value) pair", fix)
        key, value = pair
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise InvalidInput(field, f"{key!r} is not an environment variable name", fix)
        if not isinstance(value, str) or "\0" in value:
            raise InvalidInput(field, f"the value of {key} ({value!r}) is not a string", fix)


def validate_target(target: Target, field: str = "target") -> None:
    if isinstance(target, Command):
        if isinstance(target.argv, tuple) and not target.argv:
            raise InvalidInput(
                f"{field}.argv",
                "the command is empty",
                "give the program and its arguments, e.g. ['echo', 'hi']",
            )
        _validate_argv(target.argv, f"{field}.argv")
        if target.fallback is not None:
            if isinstance(target.fallback, str | bytes):
                _validate_argv(target.fallback, f"{field}.fallback")
            if not isinstance(target.fallback, tuple) or not target.fallback:
                raise InvalidInput(
                    f"{field}.fallback",
                    f"{target.fallback!r} is not a command",
                    "omit it or give a program and its arguments, e.g. ['echo', 'hi']",
                )
            _validate_argv(target.fallback, f"{field}.fallback")
        _validate_env(target.env, f"{field}.env")
        if target.cwd is not None and (not isinstance(target.cwd, str) or not target.cwd):
            raise InvalidInput(
                f"{field}.cwd", f"{target.cwd!r} is not a directory path", "give a path or omit it"
            )
    elif isinstance(target, Call):
        if not isinstance(target.name, str):
            what = getattr(target.name, "__name__", None)
            raise InvalidInput(
                f"{field}.name",
                f"{target.name!r} is not a name",
                f"register the callable and pass its name, e.g. Call({what or 'NAME'!r})",
            )
        if not target.name:
            raise InvalidInput(
                f"{field}.name",
                "the callable name is empty",
                "register a callable and pass its name",
            )
    else:
        raise InvalidInput(field, f"{target!r} is not a target", "use Command(...) or Call(...)")


def validate_spec(spec: ScheduleSpec, *, now_ms: int, new_trigger: bool = True) -> None:
    """Reject a spec that cannot be scheduled, naming the field (`new_trigger=False`: its
    trigger is the one the schedule has, see `validate_trigger`)."""
    validate_schedule_id(spec.id)
    validate_trigger(spec.trigger, now_ms=now_ms, new=new_trigger)
    validate_target(spec.target)
    if not isinstance(spec.concurrency, ConcurrencyPolicy):
        raise InvalidInput(
            "concurrency",
            f"{spec.concurrency!r} is not a policy",
            "choose forbid, replace, queue_one or allow",
        )
    if not isinstance(spec.misfire, MisfirePolicy):
        raise InvalidInput(
            "misfire", f"{spec.misfire!r} is not a policy", "choose skip or catch_up"
        )
    _duration(spec.misfire_grace_ms, "misfire_grace", "use 0 or more, e.g. 60s")
    _duration(spec.catch_up_window_ms, "catch_up_window", "use a positive duration")
    if spec.catch_up_window_ms is not None and spec.misfire is not MisfirePolicy.CATCH_UP:
        raise InvalidInput(
            "catch_up_window",
            "only applies to the catch_up misfire policy",
            "set misfire=catch_up or drop the window",
        )
    _non_negative(spec.priority, "priority", "use 0 or more (higher runs first)")
    _duration(spec.jitter_ms, "jitter", "use 0 or more")
    if isinstance(spec.trigger, At) and is_int(spec.trigger.instant_ms):
        bounded_instant(spec.trigger.instant_ms + spec.jitter_ms, "jitter")  # its due time
    retry = spec.retry
    if not isinstance(retry, Retry):
        raise InvalidInput("retry", f"{retry!r} is not a Retry", "use Retry(max_attempts, ...)")
    validate_retry(retry.max_attempts, retry.backoff_ms, retry.max_backoff_ms, "retry.")
    _positive_timeout(spec.timeout_ms)
    if spec.fire_limit is not None:
        _whole(spec.fire_limit, "fire_limit", "use 1 or more, or none for no limit")
    if spec.fire_limit is not None and spec.fire_limit < 1:
        raise InvalidInput(
            "fire_limit", f"{spec.fire_limit} is less than 1", "use 1 or more, or none for no limit"
        )
    if spec.active_hours is not None:
        validate_window(spec.active_hours, "active_hours")
    if spec.quiet_hours is not None:
        validate_window(spec.quiet_hours, "quiet_hours")
    if spec.active_hours is not None and spec.quiet_hours is not None:
        # Refused here, at the edge: a gate that never opens would fail every tick.
        gate_opens_at(spec.active_hours, spec.quiet_hours, now_ms)
    validate_principal(spec.principal)


def validate_options(options: Options) -> None:
    for field in ("max_workers", "max_per_tick", "batch_size"):
        value = getattr(options, field)
        _whole(value, field, "use 1 or more")
        if value < 1:
            raise InvalidInput(field, f"{value!r} is less than 1", "use 1 or more")
    if not isinstance(options.draining, bool):
        raise InvalidInput("draining", f"{options.draining!r} is not True or False", "use a bool")
    for field in ("slot_headroom", "fallback_headroom"):
        _non_negative(getattr(options, field), field, "use 0 or more")
    _duration(options.misfire_grace_ms, "misfire_grace_ms", "use 0 or more, e.g. 60s")
    tail = options.output_tail_bytes
    if not isinstance(tail, int) or isinstance(tail, bool) or not 0 <= tail <= OUTPUT_TAIL_LIMIT:
        raise InvalidInput(
            "output_tail_bytes",
            f"{tail!r} is not a byte count from 0 to {OUTPUT_TAIL_LIMIT:,}",
            f"use e.g. 4096 (the default); 0 records no output; at most {OUTPUT_TAIL_LIMIT}",
        )


def validate_slots(options: Options, changed: Collection[str]) -> None:
    """A change of `max_workers` or `slot_headroom` (the fields named in `changed`) must leave
    a slot free (§6: with `slot_headroom >= max_workers` nothing is ever dispatched). Checked
    only when one of them changes, so that options an older version recorded never block a
    change of something else (draining, say); the error names the field that changed."""
    if options.slot_headroom < options.max_workers:
        return
    if "slot_headroom" in changed:
        raise InvalidInput(
            "slot_headroom",
            f"{options.slot_headroom} leaves no slot free of max_workers {options.max_workers}: "
            "nothing would ever be dispatched",
            "use less than max_workers, e.g. 0, or raise max_workers above it",
        )
    if "max_workers" in changed:
        raise InvalidInput(
            "max_workers",
            f"{options.max_workers} leaves no slot free with slot_headroom "
            f"{options.slot_headroom}: nothing would ever be dispatched",
            f"use more than slot_headroom ({options.slot_headroom}), or lower slot_headroom",
        )


def changed_fields(old: Options, new: Options) -> tuple[str, ...]:
    """Names of the attrs fields that differ."""
    return tuple(
        a.name for a in attrs.fields(Options) if getattr(old, a.name) != getattr(new, a.name)
    )


def validate_submit(command: SubmitTask) -> None:
    """A one-off task: its target, priority, hold, retry, timeout and principal."""
    validate_target(command.target)
    _non_negative(command.priority, "priority", "use 0 or more (higher runs first)")
    if command.hold is not None and (not isinstance(command.hold, str) or not command.hold):
        raise InvalidInput(
            "hold", f"{command.hold!r} is not a reason", "give a reason as text, or no hold"
        )
    validate_retry(command.max_attempts, command.backoff_ms, command.max_backoff_ms, "")
    _positive_timeout(command.timeout_ms)
    validate_principal(command.principal)
