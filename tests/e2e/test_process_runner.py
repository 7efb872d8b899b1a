"""The process runner with real subprocesses: exits, signals, cancel, output, restarts."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cronledger.adapters import process_runner
from cronledger.adapters.clock import SystemClock
from cronledger.adapters.engine import Engine
from cronledger.adapters.process_runner import NEVER_STARTED, ProcessRunner, run_file_name
from cronledger.adapters.runner import Started
from cronledger.domain import events as ev
from cronledger.domain.commands import ChangeOptions, StartRun, SubmitTask
from cronledger.domain.values import OUTPUT_TAIL_LIMIT, Call, Command, ExitKind, Options
from cronledger.errors import InvalidInput
from tests.e2e.conftest import (
    T0,
    Harness,
    active_run,
    process_alive,
    start_run,
    wait_for,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

MakeHarness = Callable[..., Harness]


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def family_script(pid_file: Path) -> str:
    """A job that forks a child and writes "<its pid> <child pid>" to `pid_file`."""
    tmp = f"{pid_file}.tmp"
    return f"sleep 300 & echo $$ $! > '{tmp}'; mv '{tmp}' '{pid_file}'; wait"


def kill_supervisor(harness: Harness) -> None:
    """kill -9 the state_dir's supervisor (its pid is in its lock file) and wait for it."""
    pid = int((harness.state_dir / "runs" / ".supervisor.lock").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not process_alive(pid), "the supervisor to die")


def ready_file(tmp_path: Path, name: str = "ready") -> Path:
    return tmp_path / name


# --- exits ---------------------------------------------------------------------------------


def test_a_successful_command_reports_exit_zero_with_its_stdout_and_stderr_tails(
    harness: Harness,
) -> None:
    (started,) = harness.start(start_run("ok#1", sh("echo to-out; echo to-err >&2")))
    assert started.run_id == "ok#1" and started.pid and not started.fallback

    exit = harness.exit()

    assert (exit.run_id, exit.kind, exit.exit_code, exit.signal) == (
        "ok#1",
        ExitKind.EXITED,
        0,
        None,
    )
    assert exit.succeeded
    assert (exit.stderr_tail, exit.stderr_dropped, exit.error) == ("to-err\n", 0, "")
    assert (exit.stdout_tail, exit.stdout_dropped) == ("to-out\n", 0)
    output = harness.runner.output("ok#1")
    assert output is not None and output.stdout == "to-out\n" and output.stderr == "to-err\n"


def test_a_failing_command_reports_its_nonzero_exit_code(harness: Harness) -> None:
    harness.start(start_run("fail#1", sh("echo broken >&2; exit 3")))

    exit = harness.exit()

    assert (exit.kind, exit.exit_code, exit.stderr_tail) == (ExitKind.EXITED, 3, "broken\n")
    assert not exit.succeeded


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_command_that_kills_itself_with_a_signal_is_reported_as_signaled(
    harness: Harness, sig: signal.Signals
) -> None:
    harness.start(start_run("suicide#1", sh(f"kill -{sig.name[3:]} $$")))

    exit = harness.exit()

    assert (exit.kind, exit.signal, exit.exit_code) == (ExitKind.SIGNALED, int(sig), None)


def test_finished_at_comes_from_the_clock_when_the_exit_is_seen(make_harness: MakeHarness) -> None:
    h = make_harness(clock=lambda: 42)
    h.start(start_run("clocked#1", ["true"]))

    assert h.exit().finished_at == 42


# --- cancel --------------------------------------------------------------------------------


def test_cancel_sends_sigterm_and_the_run_is_reported_as_signaled_15(
    harness: Harness, tmp_path: Path
) -> None:
    ready = ready_file(tmp_path)
    harness.start(start_run("long#1", sh(f"touch '{ready}'; sleep 30")))
    wait_for(ready.exists, "the job to start")
    began = time.monotonic()

    harness.cancel("long#1")
    exit = harness.exit()

    assert (exit.kind, exit.signal) == (ExitKind.SIGNALED, signal.SIGTERM)
    assert time.monotonic() - began < 5, "SIGTERM alone should have stopped it"


