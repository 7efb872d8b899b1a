"""Smoke test: `bench/core.py --quick --json` runs and reports every figure (no timing goals)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPRESSIONS = ("*/5 * * * *", "0 9 * * 1-5", "30 2 1 * *", "0 */3 * * *", "15 14 * * 5#2")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_quick_benchmark_reports_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "core.py"),
            "--quick",
            "--json",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    assert set(result["plan_tick_ms"]) == {"1000", "10000", "100000"}
    assert all(_positive(v) for v in result["plan_tick_ms"].values())
    for key in ("next_fire_us", "croniter_us"):
        assert set(result[key]) == set(EXPRESSIONS), key
        assert all(_positive(v) for v in result[key].values()), key
    assert _positive(result["replay_events_per_s"])
    assert _positive(result["rss_mb_100k"])
    assert result["replay_equals_simulation"] is True


DISPATCH_KEYS = (  # the keys issue 3 names for `bench/dispatch.py --json`
    "cronledger_jobs_per_s",
    "apscheduler_memory_jobs_per_s",
    "apscheduler_sqlite_jobs_per_s",
    "steady_fires_per_s",
    "steady_lateness_p99_ms",
    "steady_cpu",
    "idle_cpu_10k",
    "subprocess_jobs_per_s",
    "popen_ceiling_per_s",
)


def test_quick_dispatch_benchmark_prints_every_named_key() -> None:
    """`bench/dispatch.py --quick --json`, without APScheduler (no pip install in the tests):
    every key the issue names is there, ours with real figures, APScheduler's null."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dispatch.py"), "--quick", "--json",
         "--no-apscheduler"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert set(DISPATCH_KEYS) <= set(result)
    aps = {"apscheduler_memory_jobs_per_s", "apscheduler_sqlite_jobs_per_s"}
    for key in DISPATCH_KEYS:
        if key in aps:
            assert result[key] is None, key
        elif key == "idle_cpu_10k":
            assert isinstance(result[key], float) and 0 <= result[key] < 0.5, result[key]
        elif key == "steady_lateness_p99_ms":  # 0 on a fast machine: every fire in its ms
            assert _number(result[key]) and 0 <= result[key] < 60_000, result[key]
        else:
            assert _positive(result[key]), (key, result[key])
    assert result["steady_not_durable"] == 0
    assert 0 < result["subprocess_ratio"] < 2
    assert _positive(result["subprocess_sync_normal_jobs_per_s"])
