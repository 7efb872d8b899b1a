"""Validation at the edge: one exception hierarchy, messages that name the field and the fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cronledger.domain import commands as cmd
from cronledger.domain.durations import parse_duration
from cronledger.domain.instants import parse_instant, to_ms
from cronledger.domain.triggers import At, Cron, Every
from cronledger.domain.values import Call, Command, Options, Retry
from cronledger.errors import (
    CronledgerError,
    DuplicateSchedule,
    InvalidInput,
    UnknownEntry,
    UnknownSchedule,
)
from tests.harness import MINUTE, T0, World, spec


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"trigger": Cron("61 * * * *")}, "trigger.expr", "minute"),
        ({"trigger": Cron("0 25 * * *")}, "trigger.expr", "hour"),
        ({"trigger": Cron("0 0 * * * *")}, "trigger.expr", "5"),
        ({"trigger": Cron("")}, "trigger.expr", "empty"),
        ({"trigger": Cron("0 9 * * *", "Mars/Olympus")}, "trigger.timezone", "Mars/Olympus"),
        ({"trigger": Every(0, T0)}, "trigger.interval", ""),
        ({"trigger": Every(500, T0)}, "trigger.interval", ""),
        ({"trigger": At(T0 - 1)}, "trigger.at", "past"),
        ({"target": Command(())}, "target.argv", "empty"),
        ({"target": Command(("a\0b",))}, "target.argv", "NUL"),
        ({"target": Command(("x",), env="A=1")}, "target.env", "not a mapping"),
        ({"target": Command(("x",), env=[("A", "1", "2")])}, "target.env", "pair"),
        ({"target": Command(("x",), env={"A=B": "1"})}, "target.env", "variable name"),
        ({"target": Command(("x",), env={"": "1"})}, "target.env", "variable name"),
        ({"target": Command(("x",), env={"A": None})}, "target.env", "value of A"),
        ({"target": Command(("x",), env={"A": "\0"})}, "target.env", "value of A"),
        ({"target": Command(("x",), fallback=())}, "target.fallback", "not a command"),
        ({"target": Command(("x",), fallback=("",))}, "target.fallback", "program first"),
        ({"target": Command(("x",), fallback=(1,))}, "target.fallback", "strings"),
        ({"target": Command(("x",), cwd="")}, "target.cwd", "directory"),
        ({"priority": -1}, "priority", "negative"),
        ({"misfire_grace_ms": -5}, "misfire_grace", "negative"),
        ({"fire_limit": 0}, "fire_limit", ""),
        ({"principal": "alice"}, "principal", "user:NAME"),
    ],
)
def test_a_bad_spec_is_rejected_naming_the_field(
    kwargs: dict[str, object], field: str, words: str
) -> None:
    w = World()
    with pytest.raises(InvalidInput) as caught:
        w.add(spec("job", **kwargs))  # type: ignore[arg-type]
    assert caught.value.field == field
    assert words in str(caught.value)
    assert isinstance(caught.value, CronledgerError)
    assert w.log == [], "nothing is recorded for bad input"


def test_command_env_may_be_none_a_mapping_or_pairs_all_stored_as_pairs() -> None:
    pairs = (("AB", "1"), ("LANG", "C"))
    assert Command(("x",), env=None).env == ()
    assert Command(("x",), env={"LANG": "C", "AB": "1"}).env == pairs  # sorted; not ("A", "B")
    assert Command(("x",), env=[["AB", "1"], ["LANG", "C"]]).env == pairs
    assert Command(("x",), env={"LANG": "C", "AB": "1"}) == Command(("x",), env=pairs)
    assert Command(("x",), fallback=["y", "z"]).fallback == ("y", "z")
    w = World()
    w.add(spec("job", target=Command(("x",), env={"LANG": "C"})))
    assert w.snapshot.schedules["job"].spec.target == Command(("x",), env=(("LANG", "C"),))


def test_a_bad_schedule_id_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="id"):
        World().add(spec("has space"))


def test_a_duplicate_id_is_rejected() -> None:
    w = World()
    w.add(spec("job"))
    with pytest.raises(DuplicateSchedule, match="already exists"):
        w.add(spec("job"))


@pytest.mark.parametrize(
    "command",
    [
        cmd.PauseSchedule("nope"),
        cmd.ResumeSchedule("nope"),
        cmd.RemoveSchedule("nope"),
        cmd.TriggerSchedule("nope"),
        cmd.UpdateSchedule(spec("nope")),
    ],
)
def test_an_unknown_schedule_id_is_rejected(command: cmd.UserCommand) -> None:
    with pytest.raises(UnknownSchedule, match="unknown schedule 'nope'"):
        World().do(command)


def test_unknown_entries_and_negative_headroom_are_rejected() -> None:
    w = World()
    with pytest.raises(UnknownEntry):
        w.do(cmd.ReleaseEntry("task-9"))
    with pytest.raises(InvalidInput, match="slot_headroom"):
        w.do(cmd.ChangeOptions(Options(slot_headroom=-1)))
    with pytest.raises(InvalidInput, match="max_workers"):
        w.do(cmd.ChangeOptions(Options(max_workers=0)))


def test_a_naive_datetime_is_an_error_not_a_guess() -> None:
    with pytest.raises(InvalidInput, match="naive"):
        to_ms(datetime(2026, 1, 1, 9, 0))
    with pytest.raises(InvalidInput, match="naive"):
        parse_instant("2026-01-01T09:00:00")
    assert parse_instant("2026-01-01T00:00:00Z") == T0


@pytest.mark.parametrize(
    ("text", "ms"),
    [("250ms", 250), ("90s", 90_000), ("1h30m", 5_400_000), ("2d", 172_800_000), ("15", 15_000)],
)
def test_durations_parse(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "5x", "m5", "1.5h", "-3s"])
def test_bad_durations_say_what_a_duration_looks_like(text: str) -> None:
    with pytest.raises(InvalidInput, match="90s"):
        parse_duration(text)


def test_commands_that_change_nothing_record_nothing() -> None:
    w = World()
    w.add(spec("job"))
    before = len(w.log)
    assert w.do(cmd.ResumeSchedule("job")) == ()
    assert w.do(cmd.UpdateSchedule(spec("job"))) == ()
    assert w.do(cmd.ChangeOptions(Options())) == ()
    w.do(cmd.PauseSchedule("job"))
    assert w.do(cmd.PauseSchedule("job")) == ()
    assert len(w.log) == before + 1


def test_active_and_quiet_hours_that_never_open_are_refused_at_the_edge() -> None:
    """Such a gate would raise inside every tick and wedge the daemon."""
    from cronledger.domain.hours import Window
    from cronledger.domain.validation import validate_spec
    from cronledger.errors import InvalidInput
    from tests.harness import T0, spec

    night = Window("22:00", "06:00")
    bad = spec(active_hours=night, quiet_hours=night)
    with pytest.raises(InvalidInput) as caught:
        validate_spec(bad, now_ms=T0)
    assert caught.value.field == "quiet_hours"
    validate_spec(spec(active_hours=night, quiet_hours=Window("23:00", "01:00")), now_ms=T0)


def _noop() -> None:
    return None


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"target": Command("echo hi")}, "target.argv", "one string"),
        ({"target": Command(("x",), fallback="echo hi")}, "target.fallback", "one string"),
        ({"target": Call(_noop)}, "target.name", "Call('_noop')"),
        ({"retry": Retry(max_attempts="3")}, "retry.max_attempts", "whole number"),
        ({"retry": Retry(max_attempts=True)}, "retry.max_attempts", "whole number"),
        ({"retry": Retry(2, backoff_ms=-1)}, "retry.backoff", "negative"),
        ({"priority": 2**60}, "priority", "too large"),
        ({"jitter_ms": 10**15}, "jitter", "100 years"),
        ({"timeout_ms": "90s"}, "timeout", "whole number"),
        ({"trigger": Every(10**15, T0)}, "trigger.interval", "100 years"),
    ],
)
def test_wrong_types_and_sizes_are_named_not_crashed_on(
    kwargs: dict[str, object], field: str, words: str
) -> None:
    w = World()
    with pytest.raises(InvalidInput) as caught:
        w.add(spec("job", **kwargs))
    assert caught.value.field == field
    assert words in str(caught.value)
    assert w.log == []


def test_triggers_and_retry_take_timedeltas_datetimes_and_text() -> None:
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    assert Every(timedelta(minutes=1), anchor) == Every(MINUTE, T0)
    assert Every("1m", "2026-01-01T00:00:00Z") == Every(MINUTE, T0)
    assert At(anchor + timedelta(days=1)) == At("2026-01-02T00:00:00Z") == At(T0 + 86_400_000)
    assert Retry(3, backoff_ms=timedelta(seconds=5), max_backoff_ms="1m") == Retry(3, 5000, MINUTE)
    with pytest.raises(InvalidInput, match=r"trigger\.at"):
        At("tomorrow")
    with pytest.raises(InvalidInput, match="naive"):
        Every(MINUTE, datetime(2026, 1, 1))


def test_every_without_an_anchor_is_anchored_at_registration_and_kept_by_updates() -> None:
    w = World()
    w.clock.advance(12_345)
    w.add(spec("job", trigger=Every(MINUTE)))
    stored = w.snapshot.schedules["job"]
    assert stored.spec.trigger == Every(MINUTE, T0 + 12_345)
    assert stored.next_fire_at == T0 + 12_345 + MINUTE
    w.clock.advance(5_000)
    w.do(cmd.UpdateSchedule(spec("job", trigger=Every(MINUTE), priority=3)))
    assert w.snapshot.schedules["job"].spec.trigger == Every(MINUTE, T0 + 12_345)  # same phase
    w.do(cmd.UpdateSchedule(spec("job", trigger=Every(2 * MINUTE))))
    assert w.snapshot.schedules["job"].spec.trigger == Every(2 * MINUTE, T0 + 17_345)


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (cmd.SubmitTask(target=Call("noop"), backoff_ms=-1), "backoff"),
        (cmd.SubmitTask(target=Call("noop"), backoff_ms=10, max_backoff_ms=5), "max_backoff"),
        (cmd.SubmitTask(target=Call("noop"), hold=5), "hold"),  # type: ignore[arg-type]
        (cmd.SubmitTask(target=Call("noop"), principal="nobody"), "principal"),
        (cmd.SubmitTask(target=Call("noop"), max_attempts=0), "max_attempts"),
        (cmd.SubmitTask(target=Command("true")), "target.argv"),
    ],
)
def test_submit_checks_what_add_checks(command: cmd.SubmitTask, field: str) -> None:
    w = World()
    with pytest.raises(InvalidInput) as caught:
        w.do(command)
    assert caught.value.field == field
    assert w.log == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (Options(max_workers=True), "max_workers"),
        (Options(max_workers="8"), "max_workers"),  # type: ignore[arg-type]
        (Options(draining="no"), "draining"),  # type: ignore[arg-type]
        (Options(misfire_grace_ms=10**15), "misfire_grace_ms"),
    ],
)
def test_options_of_the_wrong_type_are_refused(options: Options, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        World().do(cmd.ChangeOptions(options))
    assert caught.value.field == field


@pytest.mark.parametrize("text", ["²", "\u0661\u0662s", "99999999999999999999d", "36501d"])
def test_durations_are_ascii_and_at_most_100_years(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)
    assert parse_duration("36500d") == 36_500 * 86_400_000


def test_thousands_of_digits_and_instants_no_date_can_show_are_refused_not_crashed_on() -> None:
    with pytest.raises(InvalidInput, match="duration"):
        parse_duration("9" * 5000 + "s")
    with pytest.raises(InvalidInput, match="duration"):
        parse_duration("9" * 5000)
    for trigger, field in (
        (At(10**17), "trigger.at"),
        (Every(MINUTE, -(10**17)), "trigger.anchor"),
    ):
        w = World()
        with pytest.raises(InvalidInput) as caught:
            w.add(spec("job", trigger=trigger))
        assert caught.value.field == field and "9999" in str(caught.value)


def test_a_jitter_that_would_push_a_fire_past_year_9999_is_refused() -> None:
    w = World()
    with pytest.raises(InvalidInput) as caught:
        w.add(spec("job", trigger=At("9999-12-31T23:59:59Z"), jitter_ms=3_600_000))
    assert caught.value.field == "jitter"


def test_a_change_must_leave_a_slot_free_but_old_options_never_block_other_changes() -> None:
    """slot_headroom >= max_workers dispatches nothing: refused when either changes, naming
    the one that changed; options an older version recorded that way do not block a change of
    something else, such as the drain a SIGTERM records (found by a review)."""
    from cronledger.domain import events as ev

    w = World()
    with pytest.raises(InvalidInput) as headroom:
        w.do(cmd.ChangeOptions(Options(max_workers=2, slot_headroom=2)))
    assert headroom.value.field == "slot_headroom"
    stale = Options(max_workers=4, slot_headroom=4)  # as an older version could record
    w.record([ev.OptionsChanged(at=T0, options=stale, changed=("max_workers", "slot_headroom"))])
    [drain] = w.do(cmd.ChangeOptions(Options(max_workers=4, slot_headroom=4, draining=True)))
    assert isinstance(drain, ev.OptionsChanged) and drain.changed == ("draining",)
    with pytest.raises(InvalidInput) as workers:
        w.do(cmd.ChangeOptions(Options(max_workers=3, slot_headroom=4, draining=True)))
    assert workers.value.field == "max_workers" and "slot_headroom (4)" in workers.value.fix
    w.do(cmd.ChangeOptions(Options(max_workers=5, slot_headroom=4)))  # a slot free again
