"""Fixtures for the process runner tests: runners on a temporary state_dir, and cleanup.

Every process group a test started is killed at teardown if it is still there (by the pids the
runners reported), so a failing test never leaves jobs behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cronledger.adapters.process_runner import ProcessRunner
from cronledger.adapters.runner import Started
from cronledger.domain.commands import CancelRun, StartRun
from cronledger.domain.dispatch import render_argv
from cronledger.domain.instants import iso
from cronledger.domain.state import ActiveRun
from cronledger.domain.values import Command, RunExit
from tests.integration.conftest import postgres_schema  # noqa: F401  (a fixture, shared)

T0 = 1_767_225_600_000
DEADLINE_S = 20.0


def start_run(
    run_id: str,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    fallback: list[str] | None = None,
) -> StartRun:
    """A StartRun for a Command target, as a tick would send it."""
    argv = tuple(argv)
    target = Command(
        argv,
        env=tuple((env or {}).items()),
        cwd=None if cwd is None else str(cwd),
        fallback=None if fallback is None else tuple(fallback),
    )
    return StartRun(
        run_id=run_id,
        entry_id=run_id.split("#")[0],
        schedule_id=None,
        attempt=1,
        target=target,
        argv=argv,
        scheduled_for=T0,
        deadline=None,
        fallback_argv=None
        if fallback is None
        else render_argv(
            tuple(fallback),
            {"{run_id}": run_id, "{schedule}": "", "{scheduled_for}": iso(T0), "{attempt}": "1"},
        ),
    )


def active_run(run_id: str, started: Started | None = None, **kw: Any) -> ActiveRun:
    """An ActiveRun as the ledger would hold it (started when `started` is given)."""
    return ActiveRun(
        run_id=run_id,
        entry_id=run_id.split("#")[0],
        schedule_id=None,
        attempt=1,
        assigned_at=T0,
        deadline=None,
        started_at=None if started is None else T0,
        pid=None if started is None else started.pid,
        fallback=False if started is None else started.fallback,
        **kw,
    )


class Harness:
    """One runner plus the helpers the tests share: start, cancel, wait for exits."""

    def __init__(self, state_dir: Path, pids: set[int], **kw: Any) -> None:
        self.state_dir = state_dir
        self.woken = threading.Event()
        self.runner = ProcessRunner(state_dir, wake=self.woken.set, **kw)
        self._pids = pids

    def start(self, *commands: StartRun) -> list[Started]:
        started = self.runner.carry_out(list(commands), T0)
        self._pids.update(s.pid for s in started if s.pid is not None)
        return started

    def cancel(self, run_id: str) -> None:
        self.runner.carry_out([CancelRun(run_id=run_id, reason="operator")], T0)

    def adopt(self, runs: list[ActiveRun]) -> list[Started]:
        started = self.runner.adopt(runs, T0)
        self._pids.update(s.pid for s in started if s.pid is not None)
        return started

    def exits(self, count: int, timeout: float = DEADLINE_S) -> list[RunExit]:
        """Poll until `count` exits came (waking on the runner's wake-up), or fail."""
        got: list[RunExit] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            got.extend(self.runner.poll(T0))
            if len(got) >= count:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"only {len(got)} of {count} exits within {timeout} s: {got}")
            self.woken.wait(min(left, 0.5))
            self.woken.clear()
        return got

    def exit(self, timeout: float = DEADLINE_S) -> RunExit:
        (one,) = self.exits(1, timeout)
        return one

    def close(self) -> None:
        self.runner.close()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    """Wait until `predicate()` holds (checking often), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, waiting for a reaper, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.fixture
def spawned_groups() -> Iterator[set[int]]:
    """Pids of the supervisors started in a test; their groups are killed at teardown."""
    pids: set[int] = set()
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def make_harness(tmp_path: Path, spawned_groups: set[int]) -> Iterator[Callable[..., Harness]]:
    """Build runners on one state_dir (`tmp_path / "state"`); all are closed at teardown."""
    made: list[Harness] = []

    def make(**kw: Any) -> Harness:
        harness = Harness(tmp_path / "state", spawned_groups, **kw)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    """A runner with a short SIGKILL grace."""
    return make_harness(kill_grace_s=0.5)
