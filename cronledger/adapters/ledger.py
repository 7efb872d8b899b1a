"""The ledger port: one append-only stream of events with 1-based positions, plus snapshots.

`open_ledger(url)` is the only way in; the implementation (on `eventsourcing` recorders) lives in
`ledger_store.py`. URLs:

- `memory://` a new private in-memory ledger; `memory://NAME` one shared by name in this process
- `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` (query `?synchronous=normal|full`)
- `postgresql://user[:password]@host[:port]/dbname` or `postgres://...` (query `?schema=NAME`)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from cronledger.adapters.codec import EventCodec
    from cronledger.adapters.daemon_claim import Claim
    from cronledger.domain.events import Event


class Ledger(Protocol):
    """An append-only, optimistically locked event stream (positions 1..position())."""

    url: str
    shared: bool  # can another handle reach it? (False: an anonymous memory:// ledger)

    def claim(self, key: str) -> Claim | None:
        """Take the daemon claim `key` (a node name, "" for the unnamed daemon) for as long as
        this process lives or until the returned claim is called; None while another daemon
        holds it. `Claim.held()` checks it still is (`daemon_claim.py`)."""
        ...

    def claimed(self, key: str) -> bool:
        """Whether a running daemon holds the claim `key` (its own name, or one it borrowed for
        runs it adopted); nothing is taken, so probing never disturbs a daemon."""
        ...

    def claimants(self) -> list[str]:
        """The keys of the daemon claims held now, sorted ("" for the unnamed daemon), as far
        as the store can name them (`daemon_claim.py`); nothing is taken."""
        ...

    def position(self) -> int:
        """Number of events stored (0 = empty): the position of the last one."""
        ...

    def append(self, events: Sequence[Event], expected_position: int) -> int:
        """Store `events` atomically at expected+1..; the new position.

        Raises LedgerConflict when the ledger is not at `expected_position` (another writer
        appended first: reload and decide again). An empty batch is a no-op.
        """
        ...

    def read(
        self,
        after: int = 0,
        upto: int | None = None,
        page_size: int = 10_000,
        *,
        lean: bool = False,
    ) -> Iterator[tuple[int, Event]]:
        """(position, event) for after < position <= upto, in order, read in pages.

        `lean=True` is for folding only: fields the snapshot fold never reads (a tick header's
        exits) are left undecoded.
        """
        ...

    def read_page(self, after: int, limit: int) -> list[tuple[int, Event]]:
        """At most `limit` (position, event) pairs after `after`."""
        ...

    def save_snapshot(self, position: int, payload: bytes) -> None:
        """Store the projected state as of `position` (0 < position <= position())."""
        ...

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        """(position, payload) of the snapshot with the highest position, or None."""
        ...

    def close(self) -> None:
        """Release connections; the handle cannot be used afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def open_ledger(url: str, *, codec: EventCodec | None = None) -> Ledger:
    """Open (creating the tables if needed) the ledger at `url`; LedgerError says what to fix."""
    from cronledger.adapters.ledger_store import open_store

    return open_store(url, codec=codec)
