"""Snapshots round-trip the state; a snapshot of another format is ignored, not trusted."""

from __future__ import annotations

import orjson

from cronledger.adapters.snapshots import decode_snapshot, encode_snapshot
from cronledger.domain.state import EMPTY
from tests.unit.test_projectors import _busy_world


def test_a_snapshot_decodes_to_an_equal_state_with_working_indexes() -> None:
    w = _busy_world()
    restored = decode_snapshot(encode_snapshot(w.snapshot))
    assert restored == w.snapshot
    assert restored is not None
    assert list(restored.due) == list(w.snapshot.due)
    assert restored.open_by_schedule == w.snapshot.open_by_schedule


def test_a_snapshot_of_another_format_version_is_ignored() -> None:
    raw = orjson.loads(encode_snapshot(_busy_world().snapshot))
    raw["format"] = 999
    assert decode_snapshot(orjson.dumps(raw)) is None


def test_the_empty_state_round_trips() -> None:
    assert decode_snapshot(encode_snapshot(EMPTY)) == EMPTY
