"""Commands that read the ledger: list, show, status, history, logs."""

from __future__ import annotations

import argparse
from datetime import datetime
from zoneinfo import ZoneInfo

from cronledger.adapters import audit
from cronledger.adapters.cli import output as o
from cronledger.adapters.cli.context import Context, flags
from cronledger.adapters.ledger_store import redact_url
from cronledger.domain.due import upcoming_fires
from cronledger.domain.health import health
from cronledger.domain.hours import Window
from cronledger.domain.instants import parse_instant
from cronledger.domain.state import ScheduleState, Snapshot
from cronledger.domain.triggers import Cron, describe
from cronledger.domain.values import Call, Command, Options, ScheduleSpec, Target, misfire_grace
from cronledger.errors import InvalidInput, UnknownSchedule
from cronledger.projectors.history import RunRecord


def current_state(ctx: Context) -> Snapshot:
    ledger = ctx.open()
    try:
        return audit.state_at(ledger)[0]
    finally:
        ledger.close()


def target_text(target: Target) -> str:
    if isinstance(target, Call):
        return f"call {target.name}"
    assert isinstance(target, Command)
    return " ".join(target.argv)


def _window_text(window: Window | None) -> str | None:
    """As --active-hours takes it: 09:00-17:00@Europe/Berlin."""
    return None if window is None else f"{window.start}-{window.end}@{window.timezone}"


def _daemons_text(daemons: list[tuple[str | None, bool | None]]) -> str:
    """'unnamed running, node n1 not running' (the nodes with active runs)."""
    words = {True: "running", False: "not running", None: "unknown"}
    return ", ".join(
        f"{'node ' + node if node else 'unnamed'} {words[running]}" for node, running in daemons
    )


def _status(state: ScheduleState) -> str:
    if state.complete:
        return "complete"
    if state.paused:
        return "paused"
    if state.deferred_until is not None:
        return "deferred"
    return "active"


def list_schedules(ctx: Context, args: argparse.Namespace) -> int:
    snapshot = current_state(ctx)
    states = [snapshot.schedules[k] for k in sorted(snapshot.schedules)]
    if ctx.json:
        o.emit_json(
            {"position": snapshot.position, "schedules": [audit.schedule_json(s) for s in states]}
        )
        return 0
    if not states:
        o.line("no schedules (add one with `cronledger add` or `cronledger apply FILE`)")
        return 0
    rows = [
        (
            s.spec.id,
            describe(s.spec.trigger),
            s.spec.concurrency.value,
            _status(s),
            o.when(s.upcoming_fire_at),
            s.last_outcome or "-",
            target_text(s.spec.target),
        )
        for s in states
    ]
    o.table(
        None,
        ("schedule", "trigger", "policy", "state", "next fire", "last outcome", "target"),
        rows,
    )
    return 0


def _grace(spec: ScheduleSpec, options: Options) -> str:
    grace = o.duration(misfire_grace(spec, options))
    return grace if spec.misfire_grace_ms is not None else f"{grace} (engine default)"


def _zone(state: ScheduleState) -> str:
    trigger = state.spec.trigger
    return trigger.timezone if isinstance(trigger, Cron) else "UTC"


