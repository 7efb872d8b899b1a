"""Benchmark: cronledger's `next_fire_after` for a Cron against croniter constructed per call.

`measure()` is used by bench/core.py; `python bench/next_fire.py` prints a table with ratios.
Each call starts from a different instant, so only the per-expression compiled matcher (a fair
cache) is reused, never an answer.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

EXPRESSIONS = ("*/5 * * * *", "0 9 * * 1-5", "30 2 1 * *", "0 */3 * * *", "15 14 * * 5#2")
GOAL_RATIO = 5.0
_START_MS = 1_577_836_800_000  # 2020-01-01T00:00Z
_SPREAD_MS = 10 * 365 * 86_400_000  # instants spread over ten years


def _instants(count: int) -> list[int]:
    """`count` distinct, scattered instants (deterministic), with odd seconds and ms."""
    step = _SPREAD_MS // count
    return [_START_MS + i * step + (i * 7_919_993) % 3_600_000 for i in range(count)]


def measure(
    repeats: int = 7, calls: int = 2000, croniter_calls: int = 400
) -> dict[str, dict[str, float]]:
    """µs per call per expression in UTC, ours and croniter's: the median of `repeats` rounds."""
    _make_cronledger_importable()
    from croniter import croniter

    from cronledger.domain.triggers import Cron, next_fire_after

    ours: dict[str, float] = {}
    theirs: dict[str, float] = {}
    for expr in EXPRESSIONS:
        trigger = Cron(expr, "UTC")
        instants = _instants(calls)
        starts = [datetime.fromtimestamp(ms / 1000, UTC) for ms in _instants(croniter_calls)]
        next_fire_after(trigger, 0)  # compile once: the per-expression cache is fair game
        rounds = []
        for _ in range(repeats):
            began = time.perf_counter()
            for ms in instants:
                next_fire_after(trigger, ms)
            rounds.append((time.perf_counter() - began) / len(instants) * 1e6)
        ours[expr] = statistics.median(rounds)
        rounds = []
        for _ in range(repeats):
            began = time.perf_counter()
            for start in starts:
                croniter(expr, start).get_next(float)
            rounds.append((time.perf_counter() - began) / len(starts) * 1e6)
        theirs[expr] = statistics.median(rounds)
    return {"next_fire_us": ours, "croniter_us": theirs}


def _make_cronledger_importable() -> None:
    """Run from a checkout (`python bench/next_fire.py`): put the repository root on sys.path."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)


def main() -> int:
    """Print the table; exit 1 when an expression misses the 5x goal."""
    result = measure()
    print(f"{'expression':<16} {'next_fire µs':>13} {'croniter µs':>12} {'ratio':>7}")
    worst = float("inf")
    for expr in EXPRESSIONS:
        ours, theirs = result["next_fire_us"][expr], result["croniter_us"][expr]
        worst = min(worst, theirs / ours)
        print(f"{expr:<16} {ours:>13.2f} {theirs:>12.2f} {theirs / ours:>6.1f}x")
    print(f"worst ratio {worst:.1f}x (goal >= {GOAL_RATIO:.0f}x)")
    return 0 if worst >= GOAL_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
