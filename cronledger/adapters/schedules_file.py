"""The schedules file: a TOML crontab that remembers, parsed into validated specs.

```toml
[options]                         # optional: engine options (adapters/config.py)
max_workers = 8

[schedules.backup]                # one table per schedule, keyed by its id
cron = "0 3 * * *"
timezone = "Europe/Berlin"
command = ["pg_dump", "-f", "/backups/{scheduled_for}.sql"]
retries = 3
backoff = "30s"
```

`spec_from_table(name, table, now_ms=...)` turns one table into a `ScheduleSpec`; the CLI's
`add` builds the same table from its flags, so the two share one parser and one set of names.
Every error is an `InvalidInput` naming the key as it is written in the file
(`schedules.backup.cron`) and saying how to fix it. The keys, their types and defaults are in
`KEYS` and in the README's schedules-file section; the planner that applies a file to a
ledger is `domain/apply_plan.py`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import attrs
from immutables import Map

from cronledger.adapters.config import options_from_mapping
from cronledger.domain.apply_plan import ApplyPlan, plan_apply
from cronledger.domain.durations import parse_duration
from cronledger.domain.hours import Window, gate_opens_at, validate_window
from cronledger.domain.instants import to_ms
from cronledger.domain.state import Snapshot
from cronledger.domain.triggers import At, Cron, Every, Trigger, validate_trigger
from cronledger.domain.validation import validate_schedule_id, validate_spec, validate_target
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
from cronledger.errors import InvalidInput

# Every key of a schedule table, with a one-line description (used in error messages).
KEYS: dict[str, str] = {
    "cron": "5-field cron expression or @daily etc. (one of cron / every / at)",
    "timezone": "IANA zone of the cron expression (cron only; default UTC)",
    "every": "interval such as '30s' or '1h' (one of cron / every / at)",
    "anchor": "instant the interval is aligned to (every only; default: when registered)",
    "at": "one instant, ISO-8601 with an offset (one of cron / every / at)",
    "command": "argv list, program first (one of command / call)",
    "call": "name of a registered in-process callable (one of command / call)",
    "env": "table of environment variables (command only)",
    "cwd": "working directory (command only)",
    "fallback": "argv run when the command cannot be spawned (command only)",
    "concurrency": "forbid | replace | queue-one | allow (default forbid)",
    "misfire": "skip | catch-up (default skip)",
    "misfire_grace": "how late a fire may still run (default: the engine's option, 60s)",
    "catch_up_window": "with catch-up: older missed fires are skipped",
    "priority": "dispatch priority, 0 or more, higher first (default 0)",
    "retries": "extra attempts after a failure (default 0)",
    "backoff": "wait before the first retry, doubling after (default 1s)",
    "max_backoff": "longest wait between retries (default 1h, at least backoff)",
    "timeout": "a run longer than this is cancelled and counts as failed",
    "active_hours": "'08:00-20:00', optional '@Zone', or {start, end, timezone}",
    "quiet_hours": "'22:00-06:00', optional '@Zone', or {start, end, timezone}",
    "jitter": "delay each fire by a deterministic amount up to this",
    "fire_limit": "stop after this many fires",
    "paused": "desired paused state (default: leave as it is)",
}
TRIGGER_KEYS = ("cron", "every", "at")
TARGET_KEYS = ("command", "call")
COMMAND_ONLY = ("env", "cwd", "fallback")
TOP_LEVEL = ("options", "schedules")

# Names people reach for, and the key that means it.
_HINTS = {
    "max_attempts": "use retries = N, the extra attempts after the first: max_attempts = N + 1",
    "attempts": "use retries = N (extra attempts after the first)",
    "retry": "use retries = N, backoff and max_backoff",
    "tz": "use timezone",
    "schedule": "use cron, every or at",
    "interval": "use every",
    "expr": "use cron",
    "argv": "use command",
    "args": "use command",
    "principal": "a file manages system:cron schedules; it has no principal key",
    "enabled": "use paused = true / false",
}

_CONCURRENCY = {
    "forbid": ConcurrencyPolicy.FORBID,
    "replace": ConcurrencyPolicy.REPLACE,
    "queue_one": ConcurrencyPolicy.QUEUE_ONE,
    "allow": ConcurrencyPolicy.ALLOW,
}
_MISFIRE = {"skip": MisfirePolicy.SKIP, "catch_up": MisfirePolicy.CATCH_UP}
_HOURS_RE = re.compile(r"^\s*(\S+?)\s*-\s*(\S+?)\s*(?:@\s*(\S+)\s*)?$")
_TOML_AT_RE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|(end of document))\)$")
_SPEC_FIELDS = {  # field names in domain validation errors -> key in the file
    "trigger.expr": "cron",
    "trigger.timezone": "timezone",
    "trigger.interval": "every",
    "trigger.anchor": "anchor",
    "trigger.at": "at",
    "target.argv": "command",
    "target.fallback": "fallback",
    "target.env": "env",
    "target.name": "call",
    "target": "command",
    "retry.max_attempts": "retries",
    "retry.backoff": "backoff",
    "retry.max_backoff": "max_backoff",
}


@attrs.frozen
class SchedulesFile:
    """A parsed, validated schedules file."""

    path: str
    schedules: tuple[ScheduleSpec, ...]  # in file order
    paused: Mapping[str, bool]  # desired paused state, where the file gives one
    options: Options | None  # when the file has an [options] table
    unanchored: frozenset[str] = frozenset()  # ids whose `every` has no explicit anchor

    def plan(
        self, snapshot: Snapshot, now: int, *, fires: int = 5, prune: bool = True
    ) -> ApplyPlan:
        """What applying this file to `snapshot` at `now` does (domain/apply_plan.py)."""
        return plan_apply(
            snapshot,
            self.schedules,
            now,
            paused=self.paused,
            options=self.options,
            unanchored=self.unanchored,
            fires=fires,
            prune=prune,
        )


def load_schedules(
    path: str | Path, *, now_ms: int, base_options: Options | None = None
) -> SchedulesFile:
    """Read and validate a schedules file (see `parse_schedules`)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(
            "file", f"{file} does not exist", "pass the path of a schedules file"
        ) from None
    except IsADirectoryError:
        raise InvalidInput("file", f"{file} is a directory", "pass a .toml file") from None
    except UnicodeDecodeError as error:
        raise InvalidInput(
            "file", f"{file} is not UTF-8 text ({error.reason})", "save it as UTF-8"
        ) from None
    except OSError as error:
        raise InvalidInput(
            "file", f"{file} cannot be read: {error.strerror}", "check the path"
        ) from None
    return parse_schedules(
        text,
        now_ms=now_ms,
        source=str(file),
        base_options=base_options,
        base_dir=os.path.dirname(os.path.abspath(file)),
    )


