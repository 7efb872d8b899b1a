"""Snapshots: the projected state at a ledger position, so start-up and replay skip the prefix.

A snapshot is a versioned JSON document of the state records; the indexes are rebuilt on load.
A snapshot written by another format version is ignored (the ledger is replayed instead).
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson
from immutables import Map

from cronledger.adapters.codec import value_codec
from cronledger.adapters.ledger import Ledger
from cronledger.domain.state import ActiveRun, Counters, Entry, ScheduleState, Snapshot
from cronledger.domain.values import Options
from cronledger.projectors.snapshot import rebuild_indexes

# Bump on any change to the fields of the records below (a test pins them): the codec reads a
# field missing from an old payload as its default, which is right for facts and wrong for
# derived state, so an old snapshot must be ignored (and the ledger replayed) instead.
FORMAT = 3  # 2: Options.output_tail_bytes; 3: ActiveRun.node


@attrs.frozen(kw_only=True)
class SnapshotDocument:
    """What a snapshot stores: the state records, without the derived indexes."""

    format: int
    position: int
    options: Options
    schedules: tuple[ScheduleState, ...]
    entries: tuple[Entry, ...]
    runs: tuple[ActiveRun, ...]
    requests: tuple[tuple[str, str], ...]
    seq: int
    fallback_active: int
    counters: Counters


_encode, _decode = value_codec(SnapshotDocument)


def encode_snapshot(snapshot: Snapshot) -> bytes:
    doc = SnapshotDocument(
        format=FORMAT,
        position=snapshot.position,
        options=snapshot.options,
        schedules=tuple(snapshot.schedules.values()),
        entries=tuple(sorted(snapshot.entries.values(), key=lambda e: e.seq)),
        runs=tuple(sorted(snapshot.runs.values(), key=lambda r: r.run_id)),
        requests=snapshot.requests,
        seq=snapshot.seq,
        fallback_active=snapshot.fallback_active,
        counters=snapshot.counters,
    )
    return orjson.dumps(_encode(doc))


def decode_snapshot(payload: bytes) -> Snapshot | None:
    """The snapshot, or None when it was written in another format version."""
    raw: Any = orjson.loads(payload)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    doc: SnapshotDocument = _decode(raw)
    opened: dict[str, tuple[str, ...]] = {}
    for entry in doc.entries:
        if entry.schedule_id is not None:
            opened[entry.schedule_id] = (*opened.get(entry.schedule_id, ()), entry.id)
    snapshot = Snapshot(
        position=doc.position,
        options=doc.options,
        schedules=Map((s.spec.id, s) for s in doc.schedules),
        entries=Map((e.id, e) for e in doc.entries),
        open_by_schedule=Map(opened),
        runs=Map((r.run_id, r) for r in doc.runs),
        fallback_active=doc.fallback_active,
        requests=doc.requests,
        seq=doc.seq,
        counters=doc.counters,
    )
    return rebuild_indexes(snapshot)


def save_snapshot(ledger: Ledger, snapshot: Snapshot) -> None:
    """Store `snapshot` at its position (no-op for an empty ledger)."""
    if snapshot.position > 0:
        ledger.save_snapshot(snapshot.position, encode_snapshot(snapshot))


def load_snapshot(ledger: Ledger) -> Snapshot | None:
    """The latest usable snapshot, or None."""
    latest = ledger.latest_snapshot()
    if latest is None:
        return None
    return decode_snapshot(latest[1])
