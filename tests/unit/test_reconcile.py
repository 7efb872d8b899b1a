"""Completion reconciliation and retries (SEMANTICS §8)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cronledger.adapters.fake_runner import Script
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.explain import explain
from cronledger.domain.handlers import handle
from cronledger.domain.reconcile import (
    RecordedOutput,
    bound_exits,
    reconcile_exits,
    recorded_output,
)
from cronledger.domain.state import EntryStatus
from cronledger.domain.tick import plan_tick
from cronledger.domain.values import (
    OUTPUT_TAIL_BYTES,
    OUTPUT_TAIL_LIMIT,
    ExitKind,
    Options,
    Retry,
    RunExit,
)
from cronledger.domain.verify import verify
from cronledger.errors import InvalidInput
from cronledger.projectors import tasks
from cronledger.projectors.snapshot import apply
from cronledger.projectors.tasks import TaskStatus
from tests.harness import MINUTE, SECOND, T0, World, spec


def test_success_marks_the_task_done_and_removes_the_entry() -> None:
    w = World(Script(5 * SECOND, 0))
    w.add(spec("job"))
    w.run_until(T0 + MINUTE + 5 * SECOND)
    [ok] = w.of(ev.RunSucceeded)
    assert ok.duration_ms == 5 * SECOND
    assert ok.entry_id not in w.snapshot.entries
    assert tasks.project(w.log)[ok.entry_id] is TaskStatus.DONE
    assert w.snapshot.schedules["job"].last_outcome == "succeeded"


def test_failure_without_retries_left_blocks_the_task() -> None:
    w = World(Script(SECOND, 3, stderr="boom"))
    w.add(spec("job"))
    w.run_until(T0 + MINUTE + SECOND)
    [failed] = w.of(ev.RunFailed)
    assert (failed.reason, failed.exit_code, failed.final, failed.stderr_tail) == (
        "exit",
        3,
        True,
        "boom",
    )
    assert tasks.project(w.log)[failed.entry_id] is TaskStatus.BLOCKED
    assert w.snapshot.schedules["job"].consecutive_failures == 1


def test_retries_back_off_exponentially_up_to_the_cap_then_block() -> None:
    w = World(Script(0, 1))
    w.add(
        spec("job", retry=Retry(max_attempts=5, backoff_ms=10 * SECOND, max_backoff_ms=25 * SECOND))
    )
    w.run_until(T0 + 3 * MINUTE)
    retries = w.of(ev.RetryPlanned)
    assert [(r.attempt, r.not_before - r.at) for r in retries] == [
        (2, 10 * SECOND),
        (3, 20 * SECOND),
        (4, 25 * SECOND),
        (5, 25 * SECOND),
    ]
    starts = [c.attempt for c in w.runner.started if c.entry_id == retries[0].entry_id]
    assert starts == [1, 2, 3, 4, 5]
    fails = [f for f in w.of(ev.RunFailed) if f.entry_id == retries[0].entry_id]
    assert [f.final for f in fails] == [False, False, False, False, True]
    # each retry starts no earlier than its not_before
    for retry in retries:
        [assigned] = [
            a
            for a in w.of(ev.RunAssigned)
            if a.entry_id == retry.entry_id and a.attempt == retry.attempt
        ]
        assert assigned.at >= retry.not_before


def test_a_timeout_cancels_the_run_and_counts_as_a_failure_that_retries() -> None:
    w = World(Script(10 * MINUTE, 0))
    w.add(spec("job", timeout_ms=30 * SECOND, retry=Retry(2, SECOND)))
    w.run_until(T0 + MINUTE + 31 * SECOND)
    [cancel] = w.of(ev.RunCancelled)
    assert (cancel.reason, cancel.at) == ("timeout", T0 + MINUTE + 30 * SECOND)
    [failed] = w.of(ev.RunFailed)
    assert (failed.reason, failed.final) == ("timeout", False)
    assert w.of(ev.RetryPlanned)[0].attempt == 2


def test_a_timed_out_run_that_exits_0_after_its_sigterm_still_counts_as_a_timeout() -> None:
    w = World(Script(10 * MINUTE, 0))
    w.add(spec("job", timeout_ms=30 * SECOND, retry=Retry(2, SECOND)))
    w.run_until(T0 + MINUTE + 30 * SECOND)
    [run] = w.snapshot.runs.values()
    assert run.cancelling == "timeout"
    clean = RunExit(run_id=run.run_id, kind=ExitKind.EXITED, finished_at=w.now, exit_code=0)
    events = reconcile_exits(w.snapshot, [clean], w.now)
    assert not any(isinstance(e, ev.RunSucceeded) for e in events)
    [failed] = [e for e in events if isinstance(e, ev.RunFailed)]
    assert (failed.reason, failed.exit_code, failed.final) == ("timeout", 0, False)
    assert any(isinstance(e, ev.RetryPlanned) for e in events)
    # a tick planned before this rule (rules 1, e.g. an older ledger) still re-plans as it was
    [ok] = reconcile_exits(w.snapshot, [clean], w.now, rules=1)
    assert isinstance(ok, ev.RunSucceeded)


def test_an_older_ledger_with_a_timed_out_run_that_exited_0_still_verifies() -> None:
    w = World(Script(10 * MINUTE, 0))
    w.add(spec("job", timeout_ms=30 * SECOND))
    w.run_until(T0 + MINUTE + 30 * SECOND)
    [run] = w.snapshot.runs.values()
    clean = RunExit(run_id=run.run_id, kind=ExitKind.EXITED, finished_at=w.now, exit_code=0)
    old = plan_tick(w.snapshot, w.now, [clean], rules=1)  # as the version before rules 2 did
    header = old.events[0]
    assert isinstance(header, ev.TickStarted) and header.rules == 1
    assert any(isinstance(e, ev.RunSucceeded) for e in old.events)
    log = [*w.log, *old.events]
    assert verify(enumerate(log, 1)).ok
    new = plan_tick(w.snapshot, w.now, [clean])
    assert not verify(enumerate([*w.log, header, *new.events[1:]], 1)).ok, "rules 1 re-planned"


def test_a_run_that_ended_past_its_deadline_with_no_cancel_sent_is_a_timeout() -> None:
    """Its process ended while no daemon watched it (or before the cancel reached it): it ran
    longer than its timeout, so it counts as failed (found by an explorer: a restarted daemon
    recorded such a run as succeeded). Ended at the deadline: a success."""
    w = World(Script(10 * MINUTE, 0))
    w.add(spec("job", timeout_ms=30 * SECOND, retry=Retry(2, SECOND)))
    w.run_until(T0 + MINUTE)
    [run] = w.snapshot.runs.values()
    assert run.deadline == T0 + MINUTE + 30 * SECOND and run.cancelling is None

    def ended(at: int, code: int = 0) -> RunExit:
        return RunExit(run_id=run.run_id, kind=ExitKind.EXITED, finished_at=at, exit_code=code)

    now = T0 + 5 * MINUTE  # the restarted daemon records it late
    for late in (ended(run.deadline + 1), ended(run.deadline + 1, 3)):
        events = reconcile_exits(w.snapshot, [late], now)
        [failed] = [e for e in events if isinstance(e, ev.RunFailed)]
        assert (failed.reason, failed.exit_code) == ("timeout", late.exit_code)
        assert failed.duration_ms == 30 * SECOND + 1
        assert any(isinstance(e, ev.RetryPlanned) for e in events)
    [ok] = reconcile_exits(w.snapshot, [ended(run.deadline)], now)
    assert isinstance(ok, ev.RunSucceeded)
    # a run an operator cancelled (before its deadline) stays cancelled, whenever it ends
    cancelled = w.snapshot
    cancelled_facts = handle(cancelled, cmd.CancelEntry(run.entry_id), T0 + MINUTE + SECOND)
    for fact in cancelled_facts:
        cancelled = apply(cancelled, fact)
    assert cancelled.runs[run.run_id].cancelling is not None
    events = reconcile_exits(cancelled, [ended(run.deadline + 1, -15)], now)
    [stopped] = [e for e in events if isinstance(e, ev.RunFailed)]
    assert (stopped.reason, stopped.final) == ("cancelled", True), "never retried (a review)"
    assert not any(isinstance(e, ev.RetryPlanned) for e in events)
    # a tick planned by rules 3 (which made it a timeout, and retried it) still verifies
    late = ended(run.deadline + 1, -15)
    cancel_log = [*w.log, *cancelled_facts]
    old3 = plan_tick(cancelled, now, [late], rules=3)
    assert any(isinstance(e, ev.RetryPlanned) for e in old3.events)
    assert verify(enumerate([*cancel_log, *old3.events], 1)).ok
    lost = RunExit(run_id=run.run_id, kind=ExitKind.LOST, finished_at=now, error="no state file")
    assert isinstance(reconcile_exits(w.snapshot, [lost], now)[0], ev.RunLost), "still lost"
    # ticks planned by the rules before (2) re-plan as they were: a success
    [was] = reconcile_exits(w.snapshot, [ended(run.deadline + 1)], now, rules=2)
    assert isinstance(was, ev.RunSucceeded)
    old = plan_tick(w.snapshot, now, [ended(run.deadline + 1)], rules=2)
    assert verify(enumerate([*w.log, *old.events], 1)).ok
    new = plan_tick(w.snapshot, now, [ended(run.deadline + 1)])
    log = [*w.log, *new.events]
    assert verify(enumerate(log, 1)).ok
    said = " ".join(explain(enumerate(log, 1), run.run_id).sentences)
    assert "timed out" in said and "past its deadline" in said and "no cancel sent" in said, said


def test_an_exit_for_a_run_already_reconciled_decides_nothing() -> None:
    w = World(Script(SECOND, 0))
    w.add(spec("job"))
    w.run_until(T0 + MINUTE + SECOND)
    [ok] = w.of(ev.RunSucceeded)
    again = RunExit(run_id=ok.run_id, kind=ExitKind.EXITED, finished_at=w.now, exit_code=0)
    assert reconcile_exits(w.snapshot, [again, again], w.now) == []
    assert plan_tick(w.snapshot, w.now, [again]).events == ()


def test_a_lost_run_is_recorded_and_handled_by_the_retry_policy() -> None:
    w = World(Script(10 * MINUTE, 0))
    w.add(spec("job", retry=Retry(2, SECOND)))
    w.run_until(T0 + MINUTE)
    [assigned] = w.of(ev.RunAssigned)
    lost = RunExit(
        run_id=assigned.run_id,
        kind=ExitKind.LOST,
        finished_at=w.now,
        error="daemon restarted; no exit status",
    )
    plan = plan_tick(w.snapshot, w.now + SECOND, [lost])
    kinds = [type(e).__name__ for e in plan.events]
    assert kinds[:3] == ["TickStarted", "RunLost", "RetryPlanned"]
    assert plan.snapshot.entries[assigned.entry_id].status is EntryStatus.PENDING


def test_a_huge_stderr_is_bounded_to_its_tail() -> None:
    w = World(Script(SECOND, 1, stderr="x" * 100_000 + "END"))
    w.add(spec("job"))
    w.run_until(T0 + MINUTE + SECOND)
    [failed] = w.of(ev.RunFailed)
    assert len(failed.stderr_tail) == 4096 and failed.stderr_tail.endswith("END")


def test_outcome_facts_keep_bounded_output_tails_and_count_the_bytes_before_them() -> None:
    stdout = "é" + "x" * (OUTPUT_TAIL_BYTES + 9)  # a 2-byte character in the part cut off
    w = World(Script(SECOND, 0, stdout=stdout, stderr="warn\n"))
    w.add(spec("job"))
    w.run_until(T0 + MINUTE + SECOND)
    [ok] = w.of(ev.RunSucceeded)
    assert ok.stdout_tail == "x" * OUTPUT_TAIL_BYTES
    assert ok.stdout_dropped == 2 + 9  # bytes: é is two
    assert (ok.stderr_tail, ok.stderr_dropped) == ("warn\n", 0)


def test_the_runners_dropped_counts_add_to_what_the_bound_cuts() -> None:
    exit = RunExit(
        run_id="r",
        kind=ExitKind.EXITED,
        finished_at=T0,
        exit_code=1,
        stdout_tail="out",
        stdout_dropped=100,
        stderr_tail="e" * (OUTPUT_TAIL_BYTES + 1),
        stderr_dropped=7,
    )
    assert recorded_output(exit) == RecordedOutput("out", 100, "e" * OUTPUT_TAIL_BYTES, 8)


def test_an_exit_without_captured_output_records_no_counts() -> None:
    # a call's traceback, or an exit recorded before stdout was kept: the counts are unknown
    exit = RunExit(
        run_id="r", kind=ExitKind.RAISED, finished_at=T0, stderr_tail="t" * (OUTPUT_TAIL_BYTES + 5)
    )
    assert recorded_output(exit) == RecordedOutput(None, None, "t" * OUTPUT_TAIL_BYTES, None)
    w = World(Script(SECOND, 2, stderr="boom"))
    w.add(spec("job"))
    w.run_until(T0 + MINUTE + SECOND)
    [failed] = w.of(ev.RunFailed)
    assert (failed.stdout_tail, failed.stdout_dropped, failed.stderr_dropped) == (None, None, None)
    assert failed.stderr_tail == "boom"


def test_the_bound_is_in_bytes_and_never_splits_a_character() -> None:
    def exit(text: str) -> RunExit:
        return RunExit(
            run_id="r", kind=ExitKind.EXITED, finished_at=T0, exit_code=0, stdout_tail=text
        )

    wide = recorded_output(exit("é" * 3000))  # 6,000 bytes
    assert (wide.stdout_tail, wide.stdout_dropped) == ("é" * 2048, 6000 - 4096)
    split = recorded_output(exit("é" * 2048 + "x"))  # 4,097 bytes: the cut falls inside an é
    assert (split.stdout_tail, split.stdout_dropped) == ("é" * 2047 + "x", 2)
    assert len(split.stdout_tail.encode()) <= OUTPUT_TAIL_BYTES


# texts around the bound: 1- to 4-byte characters repeated up to ~12 KiB, between short texts
_LONG = st.builds(
    lambda head, unit, count, tail: head + unit * count + tail,
    st.text(max_size=8),
    st.sampled_from(["x", "é", "€", "😀"]),
    st.integers(min_value=0, max_value=3100),
    st.text(max_size=8),
)


@given(st.one_of(st.text(), _LONG), st.integers(min_value=0, max_value=1 << 40))
def test_a_recorded_tail_is_the_longest_end_within_the_bound_and_counts_the_rest(
    text: str, dropped: int
) -> None:
    exit = RunExit(
        run_id="r", kind=ExitKind.EXITED, finished_at=T0, exit_code=0,
        stdout_tail=text, stdout_dropped=dropped, stderr_tail=text, stderr_dropped=dropped,
    )  # fmt: skip
    out = recorded_output(exit)
    assert out.stdout_tail is not None and text.endswith(out.stdout_tail)
    size = len(out.stdout_tail.encode("utf-8", "surrogatepass"))
    whole = len(text.encode("utf-8", "surrogatepass"))
    assert size <= OUTPUT_TAIL_BYTES
    assert out.stdout_dropped == dropped + whole - size  # every byte is kept or counted
    cut = len(text) - len(out.stdout_tail)
    if cut:  # the longest such end: one more character would not fit
        assert size + len(text[cut - 1].encode("utf-8", "surrogatepass")) > OUTPUT_TAIL_BYTES
    assert (out.stderr_tail, out.stderr_dropped) == (out.stdout_tail, out.stdout_dropped)


@pytest.mark.parametrize("limit", [0, 10, OUTPUT_TAIL_LIMIT])
def test_the_output_tail_bytes_option_bounds_what_outcome_facts_keep(limit: int) -> None:
    w = World(Script(SECOND, 1, stdout="o" * 70_000, stderr="e" * 20))
    w.do(cmd.ChangeOptions(Options(output_tail_bytes=limit)))
    w.add(spec("job"))
    w.run_until(T0 + MINUTE + SECOND)
    [failed] = w.of(ev.RunFailed)
    assert failed.stdout_tail == "o" * min(limit, 70_000)
    assert failed.stdout_dropped == 70_000 - min(limit, 70_000)
    assert failed.stderr_tail == "e" * min(limit, 20)
    assert failed.stderr_dropped == 20 - min(limit, 20)
    assert verify(enumerate(w.log, 1)).ok


@pytest.mark.parametrize("bad", [-1, OUTPUT_TAIL_LIMIT + 1, True])
def test_an_output_tail_bytes_out_of_range_is_refused_naming_the_option(bad: int) -> None:
    w = World()
    with pytest.raises(InvalidInput) as caught:
        w.do(cmd.ChangeOptions(Options(output_tail_bytes=bad)))
    assert caught.value.field == "output_tail_bytes" and "65536" in caught.value.fix


@given(
    st.one_of(st.text(), _LONG),
    st.one_of(st.none(), st.text(), _LONG),
    st.integers(min_value=0, max_value=OUTPUT_TAIL_LIMIT),
)
def test_bounding_the_exits_a_header_records_changes_nothing_the_facts_keep(
    err: str, out: str | None, limit: int
) -> None:
    exit = RunExit(
        run_id="r", kind=ExitKind.EXITED, finished_at=T0, exit_code=0,
        stdout_tail=out, stdout_dropped=3, stderr_tail=err, stderr_dropped=5,
    )  # fmt: skip
    [bounded] = bound_exits([exit], limit)
    assert recorded_output(bounded, limit) == recorded_output(exit, limit)
    kept = recorded_output(exit, limit)
    assert (bounded.stdout_tail, bounded.stderr_tail) == (kept.stdout_tail, kept.stderr_tail)
    if out is not None:  # counted as the facts count them
        assert (bounded.stdout_dropped, bounded.stderr_dropped) == (
            kept.stdout_dropped,
            kept.stderr_dropped,
        )
    if kept.stdout_tail == out and kept.stderr_tail == err:
        assert bounded is exit  # nothing cut: no copy
