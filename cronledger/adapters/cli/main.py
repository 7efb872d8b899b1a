"""`cronledger`: the command line. Exit codes: 0 ok, 1 verification or operation failed,
2 usage or bad input (one line naming the input and the fix; `--debug` shows the traceback)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from cronledger.adapters.cli import audit_commands as audit_cmd
from cronledger.adapters.cli import read_commands as read_cmd
from cronledger.adapters.cli import run_command as run_cmd
from cronledger.adapters.cli import write_commands as write_cmd
from cronledger.adapters.cli.context import DEFAULT_LEDGER, Context
from cronledger.adapters.cli.output import emit_json
from cronledger.adapters.cli.run_command import add_run_flags
from cronledger.adapters.cli.schedule_flags import add_schedule_flags
from cronledger.errors import (
    CronledgerError,
    DuplicateSchedule,
    InvalidInput,
    LedgerCorrupted,
    LedgerError,
    LedgerUnavailable,
    UnknownEntry,
    UnknownSchedule,
)

Handler = Callable[[Context, argparse.Namespace], int]
BAD_INPUT = (InvalidInput, UnknownSchedule, UnknownEntry, DuplicateSchedule, LedgerError)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2, and `-5s` is a value."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # `--timeout -5s` gives -5s to --timeout (for a clear "must be positive" error), as
        # argparse does for `-5`; no cronledger option starts with a digit.
        self._negative_number_matcher = re.compile(r"^-\d")
        self.commands: dict[str, Parser] = {}

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class UsageError(Exception):
    """A command line argparse cannot parse (exit code 2)."""


class Version(argparse.Action):
    """`--version`: the installed package's version, looked up only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> NoReturn:
        from cronledger import __version__

        sys.stdout.write(f"cronledger {__version__}\n")
        parser.exit(0)


