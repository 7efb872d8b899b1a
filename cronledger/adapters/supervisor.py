"""The run supervisor: one long-lived process per state_dir that spawns, watches and reaps jobs.

`python -m cronledger.adapters.supervisor RUNS_DIR` (the process runner starts it; see
`process_runner.py` for the whole design). Standard library only: the runner starts it as a
script with `python -I -S`, so it never imports the package.

- Proof of life: it holds an flock on `RUNS_DIR/.supervisor.lock` (which holds its pid) for
  its whole life; a second supervisor on the same directory waits a moment for the lock (an
  old one may be exiting), then gives up ("busy").
- It listens on the unix socket `RUNS_DIR/.supervisor.sock` (`runs/` is mode 0700, and peers
  of another uid are refused). Messages are JSON lines: see `Supervisor._handle`.
- Each job is claimed, spawned and reaped here: the `.st` file is created with O_EXCL (so a run
  id is never spawned twice) and flocked for as long as the job runs; the job is
  `os.posix_spawn`ed directly (argv, no shell) in its own process group with stdin /dev/null
  and stdout/stderr in the run's files; its pid and then its exact exit status are appended to
  the `.st` file before the lock is released and the connected runners are told.
- The runner has already chosen the program (checked it exists and is executable, or picked
  the fallback): a spawn here fails only for what exec itself refuses (e.g. ENOEXEC: a script
  with no `#!` line, or a program removed since the check). Where the runner sent the fallback
  along (protocol 3), that is spawned instead and reported as a fallback run. Spawns are done one
  after the other on the main thread: `os.posix_spawn` holds the GIL until the child has
  exec'd, and on a loaded machine spawns are bound by CPU, not by waiting (measured: threads
  or a GIL-free posix_spawn did not make a batch faster, `fork` cost three times the CPU).
- Output on disk is bounded while the job runs: every OUTPUT_CHECK_S, a `.out` or `.err` file
  holding more than max(2 x keep, OUTPUT_MIN_CAP) bytes has its head punched out (Linux
  `fallocate(PUNCH_HOLE | KEEP_SIZE)`, through ctypes), keeping at least the last `keep` bytes
  (the runner's tail size, sent in `hello`). The file's size and offsets do not change, so the
  tail and the count of dropped bytes read as before; where the file system cannot punch holes
  (or off Linux) the files are left to grow, and the log says so once.
- Cancel: SIGTERM to the job's process group, SIGKILL after the grace the runner gives. The
  job is our unreaped child until we have written its status, so its pid cannot be reused
  under us.
- Exits when it has no live job and no runner connected for IDLE_EXIT_S. If it is killed,
  its jobs' `.st` files are left with a pid and no status, and their locks are released: the
  runners report them LOST and stop what is left of them (see `process_runner.py`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import heapq
import itertools
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

PROTOCOL = 3  # 2: exits carry the stdout size too, for runners that say v >= 2
#               3: a spawn item may carry the fallback to spawn when exec refuses the program
LOCK_NAME = ".supervisor.lock"
SOCKET_NAME = ".supervisor.sock"
LOG_NAME = ".supervisor.log"
IDLE_EXIT_S = 2.0  # no job and no runner for this long: exit
OUTPUT_CHECK_S = 1.0  # how often live jobs' output files are checked against their cap
OUTPUT_MIN_CAP = 1 << 20  # a file is trimmed once it holds more than max(2 x keep, this)
DEFAULT_KEEP = 64 * 1024  # the tail kept when the runner does not say (older runners)
_BLOCK = 4096  # holes are punched in whole blocks
LOCK_WAIT_S = 3.0  # how long a new supervisor waits for an exiting one to let go of the lock
MAX_BUFFERED_OUT = 64 << 20  # a runner that stops reading is dropped past this
_SOCKET_PATH_MAX = 100  # sun_path holds 104..108 bytes depending on the system
# Dispositions Python changes that a job must not inherit (handled ones are reset by exec):
# what subprocess's restore_signals resets.
_RESET_FOR_JOBS = frozenset(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ") if hasattr(signal, name)
)

Json = dict[str, Any]


def socket_path(runs_dir: str, dir_fd: int | None = None) -> str:
    """The address of the supervisor's socket: its path, or, when that is too long for a unix
    socket address, the same file through `/proc/self/fd/<dir_fd>` (Linux)."""
    path = os.path.join(runs_dir, SOCKET_NAME)
    if len(os.fsencode(path)) <= _SOCKET_PATH_MAX:
        return path
    if dir_fd is not None and os.path.isdir(f"/proc/self/fd/{dir_fd}"):
        return f"/proc/self/fd/{dir_fd}/{SOCKET_NAME}"
    raise OSError(
        errno.ENAMETOOLONG,
        f"the run supervisor's socket path {path!r} is too long: use a shorter state_dir",
    )


def format_status(code: int, escalated: bool) -> str:
    """The `.st` status line: "exit N" or "signal N" (+ " escalated" after our SIGKILL)."""
    text = f"exit {code}" if code >= 0 else f"signal {-code}"
    return text + " escalated" if escalated else text


def _log(text: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with contextlib.suppress(OSError, ValueError):
        print(f"{stamp} supervisor[{os.getpid()}] {text}", file=sys.stderr, flush=True)


class _Job:
    """A live job: our child until its status is written."""

    __slots__ = (
        "escalated", "fallback", "fd", "keep", "pid", "run_id", "stem", "term", "watchers",
    )  # fmt: skip

    def __init__(
        self, run_id: str, stem: str, pid: int, fd: int, fallback: bool, keep: int
    ) -> None:
        self.keep = keep  # the output tail to keep when the files are trimmed
        self.run_id = run_id
        self.stem = stem
        self.pid = pid
        self.fd = fd  # the `.st` file, flocked
        self.fallback = fallback
        self.watchers: set[_Conn] = set()
        self.term = False
        self.escalated = False


class _Conn:
    """A connected runner."""

    __slots__ = (
        "buf", "closed", "cwd", "env", "exits", "keep", "out", "sizes", "sock", "writing",
    )  # fmt: skip

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.out = bytearray()
        self.writing = False
        self.closed = False
        self.env: dict[str, str] = {}
        self.cwd = "/"
        self.keep = DEFAULT_KEEP
        self.sizes = 4  # items per exit: 5 (with the stdout size) for runners of protocol 2
        self.exits: list[list[Any]] = []


class Supervisor:
    """The server loop; `serve()` returns when idle (see the module docstring)."""

    def __init__(self, runs_dir: str, listener: socket.socket, dir_fd: int) -> None:
        self.dir = runs_dir
        self.dir_fd = dir_fd  # run files are opened relative to it (no path walk per file)
        self.listener = listener
        self.sel = selectors.DefaultSelector()
        self.jobs: dict[int, _Job] = {}  # by pid
        self.by_id: dict[str, _Job] = {}
        self.conns: set[_Conn] = set()
        self.unsent: set[_Conn] = set()  # connections with queued messages (see _reply)
        self.kills: list[tuple[float, int, str]] = []  # (monotonic deadline, seq, run id)
        self.seq = itertools.count()
        self.cwd = os.getcwd()
        self.uid = os.getuid()
        self.idle_since: float | None = time.monotonic()
        self.next_trim: float | None = None  # the next output check (while jobs run)
        self.punch: Callable[[int, int], None] | bool | None = True  # True: not looked up yet
        self.untrimmable: set[str] = set()  # files a trim failed on (logged once each)
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, _on_signal)
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, self._accept)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._drain_wake)

    # --- the loop ----------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            now = time.monotonic()
            timeout: float | None = None
            if self.kills:
                timeout = max(0.0, self.kills[0][0] - now)
            if not self.jobs and not self.conns:
                if self.idle_since is None:
                    self.idle_since = now
                left = self.idle_since + IDLE_EXIT_S - now
                if left <= 0:
                    return
                timeout = left if timeout is None else min(timeout, left)
            else:
                self.idle_since = None
            if self.jobs and self.punch is not None:
                if self.next_trim is None:
                    self.next_trim = now + OUTPUT_CHECK_S
                left = max(0.0, self.next_trim - now)
                timeout = left if timeout is None else min(timeout, left)
            for key, mask in self.sel.select(timeout):
                callback: Callable[[int], None] = key.data
                callback(mask)
            self._reap()
            if self.kills:
                self._due_kills()
            self._flush_exits()
            if self.unsent:
                self._send_all()
            if self.next_trim is not None and time.monotonic() >= self.next_trim:
                self.next_trim = None
                self._trim_outputs()

    def _drain_wake(self, _mask: int) -> None:
        # One read: what is left keeps the pipe readable and is read on the next pass (a
        # second read here would only raise BlockingIOError, on every pass).
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake_r, 4096)

    def _accept(self, _mask: int) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, ...: the runner will retry
                _log(f"accept: {exc}")
                return
            if not self._same_user(sock):
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Conn(sock)
            self.conns.add(conn)
            self.sel.register(sock, selectors.EVENT_READ, lambda mask, c=conn: self._io(c, mask))

    def _same_user(self, sock: socket.socket) -> bool:
        peercred = getattr(socket, "SO_PEERCRED", None)
        if peercred is None:
            return True  # the directory's mode 0700 is the guard
        try:
            _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, peercred, 12))
        except OSError:
            return False
        return bool(uid == self.uid)

    def _io(self, conn: _Conn, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._send_out(conn)
        if not mask & selectors.EVENT_READ or conn.closed:
            return
        try:
            data = conn.sock.recv(1 << 18)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        buf = conn.buf + data
        *lines, conn.buf = buf.split(b"\n")
        for line in lines:
            if conn.closed:
                return
            try:
                message = json.loads(line)
            except ValueError:
                _log(f"dropping a runner that sent a malformed message: {line[:200]!r}")
                self._close(conn)
                return
            try:
                self._handle(conn, message)
            except Exception:  # keep serving the other runs
                _log(f"failed on {line[:200]!r}:\n{traceback.format_exc()}")
                # The runner cannot tell what happened: it gives up this connection and
                # reads the state of its runs from their files.
                self._reply(conn, {"op": "error"})

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.conns.discard(conn)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn.sock)
        conn.sock.close()
        for job in self.jobs.values():
            job.watchers.discard(conn)

    def _reply(self, conn: _Conn, message: Json) -> None:
        """Queue a message; the loop sends what a pass queued in one write per runner (each
        write wakes the runner, and the woken thread can take our CPU)."""
        if conn.closed:
            return
        conn.out += json.dumps(message, separators=(",", ":")).encode() + b"\n"
        self.unsent.add(conn)

    def _send_all(self) -> None:
        conns, self.unsent = self.unsent, set()
        for conn in conns:
            if not conn.closed and not conn.writing:
                self._send_out(conn)

    def _send_out(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        del conn.out[:sent]
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if bool(conn.out) != conn.writing:
            conn.writing = bool(conn.out)
            self.sel.modify(conn.sock, want, self.sel.get_key(conn.sock).data)
        if len(conn.out) > MAX_BUFFERED_OUT:
            _log("dropping a runner that does not read its messages")
            self._close(conn)

    # --- requests ----------------------------------------------------------------------------

    def _handle(self, conn: _Conn, message: Json) -> None:
        """`hello` {env, cwd, keep, [v]} -> {pid, v} (keep: the output tail to keep when
        trimming; v: the runner's protocol).
        `spawn` {runs, [env], [cwd]} -> `spawned` {runs}:
        each run [run_id, stem, argv, exe, fallback, env overrides, cwd, [spare]] answered
        [run_id, "ok", pid, fallback] / [run_id, "failed", error] / [run_id, "exists"].
        `watch` {req, ids} -> `watching` {req, runs: [run_id, pid or None, fallback]}.
        `kill` {id, grace}: no answer, the exit follows. The exits of the jobs a connection
        spawned or watches come as `exits` {runs: [run_id, code, escalated, stderr size]},
        code as os.waitstatus_to_exitcode (negative: killed by that signal), plus the stdout
        size for runners that said v >= 2 (a size of 0 spares the runner reading the file).
        `spare` (v >= 3, optional): [argv, exe] of the fallback, spawned when exec refuses the
        program; the answer then says fallback true."""
        op = message.get("op")
        if "env" in message:
            conn.env = message["env"]
        if "cwd" in message:
            conn.cwd = message["cwd"]
        if "keep" in message:
            conn.keep = max(0, int(message["keep"]))
        if op == "spawn":
            results = [self._spawn(conn, item) for item in message["runs"]]
            self._reply(conn, {"op": "spawned", "runs": results})
        elif op == "kill":
            self._kill(message["id"], float(message["grace"]))
        elif op == "watch":
            found: list[list[Any]] = []
            for run_id in message["ids"]:
                job = self.by_id.get(run_id)
                if job is None:
                    found.append([run_id, None, False])
                else:
                    job.watchers.add(conn)
                    found.append([run_id, job.pid, job.fallback])
            self._reply(conn, {"op": "watching", "req": message["req"], "runs": found})
        elif op == "hello":
            if int(message.get("v", 1)) >= 2:
                conn.sizes = 5
            reply = {"op": "hello", "req": message.get("req"), "pid": os.getpid(), "v": PROTOCOL}
            self._reply(conn, reply)
        else:
            raise ValueError(f"unknown op {op!r}")

    def _spawn(self, conn: _Conn, item: list[Any]) -> list[Any]:
        """Claim, spawn and register one run: [run_id, "ok", pid, fallback] or
        [run_id, "failed", error] or [run_id, "exists"] (claimed before, and not a live job of
        ours: never spawned again)."""
        run_id, stem, argv, exe, fallback, env, cwd = item[:7]
        spare = item[7] if len(item) > 7 and not fallback else None
        if not stem or "/" in stem or stem.startswith("."):
            return [run_id, "failed", f"bad run file name {stem!r}"]
        try:
            fd = os.open(
                stem + ".st",
                os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                0o600,
                dir_fd=self.dir_fd,
            )
        except FileExistsError:
            return self._existing(conn, run_id)
        except OSError as exc:
            base = os.path.join(self.dir, stem)
            return [run_id, "failed", f"cannot create {base}.st: {exc.strerror}"]
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size:  # a restarted runner marked it never-started meanwhile
                os.close(fd)
                return [run_id, "exists"]
            outcome = self._start(stem, argv, exe, env, cwd, conn, spare)
            if isinstance(outcome, tuple):
                outcome, fallback = outcome[0], True
        except Exception as exc:
            outcome = f"cannot spawn {argv[0] if argv else ''!r}: {exc!r}"
            _log(f"spawning {run_id}:\n{traceback.format_exc()}")
        if isinstance(outcome, str):
            with contextlib.suppress(OSError):
                os.write(fd, b"!" + outcome.replace("\n", " ").encode() + b"\n")
            os.close(fd)
            return [run_id, "failed", outcome]
        os.write(fd, f"{outcome} {int(bool(fallback))}\n".encode())
        job = _Job(run_id, stem, outcome, fd, bool(fallback), conn.keep)
        job.watchers.add(conn)
        self.jobs[outcome] = job
        self.by_id[run_id] = job
        return [run_id, "ok", outcome, bool(fallback)]

    def _existing(self, conn: _Conn, run_id: str) -> list[Any]:
        """A run claimed before: ours and live (report it, and its exit), or "exists"."""
        job = self.by_id.get(run_id)
        if job is None:
            return [run_id, "exists"]
        job.watchers.add(conn)
        return [run_id, "ok", job.pid, job.fallback]

    def _start(
        self,
        stem: str,
        argv: list[str],
        exe: str,
        env_overrides: dict[str, str] | None,
        cwd: str | None,
        conn: _Conn,
        spare: list[Any] | None = None,
    ) -> int | tuple[int] | str:
        """Spawn `exe` with `argv` (the runner chose and checked both): the pid, (the pid,) of
        the `spare` [argv, exe] spawned because exec refused `exe`, or why nothing could be
        spawned."""
        job_cwd = os.path.join(conn.cwd, cwd) if cwd else conn.cwd
        if job_cwd != self.cwd:
            try:
                os.chdir(job_cwd)  # (single-threaded: the job inherits it)
            except OSError as exc:
                self.cwd = ""  # unknown now: chdir again next time
                return f"working directory {cwd or job_cwd!r}: {exc.strerror}"
            self.cwd = job_cwd
        env = {**conn.env, **env_overrides} if env_overrides else conn.env
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        out = os.open(stem + ".out", flags, 0o600, dir_fd=self.dir_fd)
        try:
            err = os.open(stem + ".err", flags, 0o600, dir_fd=self.dir_fd)
            try:
                return self._exec(argv, exe, env, out, err, spare)
            finally:
                os.close(err)
        finally:
            os.close(out)

    @staticmethod
    def _exec(
        argv: list[str],
        exe: str,
        env: dict[str, str],
        out: int,
        err: int,
        spare: list[Any] | None,
    ) -> int | tuple[int] | str:
        """posix_spawn `exe` (or, when exec refuses it, the `spare` [argv, exe]) with stdin
        /dev/null and stdout/stderr on `out`/`err` (left open: the caller closes them)."""
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out, 1),
            (os.POSIX_SPAWN_DUP2, err, 2),
        ]
        refused: list[str] = []
        for args, path in [(argv, exe), *([tuple(spare)] if spare else [])]:
            try:
                pid = os.posix_spawn(
                    path,
                    args,
                    env,
                    file_actions=actions,
                    setpgroup=0,
                    setsigdef=_RESET_FOR_JOBS,
                    setsigmask=(),
                )
            except OSError as exc:
                refused.append(f"{args[0]}: {exc.strerror or exc}")
                continue
            return (pid,) if refused else pid
        return "; fallback: ".join(refused)

    def _kill(self, run_id: str, grace: float) -> None:
        """SIGTERM the job's group now, SIGKILL it after `grace` if it is still ours."""
        job = self.by_id.get(run_id)
        if job is None or job.term:
            return
        job.term = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, signal.SIGTERM)
        heapq.heappush(self.kills, (time.monotonic() + grace, next(self.seq), run_id))

    def _due_kills(self) -> None:
        now = time.monotonic()
        while self.kills and self.kills[0][0] <= now:
            _, _, run_id = heapq.heappop(self.kills)
            job = self.by_id.get(run_id)
            if job is not None:
                job.escalated = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job.pid, signal.SIGKILL)

    # --- exits -------------------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.jobs.pop(pid, None)
            if job is None:
                continue
            del self.by_id[job.run_id]
            if self.untrimmable:
                self.untrimmable.difference_update((job.stem + ".out", job.stem + ".err"))
            code = os.waitstatus_to_exitcode(status)
            try:
                line = format_status(code, job.escalated) + "\n"
                os.write(job.fd, line.encode())
            except OSError as exc:  # the runner will find no status: LOST
                _log(f"cannot record the exit of {job.run_id}: {exc}")
            finally:
                os.close(job.fd)  # releases the run's lock: its status is complete
            item = [job.run_id, code, job.escalated, self._size(job.stem + ".err"), None]
            for conn in job.watchers:
                if not conn.closed:
                    if conn.sizes == 5 and item[4] is None:
                        item[4] = self._size(job.stem + ".out")
                    conn.exits.append(item[: conn.sizes])

    def _size(self, name: str) -> int:
        """A run file's size, -1 if it cannot be read."""
        try:
            return os.stat(name, dir_fd=self.dir_fd).st_size
        except OSError:
            return -1

    # --- output bound ------------------------------------------------------------------------

    def _trim_outputs(self) -> None:
        """Punch out the head of every live job's output file that is over its cap."""
        for job in list(self.jobs.values()):
            cap = max(2 * job.keep, OUTPUT_MIN_CAP)
            for name in (job.stem + ".out", job.stem + ".err"):
                if name in self.untrimmable:
                    continue
                try:
                    st = os.stat(name, dir_fd=self.dir_fd)
                except OSError:
                    continue
                cut = (st.st_size - job.keep) // _BLOCK * _BLOCK
                if st.st_blocks * 512 > cap and cut > 0 and not self._punch_head(name, cut):
                    return

    def _punch_head(self, name: str, length: int) -> bool:
        """Free the first `length` bytes of `name`; False when this system cannot."""
        if self.punch is True:
            self.punch = _hole_puncher()
            if self.punch is None:
                _log("output files are not trimmed here (no fallocate): they grow unbounded")
        if not callable(self.punch):
            return False
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=self.dir_fd)
        except OSError:
            return True
        try:
            self.punch(fd, length)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                _log(f"output files are not trimmed here ({exc.strerror}): they grow unbounded")
                self.punch = None
                return False
            if name not in self.untrimmable:  # e.g. EPERM on an append-only file: say it once
                self.untrimmable.add(name)
                _log(f"cannot trim {name}: {exc}")
        finally:
            os.close(fd)
        return True

    def _flush_exits(self) -> None:
        for conn in list(self.conns):
            if conn.exits:
                runs, conn.exits = conn.exits, []
                self._reply(conn, {"op": "exits", "runs": runs})


