"""Daemon claims: at most one running daemon per node name (the unnamed one included) on a
ledger, so that no daemon takes another live daemon's runs for its own.

A claim is held for a daemon's whole life and is released when its process ends, however it
ends (a killed daemon holds nothing): an flock on a file beside an SQLite ledger, a session
advisory lock on PostgreSQL, a process-wide registry for memory ledgers. `claim(key)` returns a
`Claim` (call it to release), or None while another daemon holds the key.

A PostgreSQL claim lives on a connection: if that connection drops, the server lets go of the
lock and another daemon could take the name. `Claim.held()` finds out (the daemon asks every
few seconds): it re-takes the lock on a new connection where it can, and says False where
another daemon took it meanwhile.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote


class Claim:
    """A daemon claim taken: call it to release it (twice is harmless); `held()` says whether
    it is still ours, re-taking it where the backend lost it."""

    __slots__ = ("_check", "_release", "_released")

    def __init__(self, release: Callable[[], None], check: Callable[[], bool] | None = None):
        self._release = release
        self._check = check
        self._released = False

    def __call__(self) -> None:
        if not self._released:
            self._released = True
            self._release()

    def held(self) -> bool:
        if self._released:
            return False
        if self._check is None or self._check():
            return True
        self._released = True  # lost for good: never taken back behind its holder's back
        return False


Claimer = Callable[[str], Claim | None]
Prober = Callable[[str], bool]  # is claim `key` held (by any process)? nothing is taken
Lister = Callable[[], list[str]]  # the keys of the claims held now; nothing is taken
log = logging.getLogger(__name__)

_HELD: dict[int, tuple[object, set[str]]] = {}  # id(store) -> (the store, its claimed keys)
_HELD_LOCK = threading.Lock()


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=8).digest()


def memory_claimer(store: object) -> Claimer:
    """Claims among the engines of this process on one in-memory store (kept alive while any
    claim on it is held, so its id cannot be reused meanwhile)."""

    def claim(key: str) -> Claim | None:
        with _HELD_LOCK:
            _, held = _HELD.setdefault(id(store), (store, set()))
            if key in held:
                return None
            held.add(key)

        def release() -> None:
            with _HELD_LOCK:
                held.discard(key)
                entry = _HELD.get(id(store))
                if not held and entry is not None and entry[1] is held:
                    del _HELD[id(store)]

        return Claim(release)

    return claim


def memory_prober(store: object) -> Prober:
    """Whether an engine of this process holds claim `key` on `store`."""

    def claimed(key: str) -> bool:
        with _HELD_LOCK:
            entry = _HELD.get(id(store))
            return entry is not None and entry[0] is store and key in entry[1]

    return claimed


def memory_lister(store: object) -> Lister:
    """The claims engines of this process hold on `store`."""

    def held() -> list[str]:
        with _HELD_LOCK:
            entry = _HELD.get(id(store))
            return sorted(entry[1]) if entry is not None and entry[0] is store else []

    return held


def sqlite_claimer(path: str) -> Claimer:
    """Claims as flocks on `PATH.daemon-DIGEST.lock` files beside the ledger file."""

    def claim(key: str) -> Claim | None:
        lock_path = _lock_path(path, key)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {key}\n".encode())

        def release() -> None:
            with contextlib.suppress(OSError):
                os.close(fd)

        return Claim(release)

    return claim


def _lock_path(path: str, key: str) -> str:
    return f"{path}.daemon-{_digest(key).hex()}.lock"


def sqlite_prober(path: str) -> Prober:
    """Whether a daemon holds claim `key` beside the SQLite file at `path`: its lock file is
    flocked. The file is opened read-only and never created (a probe leaves nothing behind,
    owned by whoever ran it), and a shared lock is tried for an instant."""

    def claimed(key: str) -> bool:
        try:
            fd = os.open(_lock_path(path, key), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False  # no daemon ever ran under that name here
        try:
            return _flocked(fd)
        finally:
            os.close(fd)  # (closing lets go of the shared lock, if it was taken)

    return claimed


def _flocked(fd: int) -> bool:
    """Does another open file hold an exclusive flock on `fd`'s file? (A shared lock is tried
    for an instant: the caller's close lets go of it.)"""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    return False


def sqlite_lister(path: str) -> Lister:
    """The claims held beside the SQLite file at `path`: its lock files that are flocked, each
    named by the key its holder wrote in it (checked against the file's name)."""
    folder, base = os.path.split(path)
    prefix, suffix = base + ".daemon-", ".lock"

    def held() -> list[str]:
        keys: list[str] = []
        for name in sorted(os.listdir(folder or ".")):
            if not (name.startswith(prefix) and name.endswith(suffix)):
                continue
            file = os.path.join(folder, name)
            try:
                fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # gone meanwhile, or not ours to read
            try:
                # "PID KEY\n", written by the holder just after it took the lock
                text = os.read(fd, 4096).decode(errors="replace") if _flocked(fd) else None
            except OSError:
                text = None
            finally:
                os.close(fd)
            if text is None:
                continue  # not held
            key = text.partition(" ")[2]
            key = key[:-1] if key.endswith("\n") else ""  # (empty: still being written)
            if _lock_path(path, key) == file:  # (a named one still being written: not yet)
                keys.append(key)
        return sorted(keys)

    return held


