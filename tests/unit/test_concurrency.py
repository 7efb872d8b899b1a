"""Concurrency policies (SEMANTICS §4)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cronledger.adapters.fake_runner import Script
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.state import EntryStatus
from cronledger.domain.values import ConcurrencyPolicy
from tests.harness import MINUTE, SECOND, T0, World, spec

P = ConcurrencyPolicy


def _overlapping(policy: P, run_for: int = 150 * SECOND) -> World:
    """A minutely job whose runs take longer than a minute."""
    w = World(Script(run_for))
    w.add(spec("job", concurrency=policy))
    return w


def test_forbid_skips_a_fire_while_the_previous_run_is_active() -> None:
    w = _overlapping(P.FORBID)
    w.run_until(T0 + 2 * MINUTE)
    [skipped] = w.of(ev.FireSkipped)
    assert (skipped.nominal, skipped.reason) == (T0 + 2 * MINUTE, "concurrency_forbid")
    assert len(w.runner.started) == 1


def test_replace_cancels_exactly_the_active_run_and_queues_the_new_fire() -> None:
    w = _overlapping(P.REPLACE)
    w.run_until(T0 + 2 * MINUTE)
    [cancelled] = w.of(ev.RunCancelled)
    assert (cancelled.run_id, cancelled.reason) == ("job@20260101T000100Z#1", "replaced")
    assert [c.run_id for c in w.runner.cancelled] == [cancelled.run_id]
    assert len(w.runner.started) == 2
    w.run_until(T0 + 2 * MINUTE + 2 * SECOND)
    [failed] = w.of(ev.RunFailed)
    assert (failed.run_id, failed.reason, failed.final) == (cancelled.run_id, "cancelled", True)


def test_queue_one_holds_one_entry_and_starts_it_when_the_first_run_ends() -> None:
    w = _overlapping(P.QUEUE_ONE)
    w.run_until(T0 + 2 * MINUTE)
    [held] = [f for f in w.of(ev.FireRecorded) if f.hold]
    assert held.hold == "awaiting_previous_run"
    assert w.snapshot.entries[held.entry_id].status is EntryStatus.HELD
    w.run_until(T0 + 3 * MINUTE)  # third fire coalesces into the held entry
    [coalesced] = w.of(ev.FireCoalesced)
    assert coalesced.into_entry_id == held.entry_id
    w.run_until(T0 + MINUTE + 150 * SECOND)  # the first run ends -> the held one is released
    [released] = w.of(ev.EntryReleased)
    assert released.entry_id == held.entry_id
    assert w.runner.started[-1].entry_id == held.entry_id


def test_queue_one_records_a_manual_trigger_on_a_full_queue_as_skipped() -> None:
    w = _overlapping(P.QUEUE_ONE)
    w.run_until(T0 + 2 * MINUTE)
    w.do(cmd.TriggerSchedule("job"))
    w.tick()
    [skipped] = w.of(ev.FireSkipped)
    assert skipped.reason == "queue_full" and skipped.request_id is not None


def test_allow_starts_overlapping_runs() -> None:
    w = _overlapping(P.ALLOW)
    w.run_until(T0 + 3 * MINUTE)
    assert len(w.runner.started) == 3
    assert w.snapshot.active == 3  # the first run (150 s) is still going at 3:00


@settings(max_examples=60, deadline=None)
@given(
    policy=st.sampled_from(P),
    durations=st.lists(st.integers(1, 400), min_size=1, max_size=12),
    manual_at=st.lists(st.integers(0, 600), max_size=4),
)
def test_policies_hold_their_invariants_at_every_step(
    policy: P, durations: list[int], manual_at: list[int]
) -> None:
    runs = iter(durations * 20)
    w = World(lambda _c: Script(next(runs) * SECOND))
    w.add(spec("job", concurrency=policy))
    for second in range(0, 12 * 60, 5):
        if second in manual_at:
            w.do(cmd.TriggerSchedule("job"))
        w.run_until(T0 + second * SECOND, step=5 * SECOND)
        s = w.snapshot
        opened = s.open_entries("job")
        waiting = [e for e in opened if e.status is not EntryStatus.ASSIGNED]
        running = [r for r in s.runs.values() if r.cancelling is None]
        if policy is P.FORBID:
            assert len(opened) <= 1, "FORBID never overlaps or queues a second entry"
        if policy is P.QUEUE_ONE:
            assert len(waiting) <= 1, "QUEUE_ONE keeps at most one waiting entry"
            assert len(running) <= 1
        if policy is P.REPLACE:
            assert len(running) <= 1, "REPLACE leaves one live run"
    assert len(w.runner.started) >= 1
