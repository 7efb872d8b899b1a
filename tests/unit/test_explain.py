"""explain: the decision, its inputs and its rule, from the ledger alone (SEMANTICS §3-§8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cronledger.adapters.fake_runner import FakeRunner, Script
from cronledger.domain import commands as cmd
from cronledger.domain import events as ev
from cronledger.domain import explain as ex
from cronledger.domain.explain import Explanation, explain
from cronledger.domain.hours import Window
from cronledger.domain.tick import TickPlan, plan_tick
from cronledger.domain.triggers import At
from cronledger.domain.values import Call, ConcurrencyPolicy, MisfirePolicy, Options, Retry
from cronledger.errors import InvalidInput
from cronledger.projectors.snapshot import apply
from tests.harness import MINUTE, SECOND, T0, World, cron, spec

P = ConcurrencyPolicy
HOUR = 60 * MINUTE
FIRST = "job@20260101T000100Z"  # the entry of the first fire of a minutely job
SECOND_FIRE = "job@20260101T000200Z"


def _explain(w: World, subject: str, at: int | None = None) -> Explanation:
    return explain(enumerate(w.log, start=1), subject, at)


def _inputs(x: Explanation) -> dict[str, str]:
    return dict(x.inputs)


def _text(x: Explanation) -> str:
    return " ".join(x.sentences)


def _position(w: World, fact: ev.Event) -> int:
    return next(i for i, e in enumerate(w.log, start=1) if e is fact)


def _submit(w: World, name: str, priority: int = 0, **kw: Any) -> str:
    [queued] = w.do(cmd.SubmitTask(target=Call(name), priority=priority, **kw))
    assert isinstance(queued, ev.EntryQueued)
    return queued.entry_id


def _overlapping(policy: P, run_for: int = 150 * SECOND) -> World:
    """A minutely job whose runs take longer than a minute."""
    w = World(Script(run_for))
    w.add(spec("job", concurrency=policy))
    return w


# --- §3: on time, grace, misfires ------------------------------------------------------------


def test_an_on_time_fire_states_its_lateness_against_the_grace() -> None:
    w = World()
    w.add(spec("backup"))
    w.run_until(T0 + MINUTE + 4 * SECOND, step=MINUTE + 4 * SECOND)
    x = _explain(w, "backup")
    [fired] = w.of(ev.FireRecorded)
    assert (x.kind, x.decision, x.position) == ("schedule", "fired", _position(w, fired))
    assert x.rule.startswith("§3:") and "misfire_grace" in x.rule
    assert x.at == T0 + MINUTE + 4 * SECOND
    assert (
        "backup fired at 2026-01-01T00:01:04Z for 00:01:00Z, 4 s late (grace 1 min): on time."
        in x.sentences
    )
    inputs = _inputs(x)
    assert inputs["lateness"].startswith("4 s") and "grace 1 min: on time" in inputs["lateness"]
    assert inputs["trigger"] == "every 1m"
    assert inputs["nominal"] == "2026-01-01T00:01:00Z"
    assert inputs["next fire after"] == "2026-01-01T00:02:00Z"


def test_skip_records_the_late_fires_missed_and_runs_the_on_time_one() -> None:
    w = World()
    w.add(spec("job", misfire_grace_ms=10 * SECOND))
    w.run_until(T0 + 5 * MINUTE + 5 * SECOND, step=5 * MINUTE + 5 * SECOND)
    x = _explain(w, "job")
    assert x.decision == "fired"
    assert x.rule.startswith("§3 SKIP") and "on-time fire runs" in x.rule
    assert _inputs(x)["missed"] == "4 (2026-01-01T00:01:00Z to 2026-01-01T00:04:00Z)"
    assert "job missed 4 fire times, 2026-01-01T00:01:00Z to 2026-01-01T00:04:00Z" in _text(x)
    assert "more than the grace of 10 s, and the misfire policy is SKIP" in _text(x)
    assert "for 00:05:00Z, 5 s late (grace 10 s): on time." in _text(x)


def test_skip_with_no_fire_on_time_is_missed_with_lateness_and_grace() -> None:
    w = World()
    w.add(spec("job", misfire_grace_ms=10 * SECOND))
    w.run_until(T0 + 5 * MINUTE + 30 * SECOND, step=5 * MINUTE + 30 * SECOND)
    x = _explain(w, "job")
    [missed] = w.of(ev.FireMissed)
    assert (x.decision, x.position) == ("missed", _position(w, missed))
    assert x.rule.startswith("§3 SKIP")
    assert _inputs(x)["lateness of the last missed"] == "30 s"
    assert "the latest of them was 30 s late, more than the grace of 10 s" in _text(x)
    assert "Its next fire is 2026-01-01T00:06:00Z." in x.sentences


def test_several_fires_on_time_at_once_are_represented_by_one_run() -> None:
    w = World()
    w.add(spec("job", misfire_grace_ms=3 * MINUTE))
    w.run_until(T0 + 2 * MINUTE, step=2 * MINUTE)
    x = _explain(w, "job")
    assert x.decision == "fired" and "one run" in x.rule
    assert _inputs(x)["represents"] == "2 fire times"


def test_catch_up_runs_one_late_run_for_all_the_missed_windows() -> None:
    w = World()
    w.add(spec("job", misfire=MisfirePolicy.CATCH_UP, misfire_grace_ms=10 * SECOND))
    w.run_until(T0 + 5 * MINUTE + 30 * SECOND, step=5 * MINUTE + 30 * SECOND)
    x = _explain(w, "job")
    assert x.decision == "late"
    assert x.rule.startswith("§3 CATCH_UP")
    assert _inputs(x)["represents"] == "5 fire times"
    assert "30 s late (grace 10 s): later than the grace" in _text(x)
    assert "CATCH_UP, so one run stands for 5 fire times (§3)" in _text(x)


def test_catch_up_window_skips_the_fires_older_than_it() -> None:
    w = World()
    w.add(
        spec(
            "job",
            misfire=MisfirePolicy.CATCH_UP,
            misfire_grace_ms=10 * SECOND,
            catch_up_window_ms=2 * MINUTE,
        )
    )
    w.run_until(T0 + 5 * MINUTE + 30 * SECOND, step=5 * MINUTE + 30 * SECOND)
    x = _explain(w, "job")
    assert x.decision == "late"
    assert "catch_up_window" in x.rule
    assert _inputs(x)["misfire policy"] == "CATCH_UP (catch_up_window 2 min)"
    assert "older than the catch-up window of 2 min (before 2026-01-01T00:03:30Z)" in _text(x)
    assert _inputs(x)["represents"] == "2 fire times"


# --- §3: active and quiet hours --------------------------------------------------------------


def test_active_hours_defer_a_fire_then_skip_misses_it_when_the_window_opens() -> None:
    w = World()
    w.add(spec("backup", trigger=cron("0 7 * * *"), active_hours=Window("08:00", "20:00")))
    w.run_until(T0 + 8 * HOUR + 5 * SECOND, step=MINUTE)
    before = _explain(w, "backup", at=T0 + 7 * HOUR + 30 * MINUTE)
    [deferred] = w.of(ev.FireDeferred)
    assert (before.decision, before.position) == ("deferred", _position(w, deferred))
    assert before.rule.startswith("§3 active/quiet hours")
    assert _inputs(before)["gate opens at"] == "2026-01-01T08:00:00Z"
    assert "07:00 UTC is outside its active hours 08:00-20:00 UTC" in _text(before)
    assert "the fire will be 1 h late (grace 1 min), so the SKIP policy" in _text(before)

    after = _explain(w, "backup")
    assert after.decision == "missed"
    assert "the fire time 2026-01-01T07:00:00Z" in _text(after)
    assert "had deferred it since 2026-01-01T07:00:00Z" in _text(after)
    assert _inputs(after)["deferred since"] == "2026-01-01T07:00:00Z"


def test_quiet_hours_defer_a_fire_and_catch_up_runs_it_late_when_they_end() -> None:
    w = World()
    w.add(
        spec(
            "backup",
            trigger=cron("0 7 * * *"),
            misfire=MisfirePolicy.CATCH_UP,
            quiet_hours=Window("22:00", "08:00"),
        )
    )
    w.run_until(T0 + 8 * HOUR + 5 * SECOND, step=MINUTE)
    assert "inside its quiet hours 22:00-08:00 UTC" in _text(
        _explain(w, "backup", at=T0 + 7 * HOUR)
    )
    x = _explain(w, "backup")
    assert x.decision == "late"
    assert "§3 active/quiet hours" in x.rule and "§3 CATCH_UP" in x.rule
    assert "for 07:00:00Z, 1 h late (grace 1 min): later than the grace" in _text(x)
    run = _explain(w, "backup@20260101T070000Z#1")
    assert "had deferred it since 2026-01-01T07:00:00Z" in _text(run)
    assert _inputs(run)["start delay"] == "1 h"


# --- §4: concurrency ------------------------------------------------------------------------


def test_forbid_skip_names_the_run_that_was_still_active() -> None:
    w = _overlapping(P.FORBID)
    w.run_until(T0 + 2 * MINUTE)
    x = _explain(w, "job")
    [skipped] = w.of(ev.FireSkipped)
    assert (x.decision, x.position) == ("skipped", _position(w, skipped))
    assert x.rule == "§4 FORBID: a fire while the previous run is active is skipped"
    assert (
        "job's fire for 00:02:00Z was skipped at 2026-01-01T00:02:00Z: "
        f"run {FIRST}#1 was still running and the policy is FORBID (§4)." in x.sentences
    )
    assert _inputs(x)["active runs"].startswith(f"{FIRST}#1 (running since")


def test_forbid_also_skips_while_an_entry_is_still_waiting_for_a_slot() -> None:
    w = World(Script(10 * MINUTE))
    w.do(cmd.ChangeOptions(Options(max_workers=1)))
    blocker = _submit(w, "long")
    w.add(spec("job"))
    w.run_until(T0 + 2 * MINUTE)
    x = _explain(w, "job")
    assert x.decision == "skipped" and "still waiting" in x.rule
    assert f"entry {FIRST} was already waiting to be dispatched" in _text(x)
    entry = _explain(w, FIRST)
    assert (entry.kind, entry.decision) == ("entry", "deferred")
    assert entry.rule.startswith("§6 capacity")
    assert "no slot was free (max_workers 1 - active 1 = 0" in _text(entry)
    assert blocker.startswith("task-")


def test_replace_cancels_the_named_run_and_queues_the_new_fire() -> None:
    w = _overlapping(P.REPLACE)
    w.run_until(T0 + 2 * MINUTE + 2 * SECOND)
    x = _explain(w, "job")
    assert x.decision == "replaced" and x.rule.startswith("§4 REPLACE")
    assert _inputs(x)["cancelled"] == f"{FIRST}#1"
    assert f"Run {FIRST}#1 was still running and the policy is REPLACE" in _text(x)
    old = _explain(w, f"{FIRST}#1")
    assert (old.decision, old.rule.startswith("§4 REPLACE")) == ("cancelled", True)
    assert f"the fire for 00:02:00Z (entry {SECOND_FIRE}) replaced it" in _text(old)
    assert "never retried" in _text(old)


def test_replace_coalesces_into_an_entry_still_waiting_to_start() -> None:
    w = World(Script(10 * MINUTE))
    w.do(cmd.ChangeOptions(Options(max_workers=1)))
    _submit(w, "long")
    w.add(spec("job", concurrency=P.REPLACE))
    w.run_until(T0 + 2 * MINUTE)
    x = _explain(w, "job")
    assert x.decision == "coalesced" and "REPLACE" in x.rule
    assert _inputs(x)["coalesced into"] == FIRST


def test_queue_one_holds_behind_the_active_run_then_coalesces_then_releases() -> None:
    w = _overlapping(P.QUEUE_ONE)
    w.run_until(T0 + 2 * MINUTE)
    held = _explain(w, "job")
    assert held.decision == "held" and held.rule.startswith("§4 QUEUE_ONE")
    assert _inputs(held)["hold"] == "awaiting_previous_run"
    assert f"Run {FIRST}#1 was still running, and the policy is QUEUE_ONE" in _text(held)
    assert _explain(w, SECOND_FIRE).decision == "held"

    w.run_until(T0 + 3 * MINUTE)
    coalesced = _explain(w, "job")
    assert coalesced.decision == "coalesced"
    assert coalesced.rule.startswith("§4 QUEUE_ONE") and "coalesced" in coalesced.rule
    assert f"coalesced into entry {SECOND_FIRE}" in _text(coalesced)
    assert f"while run {FIRST}#1 was still running" in _text(coalesced)

    w.do(cmd.TriggerSchedule("job"))
    w.tick()
    manual = _explain(w, "job")
    assert (manual.decision, manual.rule) == ("skipped", ex.R_QUEUE_FULL)
    assert "manual trigger job!" in _text(manual) and "queue_full" in _text(manual)

    w.run_until(T0 + 4 * MINUTE)
    first = _explain(w, f"{FIRST}#1")
    assert first.decision == "succeeded"
    assert f"Its end released held entry {SECOND_FIRE} (§4 QUEUE_ONE)." in first.sentences
    second = _explain(w, f"{SECOND_FIRE}#1")
    assert "released at 2026-01-01T00:03:30Z because the previous run finished" in _text(second)
    assert "1 later fire of job was coalesced into it (00:03:00Z)" in _text(second)
    assert _inputs(second)["start delay"] == "1 min 30 s"


def test_allow_queues_next_to_the_active_run() -> None:
    w = _overlapping(P.ALLOW)
    w.run_until(T0 + 2 * MINUTE)
    x = _explain(w, "job")
    assert (x.decision, x.rule) == ("fired", ex.R_ALLOW)
    assert f"Run {FIRST}#1 was still running, but the policy is ALLOW" in _text(x)


def test_a_manual_trigger_ignores_the_gate_and_its_entry_is_explained() -> None:
    w = World()
    w.add(spec("job", active_hours=Window("08:00", "09:00")))
    w.do(cmd.TriggerSchedule("job"))
    [request] = w.of(ev.TriggerRequested)
    waiting = _explain(w, "job")
    assert waiting.decision == "not_due"
    assert f"Manual trigger {request.request_id} requested at" in _text(waiting)
    w.run_until(T0 + 2 * SECOND)
    x = _explain(w, "job")
    assert (x.decision, x.rule) == ("fired", ex.R_MANUAL)
    entry = _explain(w, request.request_id)
    assert entry.kind == "entry"
    assert _inputs(entry)["origin"].startswith("manual trigger of job")


def test_a_manual_trigger_that_made_no_entry_is_explained_by_its_request_id() -> None:
    w = _overlapping(P.FORBID)
    w.do(cmd.TriggerSchedule("job"))
    [request] = w.of(ev.TriggerRequested)
    waiting = _explain(w, request.request_id)  # `cronledger trigger` prints this id
    assert (waiting.kind, waiting.decision, waiting.rule) == (
        "manual trigger",
        "waiting",
        ex.R_REQUESTED,
    )
    assert waiting.position == _position(w, request)
    assert "is waiting for the next tick" in _text(waiting)

    w.run_until(T0 + MINUTE)  # the request's run is still running at the first fire time
    w.do(cmd.TriggerSchedule("job"))
    [_, second] = w.of(ev.TriggerRequested)
    w.tick()
    skipped = _explain(w, second.request_id)
    assert (skipped.kind, skipped.decision) == ("manual trigger", "skipped")
    assert skipped.rule == ex.R_FORBID
    assert _inputs(skipped)["manual trigger"] == second.request_id
    assert skipped.timeline[0][1].endswith(f"manual trigger {second.request_id} requested for job")
    ran = _explain(w, request.request_id)  # the first one did fire: its entry is explained
    assert ran.kind == "entry"


def test_a_run_whose_end_was_recorded_late_says_when_it_ended_and_when_it_was_recorded() -> None:
    """A run adopted after a restart: the process ended long before the daemon recorded it."""
    w = World(Script(2 * SECOND))
    task = _submit(w, "work")
    w.tick()  # dispatched and started at T0
    w.clock.advance(10 * MINUTE)  # no daemon watched: the next tick is ten minutes later
    w.tick()
    x = _explain(w, f"{task}#1")
    assert (
        "It succeeded at 2026-01-01T00:00:02Z (recorded at 2026-01-01T00:10:00Z) with exit "
        "code 0 after 2 s" in _text(x)
    )
    on_time = World(Script(2 * SECOND))
    task = _submit(on_time, "work")
    on_time.run_until(T0 + 5 * SECOND)
    assert "recorded at" not in _text(_explain(on_time, f"{task}#1"))


def test_a_manual_trigger_dropped_with_its_schedule_says_so() -> None:
    w = World()
    w.add(spec("job"))
    w.do(cmd.TriggerSchedule("job"))
    [request] = w.of(ev.TriggerRequested)
    w.do(cmd.RemoveSchedule("job"))
    x = _explain(w, request.request_id)
    assert (x.decision, x.rule) == ("dropped", ex.R_REMOVED)
    assert "was removed at" in _text(x) and "it was dropped" in _text(x)


# --- §5, §6: dispatch order and capacity ----------------------------------------------------


def test_dispatch_order_is_priority_then_fifo_and_names_the_entries_ahead() -> None:
    w = World(Script(10 * SECOND))
    w.do(cmd.ChangeOptions(Options(max_workers=2)))
    low1, high, low2 = _submit(w, "a", 0), _submit(w, "b", 5), _submit(w, "c", 0)
    w.tick()
    x = _explain(w, low2)
    assert (x.decision, x.rule) == ("deferred", ex.R_ORDER)
    assert f"the 2 entries ahead of it ({high} (priority 5), {low1} (priority 0))" in _text(x)
    assert "it was 3rd of 3 ready entries and the limit was 2" in _text(x)
    w.clock.advance(10 * SECOND)
    w.tick()
    run = _explain(w, f"{low2}#1")
    assert run.decision == "running"
    assert "ready but not dispatched in 1 recorded tick" in _text(run)
    assert "10 s after it was queued at 2026-01-01T00:00:00Z" in _text(run)


def test_capacity_arithmetic_shows_workers_active_and_slot_headroom() -> None:
    w = World(Script(90 * SECOND))
    w.do(cmd.ChangeOptions(Options(max_workers=3, slot_headroom=1)))
    _submit(w, "a")
    _submit(w, "b")
    w.add(spec("job"))
    w.run_until(T0 + MINUTE)
    waiting = _explain(w, FIRST)
    assert (waiting.decision, waiting.rule) == ("deferred", ex.R_CAPACITY)
    assert "max_workers 3 - active 2 - slot_headroom 1 = 0" in _text(waiting)
    w.run_until(T0 + 2 * MINUTE)
    run = _explain(w, f"{FIRST}#1")
    assert _inputs(run)["capacity when it waited"].endswith(
        "max_workers 3 - active 2 - slot_headroom 1 = 0 -> limit 0"
    )
    assert _inputs(run)["capacity"] == "max_workers 3 - active 0 - slot_headroom 1 = 2 -> limit 2"
    assert _inputs(run)["start delay"] == "31 s"


class FallbackWorld(World):
    """Every run reports that it started on the fallback runner."""

    def tick(self) -> TickPlan:
        now = self.now
        plan = plan_tick(self.snapshot, now, self.runner.poll(now))
        self.log.extend(plan.events)
        self.snapshot = plan.snapshot
        for started in self.runner.carry_out(plan.commands, now):
            fact = ev.RunStarted(at=now, run_id=started.run_id, pid=42, fallback=True)
            self.log.append(fact)
            self.snapshot = apply(self.snapshot, fact)
        return plan


def test_capacity_arithmetic_counts_fallback_headroom_while_a_fallback_run_is_active() -> None:
    w = FallbackWorld(Script(10 * MINUTE))
    w.do(cmd.ChangeOptions(Options(max_workers=3, fallback_headroom=1)))
    _submit(w, "a")
    w.add(spec("job"))
    w.run_until(T0 + MINUTE)
    run = _explain(w, f"{FIRST}#1")
    assert _inputs(run)["capacity"] == (
        "max_workers 3 - active 1 - fallback_headroom 1 = 1 -> limit 1"
    )
    assert "It started at 2026-01-01T00:01:00Z (pid 42) on the fallback runner." in run.sentences


def test_max_per_tick_caps_the_limit() -> None:
    w = World(Script(10 * SECOND))
    w.do(cmd.ChangeOptions(Options(max_workers=10, max_per_tick=1)))
    first, second = _submit(w, "a"), _submit(w, "b")
    w.tick()
    x = _explain(w, second)
    assert x.decision == "deferred"
    assert "max_workers 10 - active 0 = 10, capped by max_per_tick 1" in _text(x)
    assert f"({first} (priority 0))" in _text(x)


def test_draining_defers_every_dispatch() -> None:
    w = World()
    w.do(cmd.ChangeOptions(Options(draining=True)))
    w.add(spec("job"))
    w.run_until(T0 + MINUTE)
    x = _explain(w, FIRST)
    assert (x.decision, x.rule) == ("deferred", ex.R_DRAINING)
    assert "the engine was draining" in _text(x)


# --- §8: outcomes, retries, timeouts --------------------------------------------------------


def test_a_failed_run_with_retries_left_plans_the_next_attempt_with_backoff() -> None:
    w = World(Script(2 * SECOND, exit_code=3, stderr="boom\nbad thing happened\n"))
    task = _submit(w, "a", max_attempts=3, backoff_ms=5 * SECOND)
    w.run_until(T0 + 5 * SECOND)
    waiting = _explain(w, task)
    [retry] = w.of(ev.RetryPlanned)
    assert (waiting.decision, waiting.rule) == ("retried", ex.R_RETRY)
    assert waiting.position == _position(w, retry)
    assert "Attempt 2 becomes due at 2026-01-01T00:00:08Z" in _text(waiting)

    w.run_until(T0 + MINUTE)
    second = _explain(w, f"{task}#2")
    assert (second.decision, second.rule) == ("failed", ex.R_RETRY)
    assert _inputs(second)["attempt"] == "2 of 3"
    assert "with exit code 3 after 2 s" in _text(second)
    assert 'stderr ends "bad thing happened"' in _text(second)
    assert "(backoff 10 s after attempt 2, §8 Retry)" in _text(second)
    assert f"Attempt 1 (run {task}#1) failed" in _text(second)
    final = _explain(w, task)
    assert (final.decision, final.rule) == ("failed", ex.R_FAILED)
    assert "no retry left (max_attempts 3), so the task is blocked" in _text(final)


def test_a_timeout_cancels_the_run_and_counts_as_a_failure() -> None:
    w = World(Script(10 * MINUTE))
    w.add(spec("job", timeout_ms=30 * SECOND))
    w.run_until(T0 + 100 * SECOND)
    x = _explain(w, f"{FIRST}#1")
    assert (x.decision, x.rule) == ("failed", ex.R_TIMEOUT)
    assert "because it passed its deadline 2026-01-01T00:01:30Z" in _text(x)
    assert "It timed out at 2026-01-01T00:01:30Z with signal 15" in _text(x)  # its end
    assert _inputs(x)["deadline"] == "2026-01-01T00:01:30Z"
    cancelling = _explain(w, f"{FIRST}#1", at=T0 + 90 * SECOND)
    assert (cancelling.decision, cancelling.rule) == ("cancelling", ex.R_TIMEOUT)


def test_a_lost_run_is_explained_with_its_retry() -> None:
    w = World(Script(10 * MINUTE))
    w.add(spec("job", retry=Retry(max_attempts=2, backoff_ms=SECOND)))
    w.run_until(T0 + MINUTE)
    w.runner = FakeRunner(Script(SECOND))  # a restart: the new runner does not know the run
    w.runner.adopt(list(w.snapshot.runs.values()), w.now)
    w.clock.advance(SECOND)
    w.tick()
    x = _explain(w, f"{FIRST}#1")
    assert (x.decision, x.rule) == ("lost", ex.R_LOST)
    assert "attempt 1 of 2, so a retry follows" in _text(x)


def test_an_operator_cancel_is_explained() -> None:
    w = World(Script(10 * MINUTE))
    w.add(spec("job"))
    w.run_until(T0 + MINUTE)
    w.do(cmd.CancelEntry(FIRST))
    assert _explain(w, f"{FIRST}#1").decision == "cancelling"
    # No tick turns an operator's RunCancelled into a CancelRun yet: signal the run by hand.
    w.runner.carry_out([cmd.CancelRun(run_id=f"{FIRST}#1", reason="operator")], w.now)
    w.run_until(T0 + MINUTE + 2 * SECOND)
    x = _explain(w, f"{FIRST}#1")
    assert (x.decision, x.rule) == ("cancelled", ex.R_OPERATOR)
    assert "It was cancelled at 2026-01-01T00:01:00Z (operator)" in _text(x)


def test_an_operator_s_reason_for_cancelling_a_running_entry_is_kept() -> None:
    w = World(Script(10 * MINUTE))
    w.add(spec("job"))
    w.run_until(T0 + MINUTE)
    w.do(cmd.CancelEntry(FIRST, "user said so"))
    w.runner.carry_out([cmd.CancelRun(run_id=f"{FIRST}#1", reason="operator")], w.now)
    w.run_until(T0 + MINUTE + 2 * SECOND)
    x = _explain(w, f"{FIRST}#1")
    assert (x.decision, x.rule) == ("cancelled", ex.R_OPERATOR)
    assert "(operator: user said so)" in _text(x)


def test_a_waiting_entry_of_a_removed_schedule_is_cancelled() -> None:
    w = World()
    w.do(cmd.ChangeOptions(Options(draining=True)))
    w.add(spec("job"))
    w.run_until(T0 + MINUTE)
    w.do(cmd.RemoveSchedule("job"))
    x = _explain(w, FIRST)
    assert (x.decision, x.rule) == ("cancelled", ex.R_REMOVED_ENTRY)


# --- schedules with no decision, `at`, errors, output ---------------------------------------


def test_a_schedule_with_no_decision_says_when_it_is_next_due() -> None:
    w = World()
    w.add(spec("job"))
    x = _explain(w, "job")
    assert (x.decision, x.position, x.rule) == ("not_due", None, ex.R_NOT_DUE)
    assert "its next fire is 2026-01-01T00:01:00Z (every 1m)" in _text(x)


def test_paused_removed_and_complete_schedules() -> None:
    w = World()
    w.add(spec("job"))
    w.add(spec("once", trigger=At(T0 + 30 * SECOND)))
    w.add(spec("twice", fire_limit=2))
    w.run_until(T0 + 3 * MINUTE)
    w.do(cmd.PauseSchedule("job", reason="maintenance"))
    paused = _explain(w, "job")
    assert (paused.decision, paused.rule) == ("paused", ex.R_PAUSED)
    assert "(maintenance)" in _text(paused) and "Its last decision" in _text(paused)
    w.do(cmd.RemoveSchedule("job"))
    assert _explain(w, "job").decision == "removed"
    once = _explain(w, "once")
    assert once.decision == "fired"
    assert "once is complete (its one-shot trigger fires once" in _text(once)
    assert "it reached its fire limit of 2" in _text(_explain(w, "twice"))


def test_at_selects_the_decision_in_force_at_that_instant() -> None:
    w = _overlapping(P.FORBID)
    w.run_until(T0 + 3 * MINUTE)
    assert _explain(w, "job").decision == "skipped"
    earlier = _explain(w, "job", at=T0 + 90 * SECOND)
    [first, *_] = w.of(ev.FireRecorded)
    assert (earlier.decision, earlier.position) == ("fired", _position(w, first))
    assert _inputs(earlier)["explained at"] == "2026-01-01T00:01:30Z"
    assert _explain(w, "job", at=T0 + 30 * SECOND).decision == "not_due"


def test_an_unknown_subject_is_invalid_input_naming_the_fix() -> None:
    w = World()
    w.add(spec("job"))
    with pytest.raises(InvalidInput) as caught:
        _explain(w, "nope")
    assert caught.value.field == "subject"
    assert caught.value.problem == (
        "'nope' is not a run, entry, schedule or manual trigger in this ledger"
    )
    assert "cronledger list" in caught.value.fix


def test_a_subject_that_only_exists_after_at_says_so() -> None:
    w = World()
    w.add(spec("job"))
    w.run_until(T0 + MINUTE)
    with pytest.raises(InvalidInput) as caught:
        _explain(w, f"{FIRST}#1", at=T0 + 30 * SECOND)
    assert caught.value.field == "at"
    assert "first appears at 2026-01-01T00:01:00Z" in caught.value.problem
    w.do(cmd.TriggerSchedule("job"))  # a manual trigger explained before it was asked for
    [request] = w.of(ev.TriggerRequested)
    with pytest.raises(InvalidInput) as caught:
        _explain(w, request.request_id, at=T0 + 30 * SECOND)
    assert caught.value.field == "at" and "does not exist yet" in caught.value.problem


def test_the_timeline_lists_every_fact_of_the_run_in_order() -> None:
    w = _overlapping(P.REPLACE)
    w.run_until(T0 + 3 * MINUTE)
    x = _explain(w, f"{FIRST}#1")
    positions = [p for p, _ in x.timeline]
    assert positions == sorted(positions)
    facts = [w.log[p - 1] for p in positions]
    assert [type(f).__name__ for f in facts] == [
        "FireRecorded",
        "RunAssigned",
        "RunStarted",
        "RunCancelled",
        "RunFailed",
    ]
    assert x.timeline[0][1].startswith("2026-01-01T00:01:00Z fire for")


def test_explain_stops_reading_the_ledger_once_the_run_is_done() -> None:
    w = World(Script(5 * SECOND))
    w.add(spec("job"))
    w.run_until(T0 + 5 * MINUTE)
    [done, *_] = w.of(ev.RunSucceeded)
    stop = _position(w, done) + 3

    def guarded() -> Iterator[tuple[int, ev.Event]]:
        for position, event in enumerate(w.log, start=1):
            assert position <= stop, "read past the run's end"
            yield position, event

    assert explain(guarded(), f"{FIRST}#1").decision == "succeeded"


def test_to_json_has_stable_keys_and_serialises() -> None:
    w = _overlapping(P.FORBID)
    w.run_until(T0 + 2 * MINUTE)
    data = _explain(w, "job").to_json()
    assert list(data) == [
        "subject",
        "kind",
        "decision",
        "rule",
        "position",
        "at",
        "at_ms",
        "inputs",
        "inputs_ms",
        "sentences",
        "timeline",
    ]
    assert data["at"] == "2026-01-01T00:02:00.000Z"
    assert data["at_ms"] == T0 + 2 * MINUTE
    assert json.loads(json.dumps(data)) == data


def test_to_json_gives_scripts_the_number_of_each_instant_and_duration_input() -> None:
    w = World()
    w.add(spec("backup"))
    w.run_until(T0 + MINUTE + 4 * SECOND, step=MINUTE + 4 * SECOND)
    data = _explain(w, "backup").to_json()
    numbers = data["inputs_ms"]
    assert isinstance(numbers, dict)
    assert numbers["nominal"] == T0 + MINUTE
    assert numbers["next fire after"] == T0 + 2 * MINUTE
    assert numbers["decided at"] == T0 + MINUTE + 4 * SECOND
    assert numbers["grace"] == MINUTE
    assert "trigger" not in numbers and "lateness" not in numbers  # text, not one number
    inputs = data["inputs"]
    assert isinstance(inputs, dict)
    assert inputs["nominal"] == "2026-01-01T00:01:00Z"
    assert inputs["grace"] == "1 min (the engine's default)"
    assert json.loads(json.dumps(data)) == data


# --- properties -----------------------------------------------------------------------------


def _outcome_word(log: list[ev.Event], run_id: str) -> str:
    """The decision word a run's recorded facts call for."""
    word = "dispatched"
    for e in log:
        if getattr(e, "run_id", None) != run_id:
            continue
        if isinstance(e, ev.RunStarted):
            word = "running"
        elif isinstance(e, ev.RunCancelled):
            word = "cancelling"
        elif isinstance(e, ev.RunSucceeded):
            return "succeeded"
        elif isinstance(e, ev.RunLost):
            return "lost"
        elif isinstance(e, ev.RunFailed):
            return "cancelled" if e.reason == "cancelled" else "failed"
    return word


