"""Derived ids: a replay derives the same ids, so nothing here is random or global."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


@lru_cache(maxsize=4096)  # a burst of fires shares a few nominal times (a pure memo)
def compact_instant(ms: int) -> str:
    """Basic ISO-8601 UTC, safe in file names: 20261123T070200Z (with .123 when needed)."""
    text = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y%m%dT%H%M%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def fire_entry_id(schedule_id: str, nominal: int) -> str:
    """The queue entry of a scheduled fire: one per (schedule, nominal time)."""
    return f"{schedule_id}@{compact_instant(nominal)}"


def request_id(schedule_id: str, position: int) -> str:
    """A manual trigger, named by the ledger position of its TriggerRequested fact."""
    return f"{schedule_id}!{position}"


def task_entry_id(position: int) -> str:
    """A submitted task without a key, named by the ledger position of its EntryQueued fact."""
    return f"task-{position}"


def is_task_id(text: str) -> bool:
    """Has `text` the form of `task_entry_id` (task-N)?"""
    return text.startswith("task-") and text[5:].isdigit() and text[5:].isascii()


def run_id(entry_id: str, attempt: int) -> str:
    """A run: one attempt of one entry."""
    return f"{entry_id}#{attempt}"
