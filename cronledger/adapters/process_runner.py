"""The process runner: `Command` targets as real subprocesses that outlive a daemon restart.

One long-lived run supervisor per state_dir (`adapters/supervisor.py`, a small stdlib-only
Python process) spawns, watches and reaps every job; runners (daemons, engines) talk to it over
a unix socket in `runs/`. The runner starts it when it is built, detached in its own session,
if none is running (proof of life: the supervisor's flock on `runs/.supervisor.lock`, which
also holds its pid); it exits by itself after 2 s with no live job and no runner connected.

A run costs one exec, the job's own: the supervisor `posix_spawn`s the user's argv directly
(argv only, never a shell) in a new process group, with stdin /dev/null and stdout/stderr in
the run's files. The job stays the supervisor's child until its exit status is written, so its
pid cannot be reused in the meantime, and the status is exact (exit code, or the signal that
killed it).

On-disk layout: three files per run (`<name>` = the run id, percent-encoded; long ids are cut
and suffixed with a hash) plus the supervisor's dotfiles. `runs/` is mode 0700: job output may
be private, and only the owner can reach the socket (the supervisor also checks the peer's uid
where the system reports it).

    state_dir/runs/<name>.st    claim + lock + state. Created O_EXCL by the supervisor (so a
                                run id is never spawned twice) and flocked by it for as long
                                as the job runs: the lock is the proof that the job is still
                                the supervisor's. Lines: "<pid> <fallback 0|1>" once spawned,
                                then "exit N" / "signal N" ("... escalated" when our SIGKILL
                                ended it) once reaped. Or a single "!<error>" line if nothing
                                could be spawned, or "?<reason>" (a tombstone), written by a
                                runner that found the run never spawned.
    state_dir/runs/<name>.out   the job's stdout; only their tails are read, and while
    state_dir/runs/<name>.err   the job's stderr   the job runs the supervisor punches out the
                                head of a file over max(2 x keep, 1 MiB) every second
                                (keep: tail_bytes, at least the 64 KiB the ledger may take;
                                Linux; see supervisor.py), so disk use stays bounded
    state_dir/runs/.supervisor.{lock,sock,log}

Spawning: `carry_out` checks each StartRun in the daemon first (working directory, program found
in the job's PATH and executable, else the fallback command), so the usual spawn failures are
reported at once as `spawn_failed` with the OS error (and an "!error" `.st`, which a restart
reports again). It then sends the batch in one message and returns without waiting. The
`Started` it returns settle when the supervisor answers (reading their `pid` waits for it);
`poll` does not wait for it (it only gives up a supervisor silent for REPLY_TIMEOUT_S): the
engine records each RunStarted with a later tick once settled, so the loop goes on while the
supervisor spawns. A program that passes the checks but that
exec refuses (no `#!` line: Exec format error; removed in between) gets a `Started` without a
pid and then a `spawn_failed` exit. Exits come back as messages, each sent only after the
status is in the `.st` and the lock released. Cancel and timeout: the supervisor sends SIGTERM
to the job's process group, then SIGKILL after the grace period (it keeps that timer even if
the daemon dies). Files stay until `forget(run_id)` (the engine calls it once the outcome fact
is durable; the watcher thread then deletes them, DELETE_BATCH runs at a time or within
DELETE_DELAY_S), or until an `adopt` finds them belonging to no active run and not locked.

Restart protocol, `adopt(runs)` with the runs the ledger says are active:

- no `.st`: the daemon stopped before the supervisor got the request -> LOST, and a tombstone
  `.st` is left, so that a request still on its way can never spawn the run later;
- `.st` locked: a live supervisor has the job -> it reports the exit to us from now on
  (`Started` if the ledger has no RunStarted yet; SIGTERM again if the ledger says it was being
  cancelled);
- unlocked, with a status line -> its exit (`finished_at` = the file's mtime, at most now);
- unlocked, "!error" -> SPAWN_FAILED; empty or a tombstone -> never spawned -> LOST (an empty
  file gets a tombstone under the lock, which the supervisor checks before spawning);
- a pid line only -> the supervisor died (kill -9) before the job ended -> LOST, and the job's
  process group gets SIGKILL (so that a retry cannot overlap an orphaned job) when it is
  provably the run's: its leader's pid is unused (a live group keeps its id from being reused),
  or (Linux) the process with that pid started within a second or two of the run's spawn.

The same resolution runs when a connected runner sees the supervisor die (its socket closes):
the runs it had in flight are read from their files once the kernel has released their locks,
and the next spawn starts a new supervisor. A `.st` locked by something that is not the live
supervisor (a per-run `sh` supervisor of an older version) is watched by polling its lock every
0.2 s and cancelled by signalling its group while the lock is held; the shell statuses such
supervisors wrote (128+N = signal N) are still understood.

Two runners on one state_dir share the supervisor: the O_EXCL claim keeps a run id from being
spawned twice, and each runner hears of the runs it spawned or adopted.

Put `state_dir` on a local disk or tmpfs (e.g. under $XDG_RUNTIME_DIR): flock and the restart
protocol assume a local file system; tmpfs survives daemon restarts, not reboots (after one,
unfinished runs are reported LOST). A state_dir too long for a socket address is reached
through /proc/self/fd (Linux). Jobs get the environment and working directory of the daemon
that asked for them, plus the target's env and cwd; their other process attributes (umask,
limits) come from the runner that started the supervisor.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import heapq
import itertools
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import orjson

from cronledger.adapters import supervisor as sup
from cronledger.adapters.runner import Started
from cronledger.domain.commands import CancelRun, RunnerCommand, StartRun
from cronledger.domain.state import ActiveRun
from cronledger.domain.values import OUTPUT_TAIL_LIMIT, Command, ExitKind, RunExit
from cronledger.errors import InvalidInput

ADOPTED_POLL_S = 0.2
DELETE_BATCH = 64  # forgotten runs whose files the watcher deletes together
DELETE_DELAY_S = 0.5  # ... or after this long (a quiet runner)
START_TIMEOUT_S = 20.0  # for a new supervisor to say it is ready (a loaded machine)
REPLY_TIMEOUT_S = 30.0  # a supervisor that does not answer for this long is given up
DEATH_GRACE_S = 2.0  # a dead supervisor's locks are released by the kernel within this
SAME_START_MS = 2_500  # a process that started this close to the run's spawn is the run's
NEVER_STARTED = "assigned but never started (the daemon stopped before spawning it)"
_MAX_SIGNAL = int(getattr(signal, "SIGRTMAX", 64))
_ST, _OUT, _ERR = ".st", ".out", ".err"
_LOG_MAX = 1 << 20
Json = dict[str, Any]


def _default_clock() -> int:
    return time.time_ns() // 1_000_000


# What urllib.parse.quote(..., safe="@#!+=,") leaves as it is: such an id is its own stem.
_PLAIN_STEM = re.compile(r"[A-Za-z0-9_.~@#!+=,-]{1,180}")


def run_file_name(run_id: str) -> str:
    """The file stem of a run: its id percent-encoded, never '.'-led, at most ~180 bytes."""
    if _PLAIN_STEM.fullmatch(run_id) and run_id[0] != ".":
        return run_id  # the usual id (quote() cost ~4 us, twice per spawn)
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
    """What a `.st` file says. `status` is (kind, number, escalated): kind "exit"/"signal" from
    the supervisor, "shell" for the exit status an older per-run `sh` supervisor recorded."""

    pid: int | None = None
    fallback: bool = False
    status: tuple[str, int, bool] | None = None
    spawn_error: str | None = None
    tombstone: str | None = None

    @property
    def empty(self) -> bool:
        return self.pid is None and self.spawn_error is None and self.tombstone is None


def _parse_status(line: bytes) -> tuple[str, int, bool] | None:
    words = line.split()
    if len(words) == 1 and words[0].isdigit():
        return ("shell", int(words[0]), False)
    if len(words) in (2, 3) and words[0] in (b"exit", b"signal") and words[1].isdigit():
        return (words[0].decode(), int(words[1]), words[2:] == [b"escalated"])
    return None


def _parse_state(content: bytes) -> _State:
    lines = content.split(b"\n")
    first = lines[0]
    if first.startswith(b"!"):
        return _State(spawn_error=first[1:].decode("utf-8", "replace"))
    if first.startswith(b"?"):
        return _State(tombstone=first[1:].decode("utf-8", "replace"))
    head = first.split()
    if len(head) != 2 or not head[0].isdigit():
        return _State()
    status = _parse_status(lines[1]) if len(lines) >= 3 else None
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


def _code_exit(run_id: str, code: int, at: int, stdout_tail: str | None = None) -> RunExit:
    """An exact status (waitstatus_to_exitcode: negative = killed by that signal)."""
    if code < 0:
        return RunExit(
            run_id=run_id, kind=ExitKind.SIGNALED, finished_at=at, signal=-code,
            stdout_tail=stdout_tail,
        )  # fmt: skip
    return RunExit(
        run_id=run_id, kind=ExitKind.EXITED, finished_at=at, exit_code=code,
        stdout_tail=stdout_tail,
    )  # fmt: skip


def _status_exit(run_id: str, status: tuple[str, int, bool], at: int) -> RunExit:
    kind, number, _escalated = status
    if kind == "signal":
        return _code_exit(run_id, -number, at)
    if kind == "shell" and 128 < number <= 128 + _MAX_SIGNAL:  # the shell convention
        return _code_exit(run_id, -(number - 128), at)
    return _code_exit(run_id, number, at)


_BOOT_S: float | None = None


def _process_start_ms(pid: int) -> int | None:
    """When process `pid` started (epoch ms, to about a second), where /proc tells."""
    global _BOOT_S
    try:
        if _BOOT_S is None:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        _BOOT_S = float(line.split()[1])
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime, in clock ticks after boot
    except (OSError, ValueError, IndexError):
        return None
    if _BOOT_S is None:
        return None
    return int((_BOOT_S + ticks / os.sysconf("SC_CLK_TCK")) * 1000)


def _ended(pid: int) -> bool:
    """Whether process `pid` is gone or a zombie (it ended; nobody reaped it yet), where /proc
    tells."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        return False


