"""The audit tools: explain, replay, verify, simulate."""

from __future__ import annotations

import argparse

from cronledger.adapters import audit
from cronledger.adapters.cli import output as o
from cronledger.adapters.cli.context import Context, flags
from cronledger.adapters.cli.read_commands import target_text
from cronledger.adapters.schedules_file import load_schedules
from cronledger.adapters.simulate import (
    Comparison,
    SimReport,
    compare,
    parse_outage,
    parse_runtime,
    simulate,
)
from cronledger.domain.instants import parse_instant
from cronledger.domain.triggers import describe
from cronledger.errors import InvalidInput, LedgerCorrupted


def explain(ctx: Context, args: argparse.Namespace) -> int:
    at = parse_instant(args.at, "--at") if args.at else None
    ledger = ctx.open()
    try:
        x = audit.explain_subject(ledger, args.subject, at)
    except InvalidInput as error:  # the explainer names its parameters; name the CLI's
        flag = {"at": "--at", "subject": "RUN_ID|NAME|REQUEST_ID"}.get(error.field, error.field)
        raise InvalidInput(flag, error.problem, error.fix) from None
    finally:
        ledger.close()
    if ctx.json:
        o.emit_json(x.to_json())
        return 0
    where = f" (ledger position {x.position}, {o.when(x.at)})" if x.position is not None else ""
    o.line(f"{x.kind} {x.subject}: {x.decision}{where}")
    o.line(f"rule: {x.rule}")
    o.line()
    for sentence in x.sentences:
        o.line(sentence)
    if x.inputs:
        o.line()
        o.pairs("inputs", list(x.inputs))
    if x.timeline:
        o.line()
        o.table("timeline", ("position", "fact"), list(x.timeline))
    return 0


def replay(ctx: Context, args: argparse.Namespace) -> int:
    if args.at is None and args.position is None:
        raise InvalidInput("replay", "needs a point in time", "give --at INSTANT or --position N")
    if args.at is not None and args.position is not None:
        raise InvalidInput("--at", "cannot be combined with --position", "give one of the two")
    at = parse_instant(args.at, "--at") if args.at else None
    ledger = ctx.open()
    try:
        with (
            o.progress("replaying", not ctx.json) as update,
            flags(at="--at", position="--position"),
        ):
            snapshot, position = audit.state_at(
                ledger, at=at, position=args.position, progress=update
            )
    finally:
        ledger.close()
    if ctx.json:
        o.emit_json({"position": position, **audit.snapshot_json(snapshot)})
        return 0
    point = f"--at {args.at}" if at is not None else f"--position {args.position}"
    o.line(
        f"state as of {point}: ledger position {position}, "
        f"last tick {o.when(snapshot.counters.last_tick_at)}"
    )
    o.line()
    states = [snapshot.schedules[k] for k in sorted(snapshot.schedules)]
    o.table(
        "schedules",
        ("schedule", "trigger", "paused", "next fire", "last fired for", "last outcome"),
        [
            (
                s.spec.id,
                describe(s.spec.trigger),
                s.paused,
                o.when(s.upcoming_fire_at),
                o.when(s.last_fired_for),
                s.last_outcome,
            )
            for s in states
        ],
    )
    entries = sorted(snapshot.entries.values(), key=lambda e: e.ready_key)
    o.line()
    o.table(
        "queue",
        ("entry", "status", "priority", "run", "hold"),
        [(e.id, e.status.value, e.priority, e.run_id, e.hold_reason) for e in entries],
    )
    o.line()
    o.table(
        "active runs",
        ("run", "assigned", "started", "pid"),
        [
            (r.run_id, o.when(r.assigned_at), o.when(r.started_at), r.pid)
            for r in (snapshot.runs[k] for k in sorted(snapshot.runs))
        ],
    )
    return 0


