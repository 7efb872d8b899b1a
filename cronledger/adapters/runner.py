"""The runner port, and `Runners`, which routes each run to the runner for its target."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

import attrs

from cronledger.domain.commands import CancelRun, RunnerCommand, StartRun
from cronledger.domain.state import ActiveRun
from cronledger.domain.values import Call, ExitKind, RunExit


@attrs.frozen
class Started:
    """An observation: the run's process (or thread) is running.

    A runner may hand one back before its details are known (`settled` False: reading `pid`
    waits for them). The engine's loop records it with a tick after it settles (it wakes every
    STARTED_WAIT_MS meanwhile), or with the tick that records the run's exit. A runner must
    settle every start eventually (the process runner gives up after REPLY_TIMEOUT_S)."""

    run_id: str
    pid: int | None = None
    fallback: bool = False

    @property
    def settled(self) -> bool:
        return True


class Runner(Protocol):
    def carry_out(self, commands: Sequence[RunnerCommand], now: int) -> list[Started]:
        """Start and cancel runs; the runs that did start (spawn failures show up as exits)."""
        ...

    def poll(self, now: int) -> list[RunExit]:
        """Exits observed since the last poll, each reported once."""
        ...

    def adopt(
        self, runs: Sequence[ActiveRun], now: int, keep: Collection[str] = ()
    ) -> list[Started]:
        """After a (re)start: take over the runs the ledger says are active (this engine's).

        Runs found running that the ledger does not show as started are returned (so their
        RunStarted is recorded); runs that cannot be accounted for are reported LOST by `poll`.
        `keep`: ids of runs active in the ledger that belong to another node: left alone, and
        whatever of theirs the runner finds (e.g. run files on a shared state dir) is kept.
        """
        ...

    def forget(self, run_id: str) -> None:
        """The run's outcome is durable: drop what was kept to report it."""
        ...

    def close(self) -> None:
        """Stop watching; never kills running jobs."""
        ...


class Runners:
    """Routes `Command` runs to a process runner and `Call` runs to a call runner."""

    def __init__(
        self, processes: Runner | None, calls: Runner | None, clock: Callable[[], int]
    ) -> None:
        self.processes = processes
        self.calls = calls
        self._clock = clock
        self._lost: list[RunExit] = []
        self._wake: Callable[[], None] | None = None

    def set_wake(self, wake: Callable[[], None]) -> None:
        """`wake()` is called when exits are ready: ours (no runner for a target) and, handed
        on, the runners' own."""
        self._wake = wake
        for runner in (self.processes, self.calls):
            set_wake = getattr(runner, "set_wake", None)
            if callable(set_wake):
                set_wake(wake)

    def _for(self, is_call: bool) -> Runner | None:
        return self.calls if is_call else self.processes

    def carry_out(self, commands: Sequence[RunnerCommand], now: int) -> list[Started]:
        started: list[Started] = []
        routed: dict[int, list[RunnerCommand]] = {}
        for command in commands:
            if isinstance(command, StartRun):
                runner = self._for(isinstance(command.target, Call))
                if runner is None:
                    kind = (
                        "in-process callables" if isinstance(command.target, Call) else ("commands")
                    )
                    self._lost.append(
                        RunExit(
                            run_id=command.run_id,
                            kind=ExitKind.SPAWN_FAILED,
                            finished_at=now,
                            error=f"this engine has no runner for {kind}",
                        )
                    )
                    continue
                routed.setdefault(id(runner), []).append(command)
            elif isinstance(command, CancelRun):
                for runner in (self.processes, self.calls):
                    if runner is not None:
                        routed.setdefault(id(runner), []).append(command)
        for runner in (self.processes, self.calls):
            if runner is not None and id(runner) in routed:
                started.extend(runner.carry_out(routed[id(runner)], now))
        if self._lost and self._wake is not None:
            self._wake()
        return started

    def poll(self, now: int) -> list[RunExit]:
        exits, self._lost = self._lost, []
        for runner in (self.processes, self.calls):
            if runner is not None:
                exits.extend(runner.poll(now))
        return exits

    def adopt(
        self, runs: Sequence[ActiveRun], now: int, keep: Collection[str] = ()
    ) -> list[Started]:
        started: list[Started] = []
        commands = [r for r in runs if r.call is None]
        for run in runs:
            if run.call is not None:  # an in-process call died with the process that ran it
                self._lost.append(
                    RunExit(
                        run_id=run.run_id,
                        kind=ExitKind.LOST,
                        finished_at=now,
                        error=f"in-process call {run.call!r} was running when its engine stopped",
                    )
                )
        if commands or keep:
            if self.processes is None:
                self._lost.extend(
                    RunExit(
                        run_id=r.run_id,
                        kind=ExitKind.LOST,
                        finished_at=now,
                        error="no process runner to adopt this run",
                    )
                    for r in commands
                )
            else:
                started.extend(self.processes.adopt(commands, now, keep))
        return started

    def forget(self, run_id: str) -> None:
        for runner in (self.processes, self.calls):
            if runner is not None:
                runner.forget(run_id)

    def close(self) -> None:
        for runner in (self.processes, self.calls):
            if runner is not None:
                runner.close()
