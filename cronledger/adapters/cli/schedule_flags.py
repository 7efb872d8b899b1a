"""`add`/`update` flags <-> the schedules-file keys, so the CLI and the file share one parser."""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

from cronledger.adapters.cli.values import duration
from cronledger.adapters.schedules_file import resolve_cwd
from cronledger.domain.hours import Window
from cronledger.domain.instants import iso
from cronledger.domain.triggers import At, Cron, Every
from cronledger.domain.values import Call, Command, ScheduleSpec
from cronledger.errors import InvalidInput

# schedules-file key -> (flag, argparse options, help)
FLAGS: dict[str, tuple[str, dict[str, Any], str]] = {
    "cron": ("--cron", {"metavar": "EXPR"}, "5-field cron expression or @daily etc."),
    "timezone": ("--tz", {"metavar": "ZONE"}, "IANA zone the cron is read in (default UTC)"),
    "every": ("--every", {"metavar": "DURATION"}, "fixed interval, e.g. 30s, 5m (>= 1s)"),
    "anchor": ("--anchor", {"metavar": "INSTANT"}, "with --every: align fires to this instant"),
    "at": ("--at", {"metavar": "INSTANT"}, "fire once, at this future instant (with a zone)"),
    "call": ("--call", {"metavar": "NAME"}, "run a callable registered in-process, not a command"),
    "cwd": ("--cwd", {"metavar": "DIR"}, "working directory of the command"),
    "fallback": ("--fallback", {"metavar": "COMMAND"}, "command line run if COMMAND cannot start"),
    "concurrency": (
        "--concurrency",
        {"choices": ["forbid", "replace", "queue-one", "allow"]},
        "when a fire finds the previous run active (default forbid)",
    ),
    "misfire": (
        "--misfire",
        {"choices": ["skip", "catch-up"]},
        "what late fires do (default skip)",
    ),
    "misfire_grace": (
        "--grace",
        {"metavar": "DURATION"},
        "how late a fire may run (default: the engine's misfire_grace option, 60s)",
    ),
    "catch_up_window": (
        "--catch-up-window",
        {"metavar": "DURATION"},
        "with catch-up: older missed fires are skipped",
    ),
    "priority": ("--priority", {"type": int, "metavar": "N"}, "higher dispatches first"),
    "retries": ("--retries", {"type": int, "metavar": "N"}, "extra attempts after a failure"),
    "backoff": ("--backoff", {"metavar": "DURATION"}, "first retry delay, doubling (default 1s)"),
    "max_backoff": ("--max-backoff", {"metavar": "DURATION"}, "longest retry delay (default 1h)"),
    "timeout": ("--timeout", {"metavar": "DURATION"}, "cancel a run that takes longer"),
    "active_hours": (
        "--active-hours",
        {"metavar": "HH:MM-HH:MM[@ZONE]"},
        "fires outside this window are deferred",
    ),
    "quiet_hours": (
        "--quiet-hours",
        {"metavar": "HH:MM-HH:MM[@ZONE]"},
        "fires inside this window are deferred",
    ),
    "jitter": ("--jitter", {"metavar": "DURATION"}, "deterministic delay up to this"),
    "fire_limit": ("--fire-limit", {"type": int, "metavar": "N"}, "complete after N fires"),
}
TRIGGER_KEYS = ("cron", "every", "at")
# duration keys -> whether 0 is allowed (the file parser checks the rest)
DURATION_KEYS = {
    "every": False,
    "misfire_grace": True,
    "catch_up_window": True,
    "backoff": True,
    "max_backoff": True,
    "timeout": False,
    "jitter": True,
}
FLAG_OF = {key: flag for key, (flag, _, _) in FLAGS.items()} | {
    "command": "COMMAND",
    "env": "--env",
    "schedule": "NAME",
}


def add_schedule_flags(parser: argparse.ArgumentParser) -> None:
    for key, (flag, options, text) in FLAGS.items():
        parser.add_argument(flag, dest=key, default=None, help=text, **options)
    parser.add_argument(
        "--env",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="extra environment for the command (repeat)",
    )