@settings(max_examples=40, deadline=None)
@given(
    policy=st.sampled_from(P),
    misfire=st.sampled_from(MisfirePolicy),
    durations=st.lists(st.integers(1, 200), min_size=1, max_size=8),
    codes=st.lists(st.integers(0, 2), min_size=1, max_size=8),
    manual_at=st.lists(st.integers(0, 400), max_size=3),
    max_workers=st.integers(1, 3),
    attempts=st.integers(1, 3),
    step=st.sampled_from([5, 45, 130]),
)
def test_every_run_entry_and_schedule_of_a_random_ledger_is_explained(
    policy: P,
    misfire: MisfirePolicy,
    durations: list[int],
    codes: list[int],
    manual_at: list[int],
    max_workers: int,
    attempts: int,
    step: int,
) -> None:
    runs = iter(list(zip(durations, codes, strict=False)) * 40)

    def script(_c: cmd.StartRun) -> Script:
        seconds, code = next(runs)
        return Script(seconds * SECOND, exit_code=code)

    w = World(script)
    w.do(cmd.ChangeOptions(Options(max_workers=max_workers)))
    w.add(
        spec(
            "job",
            concurrency=policy,
            misfire=misfire,
            misfire_grace_ms=30 * SECOND,
            retry=Retry(max_attempts=attempts, backoff_ms=10 * SECOND),
            timeout_ms=150 * SECOND,
        )
    )
    _submit(w, "task", priority=1, max_attempts=attempts)
    for second in range(0, 8 * 60, step):
        if second in manual_at:
            w.do(cmd.TriggerSchedule("job"))
        w.run_until(T0 + second * SECOND, step=step * SECOND)

    for fact in w.of(ev.RunAssigned):
        x = _explain(w, fact.run_id)
        assert x.kind == "run"
        assert x.decision == _outcome_word(w.log, fact.run_id), x.sentences
        assert x.rule.startswith("§")
        assert x.timeline and x.timeline[0][0] <= _position(w, fact)
        data = x.to_json()
        json.dumps(data)
        numbers = data["inputs_ms"]
        assert isinstance(numbers, dict) and set(numbers) <= set(dict(x.inputs))
        assert all(type(v) is int for v in numbers.values())
    created = [e.entry_id for e in w.log if isinstance(e, ev.FireRecorded | ev.EntryQueued)]
    for entry_id in created:
        x = _explain(w, entry_id)
        assert x.kind == "entry" and x.decision and x.rule
    schedule = _explain(w, "job")
    decided = [e for e in w.log if isinstance(e, ex.FireFact | ev.FireMissed)]
    if decided:
        assert schedule.position is not None
        assert schedule.position == _position(w, decided[-1])
    assert schedule.decision and schedule.sentences
