"""What the CLI prints: tables for people (rich), one JSON document for scripts."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from cronledger.domain.instants import iso

_out: Console | None = None
_err: Console | None = None


def out() -> Console:
    global _out
    if _out is None:
        _out = Console(highlight=False, soft_wrap=True)
        if not _out.is_terminal:  # piped: do not fold ids at 80 columns
            _out = Console(highlight=False, soft_wrap=True, width=160)
    return _out


def err() -> Console:
    global _err
    if _err is None:
        _err = Console(stderr=True, highlight=False, soft_wrap=True)
    return _err


def emit_json(document: object) -> None:
    """One JSON document on stdout (stable keys, ISO instants; see adapters/audit.py). An
    object says `"ok"` first (true unless it says otherwise: errors, a failed verify)."""
    if isinstance(document, dict) and "ok" not in document:
        document = {"ok": True, **document}
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def when(ms: int | None) -> str:
    return iso(ms) if ms is not None else "-"


def ago(now: int, ms: int | None) -> str:
    if ms is None:
        return "-"
    return duration(now - ms) + (" ago" if now >= ms else " from now")


def duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    sign, ms = ("-" if ms < 0 else ""), abs(ms)
    if ms < 1000:
        return f"{sign}{ms}ms"
    s = ms / 1000
    if s < 120:
        return f"{sign}{s:.1f}s"
    if s < 7200:
        return f"{sign}{s / 60:.1f}m"
    if s < 172_800:
        return f"{sign}{s / 3600:.1f}h"
    return f"{sign}{s / 86400:.1f}d"


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*("-" if v is None else str(v) for v in row))
    out().print(t)


def pairs(title: str | None, items: Sequence[tuple[str, Any]]) -> None:
    t = Table(title=title, title_justify="left", show_header=False, show_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key, value in items:
        t.add_row(key, "-" if value is None else str(value))
    out().print(t)


def line(text: str = "") -> None:
    out().print(text, markup=False)


@contextmanager
def progress(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (on a terminal, not with --json); yields update(done, total)."""
    if not enabled or not err().is_terminal:
        yield lambda done, total: None
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=err(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