def table_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The file keys given on the command line (flags left out are absent)."""
    table: dict[str, Any] = {}
    for key in FLAGS:
        value = getattr(args, key)
        if value is not None:
            table[key] = value
    for key, zero_ok in DURATION_KEYS.items():
        if key in table:
            duration(table[key], FLAG_OF[key], zero_ok=zero_ok)  # e.g. -5s: "must be positive"
    if "fallback" in table:
        try:
            table["fallback"] = shlex.split(table["fallback"])
        except ValueError as error:  # e.g. "No closing quotation"
            raise InvalidInput(
                "--fallback",
                f"{table['fallback']!r} cannot be split into arguments ({error})",
                "quote it as a shell would, e.g. --fallback \"logger 'backup failed'\"",
            ) from None
    if table.get("cwd"):  # relative to where the command is typed, not to the daemon's
        table["cwd"] = resolve_cwd(table["cwd"], os.getcwd())
    if args.env is not None:
        env: dict[str, str] = {}
        for item in args.env:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise InvalidInput(
                    "--env", f"{item!r} is not KEY=VALUE", "write e.g. --env PGHOST=db"
                )
            env[name] = value
        table["env"] = env
    command = list(getattr(args, "command", None) or [])
    if command and command[0] == "--":
        command = command[1:]
    if command:
        table["command"] = command
    return table


def table_from_spec(spec: ScheduleSpec) -> dict[str, Any]:
    """A schedule's spec as file keys (the inverse of `spec_from_table`), for `update`."""
    t: dict[str, Any] = {}
    trigger = spec.trigger
    if isinstance(trigger, Cron):
        t["cron"], t["timezone"] = trigger.expr, trigger.timezone
    elif isinstance(trigger, Every):
        t["every"], t["anchor"] = f"{trigger.interval_ms}ms", iso(trigger.anchor_ms)
    elif isinstance(trigger, At):
        t["at"] = iso(trigger.instant_ms)
    target = spec.target
    if isinstance(target, Call):
        t["call"] = target.name
    elif isinstance(target, Command):
        t["command"] = list(target.argv)
        if target.env:
            t["env"] = dict(target.env)
        if target.cwd is not None:
            t["cwd"] = target.cwd
        if target.fallback is not None:
            t["fallback"] = list(target.fallback)
    t["concurrency"] = spec.concurrency.value
    t["misfire"] = spec.misfire.value
    if spec.misfire_grace_ms is not None:
        t["misfire_grace"] = f"{spec.misfire_grace_ms}ms"
    if spec.catch_up_window_ms is not None:
        t["catch_up_window"] = f"{spec.catch_up_window_ms}ms"
    t["priority"] = spec.priority
    if spec.retry.max_attempts > 1:
        t["retries"] = spec.retry.max_attempts - 1
        t["backoff"] = f"{spec.retry.backoff_ms}ms"
        t["max_backoff"] = f"{spec.retry.max_backoff_ms}ms"
    if spec.timeout_ms is not None:
        t["timeout"] = f"{spec.timeout_ms}ms"
    for key, window in (("active_hours", spec.active_hours), ("quiet_hours", spec.quiet_hours)):
        if window is not None:
            t[key] = _window(window)
    if spec.jitter_ms:
        t["jitter"] = f"{spec.jitter_ms}ms"
    if spec.fire_limit is not None:
        t["fire_limit"] = spec.fire_limit
    return t


def _window(window: Window) -> dict[str, str]:
    return {"start": window.start, "end": window.end, "timezone": window.timezone}


def overlay(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`current` with `changes`; a new trigger kind replaces the old one (and its zone/anchor)."""
    merged = dict(current)
    if any(k in changes for k in TRIGGER_KEYS):
        for key in (*TRIGGER_KEYS, "anchor"):
            merged.pop(key, None)
        if "cron" not in changes and "timezone" not in changes:
            merged.pop("timezone", None)
    if "call" in changes:  # a callable takes none of the command's settings
        for key in ("command", "env", "cwd", "fallback"):
            merged.pop(key, None)
    if "command" in changes:  # a new argv keeps --env, --cwd and --fallback unless given
        merged.pop("call", None)
    if "retries" in changes and changes["retries"] == 0:
        merged.pop("backoff", None)
        merged.pop("max_backoff", None)
    if str(changes.get("misfire", "")).replace("-", "_") == "skip":
        merged.pop("catch_up_window", None)  # the window is catch-up's only
    merged.update(changes)
    return merged


def check_combination(table: dict[str, Any]) -> None:
    """Refuse flags that cannot go together, naming the flags (the file's errors name keys)."""
    given = [FLAG_OF[k] for k in TRIGGER_KEYS if k in table]
    if len(given) > 1:
        raise InvalidInput(
            given[1], f"cannot be combined with {given[0]}", "give one of --cron, --every or --at"
        )
    if "timezone" in table and "cron" not in table:
        raise InvalidInput(
            "--tz",
            "only applies with --cron",
            "drop it; for hours in a zone use e.g. --active-hours 08:00-20:00@Europe/Berlin",
        )
    if "anchor" in table and "every" not in table:
        raise InvalidInput("--anchor", "only applies with --every", "drop it")
    if "call" in table:
        if "command" in table:
            raise InvalidInput(
                "--call", "cannot be combined with a COMMAND after --", "give one of them"
            )
        for key in ("env", "cwd", "fallback"):
            if key in table:
                flag = FLAG_OF[key]
                raise InvalidInput(flag, "only applies to a COMMAND, not to --call", "drop it")
    if not table.get("retries"):
        for key in ("backoff", "max_backoff"):
            if key in table:
                fix = "add --retries N, or drop it"
                raise InvalidInput(FLAG_OF[key], "only applies with --retries 1 or more", fix)
    misfire = str(table.get("misfire", "skip")).replace("-", "_")
    if "catch_up_window" in table and misfire != "catch_up":
        raise InvalidInput(
            "--catch-up-window",
            "only applies with --misfire catch-up",
            "add --misfire catch-up, or drop it",
        )


def as_flag_error(error: InvalidInput) -> InvalidInput:
    """An error about a file key, renamed after the flag that gave it."""
    key = error.field.split(".")[-1]
    flag = FLAG_OF.get(key)
    if flag is None or flag == error.field:
        return error
    fix = error.fix
    for name, other in FLAG_OF.items():
        if other.startswith("--") and f"`{name}`" in fix:
            fix = fix.replace(f"`{name}`", f"`{other}`")
    return InvalidInput(flag, error.problem, fix)
