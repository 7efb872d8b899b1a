"""What every CLI command shares: the ledger URL, the clock, opening ledgers and engines."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

import attrs

from cronledger.adapters.clock import SystemClock
from cronledger.adapters.daemon import default_state_dir
from cronledger.adapters.engine import Engine
from cronledger.adapters.ledger import Ledger, open_ledger
from cronledger.adapters.ledger_store import _SCHEMES
from cronledger.errors import InvalidInput, LedgerError, LedgerUnavailable

DEFAULT_LEDGER = "sqlite:///cronledger.db"


@attrs.define
class Context:
    ledger_url: str
    json: bool
    debug: bool
    state_dir: Path | None
    clock: SystemClock = attrs.field(factory=SystemClock)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        return cls(args.ledger, args.json, args.debug, args.state_dir)

    def now(self) -> int:
        return self.clock.now()

    def open(self, *, must_exist: bool = True) -> Ledger:
        """The ledger; read commands refuse to create an SQLite file that is not there."""
        path = sqlite_path(self.ledger_url)
        if must_exist and path is not None and not path.exists():
            raise InvalidInput(
                "--ledger",
                f"there is no ledger at {path}",
                "pass the right --ledger (or set CRONLEDGER_LEDGER), "
                "or create one with `cronledger add` or `cronledger apply`",
            )
        try:
            return open_ledger(self.ledger_url)
        except LedgerUnavailable:  # the server is down, not the flag wrong
            raise
        except LedgerError as error:  # its text says what to fix; name the flag that gave it
            raise InvalidInput("--ledger", *_problem_and_fix(str(error))) from error

    def engine(self, *, must_exist: bool = False) -> Engine:
        """An engine without runners: records commands; the daemon (`cronledger run`) runs them."""
        return Engine(self.open(must_exist=must_exist), self.clock, None)

    def runs_dir(self) -> Path:
        return self.state_dir or default_state_dir(self.ledger_url)


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :].split("?")[0])
    return None


def _problem_and_fix(text: str) -> tuple[str, str]:
    """A ledger error's text split into the problem and the fix its closing parentheses
    give ("cannot ... (create database 'x' ...)"), or a pointer to the URL forms."""
    if text.endswith(")"):
        depth = 0
        for i in range(len(text) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(text[i], 0)
            if depth == 0:
                if i > 0 and text[i - 1] == " ":
                    return text[: i - 1], text[i + 1 : -1]
                break
    return text, f"pass a ledger URL that works: {_SCHEMES}"


@contextlib.contextmanager
def flags(**names: str) -> Iterator[None]:
    """Bad input to a library call named by its keyword (`limit`) is reported under the flag
    that gave it (`flags(limit="--runs")`)."""
    try:
        yield
    except InvalidInput as error:
        if error.field not in names:
            raise
        raise InvalidInput(names[error.field], error.problem, error.fix) from error