def parse_schedules(
    text: str,
    *,
    now_ms: int,
    source: str = "<string>",
    base_options: Options | None = None,
    base_dir: str | None = None,
) -> SchedulesFile:
    """Parse the text of a schedules file.

    `now_ms` anchors an `every` without an anchor (the planner keeps a stored anchor, see
    domain/apply_plan.py). A one-shot `at` in the past is accepted here, so a file stays
    loadable after its one-shot fired; the planner refuses to add or change one. The
    `[options]` table is applied on top of `base_options` (default `Options()`: keys left out
    take their defaults, so the table states the options completely). A relative `cwd` is
    resolved against `base_dir` (`load_schedules`: the file's directory).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _toml_error(source, str(error)) from None
    for key, value in data.items():
        if key not in TOP_LEVEL:
            raise _top_level_error(key, value)
    options = None
    if "options" in data:
        options = _options(data["options"], base_options or Options())
    tables = data.get("schedules", {})
    if not isinstance(tables, dict):
        raise InvalidInput(
            "schedules", "is not a table", "write one [schedules.NAME] table per schedule"
        )
    specs: list[ScheduleSpec] = []
    paused: dict[str, bool] = {}
    unanchored: set[str] = set()
    for name, table in tables.items():
        where = f"schedules.{_quoted(name)}"
        spec = spec_from_table(
            name, table, now_ms=now_ms, where=where, past_at_ok=True, base_dir=base_dir
        )
        specs.append(spec)
        state = paused_from_table(table, where=where)
        if state is not None:
            paused[name] = state
        if isinstance(spec.trigger, Every) and "anchor" not in table:
            unanchored.add(name)
    return SchedulesFile(
        path=source,
        schedules=tuple(specs),
        paused=Map(paused),
        options=options,
        unanchored=frozenset(unanchored),
    )


def paused_from_table(table: Mapping[str, Any], *, where: str = "") -> bool | None:
    """The `paused` key of a schedule table: True, False, or None when it is not given."""
    if "paused" not in table:
        return None
    value = table["paused"]
    if not isinstance(value, bool):
        raise InvalidInput(
            _at(where, "paused"),
            f"{value!r} is not true or false",
            "write paused = true or paused = false",
        )
    return value


def spec_from_table(
    name: str,
    table: Mapping[str, Any],
    *,
    now_ms: int,
    where: str = "",
    past_at_ok: bool = False,
    base_dir: str | None = None,
    new_trigger: bool = True,
) -> ScheduleSpec:
    """Validate one schedule table (file keys, see `KEYS`) into a `ScheduleSpec`.

    Errors are InvalidInput whose field is `where.key` (or the bare key when `where` is empty).
    An `every` without `anchor` is anchored at `now_ms`. An `at` must be after `now_ms` unless
    `past_at_ok` (used for files, where the planner decides). `paused` is checked but is not
    part of a spec: read it with `paused_from_table`. A relative `cwd` is joined to `base_dir`
    when one is given (the job runs wherever the daemon was started otherwise).
    """
    table_field = where or "schedule"
    if not isinstance(table, Mapping):
        raise InvalidInput(
            table_field,
            f"is a {_kind(table)}, not a table",
            "write the schedule as [schedules.NAME] followed by key = value lines",
        )
    _check_keys(table, where)
    try:
        validate_schedule_id(name, table_field)
    except InvalidInput as error:
        raise InvalidInput(table_field, error.problem, error.fix) from None
    p = _Parser(table, where, now_ms, base_dir)
    trigger = p.trigger(past_at_ok, new_trigger)
    target = p.target()
    concurrency = p.choice("concurrency", _CONCURRENCY, ConcurrencyPolicy.FORBID)
    misfire = p.choice("misfire", _MISFIRE, MisfirePolicy.SKIP)
    catch_up_window = p.duration("catch_up_window")
    if catch_up_window is not None and misfire is not MisfirePolicy.CATCH_UP:
        raise InvalidInput(
            p.field("catch_up_window"),
            'only applies when misfire = "catch-up"',
            'set misfire = "catch-up", or drop catch_up_window',
        )
    timeout = p.duration("timeout")
    if timeout == 0:
        raise InvalidInput(
            p.field("timeout"), "is zero", "use a positive duration, or leave it out"
        )
    zone = trigger.timezone if isinstance(trigger, Cron) else "UTC"
    active = p.hours("active_hours", zone)
    quiet = p.hours("quiet_hours", zone)
    if active is not None and quiet is not None:
        try:
            gate_opens_at(active, quiet, now_ms)
        except InvalidInput as error:
            raise InvalidInput(p.field("quiet_hours"), error.problem, error.fix) from None
    grace = p.duration("misfire_grace")
    spec = ScheduleSpec(
        id=name,
        trigger=trigger,
        target=target,
        concurrency=concurrency,
        misfire=misfire,
        misfire_grace_ms=grace,
        catch_up_window_ms=catch_up_window,
        priority=p.integer("priority", 0, 0),
        retry=p.retry(),
        timeout_ms=timeout,
        active_hours=active,
        quiet_hours=quiet,
        jitter_ms=p.duration("jitter") or 0,
        fire_limit=p.integer("fire_limit", None, 1),
    )
    check_at = now_ms
    if past_at_ok and isinstance(trigger, At):
        check_at = min(now_ms, trigger.instant_ms - 1)
    try:
        validate_spec(spec, now_ms=check_at, new_trigger=new_trigger)
    except InvalidInput as error:
        raise _renamed(error, where) from None
    paused_from_table(table, where=where)
    return spec


# --- one table ------------------------------------------------------------------------------


class _Parser:
    """Reads the keys of one schedule table, each error naming `where.key`."""

    def __init__(
        self, table: Mapping[str, Any], where: str, now_ms: int, base_dir: str | None = None
    ) -> None:
        self.base_dir = base_dir
        self.table = table
        self.where = where
        self.now_ms = now_ms

    def field(self, key: str) -> str:
        return _at(self.where, key)

    def has(self, key: str) -> bool:
        return key in self.table

    def string(self, key: str, example: str) -> str | None:
        if key not in self.table:
            return None
        value = self.table[key]
        if not isinstance(value, str):
            raise InvalidInput(
                self.field(key), f"{value!r} is a {_kind(value)}, not text", f"write {example}"
            )
        return value

    def integer(self, key: str, default: int | None, low: int) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidInput(
                self.field(key), f"{value!r} is not a whole number", f"write e.g. {key} = {low + 2}"
            )
        if value < low:
            problem = f"{value} is negative" if low == 0 else f"{value} is less than {low}"
            raise InvalidInput(self.field(key), problem, f"use {low} or more")
        return value

    def duration(self, key: str) -> int | None:
        if key not in self.table:
            return None
        value = self.table[key]
        field = self.field(key)
        if isinstance(value, timedelta):
            return int(value.total_seconds() * 1000)
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise InvalidInput(
                field,
                f"{value!r} has no unit",
                f'write it as text with a unit, e.g. {key} = "{value}s"; units: ms s m h d w',
            )
        if not isinstance(value, str):
            raise InvalidInput(field, f"{value!r} is not a duration", 'write e.g. "90s" or "1h30m"')
        return parse_duration(value, field)

    def instant(self, key: str) -> int:
        value = self.table[key]
        field = self.field(key)
        example = "2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00"
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInput(
                    field, f"{self.table[key]!r} is not an ISO-8601 instant", f"write {example}"
                ) from None
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise InvalidInput(
                    field,
                    f"{value.isoformat()} has no UTC offset, so the instant is ambiguous",
                    f"add Z or an offset: {example}",
                )
            return to_ms(value, field)
        if isinstance(value, date | time):
            raise InvalidInput(
                field, f"{value.isoformat()} is not a date and time", f"write {example}"
            )
        raise InvalidInput(field, f"{value!r} is not an instant", f"write {example}")

    def argv(self, key: str) -> tuple[str, ...]:
        value = self.table[key]
        field = self.field(key)
        if isinstance(value, str):
            try:
                suggestion = json.dumps(shlex.split(value))
            except ValueError:
                suggestion = '["program", "arg"]'
            raise InvalidInput(
                field,
                "is a string; commands are argv lists, never run through a shell",
                f"write {key} = {suggestion}",
            )
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise InvalidInput(
                field, f"{value!r} is not a list of strings", f'write {key} = ["echo", "hello"]'
            )
        if not value or not value[0]:
            raise InvalidInput(field, "is empty", f'write {key} = ["program", "arg", ...]')
        return tuple(value)

    def choice(self, key: str, choices: Mapping[str, Any], default: Any) -> Any:
        text = self.string(key, f'{key} = "{next(iter(choices))}"')
        if text is None:
            return default
        value = choices.get(text.strip().lower().replace("-", "_"))
        if value is None:
            names = ", ".join(c.replace("_", "-") for c in choices)
            raise InvalidInput(self.field(key), f"{text!r} is not a policy", f"choose {names}")
        return value

    def trigger(self, past_at_ok: bool, new: bool = True) -> Trigger:
        given = [k for k in TRIGGER_KEYS if k in self.table]
        if not given:
            raise InvalidInput(
                self.where or "schedule",
                "has no trigger",
                'add exactly one of cron = "0 3 * * *", every = "5m" or '
                'at = "2026-12-01T09:00:00Z"',
            )
        if len(given) > 1:
            raise InvalidInput(
                self.field(given[1]),
                f"{given[0]} and {given[1]} are both set",
                "keep exactly one of cron, every and at",
            )
        kind = given[0]
        if "timezone" in self.table and kind != "cron":
            raise InvalidInput(
                self.field("timezone"),
                f"only applies to cron, not to {kind}",
                'drop it; for active or quiet hours in a zone write "08:00-20:00@Europe/Berlin"',
            )
        if "anchor" in self.table and kind != "every":
            raise InvalidInput(
                self.field("anchor"), f"only applies to every, not to {kind}", "drop it"
            )
        trigger: Trigger
        if kind == "cron":
            expr = self.string("cron", 'cron = "0 3 * * *"')
            zone = self.string("timezone", 'timezone = "Europe/Berlin"')
            trigger = Cron(expr or "", "UTC" if zone is None else zone)
        elif kind == "every":
            interval = self.duration("every")
            assert interval is not None
            anchor = self.instant("anchor") if "anchor" in self.table else self.now_ms
            trigger = Every(interval, anchor)
        else:
            trigger = At(self.instant("at"))
        now = self.now_ms
        if past_at_ok and isinstance(trigger, At):
            now = min(now, trigger.instant_ms - 1)
        try:
            validate_trigger(trigger, now_ms=now, new=new)
        except InvalidInput as error:
            raise _renamed(error, self.where) from None
        return trigger

    def target(self) -> Target:
        given = [k for k in TARGET_KEYS if k in self.table]
        if not given:
            raise InvalidInput(
                self.where or "schedule",
                "has no target",
                'add command = ["program", "arg"] or call = "registered-name"',
            )
        if len(given) > 1:
            raise InvalidInput(
                self.field("call"),
                "command and call are both set",
                "keep one: command runs a process, call a registered callable",
            )
        target: Target
        if given[0] == "call":
            for key in COMMAND_ONLY:
                if key in self.table:
                    raise InvalidInput(
                        self.field(key), "only applies to command, not to call", "drop it"
                    )
            name = self.string("call", 'call = "registered-name"') or ""
            target = Call(name)
        else:
            argv = self.argv("command")
            fallback = self.argv("fallback") if "fallback" in self.table else None
            cwd = self.string("cwd", 'cwd = "/srv/app"')
            if cwd == "":
                raise InvalidInput(self.field("cwd"), "is empty", "give a directory or drop it")
            if cwd is not None and self.base_dir is not None:
                cwd = resolve_cwd(cwd, self.base_dir)
            target = Command(argv, env=self.env(), cwd=cwd, fallback=fallback)
        try:
            validate_target(target)
        except InvalidInput as error:
            raise _renamed(error, self.where) from None
        return target

    def env(self) -> tuple[tuple[str, str], ...]:
        if "env" not in self.table:
            return ()
        value = self.table["env"]
        field = self.field("env")
        example = 'env = { PGHOST = "db", LANG = "C.UTF-8" }'
        if not isinstance(value, dict):
            raise InvalidInput(field, f"{value!r} is not a table", f"write {example}")
        for key, text in value.items():
            if not isinstance(text, str):
                raise InvalidInput(
                    f"{field}.{key}", f"{text!r} is not text", f'quote it: {key} = "{text}"'
                )
            if not key or "=" in key or "\0" in key or "\0" in text:
                raise InvalidInput(
                    f"{field}.{key}", "is not an environment variable", f"write {example}"
                )
        # Sorted, so that reordering the table is not a change.
        return tuple(sorted(value.items()))

    def retry(self) -> Retry:
        retries = self.integer("retries", 0, 0)
        backoff = self.duration("backoff")
        max_backoff = self.duration("max_backoff")
        if retries == 0:
            for key in ("backoff", "max_backoff"):
                if key in self.table:
                    raise InvalidInput(
                        self.field(key),
                        "only applies when retries is 1 or more",
                        "set retries = N, or drop it",
                    )
            return NO_RETRY
        backoff = NO_RETRY.backoff_ms if backoff is None else backoff
        if max_backoff is None:
            max_backoff = max(NO_RETRY.max_backoff_ms, backoff)
        elif max_backoff < backoff:
            raise InvalidInput(
                self.field("max_backoff"),
                f"{_dur(max_backoff)} is shorter than backoff ({_dur(backoff)})",
                "make max_backoff at least backoff",
            )
        return Retry(max_attempts=retries + 1, backoff_ms=backoff, max_backoff_ms=max_backoff)

    def hours(self, key: str, default_zone: str) -> Window | None:
        if key not in self.table:
            return None
        value = self.table[key]
        field = self.field(key)
        example = f'{key} = "08:00-20:00" or "08:00-20:00@Europe/Berlin"'
        zone_field = field
        if isinstance(value, str):
            match = _HOURS_RE.match(value)
            if match is None:
                raise InvalidInput(field, f"{value!r} is not a window", f"write {example}")
            window = Window(match.group(1), match.group(2), match.group(3) or default_zone)
        elif isinstance(value, dict):
            unknown = sorted(set(value) - {"start", "end", "timezone"})
            if unknown:
                raise InvalidInput(
                    f"{field}.{unknown[0]}", "is not a window key", "use start, end and timezone"
                )
            for part in ("start", "end"):
                if not isinstance(value.get(part), str):
                    raise InvalidInput(
                        f"{field}.{part}", "is missing or not text", f'write {part} = "08:00"'
                    )
            zone = value.get("timezone", default_zone)
            if not isinstance(zone, str):
                raise InvalidInput(
                    f"{field}.timezone", f"{zone!r} is not text", 'write timezone = "UTC"'
                )
            window = Window(value["start"], value["end"], zone)
            zone_field = f"{field}.timezone"
        else:
            raise InvalidInput(field, f"{value!r} is not a window", f"write {example}")
        try:
            validate_window(window, key)
        except InvalidInput as error:
            target = zone_field if error.field.endswith(".timezone") else field
            raise InvalidInput(target, error.problem, error.fix) from None
        return window


# --- errors ---------------------------------------------------------------------------------


def resolve_cwd(cwd: str, base_dir: str) -> str:
    """A relative `cwd` joined to `base_dir`. Only "." parts are dropped: a ".." is left for
    the kernel to resolve when the job starts, as a shell's `cd` would through a symlink."""
    if os.path.isabs(cwd):
        return cwd
    parts = [p for p in cwd.split(os.sep) if p not in ("", ".")]
    return os.path.join(base_dir, *parts) if parts else base_dir


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _renamed(error: InvalidInput, where: str) -> InvalidInput:
    """A domain validation error, with its field named as the file names it."""
    key = _SPEC_FIELDS.get(error.field, error.field)
    if key == "id":
        return InvalidInput(where or "id", error.problem, error.fix)
    return InvalidInput(_at(where, key), error.problem, error.fix)


