"""Deterministic jitter: a hash of (schedule id, nominal fire time), never `random`."""

from __future__ import annotations

from hashlib import blake2b


def jitter_ms(schedule_id: str, nominal: int, max_jitter_ms: int) -> int:
    """A delay in [0, max_jitter_ms], the same on every replay."""
    if max_jitter_ms <= 0:
        return 0
    digest = blake2b(f"{schedule_id}\x00{nominal}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (max_jitter_ms + 1)


def due_at(schedule_id: str, nominal: int | None, max_jitter_ms: int) -> int | None:
    """The instant a nominal fire becomes due: nominal plus its jitter."""
    if nominal is None:
        return None
    return nominal + jitter_ms(schedule_id, nominal, max_jitter_ms)
