"""Read-side operations over a ledger, shared by the CLI and the facade: the state at a past
instant or position, verify, run history, explanations and captured run output; plus the one
JSON shape both print.

JSON conventions (stable; `--json` in the CLI and `cronledger.api` use these functions):

- an instant field `x` is two keys: `x` is ISO-8601 UTC text to the millisecond with a `Z`
  suffix (`"2026-01-01T00:00:00.000Z"`) and `x_ms` is the same instant as int UTC epoch
  milliseconds; both are `null` when there is no instant;
- durations are int milliseconds in keys ending in `_ms` (`timeout_ms`, `duration_ms`);
- enums are their string values (`"forbid"`, `"catch_up"`, `"pending"`);
- triggers and targets carry a `kind` (`cron`, `every`, `at`; `command`, `call`);
- optional values are `null`, never left out; lists keep a documented order.

The state at an instant T (`state_at(at=T)`) is the fold of the longest prefix of the ledger
whose facts all have `at <= T`: folding stops at the first fact whose clock reading is after T.
Each writer appends in clock order, and all the facts of a tick carry the tick's clock reading,
so the cut never splits a tick's batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from cronledger.adapters.ledger import Ledger
from cronledger.adapters.replay import catch_up, gc_paused
from cronledger.adapters.snapshots import load_snapshot
from cronledger.domain import events as ev
from cronledger.domain.explain import Explanation, explain
from cronledger.domain.health import Health
from cronledger.domain.hours import Window
from cronledger.domain.instants import iso
from cronledger.domain.state import EMPTY, ActiveRun, Counters, Entry, ScheduleState, Snapshot
from cronledger.domain.triggers import At, Cron, Every, Trigger, describe
from cronledger.domain.values import Call, Command, Options, Retry, ScheduleSpec, Target
from cronledger.domain.verify import VerifyReport, verify
from cronledger.errors import InvalidInput, LedgerError, UnknownSchedule
from cronledger.projectors import history as history_projector
from cronledger.projectors.history import RunRecord
from cronledger.projectors.snapshot import apply_all

Progress = Callable[[int, int], None]
PAGE = 10_000
TAIL_BYTES = 64 * 1024

__all__ = [
    "RunOutput",
    "active_run_json",
    "entry_json",
    "explain_subject",
    "health_json",
    "instant_json",
    "options_json",
    "output_json",
    "run_history",
    "run_json",
    "run_output",
    "schedule_json",
    "snapshot_json",
    "spec_json",
    "state_at",
    "target_json",
    "trigger_json",
    "verify_json",
    "verify_ledger",
]


# --- the state at a position or an instant ---------------------------------------------------


def state_at(
    ledger: Ledger,
    *,
    at: int | None = None,
    position: int | None = None,
    progress: Progress | None = None,
) -> tuple[Snapshot, int]:
    """The state folded up to `position`, or as of instant `at` (see the module docstring), or
    now when neither is given; returns (snapshot, ledger position reached).

    A stored snapshot is used only when it lies at or before the target.
    """
    end = ledger.position()
    if at is not None and position is not None:
        raise InvalidInput("at", "cannot be combined with a position", "give one of the two")
    if position is not None:
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise InvalidInput(
                "position", f"{position!r} is not a ledger position", f"use 0..{end}"
            )
        if position > end:
            raise InvalidInput(
                "position",
                f"{position} is beyond the end of the ledger (its last position is {end})",
                f"use a position between 0 and {end}",
            )
        return _fold_to(ledger, position, progress), position
    if at is None:
        return _fold_to(ledger, end, progress), end
    if isinstance(at, bool) or not isinstance(at, int):
        raise InvalidInput("at", f"{at!r} is not an instant", "use e.g. 2026-11-22T09:00:00Z")
    return _fold_until(ledger, at, end, progress)


def _stored(ledger: Ledger, target: int) -> Snapshot:
    """The stored snapshot when it is at or before `target`, else the empty state."""
    stored = load_snapshot(ledger)
    if stored is not None and stored.position <= target:
        return stored
    return EMPTY


def _fold_to(ledger: Ledger, target: int, progress: Progress | None) -> Snapshot:
    start = _stored(ledger, target)
    report = None if progress is None else (lambda done: progress(done, target))
    return catch_up(ledger, start, upto=target, progress=report)


def _fold_until(
    ledger: Ledger, at: int, end: int, progress: Progress | None
) -> tuple[Snapshot, int]:
    """Fold the prefix of facts with `at <= at` (stop at the first later fact)."""
    stored = _stored(ledger, end)
    start = EMPTY
    if stored.position > 0:
        cut = _first_after(ledger, at, 0, stored.position, progress, end)
        if cut is None:
            start = stored  # every fact up to the stored snapshot is at or before `at`
        else:
            return _fold_to(ledger, cut - 1, progress), cut - 1
    reached = start.position

    def prefix() -> Iterator[ev.Event]:
        nonlocal reached
        for position, event in ledger.read(after=start.position, upto=end, lean=True):
            if event.at > at:
                return
            reached = position
            if progress is not None and position % PAGE == 0:
                progress(position, end)
            yield event

    with gc_paused():
        snapshot = apply_all(start, prefix(), rebuild_indexes=end - start.position > 1000)
    if progress is not None:
        progress(reached, end)
    return snapshot, reached


def _first_after(
    ledger: Ledger, at: int, after: int, upto: int, progress: Progress | None, end: int
) -> int | None:
    """The position of the first fact in (after, upto] whose clock reading is after `at`."""
    for position, event in ledger.read(after=after, upto=upto, lean=True):
        if event.at > at:
            return position
        if progress is not None and position % PAGE == 0:
            progress(position, end)
    return None


# --- verify, history, explain, output ---------------------------------------------------------


def verify_ledger(ledger: Ledger, progress: Progress | None = None) -> VerifyReport:
    """Re-plan every recorded tick from its recorded inputs (`domain.verify.verify`)."""
    total = ledger.position()
    report = None if progress is None else (lambda done: progress(done, total))
    result = verify(ledger.read(), progress=report)
    if progress is not None:
        progress(result.events, total)
    return result


def _history(ledger: Ledger) -> tuple[history_projector.History, set[str]]:
    """The run history and the id of every schedule that was ever added."""
    h = history_projector.EMPTY_HISTORY
    known: set[str] = set()
    apply = history_projector.apply
    with gc_paused():
        for _, event in ledger.read(lean=True):
            if isinstance(event, ev.ScheduleAdded):
                known.add(event.spec.id)
            h = apply(h, event)
    return h, known


def run_history(
    ledger: Ledger,
    *,
    schedule_id: str | None = None,
    since: int | None = None,
    limit: int | None = 50,
) -> list[RunRecord]:
    """Runs in assignment order, newest last: of one schedule (even a removed one), assigned at
    or after `since`, the last `limit` of them (None: all)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInput("limit", f"{limit!r} is not a positive count", "use 1 or more")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int)):
        raise InvalidInput("since", f"{since!r} is not an instant", "use e.g. 2026-11-22T09:00Z")
    h, known = _history(ledger)
    if schedule_id is not None and schedule_id not in known:
        raise UnknownSchedule(schedule_id)
    records = h.for_schedule(schedule_id)
    if since is not None:
        records = [r for r in records if r.assigned_at >= since]
    if limit is not None:
        records = records[-limit:]
    return records


