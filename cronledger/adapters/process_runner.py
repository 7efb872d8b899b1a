"""The process runner: `Command` targets as real subprocesses that outlive a daemon restart.

Each run gets a tiny POSIX `sh` supervisor in its own session (its process group is the run's
group). The supervisor runs the user's argv as `"$@"` (never interpolated into a script, never
parsed by a shell) and records its pid and the command's exit status in files, so a daemon that
dies (even kill -9) leaves nothing behind that the job depends on, and a new daemon on the same
`state_dir` learns how the job ended.

On-disk layout, flat, three files per run (`<name>` = the run id, percent-encoded; long ids are
cut and suffixed with a hash). `runs/` is mode 0700: job output may be private.

    state_dir/runs/<name>.st    claim + lock + state. Created O_EXCL by the spawning daemon (so
                                nothing is ever spawned twice for one run id), flock'ed, and
                                handed to the supervisor as its stdin: the lock is held exactly
                                as long as the supervisor lives. Appended lines:
                                "<pid> <fallback 0|1>" by the supervisor when it starts,
                                "<exit status>" by the supervisor when the command has ended;
                                or one "!<error>" line by the daemon if nothing could be spawned.
    state_dir/runs/<name>.out   the command's stdout, created by the supervisor; both files
    state_dir/runs/<name>.err   the command's stderr  may grow, only their tails are read

Files stay until `forget(run_id)` (the engine calls it once the outcome fact is durable), or
until an `adopt` finds them belonging to no active run and not locked.

Restart protocol, `adopt(runs)` with the runs the ledger says are active:

- no `.st`: the daemon stopped before spawning (or the files were removed) -> LOST;
- `.st` locked: the supervisor lives -> watch it (`Started` if the ledger has no RunStarted yet;
  SIGTERM again if the ledger says it was being cancelled);
- unlocked, with a status line -> its exit (`finished_at` = the file's mtime, at most now);
- unlocked, "!error" -> SPAWN_FAILED; empty -> never spawned -> LOST; a pid line only -> the
  supervisor was killed before its command ended -> LOST, and what is left of its process group
  gets SIGKILL (so a retry cannot overlap an orphaned job).

The lock, not pid liveness, is the proof of life, so pid reuse cannot fool it. The status is
read only after the supervisor has exited (the lock is free or we reaped it), so a partial write
is never seen and no write-tmp-and-rename is needed (dash has no `mv` builtin, and an extra
exec would cost more than the whole supervisor).

Exit statuses: the supervisor sees what any shell sees, so a command killed by signal N and one
that called exit(128+N) look alike. Statuses 129..128+SIGRTMAX are reported as SIGNALED(N), the
shell convention (a program that really exits with 137 is misreported). When the supervisor
itself dies (our SIGKILL after the grace period), its own wait status is exact. dash appends a
notice such as "Killed" to the stderr of a command that died from a signal. Statuses 126/127 are
the shell's "cannot execute" / "not found" (a program removed between our check and the exec);
its message is in the stderr tail. A program named like a shell builtin (echo, test, kill, ...)
is run by its resolved path, so the real program runs, not the builtin.

Cost: the supervisor is one extra exec per run (about as much as the job's own exec of a small
program); the daemon does one file creation per spawn. Put `state_dir` on a local disk or
tmpfs (e.g. under $XDG_RUNTIME_DIR): flock and the restart protocol assume a local file system;
tmpfs survives daemon restarts, not reboots (after one, unfinished runs are reported LOST).

Watching: on Linux one thread waits on pidfds (epoll) for own children and adopted supervisors
alike and fires the SIGKILL escalations; elsewhere each own child gets a waiter thread and
adopted supervisors are checked every 0.2 s.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import heapq
import itertools
import os
import select
import shutil
import signal
import stat
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs

from cronledger.adapters.runner import Started
from cronledger.domain.commands import CancelRun, RunnerCommand, StartRun
from cronledger.domain.state import ActiveRun
from cronledger.domain.values import Command, ExitKind, RunExit

# The supervisor's shell: dash where installed (the lightest exec), else the system's sh.
SHELLS = ("/bin/dash", "/usr/bin/dash", "/bin/sh")
# $1 = fallback flag, $2 = the run's path stem, then the user's argv (never interpolated).
# The supervisor outlives a SIGTERM to its group (its trap is reset for the command at exec).
SUPERVISOR = (
    'trap : HUP INT TERM; echo "$$ $1" >&0; b=$2; shift 2; "$@" </dev/null >"$b.out" 2>"$b.err"; '
    'c=$?; echo "$c" >&0; exit "$c"'
)
# Names a shell runs as builtins even from "$@": these get their resolved path as argv[0].
_BUILTIN_NAMES = (
    ". : [ alias bg break builtin caller cd chdir command compgen complete continue declare "
    "dirs disown echo enable eval exec exit export false fc fg getopts hash help history jobs "
    "kill let local logout mapfile popd printf pushd pwd read readarray readonly return set "
    "shift shopt source suspend test times trap true type typeset ulimit umask unalias unset "
    "wait"
)
SHELL_BUILTINS = frozenset(_BUILTIN_NAMES.split())
ADOPTED_POLL_S = 0.2
NEVER_STARTED = "assigned but never started (the daemon stopped before spawning it)"
_MAX_SIGNAL = int(getattr(signal, "SIGRTMAX", 64))
_ST, _OUT, _ERR = ".st", ".out", ".err"


def _default_clock() -> int:
    return time.time_ns() // 1_000_000


def _pidfd_works() -> bool:
    """pidfd_open exists in this Python and this kernel (Linux >= 5.3)."""
    if not hasattr(os, "pidfd_open") or not hasattr(select, "epoll"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


# None: use pidfds where they work; tests set False to exercise the portable watcher.
PIDFD_WATCH: bool | None = None


def run_file_name(run_id: str) -> str:
    """The file stem of a run: its id percent-encoded, never '.'-led, at most ~180 bytes."""
    name = urllib.parse.quote(run_id, safe="@#!+=,")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > 180:  # "%h" never occurs in an encoded id, so cut names cannot collide
        name = name[:120] + "%h" + hashlib.sha256(run_id.encode()).hexdigest()[:40]
    return name


@attrs.frozen
class RunOutput:
    """The bounded tails of a run's stdout and stderr, and how many bytes were cut off."""

    stdout: str
    stdout_dropped: int
    stderr: str
    stderr_dropped: int


