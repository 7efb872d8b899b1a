"""The daemon: an engine on a ledger with the process and call runners, until signalled.

`cronledger run` validates its arguments (adapters/cli/run_command.py), then calls `serve`.
SIGTERM/SIGINT drain (no new dispatches, wait for active runs up to `--drain-timeout`), a
second signal stops at once and leaves the runs to the restart.
`python -m cronledger.adapters.daemon [--ledger URL] [--log-level L] ARGS` is `cronledger run`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from cronledger.adapters.call_runner import CallRunner
from cronledger.adapters.clock import SystemClock
from cronledger.adapters.config import options_from_mapping
from cronledger.adapters.engine import CLAIM_WAIT_S, Engine
from cronledger.adapters.ledger import Ledger, open_ledger
from cronledger.adapters.ledger_store import redact_url
from cronledger.adapters.process_runner import ProcessRunner
from cronledger.adapters.runner import Runners
from cronledger.domain.commands import StartRun
from cronledger.domain.instants import iso
from cronledger.domain.values import Options
from cronledger.errors import DaemonRunning, StateDirError

ONCE_POLL_S = 0.05  # how often `--once` looks for the exits of the runs it started
log = logging.getLogger("cronledger.daemon")


def default_state_dir(url: str) -> Path:
    """Run files live beside an SQLite ledger (`x.db` -> `x.db.runs`), else in ./cronledger-runs."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :].split("?")[0] + ".runs")
    return Path("cronledger-runs")


def build_engine(
    url: str, state_dir: Path, max_threads: int = 16, node: str | None = None
) -> Engine:
    """The composition root of a daemon: ledger, system clock, process and call runners."""
    return engine_on(open_ledger(url), state_dir, max_threads, node)


def engine_on(
    ledger: Ledger, state_dir: Path, max_threads: int = 16, node: str | None = None
) -> Engine:
    """`build_engine` on an open ledger; the state dir is made only once the ledger opened.
    `node` names the engine on the runs it starts and is claimed while it runs (None:
    unnamed)."""
    clock = SystemClock()
    try:
        calls = CallRunner(max_threads, clock=clock.now)
        try:
            processes = ProcessRunner(state_dir, clock=clock.now)
        except OSError as error:
            where = error.filename or state_dir
            raise StateDirError(
                error.errno,
                f"state dir {str(state_dir)!r}: cannot use {str(where)!r}: "
                f"{error.strerror or error} (pass a directory this user can create and write "
                "to: --state-dir DIR, or state_dir= in Python)",
            ) from error
        engine = Engine(
            ledger,
            clock,
            Runners(processes, calls, clock.now),
            node=node,
        )
    except BaseException:
        ledger.close()
        raise
    return engine


@attrs.frozen(kw_only=True)
class Settings:
    """One daemon run's arguments, already validated (nothing was opened to check them)."""

    ledger_url: str
    state_dir: Path
    options: Mapping[str, Any]  # `[options]` keys (adapters/config.py) to apply at start-up
    until: int | None = None
    once: bool = False
    drain_timeout_ms: int = 60_000
    node: str | None = None  # --node; None: unnamed (one daemon per name runs on a ledger)
    options_file: bool = False  # `options` is a whole [options] table: keys left out: defaults


def serve(
    ledger: Ledger, settings: Settings, report: Callable[[dict[str, object]], None] | None = None
) -> int:
    """Run the daemon on `ledger` (closed at the end): ticks until signalled or `until`;
    then `report` gets what it did (ledger positions, facts recorded, runs left active)."""
    _refuse_early(ledger, settings.node)
    engine = engine_on(ledger, settings.state_dir, node=settings.node)
    try:
        engine.claim()  # before anything is recorded: a refused daemon changes nothing
    except BaseException:
        engine.close()
        raise
    try:

        def configured(current: Options) -> Options:
            """The flags (or the whole --config table) over the options in force then."""
            base = Options(draining=current.draining) if settings.options_file else current
            return options_from_mapping(dict(settings.options), base)

        began_at, appended = engine.snapshot.position, engine.facts_appended
        engine.change_options(configured)
        _log_start(engine, settings)
        if settings.once:
            run_once(engine, settings.drain_timeout_ms)
        else:
            engine.run(
                until=settings.until,
                handle_signals=True,
                drain_timeout_ms=settings.drain_timeout_ms,
            )
    finally:
        s = engine.snapshot
        log.info("stopped at position %d, %d active runs", s.position, s.active)
        engine.close()
    if report is not None:
        report(
            {
                "node": settings.node,
                "started_at_position": began_at,
                "position": s.position,
                "facts": engine.facts_appended - appended,  # its own, not other writers'
                "active_runs": s.active,
            }
        )
    return 0