def explain_subject(ledger: Ledger, subject: str, at: int | None = None) -> Explanation:
    """Why a schedule, entry or run is where it is (`cronledger.domain.explain.explain`)."""
    return explain(ledger.read(), subject, at)


@attrs.frozen(kw_only=True)
class RunOutput:
    """What is known of a run's output: the tails its outcome fact recorded (`recorded_*`;
    stdout None where none was captured: a call, or a run recorded before stdout was kept),
    and, while the process runner's files for it still exist under the state dir, their
    tails."""

    run: RunRecord
    recorded_stderr: str
    stdout: str | None = None
    stdout_dropped: int = 0
    stderr: str | None = None
    stderr_dropped: int = 0
    stdout_file: str | None = None
    stderr_file: str | None = None

    @property
    def recorded_stdout(self) -> str | None:
        return self.run.stdout_tail

    @property
    def recorded_stdout_dropped(self) -> int | None:
        return self.run.stdout_dropped

    @property
    def recorded_stderr_dropped(self) -> int | None:
        return self.run.stderr_dropped

    @property
    def files(self) -> bool:
        """Whether the run's files were found (stdout/stderr come from them)."""
        return self.stdout_file is not None


def run_output(
    ledger: Ledger, run_id: str, state_dir: Path | None, *, tail_bytes: int = TAIL_BYTES
) -> RunOutput:
    """Captured output of run `run_id` (for `cronledger logs RUN_ID`)."""
    h, _ = _history(ledger)
    record = h.runs.get(run_id)
    if record is None:
        raise InvalidInput(
            "run_id", f"no run {run_id!r} in the ledger", "see `cronledger history` for run ids"
        )
    result = RunOutput(run=record, recorded_stderr=record.stderr_tail)
    if state_dir is None or record.call is not None:
        return result
    # The process runner's layout: state_dir/runs/<name>.{st,out,err} (see process_runner.py).
    from cronledger.adapters.process_runner import read_tail, run_file_name

    base = os.path.join(Path(state_dir), "runs", run_file_name(run_id))
    if not any(os.path.exists(base + suffix) for suffix in (".st", ".out", ".err")):
        return result
    out, out_dropped = read_tail(base + ".out", tail_bytes)
    err, err_dropped = read_tail(base + ".err", tail_bytes)
    return attrs.evolve(
        result,
        stdout=out,
        stdout_dropped=out_dropped,
        stderr=err,
        stderr_dropped=err_dropped,
        stdout_file=base + ".out",
        stderr_file=base + ".err",
    )