def _kill_orphaned_group(pgid: int, spawned_ms: int) -> bool:
    """SIGKILL the process group of a job whose supervisor died. Only when it is provably the
    run's group: its leader's pid is unused (a live group keeps its id from being reused), or
    the process with that pid started when the run was spawned."""
    try:
        os.kill(pgid, 0)
    except ProcessLookupError:
        pass
    except PermissionError:
        return False
    else:
        started = _process_start_ms(pgid)
        if started is None or abs(started - spawned_ms) > SAME_START_MS:
            return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _unlink(path: str, dir_fd: int | None = None) -> None:
    try:  # noqa: SIM105 (contextlib.suppress costs ~2 µs, three times per run)
        os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _tombstone(base: str, reason: str) -> bool:
    """Create the run's `.st` as a tombstone ("?reason"); False if it exists already."""
    try:
        fd = os.open(base + _ST, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    except OSError:
        return True  # nothing can spawn it there either
    try:
        os.write(fd, b"?" + reason.encode() + b"\n")
    finally:
        os.close(fd)
    return True


class _Unavailable(Exception):
    """The supervisor cannot be started or reached."""


class _Run:
    """A run in flight: the supervisor's job (`supervised`), or a `.st` lock held by something
    else (an older per-run supervisor), watched by polling the lock."""

    __slots__ = ("base", "done", "fallback", "killed", "pid", "run_id", "supervised", "term_sent")

    def __init__(
        self, run_id: str, base: str, pid: int | None, fallback: bool, supervised: bool
    ) -> None:
        self.run_id = run_id
        self.base = base
        self.pid = pid
        self.fallback = fallback
        self.supervised = supervised
        self.done = False
        self.term_sent = False
        self.killed = False


class _PendingStarted(Started):
    """A `Started` handed back before the supervisor has answered: `settled` is False until
    the answer comes, and reading `pid` or `fallback` waits for it."""

    __slots__ = ("_cond", "_give_up", "_settled", "_value", "handed_at")
    _cond: threading.Condition  # the runner's (no Event per run: a batch settles together)
    _give_up: Callable[[], None]
    _settled: bool
    _value: tuple[int | None, bool]
    handed_at: float  # time.monotonic() when the request was sent

    def __init__(
        self,
        run_id: str,
        fallback: bool,
        cond: threading.Condition,
        give_up: Callable[[], None],
        handed_at: float,
    ) -> None:
        object.__setattr__(self, "run_id", run_id)
        object.__setattr__(self, "handed_at", handed_at)
        object.__setattr__(self, "_cond", cond)
        object.__setattr__(self, "_settled", False)
        object.__setattr__(self, "_value", (None, fallback))
        object.__setattr__(self, "_give_up", give_up)

    def settle(self, pid: int | None, fallback: bool) -> None:
        with self._cond:
            object.__setattr__(self, "_value", (pid, fallback))
            object.__setattr__(self, "_settled", True)
            self._cond.notify_all()

    @property
    def settled(self) -> bool:
        return self._settled

    def _wait(self) -> tuple[int | None, bool]:
        if not self._settled:
            with self._cond:
                answered = self._cond.wait_for(lambda: self._settled, REPLY_TIMEOUT_S)
            if not answered:
                self._give_up()  # drop the connection: the watcher then settles every run
                with self._cond:
                    self._cond.wait_for(lambda: self._settled)
        return self._value

    def abandon(self) -> None:
        """Nobody will answer (the runner is closing): no pid."""
        self.settle(None, self._value[1])

    @property
    def pid(self) -> int | None:
        return self._wait()[0]

    @property
    def fallback(self) -> bool:
        return self._wait()[1]


class ProcessRunner:
    """Runs `Command` targets through the state_dir's run supervisor; see the module
    docstring."""

    def __init__(
        self,
        state_dir: str | Path,
        *,
        tail_bytes: int = 64 * 1024,
        kill_grace_s: float = 5.0,
        clock: Callable[[], int] | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        finite = isinstance(kill_grace_s, int | float) and not isinstance(kill_grace_s, bool)
        if not (finite and 0 <= kill_grace_s < math.inf):
            raise InvalidInput(
                "kill_grace_s", f"must be a finite number of seconds >= 0, got {kill_grace_s!r}"
            )
        self.runs_dir = Path(state_dir) / "runs"
        self.runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dir = str(self.runs_dir.resolve())
        self._dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._tail_bytes = tail_bytes
        # what an exit carries: as much as the ledger may keep (the engine cuts it to its
        # output_tail_bytes option), and what trimming must leave of a running job's files
        self._exit_tail_bytes = OUTPUT_TAIL_LIMIT
        self._keep_bytes = max(tail_bytes, OUTPUT_TAIL_LIMIT)
        self._grace = kill_grace_s
        self._clock = clock or _default_clock
        self._wake = wake
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._runs: dict[str, _Run] = {}  # in flight: exit not known yet
        self._exited: set[str] = set()  # exit known (queued or reported), until forget()
        self._doomed: list[str] = []  # forgotten runs: the watcher thread deletes their files
        self._tombstones: set[str] = set()  # left in place by forget (see _tombstone)
        self._ready: list[RunExit] = []
        self._kills: list[tuple[float, int, str]] = []  # lock-polled runs: SIGKILL deadlines
        self._seq = itertools.count()
        self._lock_polled: dict[str, _Run] = {}
        self._closed = False
        # The connection (set and cleared under _lock; only the watcher thread reads it).
        self._sock: socket.socket | None = None
        self.supervisor_pid: int | None = None
        self._replies: dict[int, Json | None] = {}
        self._pending: dict[str, _PendingStarted] = {}  # sent, not answered yet
        self._which: dict[tuple[str, str], str] = {}
        self._req = itertools.count(1)
        self._send_lock = threading.Lock()
        self._env_sent: dict[bytes, bytes] | dict[str, str] | None = None
        self._cwd_sent: str | None = None
        self._peer_protocol = 1  # the connected supervisor's (from its hello)
        self._starting: subprocess.Popen[bytes] | None = None
        self._children: list[subprocess.Popen[bytes]] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._watcher = threading.Thread(
            target=self._watch, name=f"process-runner {self._dir}", daemon=True
        )
        self._watcher.start()
        with contextlib.suppress(_Unavailable, OSError):
            self._prestart()

    # --- the port --------------------------------------------------------------------------

    def set_wake(self, wake: Callable[[], None]) -> None:
        """Call `wake()` whenever an exit becomes available (the engine's sleep is cut short)."""
        self._wake = wake

    def carry_out(self, commands: Sequence[RunnerCommand], now: int) -> list[Started]:
        """Signal CancelRuns, spawn StartRuns (one request for the batch); failures show up
        on `poll`."""
        starts: dict[str, StartRun] = {}
        for command in commands:
            if isinstance(command, StartRun):
                starts.setdefault(command.run_id, command)
            elif isinstance(command, CancelRun):
                self._cancel(command.run_id)
        with self._lock:
            fresh = [
                c
                for c in starts.values()
                if c.run_id not in self._runs and c.run_id not in self._exited
            ]  # a repeated StartRun: it is already running or done
        items: list[list[Any]] = []
        daemon_path = os.environ.get("PATH", os.defpath)
        checked: dict[tuple[str, str], str] = {}  # programs found and executable, this batch
        for command in fresh:
            target = command.target
            if not isinstance(target, Command):
                error = f"the process runner runs Command targets only, not {target!r}"
                self._queue([self._spawn_failed(command.run_id, error, now)])
                continue
            env = dict(target.env) if target.env else None
            # the job runs with the daemon's environment plus the target's pairs: its PATH is
            # the target's when it sets one, the daemon's otherwise
            path = env.get("PATH", daemon_path) if env else daemon_path
            chosen = self._choose(command, target, path, checked)
            stem = run_file_name(command.run_id)
            if isinstance(chosen, str):
                self._unspawnable(command.run_id, stem, chosen, now)
                continue
            argv, exe, fallback = chosen
            item = [command.run_id, stem, argv, exe, fallback, env, target.cwd]
            if not fallback and target.fallback:  # for exec to fall back on (protocol 3)
                spare = self._spare(command, target, path, checked)
                if spare is not None:
                    item.append(spare)
            items.append(item)
        if not items:
            return []
        return self._hand_over(items, now)

    def poll(self, now: int) -> list[RunExit]:
        """Exits seen since the last poll, each once, by finish time then run id. Never waits
        (the supervisor answers a batch before it reports any exit of it), but gives up a
        supervisor that has left a request unanswered for REPLY_TIMEOUT_S: the connection is
        dropped and the watcher settles the runs from their files (RunLost where never
        spawned), so a hung supervisor cannot hold a slot forever."""
        with self._lock:
            oldest = min((p.handed_at for p in self._pending.values()), default=None)
        if oldest is not None and time.monotonic() - oldest > REPLY_TIMEOUT_S:
            self._drop_connection()
        with self._lock:
            ready, self._ready = self._ready, []
        ready.sort(key=lambda e: (e.finished_at, e.run_id))
        return ready

    def adopt(
        self, runs: Sequence[ActiveRun], now: int, keep: Collection[str] = ()
    ) -> list[Started]:
        """After a (re)start: resolve the runs the ledger says are active; sweep the files of
        runs that are not (those of `keep`, another node's active runs, stay)."""
        kept = {run_file_name(run_id) for run_id in keep}
        todo: list[tuple[str, bool, str | None]] = []
        for run in runs:
            kept.add(run_file_name(run.run_id))
            with self._lock:
                if run.run_id in self._runs or run.run_id in self._exited:
                    continue
            todo.append((run.run_id, run.started_at is not None, run.cancelling))
        started = self._resolve(todo, now)
        self._sweep(kept)
        return started

    def active(self) -> int:
        """Runs in flight (spawned or adopted, exit not yet seen)."""
        with self._lock:
            return len(self._runs)

    def forget(self, run_id: str) -> None:
        """Delete a finished run's files, once its outcome fact is durable: on the watcher
        thread, DELETE_BATCH runs at a time or within DELETE_DELAY_S (each wake-up of that
        thread costs the engine's thread its CPU and the GIL for a moment). Never a live run's;
        a tombstone stays until the next sweep, so that a late request cannot spawn the run."""
        with self._lock:
            if run_id in self._runs or run_id not in self._exited:
                return  # live, or never reported by this runner (a call run; swept by adopt)
            self._exited.discard(run_id)
            if run_id in self._tombstones:
                self._tombstones.discard(run_id)
                return
        with self._lock:
            self._doomed.append(run_id)
            count = len(self._doomed)
        if count == 1 or count == DELETE_BATCH:
            self._poke()  # the first sets the watcher's deadline; a full batch is deleted now

    def _delete_forgotten(self) -> None:
        with self._lock:
            doomed, self._doomed = self._doomed, []
        dir_fd = self._dir_fd
        for run_id in doomed:
            stem = run_file_name(run_id)
            for suffix in (_OUT, _ERR, _ST):
                _unlink(stem + suffix, dir_fd)

    def output(self, run_id: str) -> RunOutput | None:
        """The tails of a run's stdout and stderr, while its files exist (until `forget`)."""
        base = os.path.join(self._dir, run_file_name(run_id))
        if not os.path.exists(base + _ST):
            return None
        out, out_dropped = read_tail(base + _OUT, self._tail_bytes)
        err, err_dropped = read_tail(base + _ERR, self._tail_bytes)
        return RunOutput(out, out_dropped, err, err_dropped)

    def close(self) -> None:
        """Stop watching; running jobs keep going (the supervisor keeps them, and a new runner
        can adopt them). The supervisor exits by itself once idle."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._poke()
        self._watcher.join()
        self._delete_forgotten()
        with self._lock:
            sock, self._sock = self._sock, None
            pending, self._pending = list(self._pending.values()), {}
        for started in pending:  # nobody will answer now (the runs go on: adopt finds them)
            started.abandon()
        if sock is not None:
            sock.close()
        if self._starting is not None:
            self._children.append(self._starting)
            self._starting = None
        for proc in self._children:
            if proc.stdout is not None:
                proc.stdout.close()
            proc.poll()  # reap the ones that are gone; the rest are reaped by subprocess later
        os.close(self._dir_fd)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # --- the supervisor --------------------------------------------------------------------

    def _prestart(self) -> None:
        """Start the supervisor now (without waiting for it) if none lives, so the first spawn
        does not wait for an interpreter to start."""
        fd = os.open(
            os.path.join(self._dir, sup.LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # one lives
        finally:
            os.close(fd)
        self._starting = self._launch()

    def _launch(self) -> subprocess.Popen[bytes]:
        script = sup.__file__
        if not sys.executable:
            raise _Unavailable("no Python interpreter to run the supervisor (sys.executable)")
        if script and os.path.isfile(script):
            argv = [sys.executable, "-I", "-S", script, self._dir]
        else:
            argv = [sys.executable, "-m", "cronledger.adapters.supervisor", self._dir]
        log_path = os.path.join(self._dir, sup.LOG_NAME)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(log).st_size > _LOG_MAX:
                os.ftruncate(log, 0)
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd="/",
                start_new_session=True,
            )
        except OSError as exc:
            raise _Unavailable(f"cannot start the run supervisor: {exc}") from exc
        finally:
            os.close(log)

    def _await_ready(self, proc: subprocess.Popen[bytes]) -> str:
        """The first line a starting supervisor prints: "ready <pid>" or "busy"."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + START_TIMEOUT_S
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 256)
            if not chunk:
                break
            data += chunk
        proc.stdout.close()
        self._children.append(proc)
        return data.decode(errors="replace").strip()

    def _connect(self) -> socket.socket | None:
        try:
            address = sup.socket_path(self._dir, self._dir_fd)
        except OSError as exc:
            raise _Unavailable(str(exc)) from exc
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        except OSError as exc:
            sock.close()
            raise _Unavailable(f"cannot connect to the run supervisor: {exc}") from exc
        return sock

    def _hello(self, sock: socket.socket) -> int | None:
        """Introduce ourselves (environment, cwd); the supervisor's pid, None if it hung up."""
        env = dict(os.environ)
        cwd = os.getcwd()
        sock.settimeout(START_TIMEOUT_S)
        try:
            hello = {
                "op": "hello", "env": env, "cwd": cwd, "keep": self._keep_bytes,
                "v": sup.PROTOCOL,
            }  # fmt: skip
            sock.sendall(_line(hello))
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
        except OSError:
            return None
        finally:
            sock.settimeout(None)
        reply = json.loads(data.split(b"\n", 1)[0])
        self._env_sent = _environ_data()
        self._cwd_sent = cwd
        self._peer_protocol = int(reply.get("v") or 1)
        pid: int = reply["pid"]
        return pid

    def _client(self) -> socket.socket:
        """The connection to the supervisor, starting one if none lives."""
        with self._lock:
            if self._sock is not None:
                return self._sock
            if self._closed:
                raise _Unavailable("the process runner is closed")
        problem = "the run supervisor did not start"
        self._children = [p for p in self._children if p.poll() is None]
        for _attempt in range(4):
            sock = self._connect()
            if sock is None:
                proc = self._starting or self._launch()
                self._starting = None
                said = self._await_ready(proc)
                if not said.startswith(("ready", "busy")):
                    problem = (
                        f"the run supervisor did not start (see {sup.LOG_NAME} in {self._dir})"
                    )
                    continue
                sock = self._connect()
                if sock is None:
                    continue
            pid = self._hello(sock)
            if pid is None:  # it was exiting (idle): start another
                sock.close()
                continue
            with self._lock:
                self._sock = sock
                self.supervisor_pid = pid
            self._poke()
            return sock
        raise _Unavailable(problem)

    def _send(self, sock: socket.socket, message: Json) -> bool:
        try:
            with self._send_lock:
                sock.sendall(_line(message))
        except OSError:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the watcher sees it end and cleans up
            return False
        return True

    def _request(self, sock: socket.socket, message: Json) -> Json | None:
        """Send a request and wait for its reply (None: the supervisor went away)."""
        req = next(self._req)
        message["req"] = req
        with self._lock:
            self._replies[req] = None
        if not self._send(sock, message):
            with self._lock:
                self._replies.pop(req, None)
            return None
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        with self._cond:
            while self._replies.get(req) is None and self._sock is sock and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            reply = self._replies.pop(req, None)
        if reply is None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return reply

    # --- starting --------------------------------------------------------------------------

    def _hand_over(self, items: list[list[Any]], now: int) -> list[Started]:
        """Send the batch to the supervisor and return at once: the runs are registered (so
        they can be cancelled), their `Started` settle when its answer comes."""
        try:
            sock = self._client()
        except _Unavailable as exc:
            for item in items:
                self._unspawnable(item[0], item[1], str(exc), now)
            return []
        if self._peer_protocol < 3:  # an older supervisor takes 7 items: no spare
            items = [item[:7] for item in items]
        message: Json = {"op": "spawn", "runs": items}
        env = _environ_data()
        if env != self._env_sent:
            message["env"] = dict(os.environ)
            self._env_sent = env
        cwd = os.getcwd()
        if cwd != self._cwd_sent:
            message["cwd"] = self._cwd_sent = cwd
        pending: list[_PendingStarted] = []
        handed_at = time.monotonic()
        with self._lock:
            connected = self._sock is sock
            for item in items:
                run_id = item[0]
                base = os.path.join(self._dir, item[1])
                self._runs[run_id] = _Run(run_id, base, None, item[4], True)
                started = _PendingStarted(
                    run_id, item[4], self._cond, self._drop_connection, handed_at
                )
                self._pending[run_id] = started
                pending.append(started)
        if connected:
            self._send(sock, message)  # (on failure the watcher settles them from the files)
        else:  # it went away just now: nothing was sent
            for item in items:
                self._finish_unanswered(item[0])
        return list(pending)

    def _drop_connection(self) -> None:
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _unspawnable(self, run_id: str, stem: str, error: str, now: int) -> None:
        """Report a run that cannot be spawned, recorded in its `.st` ("!error") so that a
        restart reports it too; a run claimed before is resolved from its files instead."""
        if _tombstone_error(os.path.join(self._dir, stem), error):
            self._queue([self._spawn_failed(run_id, error, now)])
        elif self._examine(run_id, False, now)[0]:
            self._watch_lock(run_id)

    def _choose(
        self, command: StartRun, target: Command, path: str, checked: dict[tuple[str, str], str]
    ) -> tuple[list[str], str, bool] | str:
        """The argv to spawn, its program's path and whether it is the fallback, or why
        nothing can be spawned."""
        cwd = target.cwd
        if cwd is not None:
            problem = _not_a_directory(cwd)
            if problem is not None:
                return f"working directory {cwd!r}: {problem}"
        argv = list(command.argv)
        if not argv:
            return "the command is empty"
        exe = self._program(argv[0], cwd, path, checked)
        if not exe.startswith("!"):
            return argv, exe, False
        if not target.fallback:
            return exe[1:]
        fallback = list(command.fallback_argv or target.fallback)
        second = (
            self._program(fallback[0], cwd, path, checked) if fallback else "!the fallback is empty"
        )
        if not second.startswith("!"):
            return fallback, second, True
        return f"{exe[1:]}; fallback: {second[1:]}"

    def _spare(
        self, command: StartRun, target: Command, path: str, checked: dict[tuple[str, str], str]
    ) -> list[Any] | None:
        """[argv, exe] of the fallback, for the supervisor to spawn when exec refuses the
        program it was given (None when the fallback cannot be spawned either)."""
        fallback = list(command.fallback_argv or target.fallback or ())
        if not fallback:
            return None
        exe = self._program(fallback[0], target.cwd, path, checked)
        return None if exe.startswith("!") else [fallback, exe]

    def _program(
        self, program: str, cwd: str | None, path: str, checked: dict[tuple[str, str], str]
    ) -> str:
        """`_look_up`, once per batch: `checked` holds what this batch found executable (no
        second stat or access per run). Only without a cwd, where the answer depends on the
        program and PATH alone."""
        key = (program, path)
        found = checked.get(key) if cwd is None else None
        if found is None:
            found = self._look_up(program, cwd, path)
            if cwd is None and not found.startswith("!"):
                checked[key] = found
        return found

    def _look_up(self, program: str, cwd: str | None, path: str) -> str:
        """The path to execute for `program` (searched in `path` when it has no slash), or
        "!" + why it cannot be executed."""
        if not program:
            return "!the program name is empty"
        if "/" in program:
            full = os.path.join(cwd or os.getcwd(), program)
            try:
                mode = os.stat(full).st_mode
            except OSError as exc:
                return f"!{program}: {exc.strerror}"
            if stat.S_ISDIR(mode):
                return f"!{program}: {os.strerror(errno.EISDIR)}"
            if not os.access(full, os.X_OK):
                return f"!{program}: {os.strerror(errno.EACCES)}"
            return program  # relative to the job's directory, where the supervisor runs it
        key = (program, path)
        found = self._which.get(key)
        if found is None or not os.access(found, os.X_OK):
            found = shutil.which(program, path=path)
            if found is None:
                return "!" + _not_in_path(program, path)
            if os.path.isabs(found):  # (a relative PATH entry: look again next time)
                self._which[key] = found
            else:
                found = os.path.abspath(found)
        return found

    def _spawn_failed(self, run_id: str, error: str, now: int) -> RunExit:
        return RunExit(run_id=run_id, kind=ExitKind.SPAWN_FAILED, finished_at=now, error=error)

    # --- adopting --------------------------------------------------------------------------

    def _resolve(self, todo: Sequence[tuple[str, bool, str | None]], now: int) -> list[Started]:
        """Resolve runs from their files and the supervisor: watch the live ones (Started for
        those the ledger shows as not started), queue the exits of the others."""
        live = [item for item in todo if self._examine(item[0], item[1], now)[0]]
        if not live:
            return []
        found: dict[str, tuple[int, bool]] = {}
        try:
            sock: socket.socket | None = self._client()
        except _Unavailable:
            sock = None
        if sock is not None:
            reply = self._request(sock, {"op": "watch", "ids": [item[0] for item in live]})
            if reply is not None and reply.get("op") == "watching":
                found = {r[0]: (r[1], bool(r[2])) for r in reply["runs"] if r[1] is not None}
        started: list[Started] = []
        for run_id, ledger_started, cancelling in live:
            if run_id in found:
                pid, fallback = found[run_id]
            else:  # not the live supervisor's: ended just now, or an older kind of supervisor
                if not self._examine(run_id, ledger_started, now)[0]:
                    continue
                run = self._watch_lock(run_id)
                pid, fallback = run.pid or 0, run.fallback
            if cancelling is not None:
                self._cancel(run_id)
            if not ledger_started:
                started.append(Started(run_id, pid or None, fallback))
        return started

    def _base(self, run_id: str) -> str:
        return os.path.join(self._dir, run_file_name(run_id))

    def _examine(self, run_id: str, ledger_started: bool, now: int) -> tuple[bool, _State]:
        """(True, _) when the run's `.st` is locked (someone has it live); otherwise queue
        what its files tell (leaving a tombstone where it was never spawned) and return
        (False, what the `.st` said)."""
        with self._lock:
            if run_id in self._runs or run_id in self._exited:
                return False, _State()  # watched already, or its exit is known
        base = self._base(run_id)
        for _attempt in range(3):
            try:
                fd = os.open(base + _ST, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            except FileNotFoundError:
                error = NEVER_STARTED
                if ledger_started:
                    error = (
                        f"started, but there is no state file {base + _ST} (removed, or the run "
                        "was started from another state dir); its exit is unknown"
                    )
                if not _tombstone(base, error):
                    continue  # created meanwhile: look again
                self._tombstoned(run_id)
                lost = RunExit(run_id=run_id, kind=ExitKind.LOST, finished_at=now, error=error)
                self._queue([lost])
                return False, _State(tombstone=error)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True, _State()
                mtime = os.fstat(fd).st_mtime_ns // 1_000_000
                state = _parse_state(os.pread(fd, 4096, 0))
                if state.empty:  # claimed, never spawned: the supervisor will see this
                    os.write(fd, b"?" + NEVER_STARTED.encode() + b"\n")
                    state = _State(tombstone=NEVER_STARTED)
                    self._tombstoned(run_id)
            finally:
                os.close(fd)
            self._queue([self._with_output(self._dead_exit(run_id, now, None, state, mtime), base)])
            return False, state
        raise AssertionError(f"{base + _ST} keeps appearing and disappearing")

    def _tombstoned(self, run_id: str) -> None:
        with self._lock:
            self._tombstones.add(run_id)

    @staticmethod
    def _wait_for_pid(base: str) -> _State:
        """The state of a live run; an older supervisor writes its pid a moment after exec."""
        deadline = time.monotonic() + 1.0
        while True:
            read = _read_state(base + _ST)
            state = read[0] if read else _State()
            if state.pid is not None or time.monotonic() > deadline:
                return state
            time.sleep(0.005)

    def _dead_exit(
        self, run_id: str, now: int, run: _Run | None, state: _State, mtime: int
    ) -> RunExit:
        """The exit of a run whose `.st` is no longer locked. `run` is None when nobody
        watched it end (then `finished_at` is when the file last changed)."""
        at = now if run is not None else min(now, mtime)
        if state.tombstone is not None:
            return RunExit(run_id=run_id, kind=ExitKind.LOST, finished_at=at, error=state.tombstone)
        if state.spawn_error is not None:
            return RunExit(
                run_id=run_id, kind=ExitKind.SPAWN_FAILED, finished_at=at, error=state.spawn_error
            )
        if state.status is not None:
            exit = _status_exit(run_id, state.status, at)
            if state.status[2] or (run is not None and run.killed):
                return attrs.evolve(exit, error=self._escalated())
            return exit
        if run is not None and not run.supervised and (run.killed or run.term_sent):
            # an older supervisor, killed along with its group by our signal
            sig = signal.SIGKILL if run.killed else signal.SIGTERM
            exit = RunExit(run_id=run_id, kind=ExitKind.SIGNALED, finished_at=at, signal=sig)
            return attrs.evolve(exit, error=self._escalated()) if run.killed else exit
        if state.pid is None:
            return RunExit(run_id=run_id, kind=ExitKind.LOST, finished_at=at, error=NEVER_STARTED)
        # Its supervisor died before the job did: stop what is left of the job, so that a
        # retry cannot overlap it.
        ended = _ended(state.pid)
        killed = _kill_orphaned_group(state.pid, mtime)
        if ended:
            job = f"the job (pid {state.pid}) has ended, but its exit status is unknown"
        else:
            job = f"the job (pid {state.pid}) was still running"
        rest = "; what was left of its process group was sent SIGKILL" if killed else ""
        error = (
            "its supervisor ended without recording the job's exit (killed with SIGKILL, or "
            f"the machine restarted): {job}{rest}"
        )
        return RunExit(run_id=run_id, kind=ExitKind.LOST, finished_at=at, error=error)

    def _escalated(self) -> str:
        return f"still running {self._grace:g} s after SIGTERM: sent SIGKILL"

    def _sweep(self, keep: set[str]) -> None:
        """Delete files of runs the ledger no longer knows, unless a run holds them (or a
        claim is being made right now)."""
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
                if dot and stem and not stem.startswith(".") and stem not in keep:
                    stems.add(stem)
        young = time.time() - 60
        for stem in stems:
            base = os.path.join(self._dir, stem)
            if _locked(base + _ST):
                continue
            with contextlib.suppress(OSError):
                st = os.stat(base + _ST)
                if st.st_size == 0 and st.st_mtime > young:
                    continue  # a claim in progress
            for suffix in (_OUT, _ERR, _ST):
                _unlink(base + suffix)

    # --- cancelling ------------------------------------------------------------------------

    def _cancel(self, run_id: str) -> None:
        """SIGTERM the run's process group; SIGKILL it if it is still there after the grace."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.done or run.term_sent:
                return
            if not run.supervised and run.pid is None:
                return
            run.term_sent = True
            sock = self._sock
            if not run.supervised:
                self._signal(run, signal.SIGTERM)
                heapq.heappush(
                    self._kills, (time.monotonic() + self._grace, next(self._seq), run_id)
                )
        if not run.supervised:
            self._poke()
        elif sock is not None:  # (no connection: the run is being resolved as LOST anyway)
            self._send(sock, {"op": "kill", "id": run_id, "grace": self._grace})

    def _signal(self, run: _Run, sig: int) -> None:
        """Signal a lock-polled run's group, only while its lock is held (the lock is ours)."""
        assert run.pid is not None
        if not _locked(run.base + _ST):
            return  # gone: its pid may be someone else's now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, sig)

    def _due_kills(self) -> float | None:
        """Send due SIGKILLs (lock-polled runs); seconds until the next one."""
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

    def _watch(self) -> None:
        """The watcher thread: messages from the supervisor, lock-polled runs, SIGKILLs."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        current: socket.socket | None = None
        buf = b""
        delete_by: float | None = None  # when the forgotten runs' files are deleted at the latest
        while True:
            with self._lock:
                if self._closed:
                    return
                sock = self._sock
                polled = bool(self._lock_polled)
            if sock is not current:
                if current is not None:
                    with contextlib.suppress(KeyError, ValueError):
                        poller.unregister(current)
                if sock is not None:
                    poller.register(sock, select.POLLIN)
                current, buf = sock, b""
            timeout = self._due_kills()
            if polled:
                timeout = ADOPTED_POLL_S if timeout is None else min(timeout, ADOPTED_POLL_S)
            if self._doomed:
                if delete_by is None:
                    delete_by = time.monotonic() + DELETE_DELAY_S
                left = max(0.0, delete_by - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            events = poller.poll(None if timeout is None else max(0, int(timeout * 1000) + 1))
            for fd, _mask in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                elif current is not None and fd == current.fileno():
                    try:
                        data = current.recv(1 << 18)
                    except OSError:
                        data = b""
                    if data:
                        try:
                            buf = self._on_data(buf + data)
                        except Exception:  # a garbled message: drop the connection
                            buf = b""
                            with contextlib.suppress(OSError):
                                current.shutdown(socket.SHUT_RDWR)
                    else:
                        poller.unregister(current)
                        self._supervisor_gone(current)
                        current, buf = None, b""
            if self._lock_polled:
                self._check_lock_polled()
            if delete_by is not None and (
                len(self._doomed) >= DELETE_BATCH or time.monotonic() >= delete_by
            ):
                delete_by = None
                self._delete_forgotten()

    def _on_data(self, buf: bytes) -> bytes:
        *lines, rest = buf.split(b"\n")
        for line in lines:
            message = _parse(line)
            op = message.get("op")
            if op == "exits":
                self._supervised_exits(message["runs"])
            elif op == "spawned":
                self._spawned(message["runs"])
            elif op == "error":  # it failed on one of our requests: start afresh
                raise ValueError("the run supervisor failed on a request (see its log)")
            else:
                with self._lock:
                    if op == "watching":
                        for run_id, pid, fallback in message["runs"]:
                            if pid is not None:
                                self._register(run_id, pid, bool(fallback))
                    req = message.get("req")
                    if req in self._replies:
                        self._replies[req] = message
                        self._cond.notify_all()
        return rest

    def _spawned(self, results: Iterable[list[Any]]) -> None:
        """The supervisor's answer to a batch: pids, spawn failures, runs claimed before."""
        now = self._clock()
        failed: list[RunExit] = []
        for result in results:
            run_id, outcome = result[0], result[1]
            if outcome == "ok":
                with self._lock:
                    self._register(run_id, result[2], bool(result[3]))
                self._settle(run_id, result[2], bool(result[3]))
                continue
            with self._lock:
                self._runs.pop(run_id, None)
            if outcome == "failed":
                with self._lock:
                    self._exited.add(run_id)
                failed.append(self._spawn_failed(run_id, result[2], now))
                self._settle(run_id, None, False)
            else:  # claimed before and not a live job of the supervisor's: the files say
                live, state = self._examine(run_id, False, now)
                if live:
                    run = self._watch_lock(run_id)
                    state = _State(pid=run.pid, fallback=run.fallback)
                self._settle(run_id, state.pid, state.fallback)
        self._queue(failed)

    def _settle(self, run_id: str, pid: int | None, fallback: bool) -> None:
        with self._lock:
            started = self._pending.pop(run_id, None)
        if started is not None:
            started.settle(pid, fallback)

    def _watch_lock(self, run_id: str) -> _Run:
        """Watch a run whose `.st` someone other than the live supervisor holds."""
        state = self._wait_for_pid(self._base(run_id))
        run = _Run(run_id, self._base(run_id), state.pid, state.fallback, supervised=False)
        with self._lock:
            self._runs[run_id] = run
            self._lock_polled[run_id] = run
        self._poke()
        return run

    def _register(self, run_id: str, pid: int, fallback: bool) -> None:
        """A run the supervisor has (the lock is held)."""
        run = self._runs.get(run_id)
        if run is None:
            self._runs[run_id] = _Run(run_id, self._base(run_id), pid, fallback, supervised=True)
        else:
            run.pid, run.fallback = pid, fallback

    def _supervised_exits(self, results: Iterable[list[Any]]) -> None:
        now = self._clock()
        exits: list[RunExit] = []
        for item in results:
            run_id, code, escalated, err_size = item[:4]
            out_size = item[4] if len(item) > 4 else -1  # an older supervisor: read the file
            with self._lock:
                run = self._runs.pop(run_id, None)
                if run is None:
                    continue
                run.done = True
                self._exited.add(run_id)  # with the pop: a repeated StartRun sees it done
            if not (out_size or err_size or escalated):  # e.g. `true`: nothing to read
                exits.append(_code_exit(run_id, code, now, stdout_tail=""))
                continue
            exit = _code_exit(run_id, code, now)
            if escalated:
                exit = attrs.evolve(exit, error=self._escalated())
            exits.append(self._with_output(exit, run.base, out_size, err_size))
        self._queue(exits)

    def _supervisor_gone(self, sock: socket.socket) -> None:
        """The connection ended: the supervisor died (or hung up). Resolve its runs from
        their files once the kernel has released their locks."""
        with self._lock:
            if self._sock is sock:
                self._sock = None
                self.supervisor_pid = None
            self._cond.notify_all()
            runs = [r for r in self._runs.values() if r.supervised and not r.done]
        with self._send_lock:
            sock.close()
        deadline = time.monotonic() + DEATH_GRACE_S
        pending = runs
        while pending:
            still = [r for r in pending if _locked(r.base + _ST)]
            if not still or time.monotonic() > deadline:
                break
            time.sleep(0.01)
            pending = still
        for run in runs:
            if run.pid is None:  # not answered
                self._finish_unanswered(run.run_id)
            elif _locked(run.base + _ST):  # still held (alive, not answering): watch the lock
                run.supervised = False
                with self._lock:
                    self._lock_polled[run.run_id] = run
            else:
                self._finish_from_file(run)

    def _check_lock_polled(self) -> None:
        with self._lock:
            runs = list(self._lock_polled.values())
        for run in runs:
            if not _locked(run.base + _ST):
                with self._lock:
                    self._lock_polled.pop(run.run_id, None)
                self._finish_from_file(run)

    def _finish_from_file(self, run: _Run) -> None:
        """A run whose lock was released: its exit from the file (never raises: an exit that
        cannot be read is LOST, so no run stays active forever)."""
        now = self._clock()
        try:
            with self._lock:
                run.done = True
            read = _read_state(run.base + _ST)
            state, mtime = read if read is not None else (_State(), now)
            exit = self._with_output(self._dead_exit(run.run_id, now, run, state, mtime), run.base)
        except Exception as exc:
            state = _State()  # the watcher thread must survive whatever it reads
            error = f"its exit could not be read: {exc!r}"
            exit = RunExit(run_id=run.run_id, kind=ExitKind.LOST, finished_at=now, error=error)
        with self._lock:
            self._runs.pop(run.run_id, None)
            self._exited.add(run.run_id)
        self._queue([exit])
        self._settle(run.run_id, run.pid if run.pid is not None else state.pid, run.fallback)

    def _finish_unanswered(self, run_id: str) -> None:
        """A run handed to a supervisor we lost before it answered: it may be spawned yet
        (a slow supervisor), or never. Its files decide, and a tombstone where there are none
        keeps a late request from spawning it."""
        with self._lock:
            self._runs.pop(run_id, None)
        live, state = self._examine(run_id, False, self._clock())
        if live:
            run = self._watch_lock(run_id)
            state = _State(pid=run.pid, fallback=run.fallback)
        self._settle(run_id, state.pid, state.fallback)

    def _with_output(
        self, exit: RunExit, base: str, out_size: int = -1, err_size: int = -1
    ) -> RunExit:
        """The exit of a run that ran, with the tails of its stdout and stderr as its outcome
        fact keeps them (a size of 0, as the supervisor reports it, is not read)."""
        if exit.kind not in (ExitKind.EXITED, ExitKind.SIGNALED):
            return exit
        limit = self._exit_tail_bytes
        out, out_dropped = read_tail(base + _OUT, limit) if out_size else ("", 0)
        err, err_dropped = read_tail(base + _ERR, limit) if err_size else ("", 0)
        return attrs.evolve(
            exit,
            stdout_tail=out,
            stdout_dropped=out_dropped,
            stderr_tail=err,
            stderr_dropped=err_dropped,
        )

    def _queue(self, exits: Sequence[RunExit]) -> None:
        if not exits:
            return
        with self._lock:
            if self._closed:
                return
            for exit in exits:
                self._exited.add(exit.run_id)
            self._ready.extend(exits)
        if self._wake is not None:
            self._wake()

    def _poke(self) -> None:
        """Wake the watcher thread (a new connection, deadline or lock-polled run, or close)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")


def _not_a_directory(path: str) -> str | None:
    """Why a job cannot run in `path` (the OS's words), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return exc.strerror or str(exc)
    if not stat.S_ISDIR(mode):
        return os.strerror(errno.ENOTDIR)
    if not os.access(path, os.X_OK):
        return os.strerror(errno.EACCES)
    return None


def _not_in_path(program: str, path: str) -> str:
    """Why `program` was not found in `path`: not there, or there but not executable."""
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate):
            return f"{program}: {os.strerror(errno.EACCES)} ({candidate} is not executable)"
    return f"{program}: {os.strerror(errno.ENOENT)} (not found in PATH)"


def _line(message: Json) -> bytes:
    """A message as one JSON line: orjson (several times faster on a tick's batch), or the
    standard library for what orjson refuses (lone surrogates from undecodable bytes, which
    the supervisor's json decodes back to the same strings). orjson writes NaN and infinities
    as null: the only float sent, the kill grace, is checked finite in `__init__`."""
    try:
        return orjson.dumps(message) + b"\n"
    except orjson.JSONEncodeError:
        return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _parse(line: bytes) -> Any:
    """A supervisor message (its standard-library JSON: ASCII, surrogates as escapes)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def _environ_data() -> dict[bytes, bytes] | dict[str, str]:
    """A cheap copy of the environment to compare (os.environ's own bytes mapping)."""
    data = getattr(os.environ, "_data", None)
    return dict(data) if isinstance(data, dict) else dict(os.environ)


def _tombstone_error(base: str, error: str) -> bool:
    """Record a spawn failure where the supervisor would have ("!error"), so a restarted
    runner reports it too; False if the run was claimed already."""
    try:
        fd = os.open(base + _ST, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    except OSError:
        return True
    try:
        os.write(fd, b"!" + error.replace("\n", " ").encode() + b"\n")
    finally:
        os.close(fd)
    return True
