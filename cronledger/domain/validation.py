"""Validation at the edge: every error names the field and says what to fix."""

from __future__ import annotations

import re

import attrs

from cronledger.domain.hours import gate_opens_at, validate_window
from cronledger.domain.triggers import validate_trigger
from cronledger.domain.values import (
    OUTPUT_TAIL_LIMIT,
    Call,
    Command,
    ConcurrencyPolicy,
    MisfirePolicy,
    Options,
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


def _non_negative(value: int | None, field: str, fix: str) -> None:
    if value is not None and (not isinstance(value, int) or value < 0):
        raise InvalidInput(field, f"{value!r} is negative", fix)


def _validate_argv(argv: tuple[str, ...], field: str) -> None:
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
        if not target.argv:
            raise InvalidInput(
                f"{field}.argv",
                "the command is empty",
                "give the program and its arguments, e.g. ['echo', 'hi']",
            )
        _validate_argv(target.argv, f"{field}.argv")
        if target.fallback is not None:
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
        if not target.name:
            raise InvalidInput(
                f"{field}.name",
                "the callable name is empty",
                "register a callable and pass its name",
            )
    else:
        raise InvalidInput(field, f"{target!r} is not a target", "use Command(...) or Call(...)")


def validate_spec(spec: ScheduleSpec, *, now_ms: int) -> None:
    """Reject a spec that cannot be scheduled, naming the field."""
    validate_schedule_id(spec.id)
    validate_trigger(spec.trigger, now_ms=now_ms)
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
    _non_negative(spec.misfire_grace_ms, "misfire_grace", "use 0 or more, e.g. 60s")
    _non_negative(spec.catch_up_window_ms, "catch_up_window", "use a positive duration")
    if spec.catch_up_window_ms is not None and spec.misfire is not MisfirePolicy.CATCH_UP:
        raise InvalidInput(
            "catch_up_window",
            "only applies to the catch_up misfire policy",
            "set misfire=catch_up or drop the window",
        )
    _non_negative(spec.priority, "priority", "use 0 or more (higher runs first)")
    _non_negative(spec.jitter_ms, "jitter", "use 0 or more")
    retry = spec.retry
    if retry.max_attempts < 1:
        raise InvalidInput(
            "retry.max_attempts",
            f"{retry.max_attempts} is less than 1",
            "use 1 for no retry, or more",
        )
    _non_negative(retry.backoff_ms, "retry.backoff", "use 0 or more")
    if retry.max_backoff_ms < retry.backoff_ms:
        raise InvalidInput(
            "retry.max_backoff",
            "is smaller than retry.backoff",
            "make max_backoff at least backoff",
        )
    if spec.timeout_ms is not None and spec.timeout_ms <= 0:
        raise InvalidInput(
            "timeout", f"{spec.timeout_ms} is not positive", "use a positive duration or none"
        )
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
    if not _PRINCIPAL.match(spec.principal):
        raise InvalidInput(
            "principal",
            f"{spec.principal!r} is not a principal",
            "use user:NAME, system:NAME or service:NAME",
        )


def validate_options(options: Options) -> None:
    for field in ("max_workers", "max_per_tick", "batch_size"):
        value = getattr(options, field)
        if not isinstance(value, int) or value < 1:
            raise InvalidInput(field, f"{value!r} is less than 1", "use 1 or more")
    for field in ("slot_headroom", "fallback_headroom", "misfire_grace_ms"):
        _non_negative(getattr(options, field), field, "use 0 or more")
    tail = options.output_tail_bytes
    if not isinstance(tail, int) or isinstance(tail, bool) or not 0 <= tail <= OUTPUT_TAIL_LIMIT:
        raise InvalidInput(
            "output_tail_bytes",
            f"{tail!r} is not a byte count from 0 to {OUTPUT_TAIL_LIMIT:,}",
            f"use e.g. 4096 (the default); 0 records no output; at most {OUTPUT_TAIL_LIMIT}",
        )


def changed_fields(old: Options, new: Options) -> tuple[str, ...]:
    """Names of the attrs fields that differ."""
    return tuple(
        a.name for a in attrs.fields(Options) if getattr(old, a.name) != getattr(new, a.name)
    )
