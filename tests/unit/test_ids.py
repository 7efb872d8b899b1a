"""Derived ids: readable, unique per (schedule, fire time), the same on every replay."""

from __future__ import annotations

from cronledger.domain import ids


def test_fire_ids_use_compact_utc_and_keep_milliseconds_when_present() -> None:
    assert ids.fire_entry_id("job", 1_767_225_600_000) == "job@20260101T000000Z"
    assert ids.fire_entry_id("job", 1_767_225_600_250) == "job@20260101T000000.250Z"
    assert ids.run_id("job@20260101T000000Z", 2) == "job@20260101T000000Z#2"
    assert ids.request_id("job", 17) == "job!17"
    assert ids.task_entry_id(9) == "task-9"