def add_global_flags(c: argparse.ArgumentParser, *, top: bool) -> None:
    """The global flags, before the command (`top`, with their defaults) and after it too
    (`cronledger status --json`): there a given flag overrides the one before, and an absent
    one leaves it alone (no default)."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    g = c if top else c.add_argument_group("global options (also accepted before the command)")
    g.add_argument(
        "--ledger",
        default=default(os.environ.get("CRONLEDGER_LEDGER", DEFAULT_LEDGER)),
        help="ledger URL: sqlite:///FILE, postgresql://..., memory:// "
        f"(env CRONLEDGER_LEDGER, default {DEFAULT_LEDGER})",
    )
    g.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document (for scripts)",
    )
    g.add_argument("--debug", action="store_true", default=default(False), help="show tracebacks")
    g.add_argument(
        "--state-dir",
        type=Path,
        default=default(None),
        help="run files (default beside the ledger)",
    )


def build_parser() -> Parser:
    p = Parser(
        prog="cronledger", description="An event-sourced scheduler: every decision on record."
    )
    add_global_flags(p, top=True)
    p.add_argument("--version", action=Version, nargs=0, help="print the version and exit")
    sub = p.add_subparsers(dest="command_name", metavar="COMMAND", parser_class=Parser)

    def command(name: str, handler: Handler, text: str) -> Parser:
        c = sub.add_parser(name, help=text, description=text)
        c.set_defaults(handler=handler)
        p.commands[name] = c
        add_global_flags(c, top=False)
        if name in ("add", "update", "submit"):
            c.epilog = "Give the job's command last, after `--`: ... -- PROGRAM ARGS..."
        return c

    c = command(
        "add", write_cmd.add, "add a schedule: cronledger add NAME --every 5m -- PROGRAM ARGS..."
    )
    c.add_argument("name", metavar="NAME")
    add_schedule_flags(c)

    c = command(
        "update", write_cmd.update, "change some of a schedule's settings (flags as for add)"
    )
    c.add_argument("name", metavar="NAME")
    add_schedule_flags(c)

    c = command("pause", write_cmd.pause, "stop a schedule firing until resumed")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--reason", default="", help="recorded with the pause")
    for name, handler, text in (
        ("resume", write_cmd.resume, "let a paused schedule fire again"),
        ("remove", write_cmd.remove, "remove a schedule (its history stays in the ledger)"),
        ("trigger", write_cmd.trigger, "fire a schedule now, by hand (concurrency policy applies)"),
    ):
        command(name, handler, text).add_argument("name", metavar="NAME")

    c = command(
        "submit", write_cmd.submit, "queue a one-off task: cronledger submit -- PROGRAM ARGS..."
    )
    c.add_argument("--call", default=None, metavar="NAME", help="a registered in-process callable")
    c.add_argument("--priority", type=int, default=0)
    c.add_argument("--hold", default=None, metavar="REASON", help="queue it held")
    c.add_argument("--retries", type=int, default=0)
    c.add_argument("--backoff", default="1s", metavar="DURATION")
    c.add_argument("--timeout", default=None, metavar="DURATION")

    for name, handler, text in (
        ("hold", write_cmd.hold, "keep a pending queue entry from being dispatched"),
        ("release", write_cmd.release, "let a held queue entry be dispatched"),
        ("cancel", write_cmd.cancel, "drop a queue entry; a running one is stopped by the daemon"),
    ):
        c = command(name, handler, text)
        c.add_argument("entry", metavar="ENTRY", help="an entry id (`cronledger status`)")
        if name != "release":
            c.add_argument("--reason", default=None, help="recorded with the fact")

    c = command("apply", write_cmd.apply, "make the ledger's schedules match a TOML file")
    c.add_argument("file", metavar="FILE.toml")
    c.add_argument("--dry-run", action="store_true", help="print the plan only")
    c.add_argument(
        "--keep", action="store_true", help="do not remove schedules missing from the file"
    )

    command("list", read_cmd.list_schedules, "the schedules")
    c = command("show", read_cmd.show, "one schedule: spec, state, next fires, recent runs")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--runs", type=int, default=5, help="how many recent runs")
    command("status", read_cmd.status, "health, queue and active runs")
    c = command("history", read_cmd.history, "finished and active runs, oldest first")
    c.add_argument("name", nargs="?", default=None, metavar="NAME")
    c.add_argument("--since", default=None, metavar="INSTANT")
    c.add_argument("--limit", type=int, default=50)
    c = command("logs", read_cmd.logs, "a run's captured output tail")
    c.add_argument("run_id", metavar="RUN_ID")

    c = command("run", run_cmd.run, "the daemon: fire schedules and run their jobs until stopped")
    add_run_flags(c)

    c = command(
        "explain", audit_cmd.explain, "why a run, entry, schedule or manual trigger did what it did"
    )
    c.add_argument("subject", metavar="RUN_ID|NAME|REQUEST_ID")
    c.add_argument("--at", default=None, metavar="INSTANT", help="the decision in force then")
    c = command("replay", audit_cmd.replay, "the state as it was at an instant or position")
    c.add_argument("--at", default=None, metavar="INSTANT")
    c.add_argument("--position", type=int, default=None)
    command("verify", audit_cmd.verify, "re-plan every recorded tick; exit 1 on a divergence")
    c = command("simulate", audit_cmd.simulate_command, "run a schedules file on a virtual clock")
    c.add_argument("file", metavar="FILE.toml")
    c.add_argument("--from", dest="from_", required=True, metavar="INSTANT")
    c.add_argument("--to", required=True, metavar="INSTANT")
    c.add_argument("--runtime", default="1s", help="fixed (30s), uniform:10s..2m or exp:45s")
    c.add_argument("--fail-rate", type=float, default=0.0, metavar="P")
    c.add_argument("--outage", action="append", default=None, metavar="T..T", help="repeatable")
    c.add_argument("--compare", default=None, metavar="FILE2.toml", help="what FILE2 would change")
    c.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in words:  # everything after `--` is the job's argv, never our options
        cut = words.index("--")
        words, command = words[:cut], words[cut + 1 :]
    try:
        args, extra = parser.parse_known_args(words)
        if extra:  # blame the command in use, and point to its help
            where = parser.commands.get(args.command_name or "", parser)
            where.error(f"unrecognized arguments: {' '.join(extra)}")
    except UsageError as error:
        # (argparse takes an unambiguous prefix of a flag: `--js` is `--json`)
        as_json = any(len(w) > 3 and "--json".startswith(w) for w in words)
        return _report_error(error, 2, as_json=as_json)
    args.command = command
    if getattr(args, "handler", None) is None:
        return _no_command(parser, as_json=args.json)
    ctx = Context.from_args(args)
    try:
        code: int = args.handler(ctx, args)
        return code
    except (LedgerCorrupted, LedgerUnavailable) as error:  # the ledger's, not the command line's
        return _fail(ctx, error, 1)
    except BAD_INPUT as error:
        return _fail(ctx, error, 2)
    except CronledgerError as error:
        return _fail(ctx, error, 1)
    except OSError as error:  # the machine said no: a state dir out of reach, a full disk
        return _fail(ctx, error, 1)
    except KeyboardInterrupt:
        return 130


def _no_command(parser: Parser, *, as_json: bool) -> int:
    """Like argparse for a missing argument: the usage, the commands and one error line."""
    sys.stderr.write(parser.format_usage())
    sys.stderr.write(f"commands: {', '.join(parser.commands)}\n")
    missing = UsageError("a COMMAND is required (see `cronledger --help`)")
    return _report_error(missing, 2, as_json=as_json)


def _fail(ctx: Context, error: Exception, code: int) -> int:
    if ctx.debug:
        traceback.print_exc()
    return _report_error(error, code, as_json=ctx.json)


def _report_error(error: Exception, code: int, *, as_json: bool) -> int:
    """The error line on stderr; under --json also a JSON document on stdout, so that a script
    reading stdout gets JSON whatever happened: {"ok": false, "error": {type, message, exit_code,
    and field, problem, fix for bad input}}."""
    text = " ".join(str(error).split("\n"))
    print(f"cronledger: error: {text}", file=sys.stderr)
    if as_json:
        detail: dict[str, object] = {"type": type(error).__name__, "message": text}
        if isinstance(error, InvalidInput):
            detail.update(field=error.field, problem=error.problem, fix=error.fix)
        detail["exit_code"] = code
        emit_json({"ok": False, "error": detail})
    return code


if __name__ == "__main__":
    sys.exit(main())
