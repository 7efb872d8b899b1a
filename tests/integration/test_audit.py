"""Read-side operations (adapters/audit.py) on an SQLite ledger written by a real engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from cronledger import Call, InvalidInput, UnknownSchedule
from cronledger.adapters import audit
from cronledger.adapters.ledger import Ledger, open_ledger
from cronledger.adapters.process_runner import run_file_name
from cronledger.adapters.snapshots import encode_snapshot
from cronledger.domain.commands import StartRun
from cronledger.domain.health import health
from cronledger.projectors.snapshot import project
from cronledger.testing import Script, VirtualScheduler, scheduler

T0 = 1_767_225_600_000
MINUTE = 60_000


def _script(command: StartRun) -> Script:
    """`flaky` fails with a message on stderr; everything else succeeds after 2 s."""
    if command.schedule_id == "flaky":
        return Script(
            duration_ms=1000, exit_code=1, stderr="connection refused\n", stdout="retrying\n"
        )
    return Script(duration_ms=2000)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture
def written(url: str) -> Iterator[VirtualScheduler]:
    """Half an hour of three schedules on an SQLite ledger (the engine stays open)."""
    with scheduler(T0, _script, url=url) as s:
        s.add("every5", "*/5 * * * *", ["report", "{run_id}"])
        s.add("flaky", "every 10m", Call("sync"), retry=2)
        s.advance("15m")
        s.add("late", "@hourly", ["late"])
        s.advance("15m")
        yield s


@pytest.fixture
def ledger(url: str, written: VirtualScheduler) -> Iterator[Ledger]:
    with open_ledger(url) as handle:
        yield handle


def test_state_at_a_position_is_the_fold_of_that_prefix(ledger: Ledger) -> None:
    events = [e for _, e in ledger.read()]
    end = ledger.position()
    for position in (0, 1, end // 3, end // 2, end):
        snapshot, reached = audit.state_at(ledger, position=position)
        assert reached == position
        assert snapshot == project(events[:position])
    assert audit.state_at(ledger) == (project(events), end)


def test_state_at_an_instant_stops_at_the_first_later_fact(ledger: Ledger) -> None:
    pairs = list(ledger.read())
    for at in (T0 - 1, T0, T0 + 7 * MINUTE, T0 + 15 * MINUTE, T0 + 10**9):
        cut = next((p - 1 for p, e in pairs if e.at > at), len(pairs))
        snapshot, reached = audit.state_at(ledger, at=at)
        assert reached == cut
        assert snapshot == project(e for _, e in pairs[:cut])
        assert all(e.at <= at for _, e in pairs[:cut])
    then, _ = audit.state_at(ledger, at=T0 + 7 * MINUTE)
    assert set(then.schedules) == {"every5", "flaky"}
    assert then.counters.succeeded == 1  # every5 at 00:05; flaky failed at 00:00+10m later


def test_a_stored_snapshot_is_used_only_at_or_before_the_target(ledger: Ledger) -> None:
    events = [e for _, e in ledger.read()]
    middle = len(events) // 2
    real = project(events[:middle])
    # A marked snapshot proves which fold used it: the marker survives only if it was loaded.
    marked = attrs.evolve(real, counters=attrs.evolve(real.counters, manual_fires=99))
    ledger.save_snapshot(middle, encode_snapshot(marked))

    after, _ = audit.state_at(ledger, position=middle + 3)
    before, _ = audit.state_at(ledger, position=middle - 1)
    assert after.counters.manual_fires == 99
    assert before == project(events[: middle - 1])

    last_at = events[-1].at
    assert audit.state_at(ledger, at=last_at)[0].counters.manual_fires == 99
    early, _ = audit.state_at(ledger, at=events[middle - 2].at - 1)
    assert early.counters.manual_fires == 0


def test_state_at_reports_progress(ledger: Ledger) -> None:
    seen: list[tuple[int, int]] = []
    audit.state_at(ledger, position=ledger.position(), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (ledger.position(), ledger.position())
    seen.clear()
    _, reached = audit.state_at(ledger, at=T0 + MINUTE, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (reached, ledger.position())


@pytest.mark.parametrize(
    ("kwargs", "field", "fix"),
    [
        ({"position": 10**6}, "position", "between 0 and"),
        ({"position": -1}, "position", "use 0.."),
        ({"position": 3, "at": T0}, "at", "one of the two"),
    ],
)
def test_bad_state_at_arguments_name_the_keyword_and_the_fix(
    ledger: Ledger, kwargs: dict[str, Any], field: str, fix: str
) -> None:
    with pytest.raises(InvalidInput) as error:
        audit.state_at(ledger, **kwargs)
    assert error.value.field == field
    assert fix in error.value.fix


def test_run_history_filters_by_schedule_instant_and_limit(ledger: Ledger) -> None:
    every5 = audit.run_history(ledger, schedule_id="every5")
    assert [r.scheduled_for for r in every5] == [T0 + k * 5 * MINUTE for k in range(1, 7)]
    assert [r.outcome for r in every5] == ["succeeded"] * 5 + ["running"]
    assert audit.run_history(ledger, schedule_id="every5", limit=2) == every5[-2:]
    since = audit.run_history(ledger, schedule_id="every5", since=T0 + 20 * MINUTE)
    assert since == every5[3:]
    flaky = audit.run_history(ledger, schedule_id="flaky")
    assert [(r.attempt, r.outcome) for r in flaky][:2] == [(1, "failed"), (2, "failed")]
    assert flaky[0].stderr_tail == "connection refused\n"
    everything = audit.run_history(ledger, limit=None)
    assert len(everything) == len(every5) + len(flaky)
    assert [r.seq for r in everything] == sorted(r.seq for r in everything)  # newest last
    assert audit.run_history(ledger, schedule_id="late") == []


def test_run_history_of_a_schedule_that_never_existed_is_an_error(ledger: Ledger) -> None:
    with pytest.raises(UnknownSchedule):
        audit.run_history(ledger, schedule_id="nope")
    with pytest.raises(InvalidInput) as error:
        audit.run_history(ledger, limit=0)
    assert error.value.field == "limit", "the keyword (the CLI names its flag: cli.context.flags)"


def test_a_removed_schedule_keeps_its_history(written: VirtualScheduler, url: str) -> None:
    written.remove("every5")
    with open_ledger(url) as ledger:
        assert len(audit.run_history(ledger, schedule_id="every5")) == 6


def test_verify_ledger_is_ok_and_reports_progress(ledger: Ledger) -> None:
    seen: list[tuple[int, int]] = []
    report = audit.verify_ledger(ledger, progress=lambda d, t: seen.append((d, t)))
    assert report.ok and report.events == ledger.position() and report.ticks > 10
    assert seen[-1] == (ledger.position(), ledger.position())
    assert audit.verify_json(report) == {
        "ok": True,
        "events": report.events,
        "ticks": report.ticks,
        "divergence": None,
    }


def test_run_output_without_a_state_dir_is_what_the_outcome_recorded(ledger: Ledger) -> None:
    failed = audit.run_history(ledger, schedule_id="flaky")[0]
    output = audit.run_output(ledger, failed.run_id, None)
    assert output.recorded_stderr == "connection refused\n"
    assert (output.recorded_stdout, output.recorded_stdout_dropped) == ("retrying\n", 0)
    assert output.recorded_stderr_dropped == 0
    assert (output.files, output.stdout, output.stderr) == (False, None, None)
    shape = audit.output_json(output)
    assert (shape["recorded_stdout"], shape["recorded_stderr_dropped"]) == ("retrying\n", 0)
    assert shape["run"]["stdout_tail"] == "retrying\n"
    succeeded = audit.run_history(ledger, schedule_id="every5")[0]  # no output captured
    recorded = audit.run_output(ledger, succeeded.run_id, None)
    assert (recorded.recorded_stdout, recorded.recorded_stderr_dropped) == (None, None)


def test_run_output_reads_the_process_runner_files_while_they_exist(
    ledger: Ledger, tmp_path: Path
) -> None:
    run = audit.run_history(ledger, schedule_id="every5")[-1]  # still running
    state_dir = tmp_path / "state"
    assert audit.run_output(ledger, run.run_id, state_dir).files is False
    runs = state_dir / "runs"
    runs.mkdir(parents=True)
    base = runs / run_file_name(run.run_id)
    Path(f"{base}.st").write_text("4242 0\n")
    Path(f"{base}.out").write_text("x" * 100 + "report written\n")
    Path(f"{base}.err").write_text("warning: slow disk\n")

    output = audit.run_output(ledger, run.run_id, state_dir, tail_bytes=20)
    assert output.files
    assert (output.stdout, output.stdout_dropped) == ("xxxxxreport written\n", 95)
    assert (output.stderr, output.stderr_dropped) == ("warning: slow disk\n", 0)
    assert output.stdout_file == f"{base}.out"
    shape = audit.output_json(output)
    assert shape["run"]["run_id"] == run.run_id and shape["files"] is True


def test_run_output_of_an_unknown_run_says_where_to_look(ledger: Ledger) -> None:
    with pytest.raises(InvalidInput) as error:
        audit.run_output(ledger, "nope#1", None)
    assert error.value.field == "run_id"
    assert "cronledger history" in error.value.fix


def test_the_json_shapes_are_plain_and_pair_every_instant(ledger: Ledger) -> None:
    snapshot, _ = audit.state_at(ledger)
    shape = audit.snapshot_json(snapshot)
    text = json.dumps(shape)  # only JSON types
    assert json.loads(text) == shape
    every5 = next(s for s in shape["schedules"] if s["id"] == "every5")
    assert every5["next_fire_at"] == "2026-01-01T00:35:00.000Z"
    assert every5["next_fire_at_ms"] == T0 + 35 * MINUTE
    assert every5["spec"]["trigger"] == {
        "kind": "cron",
        "expr": "*/5 * * * *",
        "timezone": "UTC",
        "text": "cron '*/5 * * * *' (UTC)",
    }
    assert every5["spec"]["target"]["kind"] == "command"
    assert every5["spec"]["concurrency"] == "forbid"
    assert [r["run_id"] for r in shape["runs"]] == sorted(snapshot.runs)
    run = audit.run_json(audit.run_history(ledger, schedule_id="every5")[0])
    assert run["finished_at_ms"] - run["assigned_at_ms"] == run["duration_ms"] == 2000
    assert run["scheduled_for"] == "2026-01-01T00:05:00.000Z"
    h = audit.health_json(health(snapshot, T0 + 30 * MINUTE))
    assert h["position"] == ledger.position()
    for entry in shape["queue"]:
        assert entry["status"] in ("pending", "assigned", "held")
    assert audit.instant_json("x", None) == {"x": None, "x_ms": None}


def test_explain_subject_delegates_to_the_domain(ledger: Ledger) -> None:
    pytest.importorskip("cronledger.domain.explain")
    now = audit.explain_subject(ledger, "every5")
    assert (now.subject, now.kind, now.decision) == ("every5", "schedule", "fired")
    then = audit.explain_subject(ledger, "every5", at=T0 + 5 * MINUTE)
    assert then.at is not None and then.at <= T0 + 5 * MINUTE


def test_daemons_says_which_daemon_holds_its_claim(tmp_path: Path) -> None:
    """`status` lists the unnamed daemon and each node with active runs, running or not, and
    each named daemon running."""
    from cronledger.adapters.clock import FakeClock
    from cronledger.adapters.engine import Engine
    from cronledger.adapters.fake_runner import FakeRunner
    from cronledger.adapters.fake_runner import Script as Lasting
    from cronledger.domain.commands import SubmitTask

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    gone = Engine(open_ledger(url), FakeClock(T0), FakeRunner(Lasting(60_000)), node="n1")
    gone.execute(SubmitTask(target=Call("work")))
    gone.tick()  # a run of n1 (the tick claimed n1: an engine that starts runs is a daemon)
    ledger = open_ledger(url)
    assert audit.daemons(ledger, gone.snapshot) == [(None, False), ("n1", True)]
    gone.close()  # its process ended: n1's run is left with no daemon
    engine = Engine(ledger, FakeClock(T0), FakeRunner(Lasting(60_000)), node="n1")
    try:
        files = set(tmp_path.iterdir())
        assert audit.daemons(ledger, engine.snapshot) == [(None, False), ("n1", False)]
        assert set(tmp_path.iterdir()) == files, "the probe created no lock file"
        engine.claim()  # as a running daemon does
        assert audit.daemons(ledger, engine.snapshot) == [(None, False), ("n1", True)]
        assert ledger.claim("n1") is None, "still held: the probe took and let go of nothing"
        other = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")  # (closed by its engine)
        idle = Engine(other, FakeClock(T0), FakeRunner(Lasting(60_000)), node="n0")
        try:
            idle.claim()  # a named daemon with no active runs is listed too, while it runs
            listed = [(None, False), ("n0", True), ("n1", True)]
            assert audit.daemons(ledger, engine.snapshot) == listed
        finally:
            idle.close()
        assert audit.daemons(ledger, engine.snapshot) == [(None, False), ("n1", True)]
    finally:
        engine.close()


def test_a_schedule_complete_by_its_fire_limit_shows_no_next_fire() -> None:
    """`list`, `show` and the JSON show no next fire once `fire_limit` is reached (an explorer
    saw `complete` beside a next fire time); the state keeps the trigger's place."""
    s = scheduler()
    s.add("lim", "every 1s", ["true"], fire_limit=1)
    s.add("open", "every 1s", ["true"], fire_limit=3)
    s.run(until=T0 + 1_500)
    done, going = s.schedule("lim"), s.schedule("open")
    assert done.fire_count == 1 and done.complete and done.next_fire_at is not None
    assert done.upcoming_fire_at is None and done.upcoming_due_at is None
    shown = audit.schedule_json(done)
    assert shown["complete"] is True and shown["next_fire_at"] is None and shown["due_at"] is None
    assert not going.complete and going.upcoming_fire_at == going.next_fire_at is not None
    assert audit.schedule_json(going)["next_fire_at"] is not None
    s.close()
