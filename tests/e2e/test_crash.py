"""kill -9 the daemon at each point of a tick, restart it: nothing lost, nothing run twice.

The daemon runs as a real subprocess on an SQLite ledger with real jobs. Each job appends its
run id to a marker file, so the test can see which runs really executed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cronledger.adapters.clock import SystemClock
from cronledger.adapters.engine import Engine
from cronledger.adapters.ledger import open_ledger
from cronledger.adapters.process_runner import run_file_name
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.triggers import Every
from cronledger.domain.values import Command, ConcurrencyPolicy, Retry, ScheduleSpec
from cronledger.domain.verify import verify
from cronledger.projectors.snapshot import project

DAEMON = [sys.executable, "-m", "cronledger.adapters.daemon", "--log-level", "WARNING"]


def _setup(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    marker = tmp_path / "marker"
    engine = Engine.open(url, SystemClock())
    now = engine.clock.now()
    job = ("sh", "-c", f'echo "$0" >> {marker}; sleep "$1"; echo "$0"', "{run_id}")
    for sid, every_ms, sleep in (("quick", 1000, "0.2"), ("slow", 2000, "1.5")):
        engine.execute(
            cmd.AddSchedule(
                ScheduleSpec(
                    id=sid,
                    trigger=Every(every_ms, now),
                    target=Command((*job, sleep)),
                    concurrency=ConcurrencyPolicy.QUEUE_ONE,
                    retry=Retry(3, 200),
                )
            )
        )
    engine.close()
    return url


def _daemon(
    url: str, tmp_path: Path, seconds: float, crash: str | None = None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "CRONLEDGER_CRASH_AT"}
    if crash:
        env["CRONLEDGER_CRASH_AT"] = crash
    return subprocess.Popen(
        [*DAEMON, "--ledger", url, "--for", f"{int(seconds * 1000)}ms"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
    )


def _events(url: str) -> list[ev.Event]:
    with open_ledger(url) as ledger:
        return [e for _, e in ledger.read()]


def _wait_for(url: str, kind: type[ev.Event], count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while sum(isinstance(e, kind) for e in _events(url)) < count:
        assert time.monotonic() < deadline, f"no {count} {kind.__name__} within {timeout} s"
        time.sleep(0.05)


def _check(url: str, tmp_path: Path) -> None:
    events = _events(url)
    assigned = [e.run_id for e in events if isinstance(e, ev.RunAssigned)]
    assert len(assigned) == len(set(assigned)), "a run was assigned twice"
    outcomes = [
        e.run_id for e in events if isinstance(e, ev.RunSucceeded | ev.RunFailed | ev.RunLost)
    ]
    assert sorted(outcomes) == sorted(assigned), "every run's outcome is recorded exactly once"
    started = [e.run_id for e in events if isinstance(e, ev.RunStarted)]
    assert len(started) == len(set(started)), "a RunStarted was recorded twice"
    executed = (tmp_path / "marker").read_text().split()
    assert len(executed) == len(set(executed)), "a run executed twice"
    succeeded = {e.run_id for e in events if isinstance(e, ev.RunSucceeded)}
    lost = {e.run_id for e in events if isinstance(e, ev.RunLost)}
    assert set(executed) == succeeded, "what ran is what the ledger says succeeded"
    for e in events:  # each job prints its run id: its output was kept, across restarts too
        if isinstance(e, ev.RunSucceeded):
            assert (e.stdout_tail, e.stdout_dropped) == (f"{e.run_id}\n", 0), e
    assert not lost & set(executed), "a run recorded as lost had really run"
    state = project(events)
    assert len(state.runs) == 0 and not state.entries, "nothing is stuck"
    assert verify(enumerate(events, 1)).ok


def _finish(url: str, tmp_path: Path) -> None:
    """Pause the schedules, then let a daemon adopt and reconcile everything left."""
    engine = Engine.open(url, SystemClock())
    for sid in ("quick", "slow"):
        engine.execute(cmd.PauseSchedule(sid))
    engine.close()
    final = _daemon(url, tmp_path, 4)
    assert final.wait(30) == 0, final.stderr.read() if final.stderr else ""


@pytest.mark.parametrize("point", ["before_append:3", "after_append:3", "after_spawn:3"])
def test_a_daemon_killed_at_a_point_of_the_tick_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, point: str
) -> None:
    url = _setup(tmp_path)
    crashed = _daemon(url, tmp_path, 20, crash=point)
    assert crashed.wait(30) == -signal.SIGKILL, "the crash point was not reached"
    restarted = _daemon(url, tmp_path, 3)
    assert restarted.wait(30) == 0
    _finish(url, tmp_path)
    _check(url, tmp_path)
    if point.startswith("after_append"):
        assert any(isinstance(e, ev.RunLost) for e in _events(url)), "the unspawned run is lost"


def test_a_daemon_killed_from_outside_while_jobs_run_loses_nothing(tmp_path: Path) -> None:
    url = _setup(tmp_path)
    daemon = _daemon(url, tmp_path, 30)
    _wait_for(url, ev.RunStarted, 4, timeout=15)
    daemon.send_signal(signal.SIGKILL)
    assert daemon.wait(10) == -signal.SIGKILL
    restarted = _daemon(url, tmp_path, 3)
    assert restarted.wait(30) == 0
    _finish(url, tmp_path)
    _check(url, tmp_path)


def test_sigterm_drains_and_a_second_daemon_finds_nothing_to_repair(tmp_path: Path) -> None:
    url = _setup(tmp_path)
    daemon = _daemon(url, tmp_path, 30)
    _wait_for(url, ev.RunStarted, 3, timeout=15)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(20) == 0
    events = _events(url)
    drained = [e for e in events if isinstance(e, ev.OptionsChanged) and e.options.draining]
    assert drained, "draining is a recorded fact"
    assert len(project(events).runs) == 0, "the drain waited for the active runs"
    _finish(url, tmp_path)
    _check(url, tmp_path)


def test_sigint_drains_and_a_second_signal_stops_at_once_leaving_runs_to_the_restart(
    tmp_path: Path,
) -> None:
    """Ctrl-C drains (a recorded fact); a second Ctrl-C stops without waiting for the 12 s job,
    which keeps running under the supervisor; the next daemon adopts and records it once."""
    url = _setup(tmp_path)
    engine = Engine.open(url, SystemClock())
    marker = tmp_path / "marker"
    long_job = Command(("sh", "-c", f'echo "$0" >> {marker}; sleep 12; echo "$0"', "{run_id}"))
    entry = engine.submit(long_job, priority=9)
    engine.close()
    daemon = _daemon(url, tmp_path, 60)

    def long_run_started() -> bool:
        return any(
            isinstance(e, ev.RunStarted) and e.run_id.startswith(entry) for e in _events(url)
        )

    deadline = time.monotonic() + 15
    while not long_run_started():
        assert time.monotonic() < deadline, "the long job never started"
        time.sleep(0.05)
    daemon.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    while not any(isinstance(e, ev.OptionsChanged) and e.options.draining for e in _events(url)):
        assert time.monotonic() < deadline, "the first signal did not start a drain"
        time.sleep(0.05)
    signalled = time.monotonic()
    daemon.send_signal(signal.SIGINT)
    assert daemon.wait(10) == 0
    assert time.monotonic() - signalled < 6, "the second signal waited for the runs"
    left = project(_events(url)).runs
    assert any(r.startswith(entry) for r in left), "the long run is left to the restart"

    restarted = _daemon(url, tmp_path, 60)  # adopts it and records its exit
    deadline = time.monotonic() + 40
    while not any(
        isinstance(e, ev.RunSucceeded) and e.run_id.startswith(entry) for e in _events(url)
    ):
        assert time.monotonic() < deadline, "the adopted run's exit was never recorded"
        time.sleep(0.1)
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(30) == 0
    events = _events(url)
    done = [e for e in events if isinstance(e, ev.RunSucceeded) and e.run_id.startswith(entry)]
    assert len(done) == 1, "the adopted run's exit is recorded once"
    assert not any(isinstance(e, ev.RunLost) for e in events)
    _finish(url, tmp_path)
    _check(url, tmp_path)


# --- the run supervisor --------------------------------------------------------------------


def _runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db.runs" / "runs"  # the daemon's default state_dir


def _supervisor_pid(tmp_path: Path) -> int:
    return int((_runs_dir(tmp_path) / ".supervisor.lock").read_text())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_a_daemon_killed_while_jobs_run_leaves_them_to_the_supervisor_and_adopts_them(
    tmp_path: Path,
) -> None:
    url = _setup(tmp_path)
    daemon = _daemon(url, tmp_path, 30)
    _wait_for(url, ev.RunStarted, 4, timeout=15)
    supervisor = _supervisor_pid(tmp_path)
    started = {e.run_id for e in _events(url) if isinstance(e, ev.RunStarted)}
    daemon.send_signal(signal.SIGKILL)
    assert daemon.wait(10) == -signal.SIGKILL
    assert _alive(supervisor), "the supervisor outlives the daemon while it has jobs"
    recorded = {e.run_id for e in _events(url) if isinstance(e, ev.RunSucceeded | ev.RunFailed)}
    unrecorded = started - recorded
    assert unrecorded, "some jobs ended while the daemon was dead"
    files = [_runs_dir(tmp_path) / f"{run_file_name(run_id)}.st" for run_id in unrecorded]

    def statuses() -> list[list[str]]:
        return [f.read_text().splitlines() for f in files if f.exists()]

    deadline = time.monotonic() + 10  # the jobs (at most 1.5 s) end while no daemon listens
    while not all(lines and lines[-1].startswith(("exit", "signal")) for lines in statuses()):
        assert time.monotonic() < deadline, statuses()
        time.sleep(0.05)
    assert statuses() and all(lines[-1] == "exit 0" for lines in statuses()), statuses()

    restarted = _daemon(url, tmp_path, 3)
    assert restarted.wait(30) == 0
    _finish(url, tmp_path)
    _check(url, tmp_path)
    events = _events(url)
    assert not any(isinstance(e, ev.RunLost) for e in events), "nothing was lost"
    succeeded = {e.run_id for e in events if isinstance(e, ev.RunSucceeded)}
    assert unrecorded <= succeeded, "their exits were adopted from the files"


def test_a_supervisor_killed_under_a_live_daemon_loses_its_runs_once_and_stops_them(
    tmp_path: Path,
) -> None:
    url = _setup(tmp_path)
    daemon = _daemon(url, tmp_path, 12)
    _wait_for(url, ev.RunStarted, 4, timeout=15)
    supervisor = _supervisor_pid(tmp_path)
    os.kill(supervisor, signal.SIGKILL)
    _wait_for(url, ev.RunLost, 1, timeout=15)
    after_kill = sum(isinstance(e, ev.RunSucceeded) for e in _events(url))
    _wait_for(url, ev.RunSucceeded, after_kill + 2, timeout=15)  # a new supervisor took over
    assert _supervisor_pid(tmp_path) != supervisor
    assert daemon.wait(30) == 0
    _finish(url, tmp_path)

    events = _events(url)
    assigned = [e.run_id for e in events if isinstance(e, ev.RunAssigned)]
    assert len(assigned) == len(set(assigned))
    outcomes = [
        e.run_id for e in events if isinstance(e, ev.RunSucceeded | ev.RunFailed | ev.RunLost)
    ]
    assert sorted(outcomes) == sorted(assigned), "every run's outcome is recorded exactly once"
    executed = (tmp_path / "marker").read_text().split()
    assert len(executed) == len(set(executed)), "a run executed twice"
    lost = [e for e in events if isinstance(e, ev.RunLost)]
    assert all("supervisor ended" in e.detail for e in lost), [e.detail for e in lost]
    pids = {e.run_id: e.pid for e in events if isinstance(e, ev.RunStarted)}
    for e in lost:
        pid = pids.get(e.run_id)
        assert pid is None or not _alive(pid), f"the lost run {e.run_id} was stopped"
    state = project(events)
    assert len(state.runs) == 0 and not state.entries, "nothing is stuck"
    assert verify(enumerate(events, 1)).ok
