"""Ready dispatch (SEMANTICS §5): pick Pending entries by priority, then FIFO, within capacity."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from cronledger.domain import events as ev
from cronledger.domain import ids
from cronledger.domain.commands import StartRun
from cronledger.domain.instants import iso
from cronledger.domain.state import Entry, Snapshot
from cronledger.domain.values import Command


def waited_until(now: int) -> tuple[int, int, str]:
    """The greatest delayed-index key whose wait is over at `now` (keys <= it are ready)."""
    return (now, 1 << 62, "\U0010ffff")


def _ready_keys(snapshot: Snapshot, now: int) -> Iterator[tuple[int, int, str]]:
    """Ready keys in dispatch order: the ready index merged with retries whose wait is over."""
    retries = sorted(
        snapshot.entries[entry_id].ready_key
        for _, _, entry_id in snapshot.delayed.iter_upto(waited_until(now))
    )
    if not retries:
        return iter(snapshot.ready)
    return heapq.merge(snapshot.ready, retries)


def plan_ready_dispatch(snapshot: Snapshot, now: int, limit: int) -> list[Entry]:
    """The entries to start now: at most `limit`, priority (higher first), then enqueue order."""
    if limit <= 0:
        return []
    picked: list[Entry] = []
    for _, _, entry_id in _ready_keys(snapshot, now):
        picked.append(snapshot.entries[entry_id])
        if len(picked) == limit:
            break
    return picked


def render_argv(argv: tuple[str, ...], values: dict[str, str]) -> tuple[str, ...]:
    """Fill {run_id} {schedule} {scheduled_for} {attempt}; other braces are left alone."""
    out = []
    for arg in argv:
        if "{" in arg:
            for key, value in values.items():
                arg = arg.replace(key, value)
        out.append(arg)
    return tuple(out)


def dispatch(
    snapshot: Snapshot, now: int, limit: int, node: str | None = None
) -> tuple[list[ev.Event], list[StartRun]]:
    """RunAssigned intents (durable before spawning) and the StartRun commands that follow;
    `node` names the engine that will run them."""
    events: list[ev.Event] = []
    commands: list[StartRun] = []
    for entry in plan_ready_dispatch(snapshot, now, limit):
        run_id = ids.run_id(entry.id, entry.attempt)
        scheduled_for = entry.nominal if entry.nominal is not None else entry.queued_at
        target = entry.target
        argv: tuple[str, ...] = ()
        fallback = None
        call = None
        if isinstance(target, Command):
            argv = tuple(target.argv)
            fallback = tuple(target.fallback) if target.fallback else None
            if any("{" in arg for arg in argv) or any("{" in arg for arg in fallback or ()):
                values = {  # only when there is something to fill (iso() is not free)
                    "{run_id}": run_id,
                    "{schedule}": entry.schedule_id or "",
                    "{scheduled_for}": iso(scheduled_for),
                    "{attempt}": str(entry.attempt),
                }
                argv = render_argv(argv, values)
                if fallback is not None:
                    fallback = render_argv(fallback, values)
        else:
            call = target.name
        deadline = now + entry.timeout_ms if entry.timeout_ms is not None else None
        events.append(
            ev.RunAssigned(
                at=now,
                run_id=run_id,
                entry_id=entry.id,
                attempt=entry.attempt,
                argv=argv,
                call=call,
                deadline=deadline,
                node=node,
            )
        )
        commands.append(
            StartRun(
                run_id=run_id,
                entry_id=entry.id,
                schedule_id=entry.schedule_id,
                attempt=entry.attempt,
                target=target,
                argv=argv,
                scheduled_for=scheduled_for,
                deadline=deadline,
                fallback_argv=fallback,
            )
        )
    return events, commands
