"""The ledger contract, one suite for every store: memory, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent

from cronledger.adapters.ledger import Ledger, open_ledger
from cronledger.adapters.ledger_store import _INSERT_CHUNK, STREAM_ID, RecorderLedger
from cronledger.domain.events import Event
from cronledger.errors import InvalidInput, LedgerConflict, LedgerCorrupted, LedgerError
from tests.integration.conftest import (
    PG_URL,
    covers_all_events,
    one_of_each_event,
    require_postgres,
    simple_events,
)

MakeLedger = Callable[[], Ledger]


def positions(ledger: Ledger, **kwargs: int) -> list[int]:
    return [p for p, _ in ledger.read(**kwargs)]


def insert_raw(ledger: Ledger, position: int, topic: str, state: bytes) -> None:
    """Write a row behind the codec's back, straight into the store's events recorder."""
    assert isinstance(ledger, RecorderLedger)
    ledger.events_recorder.insert_events([StoredEvent(STREAM_ID, position, topic, state)])


# --- daemon claims ----------------------------------------------------------------------------


def test_a_daemon_claim_is_held_by_one_handle_until_released(
    make_ledger: Callable[[], Ledger],
) -> None:
    first, second = make_ledger(), make_ledger()
    assert not second.claimed(""), "no daemon yet"
    release = first.claim("")
    assert release is not None
    assert second.claimed("") and first.claimed(""), "a probe sees it from any handle"
    assert second.claimed(""), "and probing took nothing: it is still held"
    assert second.claim("") is None, "the unnamed daemon's claim is taken"
    assert first.claim("") is None, "even by the same handle: one daemon per name"
    named = second.claim("node-a")
    assert named is not None, "names are claimed independently"
    assert first.claim("node-a") is None
    assert release.held() and named.held()
    release()
    assert not release.held(), "released: no longer ours"
    assert not second.claimed("") and second.claimed("node-a")
    again = second.claim("")
    assert again is not None, "released: the next daemon takes it"
    again()
    named()
    assert first.claim("node-a") is not None


def test_claimants_names_the_claims_held_now_from_any_handle(
    make_ledger: Callable[[], Ledger],
) -> None:
    first, second = make_ledger(), make_ledger()
    assert second.claimants() == [], "no daemon yet"
    long_name = "n" * 52  # (PostgreSQL keeps 63 bytes of a connection's application_name)
    odd_name = "node ä/b c% d e f g h i j k"  # not ASCII, slashes, spaces, a percent sign
    wide = "ä" * 19  # 38 bytes of UTF-8
    claims = [first.claim(key) for key in ("", "node-b", odd_name, long_name)]
    assert all(c is not None for c in claims)
    held_wide = first.claim(wide)
    assert held_wide is not None
    assert second.claimants() == sorted(["", "node-b", odd_name, long_name, wide])
    held_wide()
    assert second.claimants() == first.claimants(), "listing took nothing"
    assert second.claim("node-b") is None, "still held after the listings"
    unnamed, node_b, odd, long_one = claims
    assert node_b is not None and unnamed is not None
    node_b()
    assert second.claimants() == sorted(["", odd_name, long_name]), "released: not listed"
    unnamed()
    assert second.claimants() == sorted([odd_name, long_name])
    for claim in (odd, long_one):
        assert claim is not None
        claim()
    assert first.claimants() == []


def _drop_claim_connections(schema: str, key: str) -> int:
    """Terminate the PostgreSQL sessions that hold the daemon claim `key` of this schema (as a
    dropped connection or a restarted server would end them); how many."""
    import psycopg

    from cronledger.adapters.daemon_claim import _lock_number
    from tests.integration.conftest import PG_DSN

    number = _lock_number(schema, key) & 0xFFFFFFFFFFFFFFFF  # as pg_locks shows it, unsigned
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        pids = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
                (number >> 32, number & 0xFFFFFFFF),
            ).fetchall()
        ]
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return len(pids)


@pytest.mark.postgres
def test_a_postgres_claim_whose_connection_dropped_is_taken_again_or_found_lost(
    postgres_schema: str,
) -> None:
    url = f"{PG_URL}?schema={postgres_schema}"
    first, second = open_ledger(url), open_ledger(url)
    try:
        claim = first.claim("node-a")
        assert claim is not None and claim.held()
        assert _drop_claim_connections(postgres_schema, "node-a") == 1
        assert claim.held(), "the lock died with its connection: held() takes it again"
        assert second.claim("node-a") is None, "and holds it: no one else gets the name"

        assert _drop_claim_connections(postgres_schema, "node-a") == 1
        thief = second.claim("node-a")  # another daemon takes the name in the gap
        assert thief is not None
        assert not claim.held(), "taken meanwhile: the claim is lost"
        thief()
        assert not claim.held(), "lost for good: not taken back once the other lets go"
        assert second.claim("node-a") is not None
    finally:
        first.close()
        second.close()


# --- append and read ------------------------------------------------------------------------


def test_a_new_ledger_is_empty(ledger: Ledger) -> None:
    assert ledger.position() == 0
    assert list(ledger.read()) == []
    assert ledger.read_page(0, 10) == []
    assert ledger.latest_snapshot() is None


def test_every_event_class_round_trips_through_the_store(make_ledger: MakeLedger) -> None:
    events = one_of_each_event()
    assert covers_all_events(events)
    writer = make_ledger()
    assert writer.append(events, 0) == len(events)

    reader = make_ledger()  # a second handle reads what the first wrote
    read = list(reader.read())
    assert [p for p, _ in read] == list(range(1, len(events) + 1))
    assert [e for _, e in read] == events
    assert [type(e) for _, e in read] == [type(e) for e in events]


def test_positions_are_one_based_and_contiguous_across_batches(ledger: Ledger) -> None:
    assert ledger.append(simple_events(3), 0) == 3
    assert ledger.append(simple_events(1, start=3), 3) == 4
    assert ledger.append(simple_events(2, start=4), 4) == 6
    assert ledger.position() == 6
    read = list(ledger.read())
    assert [p for p, _ in read] == [1, 2, 3, 4, 5, 6]
    assert [e for _, e in read] == simple_events(6)


def test_an_empty_append_is_a_no_op_returning_the_expected_position(ledger: Ledger) -> None:
    assert ledger.append([], 0) == 0
    ledger.append(simple_events(2), 0)
    assert ledger.append([], 2) == 2
    assert ledger.position() == 2
    assert len(list(ledger.read())) == 2


def test_reading_pages_respects_after_upto_and_limits(ledger: Ledger) -> None:
    events = simple_events(25)
    ledger.append(events, 0)

    assert [p for p, _ in ledger.read_page(0, 10)] == list(range(1, 11))
    assert [e for _, e in ledger.read_page(10, 3)] == events[10:13]
    assert [p for p, _ in ledger.read_page(20, 10)] == [21, 22, 23, 24, 25]
    assert ledger.read_page(25, 10) == []
    assert ledger.read_page(0, 0) == []

    assert positions(ledger, after=7, page_size=4) == list(range(8, 26))
    assert positions(ledger, after=3, upto=11, page_size=4) == list(range(4, 12))
    assert positions(ledger, upto=8, page_size=4) == list(range(1, 9))  # ends on a page edge
    assert positions(ledger, upto=0) == []
    assert positions(ledger, after=25) == []
    assert positions(ledger, after=5, upto=5) == []
    assert [e for _, e in ledger.read(page_size=1)] == events


def test_read_arguments_are_checked(ledger: Ledger) -> None:
    with pytest.raises(InvalidInput):
        ledger.read(after=-1)
    with pytest.raises(InvalidInput):
        ledger.read(page_size=0)
    with pytest.raises(InvalidInput):
        ledger.read_page(-1, 10)


# --- optimistic concurrency -----------------------------------------------------------------


def test_a_stale_writer_gets_a_conflict_and_none_of_its_batch_is_stored(
    make_ledger: MakeLedger,
) -> None:
    first, second = make_ledger(), make_ledger()
    first.append(simple_events(2), 0)
    seen = second.position()
    assert seen == 2

    winner = simple_events(2, start=100, tag="winner")
    loser = simple_events(3, start=200, tag="loser")
    assert first.append(winner, seen) == 4
    with pytest.raises(LedgerConflict) as caught:
        second.append(loser, seen)
    assert (caught.value.expected, caught.value.actual) == (2, 4)

    stored = [e for _, e in second.read()]
    assert stored == simple_events(2) + winner
    assert second.position() == 4


def test_an_expected_position_ahead_of_the_ledger_is_a_conflict_not_a_gap(ledger: Ledger) -> None:
    ledger.append(simple_events(1), 0)
    with pytest.raises(LedgerConflict) as caught:
        ledger.append(simple_events(2, start=1), 5)
    assert (caught.value.expected, caught.value.actual) == (5, 1)
    assert ledger.position() == 1
    assert positions(ledger) == [1]


def test_the_store_rejects_a_batch_that_lost_the_race_after_the_position_check(
    make_ledger: MakeLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = make_ledger(), make_ledger()
    first.append(simple_events(2, tag="winner"), 0)
    # `second` read the position just before `first` appended: only the key can stop it now.
    monkeypatch.setattr(second, "position", lambda: 0)
    with pytest.raises(LedgerConflict):
        second.append(simple_events(3, start=10, tag="loser"), 0)
    assert [e for _, e in first.read()] == simple_events(2, tag="winner")


def test_a_batch_larger_than_one_insert_statement_is_stored_whole_and_in_order(
    ledger: Ledger,
) -> None:
    """SQLite writes _INSERT_CHUNK rows per INSERT; this batch spans three statements."""
    size = 2 * _INSERT_CHUNK + 50
    batch = simple_events(size, tag="big")
    assert ledger.append(batch, 0) == size
    assert [p for p, _ in ledger.read()] == list(range(1, size + 1))
    assert [e for _, e in ledger.read()] == batch


def test_a_failure_in_a_later_insert_statement_rolls_back_the_whole_batch(
    tmp_path: Path,
) -> None:
    """The second INSERT of a SQLite batch fails (a trigger refuses one row): the append is an
    error and the rows of the first statement are not left behind; the ledger stays usable."""
    failing = _INSERT_CHUNK + 50
    url = "sqlite:///" + str(tmp_path / "ledger.db")
    with open_ledger(url) as ledger:
        db = sqlite3.connect(tmp_path / "ledger.db")
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON stored_events "
            f"WHEN NEW.originator_version = {failing} BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        db.commit()
        with pytest.raises(LedgerError, match="refused"):
            ledger.append(simple_events(failing + 100, tag="batch"), 0)
        assert ledger.position() == 0
        assert positions(ledger) == []
        db.execute("DROP TRIGGER refuse")
        db.commit()
        db.close()
        assert ledger.append(simple_events(3), 0) == 3
        assert positions(ledger) == [1, 2, 3]


def test_a_sqlite_append_checks_the_position_inside_its_write_transaction(
    tmp_path: Path,
) -> None:
    """Another connection that holds the write lock makes the append wait; once it commits,
    the append sees its rows and is a conflict (never a clash, never a gap)."""
    url = "sqlite:///" + str(tmp_path / "ledger.db")
    with open_ledger(url) as ledger, open_ledger(url) as other:
        assert isinstance(ledger, RecorderLedger)
        topic, state = ledger.codec.encode(simple_events(1, tag="other")[0])
        db = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO stored_events VALUES (?, ?, ?, ?)", (STREAM_ID, 1, topic, state))
        outcome: list[object] = []
        writer = threading.Thread(
            target=lambda: outcome.append(_append_or_conflict(ledger, simple_events(2), 0))
        )
        writer.start()
        writer.join(timeout=0.3)
        assert writer.is_alive(), "the append should wait for the other writer's lock"
        db.execute("COMMIT")
        db.close()
        writer.join(timeout=30)
        assert isinstance(outcome[0], LedgerConflict)
        assert (outcome[0].expected, outcome[0].actual) == (0, 1)
        assert positions(other) == [1]


def _append_or_conflict(ledger: Ledger, events: list[Event], expected: int) -> object:
    try:
        return ledger.append(events, expected)
    except LedgerConflict as e:
        return e


def test_of_concurrent_writers_at_one_position_exactly_one_wins(make_ledger: MakeLedger) -> None:
    writers = [make_ledger() for _ in range(4)]
    batches = [simple_events(3, start=10 * i, tag=f"writer{i}") for i in range(len(writers))]
    barrier = threading.Barrier(len(writers))
    outcomes: list[object] = [None] * len(writers)

    def write(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = writers[i].append(batches[i], 0)
        except LedgerConflict as e:
            outcomes[i] = e

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    winners = [i for i, o in enumerate(outcomes) if o == 3]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, LedgerConflict) for i, o in enumerate(outcomes) if i != winners[0])
    assert [e for _, e in writers[0].read()] == batches[winners[0]]


# --- snapshots ------------------------------------------------------------------------------


def test_the_latest_snapshot_is_the_one_at_the_highest_position(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.append(simple_events(10), 0)
    ledger.save_snapshot(7, b'{"state": 7}')
    ledger.save_snapshot(3, b'{"state": 3}')  # older, saved later: still not the latest
    assert ledger.latest_snapshot() == (7, b'{"state": 7}')
    ledger.save_snapshot(10, b"\x00binary\xff")
    assert make_ledger().latest_snapshot() == (10, b"\x00binary\xff")


def test_saving_a_snapshot_again_is_idempotent_but_never_silently_replaced(
    ledger: Ledger,
) -> None:
    ledger.append(simple_events(3), 0)
    ledger.save_snapshot(3, b"same")
    ledger.save_snapshot(3, b"same")
    with pytest.raises(LedgerError, match="different snapshot"):
        ledger.save_snapshot(3, b"other")
    assert ledger.latest_snapshot() == (3, b"same")


def test_a_snapshot_must_be_at_a_stored_position(ledger: Ledger) -> None:
    ledger.append(simple_events(2), 0)
    for bad in (0, 3, -1):
        with pytest.raises(InvalidInput):
            ledger.save_snapshot(bad, b"x")
    assert ledger.latest_snapshot() is None


# --- corruption -----------------------------------------------------------------------------

CORRUPT_ROWS = {
    "garbage_bytes": ("RunSucceeded", b"\x80\x81 not json", "not valid JSON"),
    "unknown_topic": ("RunExploded", b"{}", "unknown event topic"),
    "missing_fields": ("RunSucceeded", b'{"at": 1, "run_id": "r"}', "missing fields"),
    "wrong_nested_type": (
        "TickStarted",
        b'{"at": 1, "tick": 1, "exits": "none", "requests": [], "decisions": 0}',
        "exits",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_ROWS))
def test_a_corrupt_row_raises_ledger_corrupted_naming_its_position(
    ledger: Ledger, case: str
) -> None:
    topic, state, problem = CORRUPT_ROWS[case]
    ledger.append(simple_events(2), 0)
    insert_raw(ledger, 3, topic, state)
    ledger.append(simple_events(2, start=3), 3)

    assert ledger.position() == 5
    for read in (lambda: list(ledger.read()), lambda: ledger.read_page(0, 10)):
        with pytest.raises(LedgerCorrupted) as caught:
            read()
        assert caught.value.position == 3
        assert problem in str(caught.value)
        assert "position 3" in str(caught.value)
    assert positions(ledger, after=3) == [4, 5]  # the events around it stay readable


def test_a_missing_position_is_reported_not_skipped(ledger: Ledger) -> None:
    ledger.append(simple_events(2), 0)
    insert_raw(ledger, 4, "RunSucceeded", ledger_codec_payload(ledger))
    with pytest.raises(LedgerCorrupted) as caught:
        list(ledger.read())
    assert caught.value.position == 3


def ledger_codec_payload(ledger: Ledger) -> bytes:
    assert isinstance(ledger, RecorderLedger)
    return ledger.codec.encode(simple_events(1, start=99)[0])[1]


# --- handles, URLs and life cycle -----------------------------------------------------------


def test_a_closed_ledger_refuses_to_work(make_ledger: MakeLedger) -> None:
    with make_ledger() as ledger:
        ledger.append(simple_events(1), 0)
    with pytest.raises(LedgerError, match="closed"):
        ledger.position()
    with pytest.raises(LedgerError, match="closed"):
        ledger.append(simple_events(1, start=1), 1)
    ledger.close()  # closing twice is fine
    assert make_ledger().position() == 1


def test_private_memory_ledgers_are_separate_and_named_ones_are_shared() -> None:
    a, b = open_ledger("memory://"), open_ledger("memory://")
    a.append(simple_events(1), 0)
    assert b.position() == 0
    c, d = open_ledger("memory://shared-by-name"), open_ledger("memory://shared-by-name")
    c.append(simple_events(2), c.position())
    assert d.position() == c.position()


def test_reopening_a_sqlite_file_sees_the_same_events(tmp_path: Path) -> None:
    url = "sqlite:///" + str(tmp_path / "ledger.db")
    events = one_of_each_event()
    with open_ledger(url) as ledger:
        ledger.append(events, 0)
        ledger.save_snapshot(5, b"snap")
    with open_ledger(url) as ledger:
        assert ledger.position() == len(events)
        assert [e for _, e in ledger.read()] == events
        assert ledger.latest_snapshot() == (5, b"snap")
        assert ledger.append(simple_events(1), len(events)) == len(events) + 1


def test_a_relative_sqlite_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with open_ledger("sqlite:///data/rel.db") as ledger:
        ledger.append(simple_events(1), 0)
    assert (tmp_path / "data" / "rel.db").is_file()


@pytest.mark.parametrize(("query", "expected"), [("", 2), ("?synchronous=normal", 1)])
def test_sqlite_durability_is_full_unless_the_url_says_otherwise(
    tmp_path: Path, query: str, expected: int
) -> None:
    with open_ledger("sqlite:///" + str(tmp_path / "d.db") + query) as ledger:
        assert isinstance(ledger, RecorderLedger)
        datastore = ledger.events_recorder.datastore  # type: ignore[attr-defined]
        with datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA synchronous")
            assert cursor.fetchone()[0] == expected
        # ... and on the connection the appends go through
        writer = ledger._append_rows.__self__  # type: ignore[union-attr]
        assert writer._conn.execute("PRAGMA synchronous").fetchone()[0] == expected


BAD_URLS = {
    "empty": ("", "no ledger URL"),
    "no_scheme": ("ledger.db", "no scheme"),
    "unknown_scheme": ("mysql://root@localhost/db", "unknown scheme"),
    "sqlite_no_path": ("sqlite://", "no database file path"),
    "sqlite_root_only": ("sqlite:///", "no database file path"),
    "sqlite_host": ("sqlite://ledger.db", "no host part"),
    "sqlite_in_memory": ("sqlite:///:memory:", "memory://"),
    "sqlite_missing_dir": ("sqlite:////nonexistent-dir-for-cronledger/x.db", "does not exist"),
    "sqlite_bad_option": ("sqlite:////tmp/x.db?synchronous=sometimes", "synchronous"),
    "sqlite_unknown_option": ("sqlite:////tmp/x.db?journal=off", "unknown option"),
    "memory_option": ("memory://x?size=3", "no options"),
    "pg_no_user": ("postgresql://127.0.0.1:5432/test", "no user"),
    "pg_no_db": ("postgresql://postgres@127.0.0.1:5432/", "no database name"),
    "pg_bad_port": ("postgresql://postgres@127.0.0.1:port/test", "port"),
    "pg_bad_schema": ("postgresql://postgres@127.0.0.1/test?schema=a;drop", "identifier"),
    "pg_unreachable": ("postgres://postgres:secret@127.0.0.1:1/test", "cannot connect"),
}


@pytest.mark.parametrize("case", sorted(BAD_URLS))
def test_a_bad_url_raises_a_ledger_error_saying_what_to_fix(case: str) -> None:
    url, problem = BAD_URLS[case]
    with pytest.raises(LedgerError) as caught:
        open_ledger(url)
    message = str(caught.value)
    assert problem in message
    assert "\n" not in message
    assert "secret" not in message  # passwords are never shown


def test_a_file_that_is_not_a_sqlite_database_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the bytes of a database " * 100)
    with pytest.raises(LedgerError, match=r"notes\.txt"):
        open_ledger("sqlite:///" + str(path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_sqlite_file_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    sqlite3.connect(path).close()
    path.chmod(0o444)
    with pytest.raises(LedgerError, match="permission denied"):
        open_ledger("sqlite:///" + str(path))


@pytest.mark.postgres
def test_a_missing_postgres_database_is_a_ledger_error() -> None:
    require_postgres()
    with pytest.raises(LedgerError, match="no_such_db_for_cronledger"):
        open_ledger(PG_URL.rsplit("/", 1)[0] + "/no_such_db_for_cronledger")


@pytest.mark.postgres
def test_postgres_handles_opened_together_create_the_tables_once(postgres_schema: str) -> None:
    url = f"{PG_URL}?schema={postgres_schema}"
    opened: list[Ledger] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(open_ledger(url))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert errors == []
        opened[0].append(simple_events(1), 0)
        assert all(ledger.position() == 1 for ledger in opened)
    finally:
        for ledger in opened:
            ledger.close()


def test_a_memory_store_is_kept_while_claimed_and_forgotten_once_released() -> None:
    from cronledger.adapters import daemon_claim

    before = len(daemon_claim._HELD)
    ledger = open_ledger("memory://")
    release = ledger.claim("")
    assert release is not None and len(daemon_claim._HELD) == before + 1
    release()
    release()  # twice is harmless
    assert len(daemon_claim._HELD) == before, "nothing kept: a later store starts clean"


@pytest.mark.postgres
def test_a_daemon_whose_name_was_taken_while_its_connection_was_down_stops(
    postgres_schema: str,
) -> None:
    from cronledger.adapters.clock import FakeClock
    from cronledger.adapters.engine import Engine
    from cronledger.adapters.fake_runner import FakeRunner, Script
    from cronledger.domain.commands import SubmitTask
    from cronledger.domain.values import Call
    from cronledger.errors import ClaimLost

    url = f"{PG_URL}?schema={postgres_schema}"
    clock = FakeClock()
    engine = Engine(open_ledger(url), clock, FakeRunner(Script(60_000)), node="n1")
    other = open_ledger(url)
    try:
        engine.claim_check_s = 0.0  # check on every pass of the loop
        engine.execute(SubmitTask(target=Call("work")))
        engine.claim()
        assert _drop_claim_connections(postgres_schema, "n1") == 1
        engine.run(until=clock.now() + 3_000)  # the claim is taken again: it goes on
        assert other.claim("n1") is None, "still n1's"
        assert engine.snapshot.active == 1, "its run goes on"

        assert _drop_claim_connections(postgres_schema, "n1") == 1
        thief = other.claim("n1")  # a second n1 started while the first was cut off
        assert thief is not None
        engine.drain()  # and the first was draining: its drain must not hold every daemon back
        with pytest.raises(ClaimLost, match="node 'n1'"):
            engine.run(until=clock.now() + 3_000)
        engine.refresh()
        assert engine.snapshot.options.draining is False, "the drain it recorded is undone"
        thief()
    finally:
        engine.close()
        other.close()
