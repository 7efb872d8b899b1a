"""Capacity (SEMANTICS §6): how many ready entries may start now."""

from __future__ import annotations

from cronledger.domain.values import Options


def ready_dispatch_limit(options: Options, active: int, fallback_in_use: bool) -> int:
    """0 while draining; else max_workers - active - headroom, at most max_per_tick."""
    if options.draining:
        return 0
    headroom = options.slot_headroom + (options.fallback_headroom if fallback_in_use else 0)
    return max(0, min(options.max_per_tick, options.max_workers - active - headroom))