def verify(ctx: Context, args: argparse.Namespace) -> int:
    try:
        ledger = ctx.open()
        try:
            with o.progress("verifying", not ctx.json) as update:
                report = audit.verify_ledger(ledger, progress=update)
        finally:
            ledger.close()
    except LedgerCorrupted as error:  # a failed verification too (exit 1), not bad usage
        message = f"verify FAILED: {error}"
        o.err().print(message, markup=False)
        if ctx.json:
            o.emit_json(
                {
                    "ok": False,
                    "corrupted": {"position": error.position, "problem": error.problem},
                    "error": _verify_error("LedgerCorrupted", message),
                }
            )
        return 1
    if report.ok:
        if ctx.json:
            o.emit_json(audit.verify_json(report))
        else:
            o.line(
                f"verify OK: {report.events} facts, {report.ticks} ticks; every recorded "
                "decision follows from its recorded inputs"
            )
        return 0
    d = report.divergence
    assert d is not None
    message = (
        f"verify FAILED at ledger position {d.position} (tick {d.tick}, which starts at "
        f"position {d.tick_position}): the recorded fact differs from what re-planning the "
        "tick from its recorded inputs gives"
    )
    o.err().print(message, markup=False)
    if ctx.json:
        o.emit_json({**audit.verify_json(report), "error": _verify_error("Diverged", message)})
        return 1
    o.err().print(f"  recorded:   {d.recorded!r}", markup=False)
    o.err().print(f"  re-planned: {d.replanned!r}", markup=False)
    return 1


def _verify_error(kind: str, message: str) -> dict[str, object]:
    """The `error` object every failing --json command carries (see main._report_error)."""
    return {"type": kind, "message": message, "exit_code": 1}


def simulate_command(ctx: Context, args: argparse.Namespace) -> int:
    start = parse_instant(args.from_, "--from")
    end = parse_instant(args.to, "--to")
    if end <= start:
        raise InvalidInput(
            "--to", "must be after --from", "e.g. --from 2026-01-01T00:00Z --to 2027-01-01T00:00Z"
        )
    if not 0.0 <= args.fail_rate <= 1.0:
        raise InvalidInput(
            "--fail-rate", f"{args.fail_rate} is not a probability", "use 0..1, e.g. 0.05"
        )
    runtime = parse_runtime(args.runtime, "--runtime")
    outages = [parse_outage(text, "--outage") for text in args.outage or []]
    reports: list[SimReport] = []
    for path in [args.file, *([args.compare] if args.compare else [])]:
        file = load_schedules(path, now_ms=start)
        with o.progress(f"simulating {path}", not ctx.json) as update:
            reports.append(
                simulate(
                    file.schedules,
                    start,
                    end,
                    runtime=runtime,
                    fail_rate=args.fail_rate,
                    outages=outages,
                    seed=args.seed,
                    options=file.options,
                    progress=update,
                    paused=[name for name, paused in file.paused.items() if paused],
                )
            )
    if len(reports) == 2:
        comparison = compare(reports[0], reports[1])
        if ctx.json:
            o.emit_json(comparison.to_json())
        else:
            _print_comparison(comparison, args.file, args.compare)
        return 0
    report = reports[0]
    if ctx.json:
        o.emit_json(report.to_json())
        return 0
    _print_report(report, args.file)
    return 0


_COLUMNS = ("fires", "skipped", "coalesced", "deferred", "missed", "runs", "failed", "retries")


def _print_report(report: SimReport, path: str) -> None:
    o.line(
        f"simulated {path} from {o.when(report.start)} to {o.when(report.end)} "
        f"({report.ticks} ticks, {report.events} facts, {report.wall_s:.2f} s)"
    )
    rows = [
        (
            s.schedule_id,
            *(getattr(s, c) for c in _COLUMNS),
            s.max_queue,
            o.duration(s.max_lateness_ms),
        )
        for s in (*report.schedules, report.total)
    ]
    o.table(None, ("schedule", *_COLUMNS, "max queue", "max late"), rows)


def _print_comparison(c: Comparison, base: str, other: str) -> None:
    o.line(f"{other} compared with {base} (other - base):")
    rows = []
    for s in (*c.schedules, c.total):
        delta = dict(s.delta)
        if s.schedule_id != "*" and not s.changed:
            continue
        rows.append(
            (s.schedule_id, *(_signed(delta.get(col, 0)) for col in (*_COLUMNS, "max_queue")))
        )
    o.table(None, ("schedule", *_COLUMNS, "max queue"), rows)
    unchanged = len(c.schedules) - len(c.changed)
    if unchanged:
        o.line(f"{unchanged} schedule(s) behave the same")


def _signed(value: int) -> str:
    return f"{value:+d}" if value else "0"


__all__ = ["explain", "replay", "simulate_command", "target_text", "verify"]
