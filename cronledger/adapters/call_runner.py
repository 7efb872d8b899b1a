"""In-process runs: `Call("name")` targets run registered callables in a bounded thread pool.

Return means success, an exception means failure (its type and message are kept). A thread
cannot be killed: a cancelled or timed-out call is reported as ended at once (so its slot and
the schedule move on) and its thread is abandoned; whatever it returns later is ignored. An
abandoned thread does not count against `max_threads`: another worker takes its place, and it
rejoins the pool when its call returns only if the pool is short of a worker (else it ends).
So calls that hang and time out cost a thread each until they return, never the pool's
capacity. Calls handed over beyond `max_threads` wait in the pool's queue (their RunStarted is
already recorded, and a timeout counts from their dispatch): keep `max_threads` at least the
engine's `max_workers` for calls (both default to 16).
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections.abc import Callable, Collection, Sequence
from queue import SimpleQueue
from typing import Any

from cronledger.adapters.runner import Started
from cronledger.domain.commands import CancelRun, RunnerCommand, StartRun
from cronledger.domain.state import ActiveRun
from cronledger.domain.values import OUTPUT_TAIL_LIMIT, Call, ExitKind, RunExit
from cronledger.errors import InvalidInput

TaskFunction = Callable[..., Any]


_STOP = None  # the sentinel that tells a worker thread to exit
_names = itertools.count()


class CallRunner:
    """Runs registered callables on worker threads; reports exits through `poll`.

    A plain queue feeds the workers (no Future per call): a tick hands over its whole batch at
    once and each worker appends exits to one list, which the engine collects on its next tick.
    """

    def __init__(
        self,
        max_threads: int = 16,
        *,
        clock: Callable[[], int] | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        if max_threads < 1:
            raise InvalidInput("max_threads", f"must be at least 1, got {max_threads}")
        self._functions: dict[str, TaskFunction] = {}
        self._clock = clock or _wall_ms
        self._wake = wake
        self._lock = threading.Lock()
        self._exits: list[RunExit] = []
        self._running: set[str] = set()  # queued or running, not yet reported
        self._cancelled: set[str] = set()  # reported as ended: skip it, or ignore its result
        self._executing: set[str] = set()  # taken by a worker thread (added without the lock)
        self._abandoned: set[str] = set()  # cancelled while a thread ran them: those threads
        # are busy with a call already reported as ended and do not count as workers
        self._queue: SimpleQueue[tuple[str, TaskFunction] | None] = SimpleQueue()
        self._max_threads = max_threads
        self._threads: list[threading.Thread] = []
        self._closed = False

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
        jobs: list[tuple[str, TaskFunction]] = []
        functions = self._functions
        with self._lock:
            running = self._running
            for command in commands:
                if isinstance(command, StartRun):
                    target = command.target
                    if type(target) is not Call or command.run_id in running:
                        continue
                    function = functions.get(target.name)
                    if function is None:
                        self._exits.append(self._unknown(command, target.name, now))
                        continue
                    running.add(command.run_id)
                    jobs.append((command.run_id, function))
                    started.append(Started(command.run_id))
                elif isinstance(command, CancelRun):
                    self._cancel(command, now)
            self._spawn_workers()  # for the new jobs, and in place of abandoned threads
            # (Thread.start under the lock: a worker reporting an exit waits that long.)
        if jobs:
            put = self._queue.put
            for job in jobs:
                put(job)
        if self._exits and self._wake is not None:  # unknown names, cancels: reported at once
            self._wake()
        return started

    def _unknown(self, command: StartRun, name: str, now: int) -> RunExit:
        known = ", ".join(self.names()) or "none"
        return RunExit(
            run_id=command.run_id,
            kind=ExitKind.SPAWN_FAILED,
            finished_at=now,
            error=f"no callable is registered as {name!r} (registered: {known})",
        )

    def _spawn_workers(self) -> None:
        """Enough workers (not counting abandoned threads) for the calls queued or running, at
        most max_threads. Under the lock."""
        wanted = min(len(self._running), self._max_threads)
        while len(self._threads) - len(self._abandoned) < wanted and not self._closed:
            thread = threading.Thread(
                target=self._work, name=f"cronledger-call-{next(_names)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        get = self._queue.get
        while (job := get()) is not _STOP:
            run_id, function = job
            # No lock on this path (one set add and one look-up, each atomic under the GIL): a
            # cancel that comes before the add is seen by the look-up; one that comes after
            # sees the run executing.
            self._executing.add(run_id)
            if run_id in self._cancelled:  # cancelled while queued: already reported
                with self._lock:
                    self._executing.discard(run_id)
                    self._cancelled.discard(run_id)
                    if run_id in self._abandoned:  # counted as abandoned: it was not
                        self._abandoned.discard(run_id)
                        if self._surplus():  # a replacement was started meanwhile
                            return
                continue
            try:
                function()
            except BaseException as error:  # a failing call is a failed run, whatever it raised
                tail = "".join(traceback.format_exception(error))[-OUTPUT_TAIL_LIMIT:]
                exit = RunExit(
                    run_id=run_id,
                    kind=ExitKind.RAISED,
                    finished_at=self._clock(),
                    error=f"{type(error).__name__}: {error}",
                    stderr_tail=tail,
                )
            else:
                exit = RunExit(
                    run_id=run_id, kind=ExitKind.EXITED, finished_at=self._clock(), exit_code=0
                )
            with self._lock:
                self._executing.discard(run_id)
                if run_id in self._cancelled:  # abandoned after a cancel: already reported
                    self._cancelled.discard(run_id)
                    if run_id in self._abandoned:  # (not so when close() cancelled it)
                        self._abandoned.discard(run_id)
                        if self._surplus():  # replaced meanwhile: end
                            return
                    continue  # the pool is short of a worker: rejoin it
                self._running.discard(run_id)
                first = not self._exits
                self._exits.append(exit)
            if first and self._wake is not None:
                # Only the first exit since the last poll wakes the engine: whoever appended
                # the earlier ones has woken it already, and its next poll takes them all.
                self._wake()
        with self._lock:  # told to stop (close)
            self._threads.remove(threading.current_thread())

    def _surplus(self) -> bool:
        """Under the lock: end the calling worker if the pool has more than it needs."""
        if len(self._threads) - len(self._abandoned) > self._max_threads or self._closed:
            self._threads.remove(threading.current_thread())
            return True
        return False

    def _cancel(self, command: CancelRun, now: int) -> None:
        """Report the run ended at once (under the lock); its thread, if any, is abandoned."""
        if command.run_id not in self._running:
            return
        self._running.discard(command.run_id)
        self._cancelled.add(command.run_id)
        if command.run_id in self._executing:  # its thread is abandoned: replaced if needed
            self._abandoned.add(command.run_id)
        self._exits.append(
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

    def adopt(
        self, runs: Sequence[ActiveRun], now: int, keep: Collection[str] = ()
    ) -> list[Started]:
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

    def threads(self) -> tuple[int, int]:
        """(worker threads, abandoned threads still stuck in a call)."""
        with self._lock:
            return len(self._threads) - len(self._abandoned), len(self._abandoned)

    def close(self) -> None:
        """Stop the workers once they finish their current call (queued calls are dropped)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._cancelled.update(self._running)
            workers = len(self._threads)
        for _ in range(workers):
            self._queue.put(_STOP)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000