def _refuse_early(ledger: Ledger, node: str | None) -> None:
    """DaemonRunning (the ledger closed) while another daemon holds our name after
    CLAIM_WAIT_S, found by a probe that takes nothing: refused before the state dir is made
    (the claim itself, taken next, is what counts)."""
    deadline = time.monotonic() + CLAIM_WAIT_S
    try:
        while ledger.claimed(node or ""):
            if time.monotonic() >= deadline:
                raise DaemonRunning(node)
            time.sleep(0.05)
    except BaseException:
        ledger.close()
        raise


def run_once(engine: Engine, wait_ms: int) -> None:
    """One tick; then, dispatching nothing new, wait up to `wait_ms` for the runs it started
    and record their outcomes. Runs still active then are left to the next daemon. SIGTERM or
    SIGINT ends the wait early (draining is undone in the ledger either way: it holds every
    daemon on the ledger back)."""
    engine.start()
    plan = engine.tick()
    started = {c.run_id for c in plan.commands if isinstance(c, StartRun)}
    if not started or wait_ms <= 0:
        return
    deadline = engine.clock.now() + wait_ms
    stop = threading.Event()
    previous = _catch_signals(stop)
    try:
        recorded = bool(engine.set_draining(True))  # (another daemon's drain is not ours)
        try:
            while _active(engine, started) and engine.clock.now() < deadline:
                if stop.wait(ONCE_POLL_S):
                    log.info("signal: no more waiting")
                    break
                engine.check_claims(if_due=True)  # a long wait: is the name still ours?
                engine.tick(reconcile_only=True)  # record exits; fire nothing while waiting
        finally:
            if recorded:
                engine.set_draining(False)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    left = _active(engine, started)
    if left:
        why = "the wait was cut short by a signal" if stop.is_set() else "--drain-timeout passed"
        log.warning("%d run(s) still active (%s): the next daemon collects them", left, why)


def _catch_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM and SIGINT set `stop` (main thread only); the handlers they had, to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, lambda _signum, _frame: stop.set())
    return previous


def _active(engine: Engine, run_ids: set[str]) -> int:
    runs = engine.snapshot.runs
    return sum(run_id in runs for run_id in run_ids)


def _log_start(engine: Engine, settings: Settings) -> None:
    s, o = engine.snapshot, engine.snapshot.options
    log.info(
        "started: ledger %s at position %d, %d schedules, %d active runs, state %s, node %s; "
        "max_workers=%d max_per_tick=%d batch_size=%d headroom=%d/%d misfire_grace=%dms "
        "output_tail_bytes=%d%s",
        redact_url(settings.ledger_url),
        s.position,
        len(s.schedules),
        s.active,
        settings.state_dir,
        engine.node or "(unnamed)",
        o.max_workers,
        o.max_per_tick,
        o.batch_size,
        o.slot_headroom,
        o.fallback_headroom,
        o.misfire_grace_ms,
        o.output_tail_bytes,
        f"; until {iso(settings.until)}" if settings.until is not None else "",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cronledger.adapters.daemon`: `cronledger run` with a `--log-level` option."""
    from cronledger.adapters.cli.main import main as cli_main

    parser = argparse.ArgumentParser(prog="cronledger-daemon", add_help=False)
    parser.add_argument("--ledger", default=None)
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--log-level", default="INFO")
    args, rest = parser.parse_known_args(argv)
    words = ["--ledger", args.ledger] if args.ledger else []
    words += ["--state-dir", args.state_dir] if args.state_dir else []
    level = args.log_level.upper()
    verbosity = {"DEBUG": ["-v"], "INFO": []}.get(level, ["-q"])
    return cli_main([*words, "run", *verbosity, *rest])


if __name__ == "__main__":
    import sys

    sys.exit(main())
