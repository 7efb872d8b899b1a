"""Snapshots round-trip the state; a snapshot of another format is ignored, not trusted."""

from __future__ import annotations

import hashlib

import attrs
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


def _record_fields(tp: object, seen: set[type] | None = None) -> dict[str, list[str]]:
    """The field names of every attrs record a snapshot document stores, by class."""
    import typing

    seen = set() if seen is None else seen
    out: dict[str, list[str]] = {}
    if isinstance(tp, type) and attrs.has(tp) and tp not in seen:
        seen.add(tp)
        hints = typing.get_type_hints(tp)
        out[tp.__name__] = [f.name for f in attrs.fields(tp)]
        for f in attrs.fields(tp):
            out.update(_record_fields(hints[f.name], seen))
    for arg in typing.get_args(tp):
        out.update(_record_fields(arg, seen))
    return out


PINNED_DIGEST = "de559a40219d503e"  # of the record fields below, for FORMAT 3


def test_the_stored_records_are_pinned_to_the_snapshot_format() -> None:
    # A changed record needs a new FORMAT (old snapshots are then ignored and the ledger
    # replayed): the codec would read a field missing from an old snapshot as its default.
    # Update the pin together with snapshots.FORMAT.
    from cronledger.adapters import snapshots

    fields = _record_fields(snapshots.SnapshotDocument)
    digest = hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()[:16]
    assert (snapshots.FORMAT, digest) == (3, PINNED_DIGEST), fields
