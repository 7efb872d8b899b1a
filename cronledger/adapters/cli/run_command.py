"""`cronledger run`: every argument checked before the ledger or the state dir is touched."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from cronledger.adapters import daemon
from cronledger.adapters.cli import output as o
from cronledger.adapters.cli.context import Context, flags, sqlite_path
from cronledger.adapters.cli.values import duration
from cronledger.adapters.config import options_from_mapping, read_options
from cronledger.domain.instants import iso, parse_instant
from cronledger.domain.values import Options
from cronledger.errors import InvalidInput

ONCE_HELP = (
    "one tick, then wait up to --drain-timeout for the runs it started (dispatching nothing "
    "new) so their outcomes are recorded; runs still active then are left to the next daemon"
)


def add_run_flags(c: argparse.ArgumentParser) -> None:
    c.add_argument(
        "--max-workers", type=int, default=None, metavar="N", help="at most N runs at once"
    )
    c.add_argument("--once", action="store_true", help=ONCE_HELP)
    c.add_argument(
        "--until", default=None, metavar="INSTANT", help="stop then (with Z or an offset)"
    )
    c.add_argument(
        "--for", dest="duration", default=None, metavar="DURATION", help="stop after, e.g. 15s"
    )
    c.add_argument("--config", default=None, metavar="FILE", help="TOML file with [options]")
    c.add_argument(
        "--drain-timeout",
        default="60s",
        metavar="DURATION",
        help="how long a stop (or --once) waits for active runs (default 60s)",
    )
    c.add_argument(
        "--node",
        default=None,
        metavar="NAME",
        help="for several daemons on one ledger: the name recorded on the runs this daemon "
        "starts (one running daemon per name; default: unnamed). At start-up it adopts its "
        "own active runs and those of daemons not running that it may take (a named one the "
        "unnamed runs, the unnamed one every node's). Give a gone node's name to collect its "
        "runs",
    )
    loud = c.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", help="only warnings")
    loud.add_argument("-v", "--verbose", action="store_true", help="debug output")


def run(ctx: Context, args: argparse.Namespace) -> int:
    settings = settings_from(ctx, args)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    path = sqlite_path(ctx.ledger_url)
    new = path is not None and not path.exists()
    ledger = ctx.open(must_exist=False)
    if new:  # (a mistyped --ledger would otherwise look like a ledger with nothing due)
        logging.getLogger("cronledger.daemon").warning(
            "no ledger at %s: started on a new, empty one (add schedules with `cronledger add` "
            "or `cronledger apply`, or pass the right --ledger)",
            path,
        )
    # (--max-workers alone changes the options in force, known only once the ledger is open)
    with flags(**{"options.max_workers": "--max-workers"}):
        return daemon.serve(ledger, settings, report=o.emit_json if ctx.json else None)


def settings_from(ctx: Context, args: argparse.Namespace) -> daemon.Settings:
    """The validated arguments (each error names its flag); nothing is opened or created."""
    stop_flags = [f for f, v in (("--until", args.until), ("--for", args.duration)) if v]
    if len(stop_flags) == 2:
        raise InvalidInput("--for", "cannot be combined with --until", "give one of them")
    if args.once and stop_flags:
        raise InvalidInput(stop_flags[0], "cannot be combined with --once", "drop one of them")
    until = None
    if args.until:
        until = parse_instant(args.until, "--until")
        if until <= ctx.now():
            raise InvalidInput(
                "--until",
                f"{iso(until)} is not in the future",
                "give a later instant, or use --once for one tick",
            )
    if args.duration:
        until = ctx.now() + duration(args.duration, "--for")
    return daemon.Settings(
        ledger_url=ctx.ledger_url,
        state_dir=ctx.runs_dir(),
        options=_options(args),
        until=until,
        once=args.once,
        drain_timeout_ms=duration(args.drain_timeout, "--drain-timeout", zero_ok=True),
        node=_node(args.node),
        options_file=args.config is not None,
    )


def _node(name: str | None) -> str | None:
    if name is not None and (not name.strip() or any(c in name for c in "\n\r\0")):
        raise InvalidInput("--node", f"{name!r} is not a node name", "give a name on one line")
    return name


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The `[options]` keys to apply: the --config file's, then --max-workers."""
    table: dict[str, Any] = read_options(args.config) if args.config is not None else {}
    if args.max_workers is not None:
        if args.max_workers < 1:
            raise InvalidInput(
                "--max-workers",
                f"must be 1 or more, got {args.max_workers}",
                "e.g. --max-workers 8",
            )
        table["max_workers"] = args.max_workers
    if args.config is not None:
        try:
            # a file is the whole table (over the defaults), so the options it gives, with
            # --max-workers over them, can be checked whole before anything is opened
            options_from_mapping(table, Options())
        except InvalidInput as error:
            if args.max_workers is not None and error.field == "options.max_workers":
                raise InvalidInput("--max-workers", error.problem, error.fix) from None
            raise InvalidInput(
                "--config", f"{args.config}: {error.field}: {error.problem}", error.fix
            ) from None
    return table