def test_a_job_that_ignores_sigterm_is_sigkilled_after_the_grace_period(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    h = make_harness(kill_grace_s=0.3)
    ready = ready_file(tmp_path)
    h.start(start_run("stubborn#1", sh(f"trap '' TERM; touch '{ready}'; sleep 30")))
    wait_for(ready.exists, "the job to start")
    began = time.monotonic()

    h.cancel("stubborn#1")
    exit = h.exit()

    assert (exit.kind, exit.signal) == (ExitKind.SIGNALED, signal.SIGKILL)
    assert time.monotonic() - began >= 0.3
    assert "SIGKILL" in exit.error


def test_cancel_kills_the_whole_process_group_including_a_forked_grandchild(
    harness: Harness, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild"
    script = f"sleep 300 & echo $! > '{pid_file}.tmp'; mv '{pid_file}.tmp' '{pid_file}'; wait"
    harness.start(start_run("family#1", sh(script)))
    wait_for(pid_file.exists, "the grandchild to be forked")
    grandchild = int(pid_file.read_text())
    assert process_alive(grandchild)

    harness.cancel("family#1")
    harness.exit()

    wait_for(lambda: not process_alive(grandchild), "the grandchild to die")


def test_cancelling_an_unknown_or_finished_run_does_nothing(harness: Harness) -> None:
    harness.cancel("nobody#1")
    harness.start(start_run("quick#1", ["true"]))
    harness.exit()

    harness.cancel("quick#1")

    assert harness.runner.poll(T0) == []


# --- spawning ------------------------------------------------------------------------------


def test_a_missing_program_without_fallback_is_a_spawn_failure_naming_it(
    harness: Harness,
) -> None:
    started = harness.start(start_run("missing#1", ["no-such-program-xyz", "arg"]))

    exit = harness.exit()

    assert started == []
    assert exit.kind is ExitKind.SPAWN_FAILED
    assert "no-such-program-xyz" in exit.error and "No such file or directory" in exit.error


def test_a_missing_path_without_fallback_is_a_spawn_failure_naming_it(
    harness: Harness, tmp_path: Path
) -> None:
    program = tmp_path / "not-there"
    assert harness.start(start_run("missing-path#1", [str(program)])) == []

    exit = harness.exit()

    assert exit.kind is ExitKind.SPAWN_FAILED and str(program) in exit.error


def test_a_file_that_is_not_executable_is_a_spawn_failure_with_permission_denied(
    harness: Harness, tmp_path: Path
) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)

    started = harness.start(start_run("noexec#1", ["./script.sh"], cwd=tmp_path))
    exit = harness.exit()

    assert started == []
    assert exit.kind is ExitKind.SPAWN_FAILED
    assert "./script.sh" in exit.error and "Permission denied" in exit.error


def test_a_program_that_cannot_be_spawned_runs_the_fallback_instead(
    harness: Harness,
) -> None:
    command = start_run(
        "fb#1", ["no-such-program-xyz"], fallback=["sh", "-c", 'echo "fallback for $0"', "{run_id}"]
    )

    (started,) = harness.start(command)
    exit = harness.exit()

    assert started.fallback and started.pid
    assert exit.kind is ExitKind.EXITED and exit.exit_code == 0
    output = harness.runner.output("fb#1")
    assert output is not None and output.stdout == "fallback for fb#1\n"


def test_a_program_exec_refuses_runs_the_fallback_instead(harness: Harness, tmp_path: Path) -> None:
    script = tmp_path / "no-shebang"
    script.write_text("echo never\n")
    script.chmod(0o755)  # passes the runner's checks; exec refuses it (ENOEXEC)
    command = start_run("fb-exec#1", [str(script)], fallback=["sh", "-c", "echo fallback ran"])

    (started,) = harness.start(command)
    exit = harness.exit()

    assert started.fallback and started.pid
    assert (exit.kind, exit.exit_code) == (ExitKind.EXITED, 0), exit.error
    assert exit.stdout_tail == "fallback ran\n"


def test_a_supervisor_of_protocol_2_is_sent_the_7_item_runs_it_knows(
    make_harness: MakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hello = ProcessRunner._hello

    def older_supervisor(self: ProcessRunner, sock: Any) -> int | None:
        pid = hello(self, sock)
        self._peer_protocol = 2  # what a supervisor started by the previous version says
        return pid

    monkeypatch.setattr(ProcessRunner, "_hello", older_supervisor)
    sent: list[Any] = []
    send = ProcessRunner._send

    def spy(self: ProcessRunner, sock: Any, message: Any) -> bool:
        sent.append(message)
        return send(self, sock, message)

    monkeypatch.setattr(ProcessRunner, "_send", spy)
    h = make_harness()
    script = tmp_path / "no-shebang"
    script.write_text("echo never\n")
    script.chmod(0o755)
    h.start(start_run("old-sup#1", [str(script)], fallback=["sh", "-c", "echo fallback"]))

    exit = h.exit()

    [items] = [m["runs"] for m in sent if m.get("op") == "spawn"]
    assert [len(item) for item in items] == [7], "an old supervisor cannot unpack 8 items"
    assert exit.kind is ExitKind.SPAWN_FAILED, "no spare was sent, so exec's refusal stands"


def test_when_the_fallback_cannot_be_spawned_either_both_reasons_are_reported(
    harness: Harness,
) -> None:
    command = start_run("fb-bad#1", ["no-such-primary"], fallback=["no-such-fallback"])

    assert harness.start(command) == []
    exit = harness.exit()

    assert exit.kind is ExitKind.SPAWN_FAILED
    assert "no-such-primary" in exit.error and "no-such-fallback" in exit.error


def test_a_missing_working_directory_is_a_spawn_failure(harness: Harness, tmp_path: Path) -> None:
    assert harness.start(start_run("nocwd#1", ["true"], cwd=tmp_path / "gone")) == []

    exit = harness.exit()

    assert exit.kind is ExitKind.SPAWN_FAILED and "gone" in exit.error
    assert exit.error.endswith(os.strerror(errno.ENOENT))


def test_a_working_directory_that_is_a_file_is_a_spawn_failure_saying_so(
    harness: Harness, tmp_path: Path
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    harness.start(start_run("filecwd#1", ["true"], cwd=a_file))

    exit = harness.exit()

    assert exit.kind is ExitKind.SPAWN_FAILED
    assert exit.error == f"working directory {str(a_file)!r}: {os.strerror(errno.ENOTDIR)}"


def test_a_call_target_is_refused_as_a_spawn_failure(harness: Harness) -> None:
    command = StartRun(
        run_id="call#1",
        entry_id="call",
        schedule_id=None,
        attempt=1,
        target=Call("noop"),
        argv=(),
        scheduled_for=None,
        deadline=None,
    )

    assert harness.start(command) == []
    assert harness.exit().kind is ExitKind.SPAWN_FAILED


# --- output, env, cwd, argv ----------------------------------------------------------------


def test_a_10_mb_stderr_and_stdout_are_bounded_to_their_tails_with_the_dropped_counts(
    harness: Harness,
) -> None:
    loud = "head -c 10000000 /dev/zero | tr '\\0' x"
    script = f"{loud} >&2; echo END >&2; {loud}; echo OUT"
    harness.start(start_run("loud#1", sh(script)))

    exit = harness.exit()

    # the exit carries the most the ledger may keep (the engine cuts it to its option); the
    # live view (files), the runner's tail_bytes
    total = 10_000_000 + len("END\n")
    assert len(exit.stderr_tail) == OUTPUT_TAIL_LIMIT
    assert exit.stderr_tail.endswith("xxEND\n")
    assert exit.stderr_dropped == total - OUTPUT_TAIL_LIMIT
    assert exit.stdout_tail is not None and len(exit.stdout_tail) == OUTPUT_TAIL_LIMIT
    assert exit.stdout_tail.endswith("xxOUT\n")
    assert exit.stdout_dropped == total - OUTPUT_TAIL_LIMIT
    output = harness.runner.output("loud#1")
    assert output is not None and len(output.stderr) == len(output.stdout) == 64 * 1024
    assert output.stdout_dropped == output.stderr_dropped == total - 64 * 1024


def test_an_exit_reads_no_output_file_the_supervisor_reported_empty(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    real = process_runner.read_tail

    def spy(path: str, limit: int) -> tuple[str, int]:
        read.append(os.path.basename(path))
        return real(path, limit)

    monkeypatch.setattr(process_runner, "read_tail", spy)
    harness.start(start_run("quiet#1", ["true"]))
    exit = harness.exit()
    assert (exit.stdout_tail, exit.stdout_dropped, exit.stderr_tail) == ("", 0, "")
    harness.start(start_run("talks#1", sh("echo hi")))
    exit = harness.exit()
    assert (exit.stdout_tail, exit.stderr_tail) == ("hi\n", "")
    assert read == [run_file_name("talks#1") + ".out"]  # not quiet#1's, nor an empty .err


def test_with_a_supervisor_that_reports_no_stdout_size_the_file_is_read(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A runner saying protocol 1 gets the exits an older supervisor sends: 4 items, no
    # stdout size (the supervisor started before an upgrade, say); stdout is read anyway.
    monkeypatch.setattr(process_runner.sup, "PROTOCOL", 1)
    h = make_harness()
    h.start(start_run("older#1", sh("echo from-an-older-supervisor")))
    exit = h.exit()
    assert (exit.stdout_tail, exit.stdout_dropped) == ("from-an-older-supervisor\n", 0)


def _can_punch_holes(directory: Path) -> bool:
    """Whether this file system frees a file's head with fallocate(PUNCH_HOLE) (Linux)."""
    from cronledger.adapters.supervisor import _hole_puncher

    punch = _hole_puncher()
    if punch is None:
        return False
    probe = directory / "punch-probe"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * (1 << 20))
        os.fsync(fd)
        punch(fd, 1 << 19)
        return os.fstat(fd).st_blocks * 512 < 1 << 20
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()


def test_a_running_jobs_output_files_are_trimmed_to_their_tail_on_disk(
    harness: Harness, tmp_path: Path
) -> None:
    """40 MB of stdout and stderr, then the job waits: while it runs the supervisor punches out
    the files' heads (disk use ~ the cap, the size unchanged); the tails and dropped counts
    read as if nothing was trimmed."""
    if not _can_punch_holes(harness.state_dir):
        pytest.skip("this file system cannot punch holes (the files are left to grow)")
    release = ready_file(tmp_path, "release")
    write = "head -c 20000000 /dev/zero | tr '\\0' x"
    script = f"{write}; echo OUT-END; {write} >&2; echo ERR-END >&2; " + (
        f"while [ ! -e '{release}' ]; do sleep 0.05; done"
    )
    harness.start(start_run("chatty#1", sh(script)))
    runs = harness.state_dir / "runs"
    files = [runs / f"{run_file_name('chatty#1')}{suffix}" for suffix in (".out", ".err")]
    cap = 1 << 20  # max(2 x the 64 KiB tail, OUTPUT_MIN_CAP)

    def trimmed() -> bool:
        stats = [f.stat() for f in files if f.exists()]
        return len(stats) == 2 and all(
            st.st_size > 20_000_000 and st.st_blocks * 512 <= cap for st in stats
        )

    wait_for(trimmed, "both output files trimmed to their cap while the job runs", 30)
    out = process_runner.read_tail(str(files[0]), 64 * 1024)
    assert out[0].endswith("xxOUT-END\n") and out[1] == 20_000_000 + 8 - 64 * 1024
    release.touch()
    exit = harness.exit()
    assert exit.succeeded
    assert len(exit.stderr_tail) == OUTPUT_TAIL_LIMIT and exit.stderr_tail.endswith("xxERR-END\n")
    assert exit.stderr_dropped == 20_000_000 + 8 - OUTPUT_TAIL_LIMIT
    assert exit.stdout_tail is not None and exit.stdout_tail.endswith("xxOUT-END\n")
    assert exit.stdout_dropped == 20_000_000 + 8 - OUTPUT_TAIL_LIMIT


def test_a_tail_cut_inside_a_utf8_character_starts_at_the_next_whole_character(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(tail_bytes=4)
    h.start(start_run("utf8#1", sh("printf 'aé€' >&2")))  # 1 + 2 + 3 bytes

    exit = h.exit()

    assert (exit.stderr_tail, exit.stderr_dropped) == ("aé€", 0)  # within OUTPUT_TAIL_LIMIT
    output = h.runner.output("utf8#1")  # the live view: the last tail_bytes
    assert output is not None and (output.stderr, output.stderr_dropped) == ("€", 3)


def test_env_pairs_are_added_to_the_daemon_environment_and_cwd_is_honoured(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FROM_DAEMON", "inherited")
    work = tmp_path / "work dir"
    work.mkdir()
    command = start_run(
        "env#1", sh('echo "$FOO|$FROM_DAEMON"; pwd'), env={"FOO": "bar baz"}, cwd=work
    )

    harness.start(command)
    assert harness.exit().exit_code == 0

    output = harness.runner.output("env#1")
    assert output is not None
    assert output.stdout.splitlines() == ["bar baz|inherited", str(work)]


def test_a_program_is_looked_up_in_the_daemon_path_when_the_target_env_sets_no_path(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "only-on-daemon-path"
    tool.write_text('#!/bin/sh\necho "found $FOO"\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    harness.start(start_run("path#1", ["only-on-daemon-path"], env={"FOO": "it"}))

    exit = harness.exit()
    assert (exit.kind, exit.exit_code) == (ExitKind.EXITED, 0), exit.error
    assert exit.stdout_tail == "found it\n"


def test_argv_with_spaces_quotes_and_substitutions_is_passed_literally(
    harness: Harness, tmp_path: Path
) -> None:
    args = ["a b", "\"q\" 'q'", "$(touch pwned)", "`touch pwned2`", "*", "$HOME", "x;y|z&", "\\n"]
    harness.start(start_run("literal#1", ["printf", "%s\\n", *args], cwd=tmp_path))

    assert harness.exit().exit_code == 0

    output = harness.runner.output("literal#1")
    assert output is not None and output.stdout.split("\n")[:-1] == args
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_a_program_named_like_a_shell_builtin_runs_the_real_program(harness: Harness) -> None:
    # dash's builtin echo would turn the backslash-n into a newline
    harness.start(start_run("echo#1", ["echo", "a\\nb"]))

    assert harness.exit().exit_code == 0
    output = harness.runner.output("echo#1")
    assert output is not None and output.stdout == "a\\nb\n"


def test_the_command_reads_an_empty_stdin(harness: Harness) -> None:
    harness.start(start_run("stdin#1", sh("wc -c")))

    assert harness.exit().exit_code == 0
    output = harness.runner.output("stdin#1")
    assert output is not None and output.stdout.strip() == "0"


# --- exactly once, never twice -------------------------------------------------------------


def test_each_exit_is_reported_exactly_once_across_many_polls(harness: Harness) -> None:
    commands = [start_run(f"many-{i}#1", sh(f"exit {i % 3}")) for i in range(20)]
    assert len(harness.start(*commands)) == 20

    exits = harness.exits(20)
    for _ in range(20):
        exits.extend(harness.runner.poll(T0))

    assert Counter(e.run_id for e in exits) == Counter(c.run_id for c in commands)
    assert {e.run_id: e.exit_code for e in exits} == {f"many-{i}#1": i % 3 for i in range(20)}
    assert harness.runner.active() == 0


def test_a_second_start_for_the_same_run_id_never_spawns_twice(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    release = tmp_path / "release"
    script = f"echo x >> '{count}'; while [ ! -e '{release}' ]; do sleep 0.02; done"
    first = make_harness()
    command = start_run("once#1", sh(script))

    started = first.start(command, command)  # twice in one batch
    assert [s.run_id for s in started] == ["once#1"]
    assert first.start(command) == []  # again while it runs
    wait_for(count.exists, "the job to start")
    first.close()
    second = make_harness()
    (adopted,) = second.start(command)  # a new runner: adopts it, spawns nothing
    assert adopted.pid == started[0].pid
    release.touch()

    exit = second.exit()

    assert exit.exit_code == 0
    assert second.start(command) == []  # after its exit
    assert count.read_text() == "x\n"
    assert second.runner.poll(T0) == []


# --- restarts ------------------------------------------------------------------------------


def test_a_run_outlives_its_runner_and_the_next_runner_reports_its_exit_once(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    ready = ready_file(tmp_path)
    script = f"echo started; touch '{ready}'; sleep 1; echo bye >&2; exit 7"
    a = make_harness()
    (started,) = a.start(start_run("survivor#1", sh(script)))
    wait_for(ready.exists, "the job to start")
    a.close()  # the daemon "crashes": nothing kills the job
    assert process_alive(started.pid or 0)

    b = make_harness()
    assert b.adopt([active_run("survivor#1", started)]) == []  # the ledger has its RunStarted
    assert b.runner.active() == 1
    exit = b.exit()

    assert (exit.run_id, exit.kind, exit.exit_code, exit.stderr_tail) == (
        "survivor#1",
        ExitKind.EXITED,
        7,
        "bye\n",
    )
    assert b.runner.active() == 0
    assert b.runner.poll(T0) == []
    output = b.runner.output("survivor#1")
    assert output is not None and output.stdout == "started\n"


def test_an_exit_that_happened_while_no_runner_watched_is_reported_on_adopt(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    a = make_harness()
    (started,) = a.start(
        start_run(
            "unwatched#1",
            sh(f"while [ ! -e '{release}' ]; do sleep 0.02; done; echo bye; echo err >&2; exit 4"),
        )
    )
    a.close()
    release.touch()
    wait_for(lambda: not process_alive(started.pid or 0), "the job to end")

    now = int(time.time() * 1000)
    b = make_harness()
    assert b.runner.adopt([active_run("unwatched#1", started)], now) == []
    (exit,) = b.runner.poll(now)

    assert (exit.kind, exit.exit_code) == (ExitKind.EXITED, 4)
    assert (exit.stdout_tail, exit.stderr_tail) == ("bye\n", "err\n")  # read from its files
    assert now - 60_000 < exit.finished_at <= now  # when it ended, not when it was noticed
    assert b.runner.poll(now) == []


def test_adopt_returns_started_for_a_running_run_the_ledger_shows_as_not_started(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    a = make_harness()
    (started,) = a.start(
        start_run("unrecorded#1", sh(f"while [ ! -e '{release}' ]; do sleep 0.02; done"))
    )
    a.close()  # died before RunStarted was appended

    b = make_harness()
    assert b.adopt([active_run("unrecorded#1")]) == [Started("unrecorded#1", started.pid, False)]
    release.touch()

    assert b.exit().exit_code == 0


def test_adopt_reports_lost_for_a_run_with_no_trace(harness: Harness) -> None:
    assert harness.adopt([active_run("ghost#1")]) == []

    exit = harness.exit()

    assert (exit.run_id, exit.kind, exit.error) == ("ghost#1", ExitKind.LOST, NEVER_STARTED)


def test_adopt_reports_lost_for_a_started_run_whose_files_are_gone(harness: Harness) -> None:
    harness.adopt([active_run("wiped#1", Started("wiped#1", 12345))])

    exit = harness.exit()

    assert exit.kind is ExitKind.LOST and "no state file" in exit.error


def test_adopt_reports_lost_when_the_supervisor_was_killed_and_stops_the_orphaned_job(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    job_pid = tmp_path / "job"
    a = make_harness()
    (started,) = a.start(start_run("orphan#1", sh(family_script(job_pid))))
    wait_for(job_pid.exists, "the job to start")
    job, grandchild = (int(p) for p in job_pid.read_text().split())
    a.close()  # the daemon is gone; the supervisor keeps the job
    kill_supervisor(a)  # ... until it is killed too: nobody will record the job's status
    assert process_alive(job) and process_alive(grandchild)

    b = make_harness()
    b.adopt([active_run("orphan#1", started)])
    exit = b.exit()

    assert exit.kind is ExitKind.LOST
    assert f"pid {started.pid}" in exit.error and "SIGKILL" in exit.error
    wait_for(lambda: not process_alive(job), "the orphaned job to die")
    wait_for(lambda: not process_alive(grandchild), "the orphaned job's child to die")


def test_a_supervisor_killed_under_a_live_runner_loses_its_runs_and_stops_their_groups(
    harness: Harness, tmp_path: Path
) -> None:
    pid_files = [tmp_path / "one", tmp_path / "two"]
    started = harness.start(
        *(start_run(f"headless-{i}#1", sh(family_script(f))) for i, f in enumerate(pid_files))
    )
    assert len(started) == 2
    for f in pid_files:
        wait_for(f.exists, "the jobs to start")
    processes = [int(p) for f in pid_files for p in f.read_text().split()]
    first_supervisor = harness.runner.supervisor_pid

    kill_supervisor(harness)
    exits = harness.exits(2)

    assert {e.run_id for e in exits} == {"headless-0#1", "headless-1#1"}
    for exit in exits:
        assert exit.kind is ExitKind.LOST
        assert "supervisor ended" in exit.error and "SIGKILL" in exit.error
        assert "was still running" in exit.error, exit.error
    wait_for(lambda: not any(map(process_alive, processes)), "the orphaned processes to die")
    (again,) = harness.start(start_run("after#1", ["true"]))  # a new supervisor takes over
    assert harness.exit().exit_code == 0
    assert harness.runner.supervisor_pid not in (None, first_supervisor)
    assert again.pid


def test_a_hung_supervisor_is_given_up_by_polling_alone_and_its_run_is_lost(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody reads the pending start's pid (the engine's loop does not wait for it): `poll`
    itself gives up a supervisor that leaves a request unanswered for REPLY_TIMEOUT_S, so the
    run is settled from its files instead of holding a slot forever."""
    monkeypatch.setattr(process_runner, "REPLY_TIMEOUT_S", 1.0)
    harness.start(start_run("warm-up#1", ["true"]))
    assert harness.exit().exit_code == 0
    supervisor = harness.runner.supervisor_pid
    assert supervisor is not None
    os.kill(supervisor, signal.SIGSTOP)
    try:
        (pending,) = harness.runner.carry_out([start_run("stuck#1", ["true"])], T0)
        assert not pending.settled
        exit = harness.exit(timeout=10)  # polls only; never reads pending.pid
        assert (exit.run_id, exit.kind) == ("stuck#1", ExitKind.LOST)
        assert pending.settled and pending.pid is None
    finally:
        os.kill(supervisor, signal.SIGCONT)


def test_a_spawn_failure_is_reported_again_after_a_restart(make_harness: MakeHarness) -> None:
    a = make_harness()
    a.start(start_run("doomed#1", ["no-such-program-xyz"]))
    a.close()  # crashed before its poll

    b = make_harness()
    b.adopt([active_run("doomed#1")])
    exit = b.exit()

    assert exit.kind is ExitKind.SPAWN_FAILED and "no-such-program-xyz" in exit.error


def test_adopt_cancels_again_a_run_the_ledger_says_was_being_cancelled(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    ready = ready_file(tmp_path)
    a = make_harness()
    (started,) = a.start(start_run("doomed-run#1", sh(f"touch '{ready}'; sleep 30")))
    wait_for(ready.exists, "the job to start")
    a.close()  # crashed after RunCancelled was recorded, before signalling

    b = make_harness(kill_grace_s=0.5)
    b.adopt([active_run("doomed-run#1", started, cancelling="timeout")])
    exit = b.exit()

    assert (exit.kind, exit.signal) == (ExitKind.SIGNALED, signal.SIGTERM)


def test_an_adopted_run_can_be_cancelled_including_its_group(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    ready = ready_file(tmp_path)
    a = make_harness()
    (started,) = a.start(
        start_run("adopted-cancel#1", sh(f"trap '' TERM; touch '{ready}'; sleep 30"))
    )
    wait_for(ready.exists, "the job to start")
    a.close()

    b = make_harness(kill_grace_s=0.3)
    b.adopt([active_run("adopted-cancel#1", started)])
    b.cancel("adopted-cancel#1")
    exit = b.exit()

    assert (exit.kind, exit.signal) == (ExitKind.SIGNALED, signal.SIGKILL)


# --- files ---------------------------------------------------------------------------------


def files_of(state_dir: Path, run_id: str) -> list[str]:
    stem = run_file_name(run_id)
    return sorted(p.name for p in (state_dir / "runs").iterdir() if p.name.startswith(stem + "."))


def test_forget_deletes_a_finished_runs_files_but_never_a_running_ones(
    harness: Harness, tmp_path: Path
) -> None:
    release, ready = tmp_path / "release", ready_file(tmp_path)
    busy = f"touch '{ready}'; while [ ! -e '{release}' ]; do sleep 0.02; done"
    harness.start(start_run("done#1", ["true"]), start_run("busy#1", sh(busy)))
    assert harness.exit().run_id == "done#1"
    wait_for(ready.exists, "the busy job to start")

    harness.runner.forget("done#1")
    harness.runner.forget("busy#1")

    wait_for(lambda: files_of(harness.state_dir, "done#1") == [], "the files to be deleted")
    assert len(files_of(harness.state_dir, "busy#1")) == 3
    release.touch()
    harness.exit()


def test_adopt_sweeps_files_of_runs_the_ledger_no_longer_knows_but_not_live_ones(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    release, ready = tmp_path / "release", ready_file(tmp_path)
    live = f"touch '{ready}'; while [ ! -e '{release}' ]; do sleep 0.02; done"
    a = make_harness()
    a.start(start_run("recorded#1", ["true"]), start_run("live-unknown#1", sh(live)))
    a.exits(1)
    wait_for(ready.exists, "the live job to start")
    a.close()

    b = make_harness()
    b.adopt([])

    assert files_of(b.state_dir, "recorded#1") == []
    assert len(files_of(b.state_dir, "live-unknown#1")) == 3
    release.touch()


def test_run_file_names_are_safe_distinct_and_bounded() -> None:
    ids = ["a/b#1", "a%2Fb#1", "..#1", ".hidden#1", "x" * 300 + "#1", "x" * 300 + "#2", "é#1"]
    names = [run_file_name(i) for i in ids]

    assert len(set(names)) == len(names)
    assert all("/" not in n and not n.startswith(".") and len(n) <= 200 for n in names)


def test_run_files_are_private_to_the_daemon_user(harness: Harness) -> None:
    harness.start(start_run("private#1", ["true"]))
    harness.exit()

    runs = harness.state_dir / "runs"
    assert stat.S_IMODE(runs.stat().st_mode) == 0o700
    assert stat.S_IMODE((runs / (run_file_name("private#1") + ".st")).stat().st_mode) == 0o600


# --- the supervisor ------------------------------------------------------------------------

LEGACY_SUPERVISOR = r"""
import fcntl, os, sys, time
state, release, status = sys.argv[1:]
fd = os.open(state, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()} 0\n".encode())
while not os.path.exists(release):
    time.sleep(0.02)
os.write(fd, (status + "\n").encode())
"""


def legacy_run(state_dir: Path, run_id: str, release: Path, status: str) -> subprocess.Popen[bytes]:
    """A run as an older version left it: a per-run `sh` supervisor holding the `.st` lock
    and writing a shell status (128+N for signal N) when its command ends."""
    state = state_dir / "runs" / (run_file_name(run_id) + ".st")
    state.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    proc = subprocess.Popen(
        [sys.executable, "-c", LEGACY_SUPERVISOR, str(state), str(release), status],
        start_new_session=True,
    )
    wait_for(lambda: state.exists() and state.read_text().endswith("0\n"), "the pid line")
    return proc


def test_each_job_is_exec_d_directly_as_a_child_of_the_supervisor_leading_its_group(
    harness: Harness,
) -> None:
    script = "echo $$ $PPID $(cut -d' ' -f5 /proc/$$/stat)"  # pid, parent, process group
    (started,) = harness.start(start_run("parent#1", sh(script)))

    assert harness.exit().exit_code == 0
    output = harness.runner.output("parent#1")
    assert output is not None
    pid, ppid, pgid = (int(x) for x in output.stdout.split())
    assert pid == started.pid == pgid  # no wrapper: the job is the spawned process
    assert ppid == harness.runner.supervisor_pid


def test_a_run_held_by_an_older_per_run_supervisor_is_watched_by_its_lock(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    h = make_harness()
    proc = legacy_run(h.state_dir, "legacy#1", release, "137")

    (started,) = h.adopt([active_run("legacy#1")])  # the ledger has no RunStarted yet
    assert started.pid == proc.pid
    release.touch()
    exit = h.exit()
    proc.wait()

    assert (exit.kind, exit.signal) == (ExitKind.SIGNALED, signal.SIGKILL)  # 128 + 9


def test_a_run_held_by_an_older_per_run_supervisor_is_cancelled_through_its_group(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    h = make_harness(kill_grace_s=0.3)
    proc = legacy_run(h.state_dir, "legacy-cancel#1", tmp_path / "never", "0")
    h.adopt([active_run("legacy-cancel#1", Started("legacy-cancel#1", proc.pid))])

    h.cancel("legacy-cancel#1")
    exit = h.exit()

    assert proc.wait(5) == -signal.SIGTERM
    assert (exit.kind, exit.signal) == (ExitKind.SIGNALED, signal.SIGTERM)


def test_an_idle_supervisor_exits_and_the_next_spawn_starts_another(
    make_harness: MakeHarness,
) -> None:
    a = make_harness()
    a.start(start_run("first#1", ["true"]))
    a.exit()
    first = a.runner.supervisor_pid
    assert first is not None
    a.close()
    wait_for(lambda: not process_alive(first), "the idle supervisor to exit", timeout=10)
    assert not (a.state_dir / "runs" / ".supervisor.sock").exists()

    b = make_harness()
    b.start(start_run("second#1", ["true"]))

    assert b.exit().exit_code == 0
    assert b.runner.supervisor_pid not in (None, first)


def test_two_runners_asked_for_the_same_run_at_once_spawn_it_once(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    count, release = tmp_path / "count", tmp_path / "release"
    script = f"echo x >> '{count}'; while [ ! -e '{release}' ]; do sleep 0.02; done"
    runners = [make_harness(), make_harness()]
    command = start_run("contended#1", sh(script))
    barrier = threading.Barrier(2)
    results: list[list[Started]] = [[], []]

    def start(i: int) -> None:
        barrier.wait()
        results[i] = runners[i].start(command)

    threads = [threading.Thread(target=start, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(count.exists, "the job to start")
    release.touch()
    exits = [h.exit() for h in runners]  # both hear of its exit (one spawned, one adopted)

    assert [len(r) for r in results] == [1, 1] and results[0][0].pid == results[1][0].pid
    assert [e.exit_code for e in exits] == [0, 0]
    assert count.read_text() == "x\n"


def test_a_program_that_passes_the_checks_but_cannot_be_executed_fails_after_started(
    harness: Harness, tmp_path: Path
) -> None:
    script = tmp_path / "no-shebang"
    script.write_text("echo hi\n")
    script.chmod(0o755)

    (started,) = harness.start(start_run("noexec-format#1", [str(script)]))
    exit = harness.exit()

    assert started.pid is None  # handed over, then refused by exec: no process
    assert exit.kind is ExitKind.SPAWN_FAILED and "Exec format error" in exit.error


def test_a_changed_daemon_environment_reaches_the_next_jobs(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.start(start_run("env-before#1", sh('echo "${LATE:-unset}"')))
    harness.exit()
    monkeypatch.setenv("LATE", "set later")

    harness.start(start_run("env-after#1", sh('echo "${LATE:-unset}"')))
    harness.exit()

    before, after = harness.runner.output("env-before#1"), harness.runner.output("env-after#1")
    assert before is not None and after is not None
    assert (before.stdout, after.stdout) == ("unset\n", "set later\n")


def test_a_run_handed_to_a_supervisor_that_stops_answering_is_lost_and_never_spawned_late(
    make_harness: MakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_runner, "REPLY_TIMEOUT_S", 0.5)
    ran = tmp_path / "ran"
    h = make_harness()
    h.start(start_run("warm#1", ["true"]))
    h.exit()
    supervisor = int((h.state_dir / "runs" / ".supervisor.lock").read_text())
    os.kill(supervisor, signal.SIGSTOP)  # alive, holding its lock, answering nothing
    try:
        (started,) = h.start(start_run("late#1", ["touch", str(ran)]))
        exit = h.exit()
    finally:
        os.kill(supervisor, signal.SIGCONT)

    assert started.pid is None
    assert (exit.kind, exit.error) == (ExitKind.LOST, NEVER_STARTED)
    h.start(start_run("after#1", ["true"]))  # it reads our request now, and refuses it
    assert h.exit().exit_code == 0
    assert not ran.exists(), "the run given up as lost was not spawned later"


def test_a_state_dir_too_long_for_a_socket_address_still_works(
    spawned_groups: set[int], tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    h = Harness(deep, spawned_groups)
    try:
        h.start(start_run("deep#1", ["true"]))
        assert h.exit().exit_code == 0
    finally:
        h.close()


def test_the_runner_starts_with_a_fresh_state_dir(tmp_path: Path) -> None:
    runner = ProcessRunner(tmp_path / "new" / "state")
    try:
        assert (tmp_path / "new" / "state" / "runs").is_dir()
        assert runner.active() == 0 and runner.poll(T0) == []
    finally:
        runner.close()


# --- with the engine -----------------------------------------------------------------------


def _tick_until(engine: Engine, harness: Harness, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not done():
        assert time.monotonic() < deadline, "the engine did not get there in time"
        engine.tick()
        harness.woken.wait(0.2)
        harness.woken.clear()


def _facts(engine: Engine) -> list[ev.Event]:
    return [e for _, e in engine.ledger.read()]


def test_the_engine_records_a_real_process_from_assignment_to_success(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    h = make_harness()
    engine = Engine.open(f"sqlite:///{tmp_path / 'ledger.db'}", SystemClock(), h.runner)
    engine.execute(SubmitTask(target=Command(("sh", "-c", "echo done >&2"))))

    _tick_until(engine, h, lambda: any(isinstance(e, ev.RunSucceeded) for e in _facts(engine)))

    facts = _facts(engine)
    (started,) = [e for e in facts if isinstance(e, ev.RunStarted)]
    (succeeded,) = [e for e in facts if isinstance(e, ev.RunSucceeded)]
    assert started.pid and succeeded.stderr_tail == "done\n"
    engine.close()


@pytest.mark.parametrize(
    ("at_spawn", "at_exit", "kept"),
    [(6, 6, "56789\n"), (6, 100, "0123456789\n"), (100, 0, "")],
)
def test_the_output_tail_bytes_in_force_when_the_exit_is_recorded_bounds_the_ledger(
    make_harness: MakeHarness, tmp_path: Path, at_spawn: int, at_exit: int, kept: str
) -> None:
    h = make_harness()
    engine = Engine.open(f"sqlite:///{tmp_path / 'ledger.db'}", SystemClock(), h.runner)
    release = tmp_path / "release"
    wait = f"while [ ! -e '{release}' ]; do sleep 0.02; done"
    engine.execute(ChangeOptions(Options(output_tail_bytes=at_spawn)))
    engine.execute(SubmitTask(target=Command(("sh", "-c", f"{wait}; echo 0123456789"))))
    _tick_until(engine, h, lambda: any(isinstance(e, ev.RunStarted) for e in _facts(engine)))
    engine.execute(ChangeOptions(Options(output_tail_bytes=at_exit)))
    release.touch()

    _tick_until(engine, h, lambda: any(isinstance(e, ev.RunSucceeded) for e in _facts(engine)))

    facts = _facts(engine)
    (succeeded,) = [e for e in facts if isinstance(e, ev.RunSucceeded)]
    assert (succeeded.stdout_tail, succeeded.stdout_dropped) == (kept, 11 - len(kept))
    [exit] = [x for e in facts if isinstance(e, ev.TickStarted) for x in e.exits]
    assert (exit.stdout_tail, exit.stdout_dropped) == (kept, 11 - len(kept))  # no more kept
    engine.close()


def test_a_restarted_engine_adopts_a_running_process_and_records_its_exit_once(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ready, release = ready_file(tmp_path), tmp_path / "release"
    script = f"touch '{ready}'; while [ ! -e '{release}' ]; do sleep 0.02; done; exit 3"
    a = make_harness()
    first = Engine.open(url, SystemClock(), a.runner)
    first.execute(SubmitTask(target=Command(("sh", "-c", script))))
    _tick_until(first, a, ready.exists)
    _tick_until(first, a, lambda: any(isinstance(e, ev.RunStarted) for e in _facts(first)))
    a.close()  # the daemon dies; its job runs on
    first.close()

    b = make_harness()
    second = Engine.open(url, SystemClock(), b.runner)
    assert b.runner.adopt(list(second.snapshot.runs.values()), second.clock.now()) == []
    release.touch()
    _tick_until(second, b, lambda: not second.snapshot.runs)
    second.tick()

    failed = [e for e in _facts(second) if isinstance(e, ev.RunFailed)]
    assert [(e.reason, e.exit_code) for e in failed] == [("exit", 3)]
    second.close()


@pytest.mark.parametrize("grace", [-1.0, float("inf"), float("nan"), "5", True])
def test_a_kill_grace_that_is_not_a_finite_number_of_seconds_is_refused(
    tmp_path: Path, grace: object
) -> None:
    """It travels to the supervisor as JSON, where inf and nan have no spelling."""
    with pytest.raises(InvalidInput, match="kill_grace_s"):
        ProcessRunner(tmp_path / "state", kill_grace_s=grace)  # type: ignore[arg-type]
    assert not (tmp_path / "state").exists()


def test_a_job_is_known_to_have_ended_when_gone_or_a_zombie() -> None:
    from cronledger.adapters.process_runner import _ended

    live = subprocess.Popen(["sleep", "30"])
    quick = subprocess.Popen(["true"])
    try:
        wait_for(lambda: _ended(quick.pid), "the quick job to be a zombie (not reaped yet)")
        assert quick.returncode is None, "still our unreaped child"
        assert not _ended(live.pid)
    finally:
        live.kill()
        live.wait()
        quick.wait()
    assert _ended(live.pid)