def _check_keys(table: Mapping[str, Any], where: str) -> None:
    for key in table:
        if key in KEYS:
            continue
        field = _at(where, str(key))
        if key in _HINTS:
            raise InvalidInput(field, "is not a schedule key", _HINTS[key])
        close = difflib.get_close_matches(str(key), KEYS, n=1)
        known = ", ".join(KEYS)
        fix = (f"did you mean {close[0]}? " if close else "") + f"known keys: {known}"
        raise InvalidInput(field, "is not a schedule key", fix)


def _toml_error(source: str, message: str) -> InvalidInput:
    """tomllib's message, with the file, line and column first and a fix for duplicates."""
    match = _TOML_AT_RE.search(message)
    where = source
    if match:
        if match.group(3):
            where = f"{source} (at the end)"
        else:
            where = f"{source}:{match.group(1)}:{match.group(2)}"
        message = message[: match.start()]
    fix = "fix the TOML syntax (https://toml.io)"
    if "Cannot declare" in message or "Cannot overwrite" in message:
        fix = "each schedule name and each key may appear once: rename or merge the duplicates"
    return InvalidInput("file", f"{where}: not valid TOML: {message}", fix)


def _top_level_error(key: str, value: object) -> InvalidInput:
    if isinstance(value, dict) and any(k in value for k in (*TRIGGER_KEYS, *TARGET_KEYS)):
        fix = f"a schedule goes under schedules: write [schedules.{_quoted(key)}]"
    else:
        fix = "a schedules file has [options] and [schedules.NAME] tables"
    return InvalidInput(key, "is not a section of a schedules file", fix)


def _options(table: object, base: Options) -> Options:
    if not isinstance(table, dict):
        raise InvalidInput("options", "is not a table", "write [options] then key = value lines")
    try:
        return options_from_mapping(table, base)
    except InvalidInput as error:
        if error.field.startswith("options."):
            raise
        key = "misfire_grace" if error.field == "misfire_grace_ms" else error.field
        raise InvalidInput(f"options.{key}", error.problem, error.fix) from None


def _quoted(name: str) -> str:
    """A table key as TOML writes it: bare when it can be, else quoted."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _kind(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "list"}
    for cls, name in names.items():
        if isinstance(value, cls):
            return name
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime | date | time):
        return "date/time"
    return type(value).__name__


def _dur(ms: int) -> str:
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
