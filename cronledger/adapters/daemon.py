"""The daemon: an engine on a ledger with the process and call runners, until signalled.

`python -m cronledger.adapters.daemon --ledger sqlite:///cronledger.db` (the `cronledger run`
command wraps this). SIGTERM/SIGINT drain (no new dispatches, wait for active runs up to
`--drain-timeout`), a second signal stops at once and leaves the runs to the restart.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs

from cronledger.adapters.call_runner import CallRunner
from cronledger.adapters.clock import SystemClock
from cronledger.adapters.config import load_options
from cronledger.adapters.engine import Engine
from cronledger.adapters.ledger import open_ledger
from cronledger.adapters.process_runner import ProcessRunner
from cronledger.adapters.runner import Runners
from cronledger.domain.commands import ChangeOptions
from cronledger.domain.durations import parse_duration
from cronledger.domain.instants import iso, parse_instant
from cronledger.domain.validation import validate_options
from cronledger.errors import CronledgerError

DEFAULT_LEDGER = "sqlite:///cronledger.db"
log = logging.getLogger("cronledger.daemon")


def default_state_dir(url: str) -> Path:
    """Run files live beside an SQLite ledger (`x.db` -> `x.db.runs`), else in ./cronledger-runs."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :].split("?")[0] + ".runs")
    return Path("cronledger-runs")


def build_engine(url: str, state_dir: Path, max_threads: int = 16) -> Engine:
    """The composition root of a daemon: ledger, system clock, process and call runners."""
    clock = SystemClock()
    calls = CallRunner(max_threads, clock=clock.now)
    processes = ProcessRunner(state_dir, clock=clock.now)
    engine = Engine(open_ledger(url), clock, Runners(processes, calls, clock.now))
    calls.set_wake(engine.wake)
    processes.set_wake(engine.wake)
    return engine


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cronledger-daemon", description=__doc__)
    parser.add_argument("--ledger", default=os.environ.get("CRONLEDGER_LEDGER", DEFAULT_LEDGER))
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where run output and exit status are kept (survives restarts)",
    )
    parser.add_argument("--config", type=Path, default=None, help="TOML file with [options]")
    parser.add_argument("--max-workers", type=int, default=None)
    parser.add_argument("--until", default=None, help="stop at this instant (ISO-8601 with zone)")
    parser.add_argument("--for", dest="duration", default=None, help="stop after e.g. 15s, 2h")
    parser.add_argument("--once", action="store_true", help="run one tick and stop")
    parser.add_argument("--drain-timeout", default="60s")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        state_dir = args.state_dir or default_state_dir(args.ledger)
        engine = build_engine(args.ledger, state_dir)
        options = engine.snapshot.options
        if args.config is not None:
            options = load_options(args.config, options)
        if args.max_workers is not None:
            options = attrs.evolve(options, max_workers=args.max_workers)
        validate_options(options)
        engine.execute(ChangeOptions(options))
        until = parse_instant(args.until, "--until") if args.until else None
        if args.duration:
            until = engine.clock.now() + parse_duration(args.duration, "--for")
        drain_timeout = parse_duration(args.drain_timeout, "--drain-timeout")
    except CronledgerError as error:
        print(f"cronledger: {error}", file=sys.stderr)
        return 2
    s = engine.snapshot
    o = s.options
    log.info(
        "started: ledger %s at position %d, %d schedules, %d active runs, state %s; "
        "max_workers=%d max_per_tick=%d batch_size=%d headroom=%d/%d%s",
        args.ledger,
        s.position,
        len(s.schedules),
        s.active,
        state_dir,
        o.max_workers,
        o.max_per_tick,
        o.batch_size,
        o.slot_headroom,
        o.fallback_headroom,
        f"; until {iso(until)}" if until is not None else "",
    )
    try:
        if args.once:
            engine.start()
            engine.tick()
        else:
            engine.run(until=until, handle_signals=True, drain_timeout_ms=drain_timeout)
    finally:
        log.info(
            "stopped at position %d, %d active runs",
            engine.snapshot.position,
            engine.snapshot.active,
        )
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