# --- JSON shapes ------------------------------------------------------------------------------

Json = dict[str, Any]


def instant_json(name: str, ms: int | None) -> Json:
    """`{name: ISO-8601 UTC text, name_ms: epoch ms}` (both None for no instant)."""
    if ms is None:
        return {name: None, f"{name}_ms": None}
    return {name: iso(ms), f"{name}_ms": ms}


def trigger_json(trigger: Trigger) -> Json:
    if isinstance(trigger, Cron):
        out: Json = {"kind": "cron", "expr": trigger.expr, "timezone": trigger.timezone}
    elif isinstance(trigger, Every):
        out = {"kind": "every", "interval_ms": trigger.interval_ms}
        out.update(instant_json("anchor", trigger.anchor_ms))
    elif isinstance(trigger, At):
        out = {"kind": "at", **instant_json("at", trigger.instant_ms)}
    else:
        raise TypeError(f"{trigger!r} is not a trigger")
    out["text"] = describe(trigger)
    return out


def target_json(target: Target) -> Json:
    if isinstance(target, Command):
        return {
            "kind": "command",
            "argv": list(target.argv),
            "env": dict(target.env),
            "cwd": target.cwd,
            "fallback": None if target.fallback is None else list(target.fallback),
        }
    if isinstance(target, Call):
        return {"kind": "call", "name": target.name}
    raise TypeError(f"{target!r} is not a target")


def _window_json(window: Window | None) -> Json | None:
    if window is None:
        return None
    return {"start": window.start, "end": window.end, "timezone": window.timezone}


def _retry_json(retry: Retry) -> Json:
    return {
        "max_attempts": retry.max_attempts,
        "backoff_ms": retry.backoff_ms,
        "max_backoff_ms": retry.max_backoff_ms,
    }


def spec_json(spec: ScheduleSpec) -> Json:
    return {
        "id": spec.id,
        "trigger": trigger_json(spec.trigger),
        "target": target_json(spec.target),
        "concurrency": spec.concurrency.value,
        "misfire": spec.misfire.value,
        "misfire_grace_ms": spec.misfire_grace_ms,
        "catch_up_window_ms": spec.catch_up_window_ms,
        "priority": spec.priority,
        "retry": _retry_json(spec.retry),
        "timeout_ms": spec.timeout_ms,
        "active_hours": _window_json(spec.active_hours),
        "quiet_hours": _window_json(spec.quiet_hours),
        "jitter_ms": spec.jitter_ms,
        "fire_limit": spec.fire_limit,
        "principal": spec.principal,
    }


def schedule_json(state: ScheduleState) -> Json:
    """A schedule's spec and where it stands (SEMANTICS §2)."""
    return {
        "id": state.spec.id,
        "spec": spec_json(state.spec),
        "paused": state.paused,
        "complete": state.complete,
        **instant_json("next_fire_at", state.upcoming_fire_at),
        **instant_json("due_at", state.upcoming_due_at),
        **instant_json("added_at", state.added_at),
        **instant_json("last_fired_for", state.last_fired_for),
        "last_outcome": state.last_outcome,
        **instant_json("deferred_since", state.deferred_since),
        **instant_json("deferred_until", state.deferred_until),
        "consecutive_failures": state.consecutive_failures,
        "fire_count": state.fire_count,
        "fires_remaining": state.fires_remaining,
    }


def entry_json(entry: Entry) -> Json:
    """A dispatch queue entry."""
    return {
        "id": entry.id,
        "seq": entry.seq,
        "schedule_id": entry.schedule_id,
        "status": entry.status.value,
        "priority": entry.priority,
        "target": target_json(entry.target),
        **instant_json("queued_at", entry.queued_at),
        **instant_json("nominal", entry.nominal),
        "hold_reason": entry.hold_reason,
        "attempt": entry.attempt,
        "max_attempts": entry.max_attempts,
        "backoff_ms": entry.backoff_ms,
        "max_backoff_ms": entry.max_backoff_ms,
        "timeout_ms": entry.timeout_ms,
        **instant_json("not_before", entry.not_before),
        "run_id": entry.run_id,
        "principal": entry.principal,
    }


