"""The core benchmark: planner cost, next-fire speed, replay rate and memory, against the goals.

Run from the repository root: `python bench/core.py [--quick] [--json] [--regenerate]`.

(a) `plan_tick` with exactly 100 schedules due among N = 1,000, 10,000 and 100,000: ms per tick
    (median), and the ratio 100k/1k (goal <= 2.0: a tick costs what is due, not what exists).
(b) `next_fire_after` for five cron expressions against croniter (bench/next_fire.py), goal >= 5x.
(c) Replay: 1,000,000 facts written by the real planner (bench/workloads.py's Simulation) into a
    SQLite ledger cached under bench/.cache/, folded end to end by
    `catch_up(open_ledger("sqlite:///..."))`, goal >= 150k events/s; also the raw read+decode rate
    and the fold rate on decoded events, and a check that the replay equals the simulation's
    final snapshot.
(d) Peak RSS of a fresh process holding 100,000 realistic schedules after one tick, goal <= 300 MB
    (and the RSS of a process that only imported cronledger, for context).

Progress goes to stderr. `--json` prints one JSON object on stdout instead of the table.
`--quick` uses small sizes (a smoke test); its JSON has the same keys, `sizes` says what was run.
The exit status is 1 when a goal is missed in a full run; a wrong replay or tick raises.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import next_fire  # noqa: E402
import workloads  # noqa: E402

from cronledger.adapters.replay import catch_up, gc_paused  # noqa: E402
from cronledger.domain.state import EMPTY  # noqa: E402
from cronledger.domain.tick import plan_tick  # noqa: E402
from cronledger.projectors.snapshot import apply_all  # noqa: E402

DUE = 100
GOAL_TICK_RATIO = 2.0
GOAL_NEXT_FIRE_RATIO = next_fire.GOAL_RATIO
GOAL_REPLAY = 150_000
GOAL_RSS_MB = 300.0
NOMINAL_SIZES = (1_000, 10_000, 100_000)

FULL: dict[str, Any] = {
    "tick_sizes": (1_000, 10_000, 100_000),
    "tick_reps": 50,
    "next_fire": {"repeats": 7, "calls": 2000, "croniter_calls": 400},
    "ledger_events": 1_000_000,
    "ledger_schedules": 1_500,
    "replay_runs": 3,
    "rss_schedules": 100_000,
}
QUICK: dict[str, Any] = {
    "tick_sizes": (1_000, 3_000, 10_000),
    "tick_reps": 20,
    "next_fire": {"repeats": 3, "calls": 300, "croniter_calls": 100},
    "ledger_events": 50_000,
    "ledger_schedules": 300,
    "replay_runs": 3,
    "rss_schedules": 10_000,
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- (a) plan_tick --------------------------------------------------------------------------


def measure_ticks(sizes: tuple[int, ...], reps: int) -> dict[int, dict[str, float]]:
    """ms per `plan_tick` with DUE of n schedules due, for each n: median (and min) of `reps`.

    The sizes are timed round-robin (one tick of each per round), so a slow spell of the VM
    hits every size alike instead of skewing the ratio between them.
    """
    now = workloads.TICK_NOW
    snapshots = {}
    for n in sizes:
        started = time.perf_counter()
        snapshots[n] = snapshot = workloads.tick_snapshot(n, DUE)
        log(f"  snapshot of {n:>7,} schedules built in {time.perf_counter() - started:.1f} s")
        for _ in range(3):  # warm-up, and the plan is what the benchmark claims
            summary = plan_tick(snapshot, now).summary
            assert summary.fired == DUE and summary.dispatched == DUE, summary
            assert not summary.more_due and summary.missed == 0, summary
    gc.collect()
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(reps):
        for n in sizes:
            snapshot = snapshots[n]
            began = time.perf_counter()
            plan_tick(snapshot, now)
            times[n].append((time.perf_counter() - began) * 1000)
    out = {}
    for n in sizes:
        out[n] = {"median": statistics.median(times[n]), "min": min(times[n])}
        log(
            f"  plan_tick n={n:>7,}: {out[n]['median']:.3f} ms median "
            f"(min {out[n]['min']:.3f}, {reps} ticks)"
        )
    return out


# --- (c) replay -----------------------------------------------------------------------------


def measure_replay(cfg: dict[str, Any], cache_dir: Path, regenerate: bool) -> dict[str, Any]:
    db, final, meta = workloads.cached_ledger(
        cfg["ledger_events"], cfg["ledger_schedules"], cache_dir, regenerate, log
    )
    total = meta["events"]
    runs = cfg["replay_runs"]

    read_s = []
    for _ in range(runs):
        gc.collect()
        with workloads.open_for_read(db) as ledger:
            began = time.perf_counter()
            tail = deque(ledger.read(), maxlen=1)  # iterates in C: only the read is timed
            read_s.append(time.perf_counter() - began)
        assert tail[0][0] == total, (tail, total)
        log(f"  read+decode: {total / read_s[-1]:>10,.0f} events/s")

    replay_s, replay_cpu_s = [], []
    equal = None
    for _ in range(runs):
        gc.collect()
        began, began_cpu = time.perf_counter(), time.process_time()
        with workloads.open_for_read(db) as ledger:
            replayed = catch_up(ledger)
        replay_s.append(time.perf_counter() - began)
        replay_cpu_s.append(time.process_time() - began_cpu)
        log(
            f"  replay (catch_up): {total / replay_s[-1]:>10,.0f} events/s "
            f"({total / replay_cpu_s[-1]:,.0f} per CPU second)"
        )
        if equal is None:
            equal = replayed == final and replayed.position == total
            log(f"  replayed snapshot == simulated snapshot: {equal}")
        del replayed

    # The fold alone, on events decoded beforehand (the split of the replay's cost).
    with workloads.open_for_read(db) as ledger:
        decoded = [e for _, e in ledger.read()]
    fold_s = []
    for _ in range(runs):
        gc.collect()
        with gc_paused():
            began = time.perf_counter()
            folded = apply_all(EMPTY, decoded, rebuild_indexes=True)
            fold_s.append(time.perf_counter() - began)
        del folded
        log(f"  fold only (decoded events): {total / fold_s[-1]:>10,.0f} events/s")
    del decoded
    gc.collect()

    if not equal:
        raise AssertionError(
            f"the replay of {db} differs from the snapshot the simulation ended with "
            "(a projector bug, or a stale cache: rerun with --regenerate)"
        )
    return {
        "events": total,
        "ledger": str(db),
        "meta": meta,
        "read_events_per_s": total / statistics.median(read_s),
        "replay_events_per_s": total / statistics.median(replay_s),
        "fold_events_per_s": total / statistics.median(fold_s),
        "replay_runs_events_per_s": [round(total / s) for s in replay_s],
        "replay_cpu_events_per_s": total / statistics.median(replay_cpu_s),
        "replay_equals_simulation": bool(equal),
    }


# --- (d) peak RSS ---------------------------------------------------------------------------


def rss_child(n: int) -> None:
    """In a fresh process: build n schedules, fold them, tick once; print the peak RSS."""
    info: dict[str, Any] = {"schedules": n}
    if n:
        started = time.perf_counter()
        snapshot = workloads.tick_snapshot(n, min(DUE, n))
        plan = plan_tick(snapshot, workloads.TICK_NOW)
        assert plan.summary.fired == min(DUE, n), plan.summary
        info["build_s"] = round(time.perf_counter() - started, 2)
        info["schedules_held"] = len(plan.snapshot.schedules)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    info["rss_mb"] = peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
    info["vm_hwm_mb"] = _vm_hwm_mb()
    print(json.dumps(info))


def _vm_hwm_mb() -> float | None:
    """This process image's peak RSS as Linux counts it (VmHWM), to cross-check ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# Linux carries a parent's RSS at fork into the child's ru_maxrss (kept across exec), so the