def _lock_number(schema: str, key: str) -> int:
    return int.from_bytes(_digest(f"cronledger:{schema}:{key}"), "big", signed=True)


def _lock_ids(schema: str, key: str) -> tuple[int, int]:
    """The claim's lock number as `pg_locks` shows it: (classid, objid), unsigned halves."""
    number = _lock_number(schema, key) & 0xFFFFFFFFFFFFFFFF
    return number >> 32, number & 0xFFFFFFFF


# `pg_locks l` rows of the advisory locks sessions hold in this database (claims' kind of lock)
_HELD_ADVISORY = (
    "l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def postgres_prober(connect: Callable[[], Any], schema: str) -> Prober:
    """Whether a session holds claim `key`, from `pg_locks` (nothing is taken)."""

    def claimed(key: str) -> bool:
        conn = connect()
        try:
            row = conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE {_HELD_ADVISORY} "
                "AND l.classid::bigint = %s AND l.objid::bigint = %s)",
                _lock_ids(schema, key),
            ).fetchone()
        finally:
            conn.close()
        return bool(row and row[0])

    return claimed


_APP_PREFIX = "cronledger"  # then ":" + the key percent-encoded, or "=" + it in base64url
_APP_MAX = 63  # the bytes PostgreSQL keeps of an application_name


def _app_name(key: str) -> str:
    """A claim connection's `application_name`: the key percent-encoded, or in base64url
    where that is shorter (PostgreSQL keeps printable ASCII only), cut to the server's 63
    bytes: a plain name of up to 52 characters, or of up to 39 bytes of UTF-8, is listed."""
    percent = f"{_APP_PREFIX}:{quote(key, safe='')}"
    packed = f"{_APP_PREFIX}={base64.urlsafe_b64encode(key.encode()).decode().rstrip('=')}"
    return min(percent, packed, key=len)[:_APP_MAX]


def _app_key(name: str) -> str | None:
    """The key an `application_name` of `_app_name` names, None if it names none."""
    body = name[len(_APP_PREFIX) + 1 :]
    marker = name[len(_APP_PREFIX) : len(_APP_PREFIX) + 1]
    if marker == ":":
        return unquote(body)
    if marker == "=":
        try:
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def postgres_lister(connect: Callable[[], Any], schema: str) -> Lister:
    """The claims sessions hold now on this schema: the advisory locks in `pg_locks` whose
    session names a key (`_app_name`) that gives the lock's own number."""

    def held() -> list[str]:
        conn = connect()
        try:
            rows = conn.execute(
                "SELECT a.application_name, l.classid::bigint, l.objid::bigint "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                f"WHERE {_HELD_ADVISORY} AND a.application_name LIKE %s",
                (_APP_PREFIX + "%",),
            ).fetchall()
        finally:
            conn.close()
        keys: set[str] = set()
        for app, high, low in rows:
            key = _app_key(app)
            if key is not None and _lock_ids(schema, key) == (high, low):
                keys.add(key)
        return sorted(keys)

    return held


def postgres_claimer(connect: Callable[[], Any], schema: str) -> Claimer:
    """Claims as session advisory locks, each on a connection of its own (closing it, or the
    daemon's end, releases the lock)."""

    def take(number: int, key: str) -> Any:
        """A connection holding the lock, or None while another session holds it. The
        connection says whose claim it holds in its `application_name` (`postgres_lister`)."""
        conn = connect()
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (number,)).fetchone()
            if row and row[0]:
                conn.execute("SELECT set_config('application_name', %s, false)", (_app_name(key),))
        except Exception:
            conn.close()
            raise
        if not row or not row[0]:
            conn.close()
            return None
        return conn

    def claim(key: str) -> Claim | None:
        number = _lock_number(schema, key)
        conn = take(number, key)
        if conn is None:
            return None
        holder = [conn]

        def release() -> None:
            with contextlib.suppress(Exception):
                holder[0].close()

        def check() -> bool:
            try:
                holder[0].execute("SELECT 1")
                return True
            except Exception:  # the connection dropped: the server let go of the lock
                release()
            try:
                again = take(number, key)
            except Exception:  # the server is out of reach: nobody can take it now; ask later
                return True
            if again is None:
                log.error("the claim %r was lost with its connection, and is taken", key)
                return False
            log.warning("the claim %r was lost with its connection: taken again", key)
            holder[0] = again
            return True

        return Claim(release, check)

    return claim