def active_run_json(run: ActiveRun) -> Json:
    """A run that is assigned or running (or being cancelled)."""
    return {
        "run_id": run.run_id,
        "entry_id": run.entry_id,
        "schedule_id": run.schedule_id,
        "attempt": run.attempt,
        "call": run.call,
        **instant_json("assigned_at", run.assigned_at),
        **instant_json("started_at", run.started_at),
        **instant_json("deadline", run.deadline),
        "pid": run.pid,
        "fallback": run.fallback,
        "cancelling": run.cancelling,
        "node": run.node,
    }


def run_json(record: RunRecord) -> Json:
    """One run of the history, from assignment to outcome."""
    return {
        "run_id": record.run_id,
        "entry_id": record.entry_id,
        "schedule_id": record.schedule_id,
        "attempt": record.attempt,
        "outcome": record.outcome,
        "reason": record.reason,
        **instant_json("scheduled_for", record.scheduled_for),
        **instant_json("assigned_at", record.assigned_at),
        **instant_json("started_at", record.started_at),
        **instant_json("finished_at", record.finished_at),
        **instant_json("recorded_at", record.recorded_at),
        "duration_ms": record.duration_ms,
        "exit_code": record.exit_code,
        "signal": record.signal,
        "argv": list(record.argv),
        "call": record.call,
        "node": record.node,
        "pid": record.pid,
        "fallback": record.fallback,
        "cancel_reason": record.cancel_reason,
        "error": record.error,
        "stderr_tail": record.stderr_tail,
        "stderr_dropped": record.stderr_dropped,
        "stdout_tail": record.stdout_tail,
        "stdout_dropped": record.stdout_dropped,
    }


def health_json(h: Health) -> Json:
    return {
        "position": h.position,
        "schedules": h.schedules,
        "active_runs": h.active_runs,
        "pending": h.pending,
        "held": h.held,
        "assigned": h.assigned,
        "oldest_pending_ms": h.oldest_pending_ms,
        "lag_ms": h.lag_ms,
        "draining": h.draining,
        "tick_ms": h.tick_ms,
    }


def options_json(options: Options) -> Json:
    return {a.name: getattr(options, a.name) for a in attrs.fields(Options)}


def _counters_json(counters: Counters) -> Json:
    out = {a.name: getattr(counters, a.name) for a in attrs.fields(Counters)}
    out.update(instant_json("last_tick_at", counters.last_tick_at))
    return out


def snapshot_json(snapshot: Snapshot) -> Json:
    """The whole state: schedules by id, the queue in dispatch order, active runs by id."""
    entries = sorted(snapshot.entries.values(), key=lambda e: e.ready_key)
    return {
        "position": snapshot.position,
        "options": options_json(snapshot.options),
        "counters": _counters_json(snapshot.counters),
        "schedules": [schedule_json(snapshot.schedules[k]) for k in sorted(snapshot.schedules)],
        "queue": [entry_json(e) for e in entries],
        "runs": [active_run_json(snapshot.runs[k]) for k in sorted(snapshot.runs)],
    }


def verify_json(report: VerifyReport) -> Json:
    divergence = report.divergence
    return {
        "ok": report.ok,
        "events": report.events,
        "ticks": report.ticks,
        "divergence": None
        if divergence is None
        else {
            "position": divergence.position,
            "tick": divergence.tick,
            "tick_position": divergence.tick_position,
            "recorded": None if divergence.recorded is None else repr(divergence.recorded),
            "replanned": None if divergence.replanned is None else repr(divergence.replanned),
        },
    }


def output_json(output: RunOutput) -> Json:
    return {
        "run": run_json(output.run),
        "recorded_stdout": output.recorded_stdout,
        "recorded_stdout_dropped": output.recorded_stdout_dropped,
        "recorded_stderr": output.recorded_stderr,
        "recorded_stderr_dropped": output.recorded_stderr_dropped,
        "files": output.files,
        "stdout": output.stdout,
        "stdout_dropped": output.stdout_dropped,
        "stderr": output.stderr,
        "stderr_dropped": output.stderr_dropped,
        "stdout_file": output.stdout_file,
        "stderr_file": output.stderr_file,
    }


def daemons(ledger: Ledger, snapshot: Snapshot) -> list[tuple[str | None, bool | None]]:
    """Which identities a running daemon answers for: the unnamed one, each node with active
    runs and each named daemon running, each (node, running), running None where it cannot be
    told. A daemon holds its name's claim while it runs (and the claims of the identities whose
    runs it adopted); the probes take nothing."""
    nodes = {r.node for r in snapshot.runs.values() if r.node is not None}
    with contextlib.suppress(OSError, LedgerError):  # e.g. a directory this user may not list
        nodes.update(key for key in ledger.claimants() if key)
    found: list[tuple[str | None, bool | None]] = []
    for node in [None, *sorted(nodes)]:
        try:
            found.append((node, ledger.claimed(node or "")))
        except (OSError, LedgerError):  # e.g. a lock file this user may not open
            found.append((node, None))
    return found
