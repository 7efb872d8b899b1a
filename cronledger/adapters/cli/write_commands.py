"""Commands that record facts: add, update, pause, resume, remove, trigger, submit, apply."""

from __future__ import annotations

import argparse
from typing import Any

import attrs

from cronledger.adapters import audit
from cronledger.adapters.cli import output as o
from cronledger.adapters.cli.context import Context, sqlite_path
from cronledger.adapters.cli.schedule_flags import (
    as_flag_error,
    check_combination,
    overlay,
    table_from_args,
    table_from_spec,
)
from cronledger.adapters.cli.values import duration
from cronledger.adapters.engine import Engine
from cronledger.adapters.schedules_file import TRIGGER_KEYS, load_schedules, spec_from_table
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.apply_plan import ApplyPlan
from cronledger.domain.state import EMPTY
from cronledger.domain.validation import validate_target
from cronledger.domain.values import Call, Command, ScheduleSpec, Target
from cronledger.errors import InvalidInput, UnknownSchedule

CLI_PRINCIPAL = "user:cli"  # `apply` manages system:cron schedules only; these are left alone


def _spec(
    name: str,
    table: dict[str, Any],
    now: int,
    *,
    past_at_ok: bool = False,
    new_trigger: bool = True,
) -> ScheduleSpec:
    try:
        spec = spec_from_table(
            name, table, now_ms=now, past_at_ok=past_at_ok, new_trigger=new_trigger
        )
    except InvalidInput as error:
        raise as_flag_error(error) from None
    return attrs.evolve(spec, principal=CLI_PRINCIPAL)


def _report(
    ctx: Context, engine: Engine, events: tuple[ev.Event, ...], done: str, data: dict[str, Any]
) -> None:
    if ctx.json:
        o.emit_json({**data, "events": len(events), "position": engine.snapshot.position})
    else:
        o.line(done)


def add(ctx: Context, args: argparse.Namespace) -> int:
    table = table_from_args(args)
    if not any(k in table for k in ("cron", "every", "at")):
        raise InvalidInput("NAME", "has no trigger", "give one of --cron, --every or --at")
    if "call" not in table and "command" not in table:
        raise InvalidInput(
            "COMMAND", "is missing", "end with `-- PROGRAM ARGS...`, or give --call NAME"
        )
    check_combination(table)
    spec = _spec(args.name, table, ctx.now())  # bad input fails here, before a ledger exists
    engine = ctx.engine()
    events = engine.execute(cmd.AddSchedule(spec))
    added = events[0]
    assert isinstance(added, ev.ScheduleAdded)
    _report(
        ctx,
        engine,
        events,
        f"added {spec.id}: next fire {o.when(added.next_fire_at)}",
        {"added": spec.id, **audit.instant_json("next_fire_at", added.next_fire_at)},
    )
    return 0


def update(ctx: Context, args: argparse.Namespace) -> int:
    changes = table_from_args(args)
    if not changes:
        raise InvalidInput(
            "update", "nothing to change", "give the flags to change, e.g. --every 5m"
        )
    engine = ctx.engine(must_exist=True)
    state = engine.snapshot.schedules.get(args.name)
    if state is None:
        raise UnknownSchedule(args.name)
    merged = overlay(table_from_spec(state.spec), changes)
    check_combination(merged)
    trigger_given = any(k in changes for k in (*TRIGGER_KEYS, "timezone", "anchor"))
    spec = _spec(
        args.name, merged, ctx.now(), past_at_ok="at" not in changes, new_trigger=trigger_given
    )
    spec = attrs.evolve(spec, principal=state.spec.principal)
    if spec == state.spec:
        _report(ctx, engine, (), f"{args.name} unchanged", {"updated": None, "schedule": args.name})
        return 0
    events = engine.execute(cmd.UpdateSchedule(spec))
    _report(ctx, engine, events, f"updated {args.name}", {"updated": args.name})
    return 0


def _simple(ctx: Context, command: cmd.UserCommand, name: str, verb: str) -> int:
    engine = ctx.engine(must_exist=True)
    events = engine.execute(command)  # an unknown name raises UnknownSchedule
    text = f"{verb} {name}" if events else f"{name}: nothing to do (already {verb})"
    _report(ctx, engine, events, text, {verb: name, "changed": bool(events)})
    return 0


def pause(ctx: Context, args: argparse.Namespace) -> int:
    return _simple(ctx, cmd.PauseSchedule(args.name, args.reason), args.name, "paused")


def resume(ctx: Context, args: argparse.Namespace) -> int:
    return _simple(ctx, cmd.ResumeSchedule(args.name), args.name, "resumed")


def remove(ctx: Context, args: argparse.Namespace) -> int:
    return _simple(ctx, cmd.RemoveSchedule(args.name), args.name, "removed")


def _on_entry(ctx: Context, command: cmd.UserCommand, entry_id: str, verb: str) -> int:
    """Hold, release or cancel a queue entry (an unknown id raises UnknownEntry: exit 2)."""
    engine = ctx.engine(must_exist=True)
    events = engine.execute(command)
    if not events:
        entry = engine.snapshot.entries[entry_id]
        text = f"{entry_id}: nothing to do (it is {entry.status.value})"
    elif isinstance(events[0], ev.RunCancelled):
        text = f"cancelling {entry_id}: its run {events[0].run_id} is stopped by the daemon"
    else:
        text = f"{verb} {entry_id}"
    _report(ctx, engine, events, text, {verb: entry_id, "changed": bool(events)})
    return 0