def show(ctx: Context, args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise InvalidInput("--runs", f"must be at least 1, got {args.runs}", "e.g. --runs 10")
    ledger = ctx.open()
    try:
        snapshot = audit.state_at(ledger)[0]
        state = snapshot.schedules.get(args.name)
        if state is None:
            raise UnknownSchedule(args.name)
        with flags(limit="--runs"):
            runs = audit.run_history(ledger, schedule_id=args.name, limit=args.runs)
    finally:
        ledger.close()
    zone = _zone(state)
    fires = upcoming_fires(state, 5)
    local = [  # the schedule's wall clock, with its offset, to the ms like every instant
        datetime.fromtimestamp(t / 1000, ZoneInfo(zone)).isoformat(timespec="milliseconds")
        for t in fires
    ]
    if ctx.json:
        o.emit_json(
            {
                "schedule": audit.schedule_json(state),
                "misfire_grace_ms": misfire_grace(state.spec, snapshot.options),
                "next_fires": [
                    {**audit.instant_json("at", t), "local": lt}
                    for t, lt in zip(fires, local, strict=True)
                ],
                "zone": zone,
                "recent_runs": [audit.run_json(r) for r in runs],
            }
        )
        return 0
    spec = state.spec
    o.pairs(
        f"schedule {spec.id}",
        [
            ("trigger", describe(spec.trigger)),
            ("target", target_text(spec.target)),
            ("concurrency", spec.concurrency.value),
            ("misfire", f"{spec.misfire.value}, grace {_grace(spec, snapshot.options)}"),
            ("priority", spec.priority),
            (
                "retries",
                f"{spec.retry.max_attempts - 1} (backoff {o.duration(spec.retry.backoff_ms)})",
            ),
            ("timeout", o.duration(spec.timeout_ms)),
            ("active hours", _window_text(spec.active_hours)),
            ("quiet hours", _window_text(spec.quiet_hours)),
            ("jitter", o.duration(spec.jitter_ms)),
            ("state", _status(state)),
            ("next fire", o.when(state.upcoming_fire_at)),
            ("due at", o.when(state.upcoming_due_at)),
            ("last fired for", o.when(state.last_fired_for)),
            ("last outcome", state.last_outcome),
            ("consecutive failures", state.consecutive_failures),
            ("fires", state.fire_count),
        ],
    )
    o.line()
    o.line(f"next {len(fires)} fire times ({zone}):")
    for lt in local:
        o.line(f"  {lt}")
    o.line()
    _runs_table("recent runs", runs)
    return 0


def _runs_table(title: str, runs: list[RunRecord]) -> None:
    if not runs:
        o.line(f"{title}: none")
        return
    rows = [
        (
            r.run_id,
            r.outcome + (f" ({r.reason})" if r.reason and r.reason != r.outcome else ""),
            o.when(r.scheduled_for),
            o.when(r.started_at),
            o.duration(r.duration_ms),
            r.exit_code if r.signal is None else f"signal {r.signal}",
        )
        for r in runs
    ]
    o.table(title, ("run", "outcome", "scheduled for", "started", "took", "exit"), rows)


def status(ctx: Context, args: argparse.Namespace) -> int:
    ledger = ctx.open()
    try:
        snapshot = audit.state_at(ledger)[0]
        daemons = audit.daemons(ledger, snapshot)
    finally:
        ledger.close()
    now = ctx.now()
    h = health(snapshot, now)
    entries = sorted(snapshot.entries.values(), key=lambda e: e.ready_key)
    runs = [snapshot.runs[k] for k in sorted(snapshot.runs)]
    if ctx.json:
        o.emit_json(
            {
                "health": audit.health_json(h),
                "options": audit.options_json(snapshot.options),
                **audit.instant_json("last_tick_at", snapshot.counters.last_tick_at),
                "queue": [audit.entry_json(e) for e in entries],
                "runs": [audit.active_run_json(r) for r in runs],
                "daemons": [{"node": node, "running": running} for node, running in daemons],
            }
        )
        return 0
    opts = snapshot.options
    o.pairs(
        "status",
        [
            ("ledger", f"{redact_url(ctx.ledger_url)} (position {h.position})"),
            ("schedules", h.schedules),
            ("active runs", f"{h.active_runs} of max_workers {opts.max_workers}"),
            ("queue", f"{h.pending} pending, {h.held} held, {h.assigned} assigned"),
            ("oldest pending", o.duration(h.oldest_pending_ms)),
            ("scheduler lag", o.duration(h.lag_ms)),
            ("last tick", o.ago(now, snapshot.counters.last_tick_at)),
            ("draining", h.draining),
            ("daemons", _daemons_text(daemons)),
        ],
    )
    if runs:
        o.line()
        o.table(
            "active runs",
            ("run", "node", "started", "pid", "deadline", "cancelling"),
            [
                (
                    r.run_id,
                    r.node or "-",
                    o.when(r.started_at),
                    r.pid,
                    o.when(r.deadline),
                    r.cancelling,
                )
                for r in runs
            ],
        )
    waiting = [e for e in entries if e.run_id is None]
    if waiting:
        o.line()
        o.table(
            "queue",
            ("entry", "status", "priority", "queued", "not before", "hold"),
            [
                (
                    e.id,
                    e.status.value,
                    e.priority,
                    o.when(e.queued_at),
                    o.when(e.not_before),
                    e.hold_reason,
                )
                for e in waiting[:50]
            ],
        )
        if len(waiting) > 50:
            o.line(f"... and {len(waiting) - 50} more (use --json for all)")
    return 0


def history(ctx: Context, args: argparse.Namespace) -> int:
    since = parse_instant(args.since, "--since") if args.since else None
    if args.limit is not None and args.limit < 1:
        raise InvalidInput("--limit", f"must be at least 1, got {args.limit}", "e.g. --limit 20")
    ledger = ctx.open()
    try:
        with flags(since="--since", limit="--limit"):
            runs = audit.run_history(ledger, schedule_id=args.name, since=since, limit=args.limit)
    finally:
        ledger.close()
    if ctx.json:
        o.emit_json({"schedule": args.name, "runs": [audit.run_json(r) for r in runs]})
        return 0
    _runs_table(f"history of {args.name}" if args.name else "history", runs)
    return 0


def logs(ctx: Context, args: argparse.Namespace) -> int:
    ledger = ctx.open()
    try:
        out = audit.run_output(ledger, args.run_id, ctx.runs_dir())
    except InvalidInput as error:  # the Python API's parameter name; name the CLI's argument
        field = "RUN_ID" if error.field == "run_id" else error.field
        raise InvalidInput(field, error.problem, error.fix) from None
    finally:
        ledger.close()
    if ctx.json:
        o.emit_json(audit.output_json(out))
        return 0
    r = out.run
    o.line(f"run {r.run_id}: {r.outcome}" + (f" ({r.reason})" if r.reason else ""))
    if r.error:
        o.line(f"error: {r.error}")
    sections: list[tuple[str, str | None, int | None, list[str]]]
    if out.files:  # the run's files are still there: their (longer) tails
        sections = [
            ("stdout", out.stdout, out.stdout_dropped, []),
            ("stderr", out.stderr, out.stderr_dropped, []),
        ]
    else:  # what the outcome fact recorded (a call's stderr is its traceback)
        recorded = ["recorded in the ledger"]
        sections = [
            ("stdout", out.recorded_stdout, out.recorded_stdout_dropped, recorded),
            ("stderr", out.recorded_stderr, out.recorded_stderr_dropped, recorded),
        ]
    for name, text, dropped, notes in sections:
        if text is None:  # a call's stdout, a run lost or never spawned, an older fact
            o.line(f"--- {name} (none recorded)")
            continue
        notes = [*notes, f"{dropped:,} earlier bytes dropped"] if dropped else notes
        o.line(f"--- {name}" + (f" ({'; '.join(notes)})" if notes else ""))
        o.line(text.rstrip("\n") or "(empty)")
    return 0