# child is started by a small launcher process: its ru_maxrss then only reflects itself.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def measure_rss(n: int) -> dict[str, Any]:
    out = {}
    for key, count in (("bare", 0), ("loaded", n)):
        child = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(count)]
        done = subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, *child],
            capture_output=True,
            text=True,
            check=True,
        )
        out[key] = json.loads(done.stdout)
        hwm = out[key]["vm_hwm_mb"]
        log(
            f"  peak RSS with {count:>7,} schedules: {out[key]['rss_mb']:.1f} MB"
            + (f" (VmHWM {hwm:.1f} MB)" if hwm is not None else "")
        )
    return out


# --- the report -----------------------------------------------------------------------------


def run(quick: bool, cache_dir: Path, regenerate: bool) -> dict[str, Any]:
    cfg = QUICK if quick else FULL
    result: dict[str, Any] = {"mode": "quick" if quick else "full"}

    log("(a) plan_tick")
    ticks = measure_ticks(cfg["tick_sizes"], cfg["tick_reps"])
    result["plan_tick_ms"] = {
        str(nominal): ticks[size]["median"]
        for nominal, size in zip(NOMINAL_SIZES, cfg["tick_sizes"], strict=True)
    }
    result["plan_tick_ms_min"] = {
        str(nominal): ticks[size]["min"]
        for nominal, size in zip(NOMINAL_SIZES, cfg["tick_sizes"], strict=True)
    }
    small, large = cfg["tick_sizes"][0], cfg["tick_sizes"][-1]
    result["plan_tick_ratio_100k_1k"] = ticks[large]["median"] / ticks[small]["median"]

    log("(b) next fire vs croniter")
    nf = next_fire.measure(**cfg["next_fire"])
    result["next_fire_us"] = nf["next_fire_us"]
    result["croniter_us"] = nf["croniter_us"]
    result["next_fire_ratio"] = {
        expr: nf["croniter_us"][expr] / nf["next_fire_us"][expr] for expr in next_fire.EXPRESSIONS
    }

    log("(c) replay")
    replay = measure_replay(cfg, cache_dir, regenerate)
    result["replay_events_per_s"] = replay["replay_events_per_s"]
    result["read_events_per_s"] = replay["read_events_per_s"]
    result["fold_events_per_s"] = replay["fold_events_per_s"]
    result["replay_runs_events_per_s"] = replay["replay_runs_events_per_s"]
    result["replay_cpu_events_per_s"] = replay["replay_cpu_events_per_s"]
    result["replay_equals_simulation"] = replay["replay_equals_simulation"]
    result["ledger"] = {
        k: replay["meta"][k] for k in ("events", "schedules", "ticks", "virtual_hours")
    }

    log("(d) peak RSS")
    rss = measure_rss(cfg["rss_schedules"])
    result["rss_mb_100k"] = rss["loaded"]["rss_mb"]
    result["rss_mb_bare"] = rss["bare"]["rss_mb"]
    result["rss_vm_hwm_mb_100k"] = rss["loaded"]["vm_hwm_mb"]

    result["sizes"] = {
        "plan_tick": {
            str(nominal): size
            for nominal, size in zip(NOMINAL_SIZES, cfg["tick_sizes"], strict=True)
        },
        "due": DUE,
        "replay_events": replay["events"],
        "rss_schedules": cfg["rss_schedules"],
    }
    result["goals_met"] = all(ok for *_, ok in _rows(result) if ok is not None)
    return result