def hold(ctx: Context, args: argparse.Namespace) -> int:
    hold = cmd.HoldEntry(args.entry, args.reason or "manual_hold")
    return _on_entry(ctx, hold, args.entry, "held")


def release(ctx: Context, args: argparse.Namespace) -> int:
    return _on_entry(ctx, cmd.ReleaseEntry(args.entry), args.entry, "released")


def cancel(ctx: Context, args: argparse.Namespace) -> int:
    cancel = cmd.CancelEntry(args.entry, args.reason or "operator")
    return _on_entry(ctx, cancel, args.entry, "cancelled")


def trigger(ctx: Context, args: argparse.Namespace) -> int:
    engine = ctx.engine(must_exist=True)
    events = engine.execute(cmd.TriggerSchedule(args.name))
    request = events[0]
    assert isinstance(request, ev.TriggerRequested)
    _report(
        ctx,
        engine,
        events,
        f"triggered {args.name} (request {request.request_id}; the daemon's next tick runs it)",
        {"triggered": args.name, "request_id": request.request_id},
    )
    return 0


def submit(ctx: Context, args: argparse.Namespace) -> int:
    task = _task(args)  # bad input fails here, before a ledger exists
    engine = ctx.engine()
    events = engine.execute(task)
    queued = events[0]
    assert isinstance(queued, ev.EntryQueued)
    held = f", held ({args.hold}) until released" if args.hold else ""
    data = {"submitted": queued.entry_id, "held": args.hold}
    _report(ctx, engine, events, f"submitted {queued.entry_id}{held}", data)
    return 0


def _task(args: argparse.Namespace) -> cmd.SubmitTask:
    """`submit`'s flags as a validated command, recorded as `user:cli`'s."""
    argv = list(args.command or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    target: Target
    if args.call is not None:
        if argv:
            raise InvalidInput(
                "--call", "cannot be combined with a COMMAND after --", "give one of them"
            )
        target = Call(args.call)
    elif argv:
        target = Command(tuple(argv))
    else:
        raise InvalidInput(
            "COMMAND", "is missing", "end with `-- PROGRAM ARGS...`, or give --call NAME"
        )
    try:
        validate_target(target)
    except InvalidInput as error:
        flag = "--call" if args.call is not None else "COMMAND"
        raise InvalidInput(flag, error.problem, error.fix) from None
    if args.priority < 0:
        raise InvalidInput(
            "--priority", f"must be 0 or more, got {args.priority}", "e.g. --priority 5"
        )
    if args.retries < 0:
        raise InvalidInput(
            "--retries", f"must be 0 or more, got {args.retries}", "e.g. --retries 3"
        )
    return cmd.SubmitTask(
        target=target,
        priority=args.priority,
        hold=args.hold,
        max_attempts=args.retries + 1,
        backoff_ms=duration(args.backoff, "--backoff", zero_ok=True),
        timeout_ms=duration(args.timeout, "--timeout") if args.timeout is not None else None,
        principal=CLI_PRINCIPAL,
    )


def apply(ctx: Context, args: argparse.Namespace) -> int:
    now = ctx.now()
    file = load_schedules(args.file, now_ms=now)
    path = sqlite_path(ctx.ledger_url)
    if args.dry_run and path is not None and not path.exists():
        engine = None  # nothing to compare with, and a dry run creates nothing
        plan = file.plan(EMPTY, now, prune=not args.keep)
    else:
        engine = ctx.engine()
        plan = file.plan(engine.snapshot, now, prune=not args.keep)
    if ctx.json:
        document = plan.to_json()
    else:
        _print_plan(plan, args.file)
    if args.dry_run or plan.empty:
        if ctx.json:
            o.emit_json({**document, "applied": False, "dry_run": args.dry_run})
        elif not plan.empty:
            o.line("dry run: nothing was recorded")
        return 0
    assert engine is not None
    events = engine.execute_all(plan.commands)
    if ctx.json:
        o.emit_json({**document, "applied": True, "dry_run": False, "events": len(events)})
    else:
        o.line(
            f"applied: {len(events)} facts recorded (ledger position {engine.snapshot.position})"
        )
    return 0


def _print_plan(plan: ApplyPlan, path: str) -> None:
    if plan.empty:
        o.line(f"{path}: the ledger already matches; nothing to do")
        return
    rows = []
    for change in plan.changes:
        if change.action == "unchanged":
            continue
        before = ", ".join(o.when(t) for t in change.before[:3]) or "-"
        after = ", ".join(o.when(t) for t in change.after[:3]) or "-"
        rows.append(
            (change.action, change.schedule_id, ", ".join(change.fields) or "-", before, after)
        )
    o.table(
        f"plan for {path}", ("action", "schedule", "fields", "fires before", "fires after"), rows
    )
    if plan.options_changed:
        o.line(f"options: {', '.join(plan.options_changed)} change")
    unchanged = plan.count("unchanged")
    if unchanged:
        o.line(f"{unchanged} schedule(s) unchanged")
