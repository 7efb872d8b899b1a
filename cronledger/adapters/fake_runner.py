"""A fake runner with scripted exits: the same port as the real runners, no processes."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import attrs

from cronledger.adapters.runner import Started
from cronledger.domain.commands import CancelRun, RunnerCommand, StartRun
from cronledger.domain.state import ActiveRun
from cronledger.domain.values import ExitKind, RunExit


@attrs.frozen
class Script:
    """How a fake run ends: after `duration_ms`, with `exit_code` (None: runs until cancelled)."""

    duration_ms: int = 1000
    exit_code: int | None = 0
    stderr: str = ""
    stdout: str | None = None  # None: no output captured (as for a call)


Scripter = Callable[[StartRun], Script]


@attrs.define
class _Running:
    command: StartRun
    started_at: int
    script: Script
    cancelled_at: int | None = None


class FakeRunner:
    """Starts nothing; reports each run's scripted exit once the clock has passed it."""

    def __init__(self, script: Scripter | Script | None = None) -> None:
        fixed = script if isinstance(script, Script) else Script()
        self._script: Scripter = script if callable(script) else (lambda _cmd: fixed)
        self._running: dict[str, _Running] = {}
        self.started: list[StartRun] = []
        self.cancelled: list[CancelRun] = []
        self._lost: list[RunExit] = []

    def carry_out(self, commands: Sequence[RunnerCommand], now: int) -> list[Started]:
        """Start scripted runs and note cancellations; every start succeeds."""
        started = []
        for command in commands:
            if isinstance(command, StartRun):
                if command.run_id in self._running:
                    raise AssertionError(f"run {command.run_id} started twice")
                self.started.append(command)
                self._running[command.run_id] = _Running(command, now, self._script(command))
                started.append(Started(command.run_id))
            else:
                self.cancelled.append(command)
                running = self._running.get(command.run_id)
                if running is not None and running.cancelled_at is None:
                    running.cancelled_at = now
        return started

    def adopt(
        self, runs: Sequence[ActiveRun], now: int, keep: Collection[str] = ()
    ) -> list[Started]:
        """Fake runs do not outlive their runner: runs it does not know are reported LOST."""
        for run in runs:
            if run.run_id not in self._running:
                self._lost.append(
                    RunExit(
                        run_id=run.run_id,
                        kind=ExitKind.LOST,
                        finished_at=now,
                        error="unknown to this fake runner",
                    )
                )
        return []

    def forget(self, run_id: str) -> None:
        """Nothing is kept per run once its exit is reported."""

    def close(self) -> None:
        """Nothing to release."""

    def active(self) -> int:
        return len(self._running)

    def next_exit_at(self) -> int | None:
        times = [t for r in self._running.values() if (t := self._exit_time(r)) is not None]
        return min(times) if times else None

    @staticmethod
    def _exit_time(r: _Running) -> int | None:
        natural = r.started_at + r.script.duration_ms if r.script.exit_code is not None else None
        if r.cancelled_at is not None:
            return r.cancelled_at if natural is None else min(natural, r.cancelled_at)
        return natural

    def poll(self, now: int) -> list[RunExit]:
        """Exits of runs whose scripted end has come, in order of end time then run id."""
        done = [
            (t, run_id, r)
            for run_id, r in self._running.items()
            if (t := self._exit_time(r)) is not None and t <= now
        ]
        exits, self._lost = self._lost, []
        for t, run_id, r in sorted(done, key=lambda x: (x[0], x[1])):
            del self._running[run_id]
            killed = r.cancelled_at is not None and t == r.cancelled_at
            if killed:
                exit = RunExit(run_id=run_id, kind=ExitKind.SIGNALED, finished_at=t, signal=15)
            else:
                exit = RunExit(
                    run_id=run_id,
                    kind=ExitKind.EXITED,
                    finished_at=t,
                    exit_code=r.script.exit_code,
                    stderr_tail=r.script.stderr,
                    stdout_tail=r.script.stdout,
                )
            exits.append(exit)
        return exits