def _rows(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(what, figure, goal, met: None when only context)."""
    sizes = r["sizes"]["plan_tick"]
    rows: list[tuple[str, str, str, bool | None]] = []
    for nominal in NOMINAL_SIZES:
        n = sizes[str(nominal)]
        rows.append(
            (
                f"plan_tick, {DUE} due of {n:,} schedules",
                f"{r['plan_tick_ms'][str(nominal)]:.2f} ms",
                "",
                None,
            )
        )
    ratio = r["plan_tick_ratio_100k_1k"]
    small, large = sizes["1000"], sizes["100000"]
    rows.append(
        (
            f"plan_tick ratio {large:,} / {small:,}",
            f"{ratio:.2f}x",
            f"<= {GOAL_TICK_RATIO:.1f}x",
            ratio <= GOAL_TICK_RATIO,
        )
    )
    for expr in next_fire.EXPRESSIONS:
        ours, theirs = r["next_fire_us"][expr], r["croniter_us"][expr]
        rows.append(
            (
                f"next fire {expr!r}: {ours:.2f} µs vs croniter {theirs:.1f} µs",
                f"{theirs / ours:.1f}x",
                f">= {GOAL_NEXT_FIRE_RATIO:.0f}x",
                theirs / ours >= GOAL_NEXT_FIRE_RATIO,
            )
        )
    events = r["sizes"]["replay_events"]
    rows.append(
        (f"read+decode {events:,} events (SQLite)", _rate(r["read_events_per_s"]), "", None)
    )
    rows.append((f"fold only, {events:,} decoded events", _rate(r["fold_events_per_s"]), "", None))
    rows.append(
        (
            f"replay {events:,} events: catch_up(open_ledger(sqlite))",
            _rate(r["replay_events_per_s"]),
            f">= {_rate(GOAL_REPLAY)}",
            r["replay_events_per_s"] >= GOAL_REPLAY,
        )
    )
    rows.append(
        (
            "  (the same, per CPU second: the VM's noise left out)",
            _rate(r["replay_cpu_events_per_s"]),
            "",
            None,
        )
    )
    rows.append(
        (
            "replayed snapshot == simulated snapshot",
            "yes" if r["replay_equals_simulation"] else "NO",
            "equal",
            r["replay_equals_simulation"],
        )
    )
    rows.append(
        (
            f"peak RSS, {r['sizes']['rss_schedules']:,} schedules + 1 tick",
            f"{r['rss_mb_100k']:.0f} MB",
            f"<= {GOAL_RSS_MB:.0f} MB",
            r["rss_mb_100k"] <= GOAL_RSS_MB,
        )
    )
    rows.append(
        ("peak RSS, interpreter + cronledger imported", f"{r['rss_mb_bare']:.0f} MB", "", None)
    )
    return rows


def _rate(per_s: float) -> str:
    return f"{per_s / 1000:,.0f}k ev/s"


def print_table(r: dict[str, Any]) -> None:
    rows = _rows(r)
    width = max(len(what) for what, *_ in rows)
    title = f"cronledger core benchmark ({r['mode']}"
    if r["mode"] == "quick":
        title += ": small sizes, goals are for the full run"
    print(title + ")")
    print(f"{'':<{width}}  {'figure':>12}  {'goal':>13}  result")
    for what, figure, goal, ok in rows:
        status = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{what:<{width}}  {figure:>12}  {goal:>13}  {status}".rstrip())
    ledger = r["ledger"]
    print(
        f"(ledger: {ledger['events']:,} events from {ledger['schedules']:,} schedules, "
        f"{ledger['ticks']:,} ticks, {ledger['virtual_hours']} virtual hours)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the cached ledger")
    parser.add_argument("--cache-dir", type=Path, default=workloads.CACHE_DIR)
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child is not None:
        rss_child(args.rss_child)
        return 0
    result = run(args.quick, args.cache_dir, args.regenerate)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0 if args.quick or result["goals_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
