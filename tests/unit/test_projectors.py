"""Projectors are folds: replaying the facts gives the state the live engine holds."""

from __future__ import annotations

from cronledger.adapters.fake_runner import Script
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain.state import EMPTY
from cronledger.domain.values import Call, ConcurrencyPolicy, Retry
from cronledger.projectors import history, tasks
from cronledger.projectors.snapshot import apply, project
from cronledger.projectors.tasks import TaskStatus
from tests.harness import MINUTE, SECOND, T0, World, spec


def _busy_world() -> World:
    outcomes = iter([0, 1, 0, 2, 0, 0, 1, 0] * 50)
    w = World(lambda _c: Script(20 * SECOND, next(outcomes)))
    w.add(spec("a", retry=Retry(2, SECOND)))
    w.add(spec("b", concurrency=ConcurrencyPolicy.QUEUE_ONE))
    w.do(cmd.SubmitTask(target=Call("once"), priority=3))
    w.run_until(T0 + 10 * MINUTE, step=7 * SECOND)
    return w


def test_project_from_empty_equals_the_live_snapshot() -> None:
    w = _busy_world()
    assert project(w.log) == w.snapshot
    assert w.snapshot.position == len(w.log)


def test_the_fold_is_not_trivially_equal_a_dropped_event_shows() -> None:
    w = _busy_world()
    fired = next(i for i, e in enumerate(w.log) if isinstance(e, ev.FireRecorded))
    assert project(w.log[:fired] + w.log[fired + 1 :]) != w.snapshot


def test_an_event_a_projector_does_not_handle_only_moves_the_position() -> None:
    header = ev.TickStarted(at=T0, tick=1, exits=(), requests=(), decisions=0)
    after = apply(EMPTY, header)
    assert after.position == 1 and after.schedules == EMPTY.schedules


def test_task_status_and_history_follow_each_run() -> None:
    w = _busy_world()
    statuses = tasks.project(w.log)
    runs = history.project(w.log)
    succeeded = {e.entry_id for e in w.of(ev.RunSucceeded)}
    blocked = {e.entry_id for e in w.of(ev.RunFailed) if e.final}
    assert succeeded and blocked
    assert all(statuses[e] is TaskStatus.DONE for e in succeeded)
    assert all(statuses[e] is TaskStatus.BLOCKED for e in blocked - succeeded)
    records = runs.for_schedule("a")
    assert [r.seq for r in records] == sorted(r.seq for r in records)
    assert {r.outcome for r in records} <= {"succeeded", "failed", "running"}
    assert len(runs.runs) == len(w.of(ev.RunAssigned))


def test_history_ends_a_run_when_its_process_ended_not_when_the_end_was_recorded() -> None:
    """A run adopted after a restart ended during the outage: its duration says when."""
    assigned = ev.RunAssigned(
        at=T0, run_id="t#1", entry_id="t", attempt=1, argv=("true",), call=None, deadline=None,
        node="n1",
    )  # fmt: skip
    started = ev.RunStarted(at=T0 + SECOND, run_id="t#1", pid=7, fallback=False)
    recorded = T0 + 10 * MINUTE  # the daemon came back ten minutes later
    ended = ev.RunSucceeded(
        at=recorded, run_id="t#1", entry_id="t", exit_code=0, duration_ms=2 * SECOND,
        stderr_tail="",
    )  # fmt: skip
    lost = ev.RunLost(at=recorded, run_id="u#1", entry_id="u", detail="gone", final=True)
    lost_assigned = ev.RunAssigned(
        at=T0, run_id="u#1", entry_id="u", attempt=1, argv=("true",), call=None, deadline=None
    )
    runs = history.project([assigned, started, ended, lost_assigned, lost]).runs
    assert (runs["t#1"].finished_at, runs["t#1"].recorded_at) == (T0 + 3 * SECOND, recorded)
    assert (runs["u#1"].finished_at, runs["u#1"].recorded_at) == (recorded, recorded)
    assert (runs["t#1"].node, runs["u#1"].node) == ("n1", None)  # the daemon that ran it
