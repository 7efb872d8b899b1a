"""In-process runs: `Call("name")` targets run registered callables in a bounded thread pool.

Return means success, an exception means failure (its type and message are kept). A thread
cannot be killed: a cancelled or timed-out call is reported as ended at once (so its slot and
the schedule move on) and its thread is abandoned; whatever it returns later is ignored.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from cronledger.adapters.runner import Started
from cronledger.domain.commands import CancelRun, RunnerCommand, StartRun
from cronledger.domain.state import ActiveRun
from cronledger.domain.values import Call, ExitKind, RunExit
from cronledger.errors import InvalidInput

TaskFunction = Callable[..., Any]


class CallRunner:
    """Runs registered callables on a thread pool; reports exits through `poll`."""

    def __init__(
        self,
        max_threads: int = 16,
        *,
        clock: Callable[[], int] | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._functions: dict[str, TaskFunction] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="cronledger")
        self._clock = clock or _wall_ms
        self._wake = wake
        self._lock = threading.Lock()
        self._exits: list[RunExit] = []
        self._running: dict[str, Future[Any]] = {}
        self._abandoned: set[str] = set()

    def register(self, name: str, function: TaskFunction) -> None:
        """Make `function` runnable as `Call(name)`."""
        if not name or not callable(function):
            raise InvalidInput(
                "name",
                f"cannot register {function!r} as {name!r}",
                "pass a non-empty name and a callable",
            )
        self._functions[name] = function

    def names(self) -> list[str]:
        return sorted(self._functions)

    def set_wake(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def carry_out(self, commands: Sequence[RunnerCommand], now: int) -> list[Started]:
        started: list[Started] = []
        for command in commands:
            if isinstance(command, StartRun):
                if isinstance(command.target, Call):
                    started.extend(self._start(command, now))
            elif isinstance(command, CancelRun):
                self._cancel(command, now)
        return started

    def _start(self, command: StartRun, now: int) -> list[Started]:
        assert isinstance(command.target, Call)
        function = self._functions.get(command.target.name)
        if function is None:
            known = ", ".join(self.names()) or "none"
            self._report(
                RunExit(
                    run_id=command.run_id,
                    kind=ExitKind.SPAWN_FAILED,
                    finished_at=now,
                    error=f"no callable is registered as {command.target.name!r} "
                    f"(registered: {known})",
                )
            )
            return []
        with self._lock:
            if command.run_id in self._running:
                return []
            future = self._pool.submit(function)
            self._running[command.run_id] = future
        future.add_done_callback(partial(self._done, command.run_id))
        return [Started(command.run_id)]

    def _done(self, run_id: str, future: Future[Any]) -> None:
        if future.cancelled():
            return  # cancelled before it started: _cancel reported it
        with self._lock:
            self._running.pop(run_id, None)
            if run_id in self._abandoned:
                self._abandoned.discard(run_id)
                return
        error = future.exception()
        if error is None:
            exit = RunExit(
                run_id=run_id, kind=ExitKind.EXITED, finished_at=self._clock(), exit_code=0
            )
        else:
            tail = "".join(traceback.format_exception(error))[-4096:]
            exit = RunExit(
                run_id=run_id,
                kind=ExitKind.RAISED,
                finished_at=self._clock(),
                error=f"{type(error).__name__}: {error}",
                stderr_tail=tail,
            )
        self._report(exit)

    def _cancel(self, command: CancelRun, now: int) -> None:
        with self._lock:
            future = self._running.pop(command.run_id, None)
            if future is None:
                return
            if not future.cancel():  # already running: abandon the thread
                self._abandoned.add(command.run_id)
        self._report(
            RunExit(
                run_id=command.run_id,
                kind=ExitKind.SIGNALED,
                finished_at=now,
                error=f"call {command.reason}: its thread was abandoned "
                "(a thread cannot be killed)",
            )
        )

    def _report(self, exit: RunExit) -> None:
        with self._lock:
            self._exits.append(exit)
        if self._wake is not None:
            self._wake()

    def poll(self, now: int) -> list[RunExit]:
        with self._lock:
            exits, self._exits = self._exits, []
        return exits

    def adopt(self, runs: Sequence[ActiveRun], now: int) -> list[Started]:
        """Calls do not survive their process: every adopted call is reported LOST."""
        for run in runs:
            self._report(
                RunExit(
                    run_id=run.run_id,
                    kind=ExitKind.LOST,
                    finished_at=now,
                    error="in-process call was running when its engine stopped",
                )
            )
        return []

    def forget(self, run_id: str) -> None:
        """Nothing is kept per run once its exit is reported."""

    def active(self) -> int:
        with self._lock:
            return len(self._running)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000
