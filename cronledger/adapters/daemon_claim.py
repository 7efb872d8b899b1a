"""Daemon claims: at most one running daemon per node name (the unnamed one included) on a
ledger, so that no daemon takes another live daemon's runs for its own.

A claim is held for a daemon's whole life and is released when its process ends, however it
ends (a killed daemon holds nothing): an flock on a file beside an SQLite ledger, a session
advisory lock on PostgreSQL, a process-wide registry for memory ledgers. `claim(key)` returns a
release function, or None while another daemon holds the key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Callable
from typing import Any

Release = Callable[[], None]
Claimer = Callable[[str], Release | None]

_HELD: dict[int, tuple[object, set[str]]] = {}  # id(store) -> (the store, its claimed keys)
_HELD_LOCK = threading.Lock()


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=8).digest()


def memory_claimer(store: object) -> Claimer:
    """Claims among the engines of this process on one in-memory store (kept alive while any
    claim on it is held, so its id cannot be reused meanwhile)."""

    def claim(key: str) -> Release | None:
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

        return release

    return claim


def sqlite_claimer(path: str) -> Claimer:
    """Claims as flocks on `PATH.daemon-DIGEST.lock` files beside the ledger file."""

    def claim(key: str) -> Release | None:
        lock_path = f"{path}.daemon-{_digest(key).hex()}.lock"
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

        return release

    return claim


def postgres_claimer(connect: Callable[[], Any], schema: str) -> Claimer:
    """Claims as session advisory locks, each on a connection of its own (closing it, or the
    daemon's end, releases the lock)."""

    def claim(key: str) -> Release | None:
        number = int.from_bytes(_digest(f"cronledger:{schema}:{key}"), "big", signed=True)
        conn = connect()
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (number,)).fetchone()
        except Exception:
            conn.close()
            raise
        if not row or not row[0]:
            conn.close()
            return None
        return conn.close  # type: ignore[no-any-return]

    return claim