@attrs.frozen
class _State:
    """What a `.st` file says."""

    pid: int | None = None
    fallback: bool = False
    status: int | None = None
    spawn_error: str | None = None


def _parse_state(content: bytes) -> _State:
    lines = content.split(b"\n")
    first = lines[0]
    if first.startswith(b"!"):
        return _State(spawn_error=first[1:].decode("utf-8", "replace"))
    head = first.split()
    if len(head) != 2 or not head[0].isdigit():
        return _State()
    status = None
    if len(lines) >= 3 and lines[1].strip().isdigit():
        status = int(lines[1])
    return _State(pid=int(head[0]), fallback=head[1] == b"1", status=status)


def _read_state(path: str) -> tuple[_State, int] | None:
    """The parsed `.st` file and its mtime in ms; None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        mtime_ms = os.fstat(fd).st_mtime_ns // 1_000_000
        return _parse_state(os.read(fd, 4096)), mtime_ms
    finally:
        os.close(fd)


def _locked(path: str) -> bool | None:
    """Whether a supervisor holds the run's lock (None: no `.st` file). When the file cannot
    be checked (out of descriptors, ...) the answer is True: nothing is deleted or given up."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held
        return True
    finally:
        os.close(fd)  # also drops our lock, if we got it
    return False


def read_tail(path: str, limit: int) -> tuple[str, int]:
    """The last `limit` bytes of a file as text, and the number of bytes left out."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return "", 0
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return "", 0
        start = max(0, size - limit)
        data = os.pread(fd, size - start, start) if size > start else b""
    finally:
        os.close(fd)
    cut = 0
    if start > 0:  # do not start the text in the middle of a UTF-8 sequence
        while cut < min(3, len(data)) and 0x80 <= data[cut] < 0xC0:
            cut += 1
    return data[cut:].decode("utf-8", "replace"), start + cut


def _status_exit(run_id: str, status: int, at: int) -> RunExit:
    """A shell exit status as an exit: 128+N is read as signal N (see the module docstring)."""
    if 128 < status <= 128 + _MAX_SIGNAL:
        return RunExit(run_id=run_id, kind=ExitKind.SIGNALED, finished_at=at, signal=status - 128)
    return RunExit(run_id=run_id, kind=ExitKind.EXITED, finished_at=at, exit_code=status)


def _kill_orphaned_group(pgid: int, own: bool) -> bool:
    """SIGKILL the process group a dead supervisor led. For our own (unreaped) child the pgid
    is certainly the run's; otherwise only while the leader's pid is unused (a live group
    keeps its id from being reused, so then the members are the run's)."""
    if not own:
        try:
            os.kill(pgid, 0)
            return False  # a process has that pid: not our supervisor, maybe not our group
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class _Run:
    """A run being watched: an own child (`proc`) or an adopted supervisor (`proc` None)."""

    __slots__ = ("base", "done", "killed", "pid", "pidfd", "proc", "run_id", "term_sent")

    def __init__(
        self, run_id: str, base: str, pid: int | None, proc: subprocess.Popen[bytes] | None
    ) -> None:
        self.run_id = run_id
        self.base = base
        self.pid = pid
        self.proc = proc
        self.pidfd: int | None = None
        self.done = False
        self.term_sent = False
        self.killed = False


class ProcessRunner:
    """Runs `Command` targets as supervised subprocesses; see the module docstring."""

    def __init__(
        self,
        state_dir: str | Path,
        *,
        tail_bytes: int = 64 * 1024,
        kill_grace_s: float = 5.0,
        clock: Callable[[], int] | None = None,
        wake: Callable[[], None] | None = None,
        spawn_threads: int = 4,
    ) -> None:
        self.runs_dir = Path(state_dir) / "runs"
        self.runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dir = str(self.runs_dir.resolve())
        self._tail_bytes = tail_bytes
        self._grace = kill_grace_s
        self._clock = clock or _default_clock
        self._wake = wake
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}  # in flight: exit not known yet
        self._exited: set[str] = set()  # exit known (queued or reported), until forget()
        self._ready: list[RunExit] = []
        self._kills: list[tuple[float, int, str]] = []  # (monotonic deadline, seq, run id)
        self._seq = itertools.count()
        self._by_fd: dict[int, _Run] = {}
        self._lock_polled: dict[str, _Run] = {}
        self._which: dict[tuple[str, str], str] = {}
        self._closed = False
        self._shell = next((sh for sh in SHELLS if os.access(sh, os.X_OK)), SHELLS[-1])
        self._spawn_threads = spawn_threads
        self._pool: ThreadPoolExecutor | None = None
        use_pidfd = _pidfd_works() if PIDFD_WATCH is None else PIDFD_WATCH
        self._epoll = select.epoll() if use_pidfd else None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        if self._epoll is not None:
            self._epoll.register(self._wake_r, select.EPOLLIN)
        self._watcher = threading.Thread(
            target=self._watch, name=f"process-runner {self._dir}", daemon=True
        )
        self._watcher.start()

    # --- the port --------------------------------------------------------------------------

    def set_wake(self, wake: Callable[[], None]) -> None:
        """Call `wake()` whenever an exit becomes available (the engine's sleep is cut short)."""
        self._wake = wake

    def carry_out(self, commands: Sequence[RunnerCommand], now: int) -> list[Started]:
        """Signal CancelRuns, spawn StartRuns (a batch in parallel); failures show up on `poll`."""
        starts: dict[str, StartRun] = {}
        for command in commands:
            if isinstance(command, StartRun):
                starts.setdefault(command.run_id, command)
            elif isinstance(command, CancelRun):
                self._cancel(command.run_id)
        if len(starts) > 1 and self._spawn_threads > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._spawn_threads, "process-runner-spawn")
            results = list(self._pool.map(lambda c: self._start(c, now), starts.values()))
        else:
            results = [self._start(c, now) for c in starts.values()]
        return [started for result in results for started in result]

    def poll(self, now: int) -> list[RunExit]:
        """Exits seen since the last poll, each once, by finish time then run id."""
        with self._lock:
            ready, self._ready = self._ready, []
        ready.sort(key=lambda e: (e.finished_at, e.run_id))
        return ready

    def adopt(self, runs: Sequence[ActiveRun], now: int) -> list[Started]:
        """After a (re)start: resolve the runs the ledger says are active; sweep the rest."""
        started: list[Started] = []
        keep: set[str] = set()
        for run in runs:
            keep.add(run_file_name(run.run_id))
            with self._lock:
                if run.run_id in self._runs or run.run_id in self._exited:
                    continue
            started.extend(
                self._inspect(run.run_id, now, run.started_at is not None, run.cancelling)
            )
        self._sweep(keep)
        return started

    def active(self) -> int:
        """Runs in flight (spawned or adopted, exit not yet seen)."""
        with self._lock:
            return len(self._runs)

    def forget(self, run_id: str) -> None:
        """Delete a finished run's files, once its outcome fact is durable (never a live run's)."""
        with self._lock:
            if run_id in self._runs or run_id not in self._exited:
                return  # live, or never reported by this runner (a call run; swept by adopt)
            self._exited.discard(run_id)
        base = os.path.join(self._dir, run_file_name(run_id))
        if _locked(base + _ST):
            return
        for suffix in (_OUT, _ERR, _ST):
            _unlink(base + suffix)

    def output(self, run_id: str) -> RunOutput | None:
        """The tails of a run's stdout and stderr, while its files exist (until `forget`)."""
        base = os.path.join(self._dir, run_file_name(run_id))
        if not os.path.exists(base + _ST):
            return None
        out, out_dropped = read_tail(base + _OUT, self._tail_bytes)
        err, err_dropped = read_tail(base + _ERR, self._tail_bytes)
        return RunOutput(out, out_dropped, err, err_dropped)

    def close(self) -> None:
        """Stop watching; running jobs keep going (a new runner can adopt them)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._pool is not None:
            self._pool.shutdown()
        self._poke()
        self._watcher.join()
        with self._lock:
            fds = list(self._by_fd)
            self._by_fd.clear()
        for fd in fds:
            os.close(fd)
        if self._epoll is not None:
            self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # --- starting --------------------------------------------------------------------------

    def _start(self, command: StartRun, now: int) -> list[Started]:
        run_id = command.run_id
        target = command.target
        with self._lock:
            if run_id in self._runs or run_id in self._exited:
                return []  # a repeated StartRun: it is already running or done
        if not isinstance(target, Command):
            error = f"the process runner runs Command targets only, not {target!r}"
            self._spawn_failed(run_id, None, error, now)
            return []
        base = os.path.join(self._dir, run_file_name(run_id))
        try:
            fd = os.open(
                base + _ST, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
            )
        except FileExistsError:
            # Spawned before (by a daemon that died before recording it): adopt, never respawn.
            return self._inspect(run_id, now, ledger_started=False, cancelling=None)
        except OSError as exc:
            self._spawn_failed(run_id, None, f"cannot create {base + _ST}: {exc.strerror}", now)
            return []
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            env = None
            path = os.environ.get("PATH", os.defpath)
            if target.env:
                env = {**os.environ, **dict(target.env)}
                path = env.get("PATH", os.defpath)
            chosen = self._choose(command, target, path)
            if isinstance(chosen, str):
                self._spawn_failed(run_id, fd, chosen, now)
                return []
            argv, fallback = chosen
            try:
                proc = subprocess.Popen(
                    [self._shell, "-c", SUPERVISOR, "sh", "1" if fallback else "0", base, *argv],
                    stdin=fd,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=target.cwd,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                self._spawn_failed(run_id, fd, f"cannot spawn {argv[0]!r}: {exc}", now)
                return []
        finally:
            os.close(fd)  # the supervisor holds the lock now (or nobody does)
        run = _Run(run_id, base, proc.pid, proc)
        with self._lock:
            self._runs[run_id] = run
        self._watch_child(run)
        return [Started(run_id, proc.pid, fallback)]

    def _choose(
        self, command: StartRun, target: Command, path: str
    ) -> tuple[list[str], bool] | str:
        """The argv to spawn and whether it is the fallback, or why nothing can be spawned."""
        cwd = target.cwd
        if cwd is not None and not os.path.isdir(cwd):
            return f"working directory {cwd!r}: {os.strerror(errno.ENOENT)}"
        argv = list(command.argv)
        if not argv:
            return "the command is empty"
        problem = self._check_program(argv, cwd, path)
        if problem is None:
            return argv, False
        if not target.fallback:
            return problem
        fallback = list(command.fallback_argv or target.fallback)
        fallback_problem = self._check_program(fallback, cwd, path)
        if fallback_problem is None:
            return fallback, True
        return f"{problem}; fallback: {fallback_problem}"

    def _check_program(self, argv: list[str], cwd: str | None, path: str) -> str | None:
        """None if argv[0] can be executed (a shell builtin name is swapped for its path)."""
        program = argv[0]
        if not program:
            return "the program name is empty"
        if "/" in program:
            full = os.path.join(cwd or os.getcwd(), program)
            try:
                mode = os.stat(full).st_mode
            except OSError as exc:
                return f"{program}: {exc.strerror}"
            if stat.S_ISDIR(mode):
                return f"{program}: {os.strerror(errno.EISDIR)}"
            if not os.access(full, os.X_OK):
                return f"{program}: {os.strerror(errno.EACCES)}"
            return None
        key = (program, path)
        found = self._which.get(key)
        if found is None or not os.access(found, os.X_OK):
            found = shutil.which(program, path=path)
            if found is None:
                return self._not_in_path(program, path)
            self._which[key] = found
        if program in SHELL_BUILTINS:
            argv[0] = found
        return None

    @staticmethod
    def _not_in_path(program: str, path: str) -> str:
        for directory in path.split(os.pathsep):
            candidate = os.path.join(directory or ".", program)
            if os.path.isfile(candidate):
                return f"{program}: {os.strerror(errno.EACCES)} ({candidate} is not executable)"
        return f"{program}: {os.strerror(errno.ENOENT)} (not found in PATH)"

    def _spawn_failed(self, run_id: str, fd: int | None, error: str, now: int) -> None:
        if fd is not None:  # recorded, so a restart reports it too
            with contextlib.suppress(OSError):
                os.write(fd, b"!" + error.replace("\n", " ").encode() + b"\n")
        self._queue(
            RunExit(run_id=run_id, kind=ExitKind.SPAWN_FAILED, finished_at=now, error=error)
        )

    # --- adopting --------------------------------------------------------------------------

    def _inspect(
        self, run_id: str, now: int, ledger_started: bool, cancelling: str | None
    ) -> list[Started]:
        """Resolve a run from its files: watch it, or queue the exit they tell of."""
        base = os.path.join(self._dir, run_file_name(run_id))
        alive = _locked(base + _ST)
        if alive is None:
            error = NEVER_STARTED
            if ledger_started:
                error = f"started, but its state file {base + _ST} is gone; its exit is unknown"
            self._queue(RunExit(run_id=run_id, kind=ExitKind.LOST, finished_at=now, error=error))
            return []
        if not alive:
            self._queue(self._with_tail(self._dead_exit(run_id, base, now, None), base))
            return []
        state = self._wait_for_pid(base)
        run = _Run(run_id, base, state.pid, None)
        with self._lock:
            self._runs[run_id] = run
        self._watch_adopted(run)
        if cancelling is not None:
            self._cancel(run_id)
        if ledger_started:
            return []
        return [Started(run_id, state.pid, state.fallback)]

    @staticmethod
    def _wait_for_pid(base: str) -> _State:
        """The state of a live supervisor; its pid line follows its exec by a moment."""
        deadline = time.monotonic() + 1.0
        while True:
            read = _read_state(base + _ST)
            state = read[0] if read else _State()
            if state.pid is not None or time.monotonic() > deadline:
                return state
            time.sleep(0.005)

    def _dead_exit(self, run_id: str, base: str, now: int, run: _Run | None) -> RunExit:
        """The exit of a supervisor that has ended, from its `.st` file (and its wait status
        when it was our child, reaped here). `run` is None when nobody watched it end."""
        read = _read_state(base + _ST)
        state, mtime = read if read else (_State(), now)
        at = now if run is not None else min(now, mtime)
        if state.spawn_error is not None:
            return RunExit(
                run_id=run_id, kind=ExitKind.SPAWN_FAILED, finished_at=at, error=state.spawn_error
            )
        killed_rest = False
        if state.status is None and state.pid is not None and not (run and run.killed):
            # The supervisor died before its command did: stop what is left of the run, so
            # a retry cannot overlap it.
            killed_rest = _kill_orphaned_group(
                state.pid, own=run is not None and run.proc is not None
            )
        code = run.proc.wait() if run is not None and run.proc is not None else None
        rest = "; the rest of its process group was sent SIGKILL" if killed_rest else ""
        error = ""
        if state.status is not None:
            exit = _status_exit(run_id, state.status, at)
        elif code is not None and code < 0:
            exit = RunExit(run_id=run_id, kind=ExitKind.SIGNALED, finished_at=at, signal=-code)
            if not (run and (run.killed or run.term_sent)):
                error = f"its supervisor was killed by signal {-code}{rest}"
        elif run is not None and (run.killed or run.term_sent):
            sig = signal.SIGKILL if run.killed else signal.SIGTERM
            exit = RunExit(run_id=run_id, kind=ExitKind.SIGNALED, finished_at=at, signal=sig)
        elif code is not None:  # it could not write its status line, but exited with it
            exit = _status_exit(run_id, code, at)
        elif state.pid is not None:
            error = (
                f"its supervisor (pid {state.pid}) ended without recording the exit status "
                f"(killed with SIGKILL, or the machine restarted){rest}"
            )
            return RunExit(run_id=run_id, kind=ExitKind.LOST, finished_at=at, error=error)
        else:
            return RunExit(run_id=run_id, kind=ExitKind.LOST, finished_at=at, error=NEVER_STARTED)
        if run is not None and run.killed:
            error = f"still running {self._grace:g} s after SIGTERM: sent SIGKILL"
        return attrs.evolve(exit, error=error) if error else exit

    def _sweep(self, keep: set[str]) -> None:
        """Delete files of runs the ledger no longer knows, unless a supervisor holds them."""
        with self._lock:
            keep = (
                keep
                | {run_file_name(r) for r in self._runs}
                | {run_file_name(r) for r in self._exited}
            )
        stems: set[str] = set()
        with os.scandir(self._dir) as entries:
            for entry in entries:
                stem, dot, _suffix = entry.name.rpartition(".")
                if dot and stem not in keep:
                    stems.add(stem)
        for stem in stems:
            base = os.path.join(self._dir, stem)
            if _locked(base + _ST):
                continue
            for suffix in (_OUT, _ERR, _ST):
                _unlink(base + suffix)

    # --- cancelling ------------------------------------------------------------------------

    def _cancel(self, run_id: str) -> None:
        """SIGTERM the run's process group; SIGKILL it if it is still there after the grace."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.done or run.term_sent or run.pid is None:
                return
            run.term_sent = True
            self._signal(run, signal.SIGTERM)
            heapq.heappush(self._kills, (time.monotonic() + self._grace, next(self._seq), run_id))
        self._poke()

    def _signal(self, run: _Run, sig: int) -> None:
        """Signal the supervisor's group (the lock is held; an own child is not reaped yet)."""
        assert run.pid is not None
        if run.proc is None and not _locked(run.base + _ST):
            return  # an adopted supervisor that is gone: its pid may be someone else's now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, sig)

    def _due_kills(self) -> float | None:
        """Send due SIGKILLs; seconds until the next one."""
        with self._lock:
            now = time.monotonic()
            while self._kills and self._kills[0][0] <= now:
                _, _, run_id = heapq.heappop(self._kills)
                run = self._runs.get(run_id)
                if run is not None and not run.done:
                    run.killed = True
                    self._signal(run, signal.SIGKILL)
            return self._kills[0][0] - now if self._kills else None

    # --- watching --------------------------------------------------------------------------

    def _watch_child(self, run: _Run) -> None:
        assert run.pid is not None
        if self._epoll is None:
            threading.Thread(target=self._wait_child, args=(run,), daemon=True).start()
            return
        try:
            pidfd = os.pidfd_open(run.pid)  # our unreaped child: the pid cannot be reused
        except OSError:  # out of descriptors: a waiter thread does the same job
            threading.Thread(target=self._wait_child, args=(run,), daemon=True).start()
            return
        run.pidfd = pidfd
        with self._lock:
            self._by_fd[pidfd] = run
        self._epoll.register(pidfd, select.EPOLLIN)

    def _wait_child(self, run: _Run) -> None:
        """Waiter thread of one own child (where there are no pidfds)."""
        assert run.pid is not None
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, run.pid, os.WEXITED | os.WNOWAIT)
        self._finish(run)

    def _watch_adopted(self, run: _Run) -> None:
        if self._epoll is not None and run.pid is not None:
            try:
                pidfd = os.pidfd_open(run.pid)
            except ProcessLookupError:
                pidfd = None
            if pidfd is not None:
                if _locked(run.base + _ST):  # still alive after pidfd_open: the pid was its
                    run.pidfd = pidfd
                    with self._lock:
                        self._by_fd[pidfd] = run
                    self._epoll.register(pidfd, select.EPOLLIN)
                    return
                os.close(pidfd)
        with self._lock:
            self._lock_polled[run.run_id] = run
        self._poke()

    def _watch(self) -> None:
        """The watcher thread: pidfd exits, lock-polled adopted runs, SIGKILL escalations."""
        while True:
            timeout = self._due_kills()
            with self._lock:
                if self._closed:
                    return
                if self._lock_polled:
                    timeout = ADOPTED_POLL_S if timeout is None else min(timeout, ADOPTED_POLL_S)
            if self._epoll is not None:
                fds = [fd for fd, _ in self._epoll.poll(-1 if timeout is None else timeout)]
            else:
                fds = select.select([self._wake_r], [], [], timeout)[0]
            for fd in fds:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    run = self._by_fd.pop(fd, None)
                if run is not None:
                    self._finish(run)
            self._check_lock_polled()

    def _check_lock_polled(self) -> None:
        with self._lock:
            runs = list(self._lock_polled.values())
        for run in runs:
            if not _locked(run.base + _ST):
                with self._lock:
                    self._lock_polled.pop(run.run_id, None)
                self._finish(run)

    def _finish(self, run: _Run) -> None:
        """Turn a supervisor's end into the run's exit, queued for `poll` (never raises: an
        exit that cannot be read is reported as LOST, so no run stays active forever)."""
        if run.pidfd is not None:
            assert self._epoll is not None
            with contextlib.suppress(OSError):
                self._epoll.unregister(run.pidfd)
            os.close(run.pidfd)
            run.pidfd = None
        now = self._clock()
        try:
            with self._lock:  # reap under the lock: no signal can reach a reused pid
                run.done = True
                exit = self._dead_exit(run.run_id, run.base, now, run)
            exit = self._with_tail(exit, run.base)
        except Exception as exc:  # the watcher thread must survive whatever it reads
            error = f"its exit could not be read: {exc!r}"
            exit = RunExit(run_id=run.run_id, kind=ExitKind.LOST, finished_at=now, error=error)
        with self._lock:
            if self._closed:
                return
            self._runs.pop(run.run_id, None)
        self._queue(exit)

    def _with_tail(self, exit: RunExit, base: str) -> RunExit:
        """The exit with the tail of the run's stderr, for runs that ran."""
        if exit.kind not in (ExitKind.EXITED, ExitKind.SIGNALED):
            return exit
        tail, dropped = read_tail(base + _ERR, self._tail_bytes)
        return attrs.evolve(exit, stderr_tail=tail, stderr_dropped=dropped)

    def _queue(self, exit: RunExit) -> None:
        with self._lock:
            self._exited.add(exit.run_id)
            self._ready.append(exit)
        if self._wake is not None:
            self._wake()

    def _poke(self) -> None:
        """Wake the watcher thread (a new deadline, a new lock-polled run, or close)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")