def _hole_puncher() -> Callable[[int, int], None] | None:
    """fallocate(fd, PUNCH_HOLE | KEEP_SIZE, 0, length) from the C library (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = getattr(libc, "fallocate64", None) or libc.fallocate
    except Exception:  # no ctypes (a Python built without libffi), no C library, no symbol
        return None
    fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    fallocate.restype = ctypes.c_int
    punch_hole_keep_size = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE

    def punch(fd: int, length: int) -> None:
        if fallocate(fd, punch_hole_keep_size, 0, length) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return punch


def _on_signal(_signum: int, _frame: object) -> None:
    """SIGCHLD: the wake-up fd does the work."""


def _take_lock(path: str) -> int | None:
    """The supervisor lock (its fd), waiting up to LOCK_WAIT_S; None when another one lives."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.01)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cronledger.adapters.supervisor RUNS_DIR", file=sys.stderr)
        return 2
    runs_dir = os.path.abspath(args[0])
    os.chdir("/")  # never pin the directory we were started in
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):  # one descriptor per live job
        target = hard if hard != resource.RLIM_INFINITY else 1 << 16
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(target, 1 << 16)), hard))
    lock = _take_lock(os.path.join(runs_dir, LOCK_NAME))
    if lock is None:
        print("busy", flush=True)
        return 0
    dir_fd = os.open(runs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    address = socket_path(runs_dir, dir_fd)
    with contextlib.suppress(FileNotFoundError):  # left by a supervisor that was killed
        os.unlink(os.path.join(runs_dir, SOCKET_NAME))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(128)
    supervisor = Supervisor(runs_dir, listener, dir_fd)
    print(f"ready {os.getpid()}", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the runner reads our stdout up to the ready line: close it
    os.close(devnull)
    _log(f"serving {runs_dir}")
    try:
        supervisor.serve()
    finally:
        # Stop listening before letting go of the lock: a runner that cannot connect starts a
        # new supervisor, which waits for the lock.
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(runs_dir, SOCKET_NAME))
        _log("idle: exiting")
    os.close(lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
