"""Completion reconciliation (SEMANTICS §8): runner exits and timeouts -> facts and retries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from cronledger.domain import events as ev
from cronledger.domain.commands import CancelRun
from cronledger.domain.concurrency import AWAITING_PREVIOUS_RUN
from cronledger.domain.evolve import evolve
from cronledger.domain.state import ActiveRun, Entry, EntryStatus, Snapshot
from cronledger.domain.values import OUTPUT_TAIL_BYTES, ExitKind, Retry, RunExit


class RecordedOutput(NamedTuple):
    """What an outcome fact keeps of a run's output: bounded tails and the bytes before them
    (None where the runner captured no output: a call, or an exit from an older ledger)."""

    stdout_tail: str | None
    stdout_dropped: int | None
    stderr_tail: str
    stderr_dropped: int | None


def _bounded(text: str, dropped: int, limit: int) -> tuple[str, int]:
    """The longest end of `text` within `limit` bytes (whole characters), and the bytes
    dropped before it."""
    if len(text) <= limit // 4:  # short enough in any encoding
        return text, dropped
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text, dropped
    cut = len(data) - limit
    while cut < len(data) and 0x80 <= data[cut] < 0xC0:  # not in the middle of a character
        cut += 1
    return data[cut:].decode("utf-8", "surrogatepass"), dropped + cut


def recorded_output(exit: RunExit, limit: int = OUTPUT_TAIL_BYTES) -> RecordedOutput:
    """The output an exit's outcome fact records: each tail within `limit` bytes (the
    `output_tail_bytes` option), or, where no output was captured (a call's traceback, an
    exit from an older ledger), the last `limit` characters of stderr."""
    if exit.stdout_tail is None:
        err = exit.stderr_tail
        kept = err[len(err) - limit :] if len(err) > limit else err  # ([-0:] would keep it all)
        return RecordedOutput(None, None, kept, None)
    out, out_dropped = _bounded(exit.stdout_tail, exit.stdout_dropped, limit)
    err, err_dropped = _bounded(exit.stderr_tail, exit.stderr_dropped, limit)
    return RecordedOutput(out, out_dropped, err, err_dropped)


def bound_exits(exits: Sequence[RunExit], limit: int) -> list[RunExit]:
    """The exits with their tails cut as `recorded_output` cuts them (what a tick header
    records: no more output than the facts keep, whatever the runner read)."""
    out = []
    short = limit // 4  # this many characters fit in any encoding
    for exit in exits:
        stdout = exit.stdout_tail
        if len(exit.stderr_tail) <= short and (stdout is None or len(stdout) <= short):
            out.append(exit)  # the usual case, without building anything
            continue
        kept = recorded_output(exit, limit)
        if kept.stdout_tail is exit.stdout_tail and kept.stderr_tail is exit.stderr_tail:
            out.append(exit)  # nothing cut
        elif exit.stdout_tail is None:
            out.append(evolve(exit, stderr_tail=kept.stderr_tail))
        else:
            out.append(
                evolve(
                    exit,
                    stdout_tail=kept.stdout_tail,
                    stdout_dropped=kept.stdout_dropped,
                    stderr_tail=kept.stderr_tail,
                    stderr_dropped=kept.stderr_dropped,
                )
            )
    return out


def failure_reason(run: ActiveRun, exit: RunExit, rules: int) -> str:
    """exit | timeout | cancelled | spawn_failed | lost."""
    if exit.kind is ExitKind.LOST:
        return "lost"
    if _timed_out(run, exit, rules):
        return "timeout"
    if run.cancelling is not None:
        return "cancelled"
    if exit.kind is ExitKind.SPAWN_FAILED:
        return "spawn_failed"
    return "exit"


def _release_waiting(snapshot: Snapshot, entry: Entry, now: int) -> list[ev.Event]:
    """A QUEUE_ONE entry held behind this one goes Pending when this one completes."""
    if entry.schedule_id is None:
        return []
    entries = snapshot.entries
    for other_id in snapshot.open_by_schedule.get(entry.schedule_id, ()):
        if other_id == entry.id:  # the completing entry itself is never held
            continue
        other = entries[other_id]
        if other.status is EntryStatus.HELD and other.hold_reason == AWAITING_PREVIOUS_RUN:
            return [ev.EntryReleased(at=now, entry_id=other.id, reason="previous_run_finished")]
    return []


# The planner's rules, recorded in each tick header so that `verify` re-plans an old tick by
# the rules it was decided by. 2: a timed-out run that exits 0 is a timeout failure (1: a
# success). 3: so is a run whose process ended past its deadline with no cancel sent (it ended
# while no daemon watched it, or just before the cancel reached it); 4: but not one an operator
# or REPLACE cancelled (3 made that a timeout, and retried it).
RULES = 4


def _timed_out(run: ActiveRun, exit: RunExit, rules: int) -> bool:
    """Cancelled for its timeout, or (rules 3) its process ran past the deadline with no cancel
    sent, however it ended; a run an operator or REPLACE cancelled stays cancelled (rules 4)."""
    if run.cancelling == "timeout":
        return True
    return (
        rules >= 3
        and (run.cancelling is None or rules < 4)
        and run.deadline is not None
        and exit.kind not in (ExitKind.LOST, ExitKind.SPAWN_FAILED)
        and exit.finished_at > run.deadline
    )


def ended_at(started_at: int | None, assigned_at: int, duration_ms: int, recorded_at: int) -> int:
    """When a run's process ended: its start (the assignment where no start was recorded) plus
    the duration `reconcile_exit` measured, at most when its outcome was recorded (a run
    adopted after a restart may have ended long before the restarted daemon recorded it)."""
    start = started_at if started_at is not None else assigned_at
    return min(recorded_at, start + duration_ms)


def reconcile_exit(
    snapshot: Snapshot, exit: RunExit, now: int, rules: int = RULES
) -> list[ev.Event]:
    """The facts for one observed exit; nothing for a run already reconciled."""
    run = snapshot.runs.get(exit.run_id)
    if run is None:
        return []
    entry = snapshot.entries.get(run.entry_id)
    started = run.started_at if run.started_at is not None else run.assigned_at
    duration = max(0, exit.finished_at - started)
    output = recorded_output(exit, snapshot.options.output_tail_bytes)
    # a timeout is a failure (§8), even when the job traps the SIGTERM and exits 0 (rules 2),
    # or ran past its deadline with no cancel sent, e.g. while no daemon watched it (rules 3)
    if exit.succeeded and (rules < 2 or not _timed_out(run, exit, rules)):
        out: list[ev.Event] = [
            ev.RunSucceeded(
                at=now,
                run_id=run.run_id,
                entry_id=run.entry_id,
                exit_code=0,
                duration_ms=duration,
                stderr_tail=output.stderr_tail,
                stdout_tail=output.stdout_tail,
                stdout_dropped=output.stdout_dropped,
                stderr_dropped=output.stderr_dropped,
            )
        ]
        return out + (_release_waiting(snapshot, entry, now) if entry else [])

    reason = failure_reason(run, exit, rules)
    retry = entry is not None and reason != "cancelled" and entry.attempt < entry.max_attempts
    final = not retry
    out = []
    if reason == "lost":
        out.append(
            ev.RunLost(
                at=now, run_id=run.run_id, entry_id=run.entry_id, detail=exit.error, final=final
            )
        )
    else:
        out.append(
            ev.RunFailed(
                at=now,
                run_id=run.run_id,
                entry_id=run.entry_id,
                reason=reason,
                exit_code=exit.exit_code,
                signal=exit.signal,
                duration_ms=duration,
                stderr_tail=output.stderr_tail,
                error=exit.error,
                final=final,
                stdout_tail=output.stdout_tail,
                stdout_dropped=output.stdout_dropped,
                stderr_dropped=output.stderr_dropped,
            )
        )
    if entry is None:
        return out
    if retry:
        policy = Retry(entry.max_attempts, entry.backoff_ms, entry.max_backoff_ms)
        delay = policy.delay_after(entry.attempt)
        out.append(
            ev.RetryPlanned(
                at=now, entry_id=entry.id, attempt=entry.attempt + 1, not_before=now + delay
            )
        )
        return out
    return out + _release_waiting(snapshot, entry, now)


def reconcile_exits(
    snapshot: Snapshot, exits: Sequence[RunExit], now: int, rules: int = RULES
) -> list[ev.Event]:
    """Facts for each exit, in order (duplicates and unknown runs decide nothing)."""
    out: list[ev.Event] = []
    seen: set[str] = set()
    for exit in exits:
        if exit.run_id in seen:
            continue
        seen.add(exit.run_id)
        out.extend(reconcile_exit(snapshot, exit, now, rules))
    return out


def expire_timeouts(snapshot: Snapshot, now: int) -> tuple[list[ev.Event], list[CancelRun]]:
    """Runs past their deadline are cancelled; their exit will count as a timeout failure."""
    events: list[ev.Event] = []
    commands: list[CancelRun] = []
    for run in snapshot.runs.values():
        if run.deadline is not None and run.deadline <= now and run.cancelling is None:
            events.append(ev.RunCancelled(at=now, run_id=run.run_id, reason="timeout"))
            commands.append(CancelRun(run_id=run.run_id, reason="timeout"))
    events.sort(key=lambda e: e.run_id)  # type: ignore[attr-defined]
    commands.sort(key=lambda c: c.run_id)
    return events, commands
