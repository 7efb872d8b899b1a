"""The apply planner: changes and commands that make the ledger match a file, idempotently."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cronledger.adapters.schedules_file import SchedulesFile, parse_schedules
from cronledger.domain import commands as cmd
from cronledger.domain.apply_plan import MANAGED_PRINCIPAL, ApplyPlan, plan_apply, spec_diff
from cronledger.domain.handlers import handle
from cronledger.domain.jitter import due_at
from cronledger.domain.state import EMPTY, Snapshot
from cronledger.domain.triggers import At, Every, next_fire_after
from cronledger.domain.values import Options
from cronledger.errors import InvalidInput
from cronledger.projectors.snapshot import apply_all
from tests.harness import MINUTE, SECOND, T0, World, spec

HOUR = 60 * MINUTE
DAY = 24 * HOUR


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml(tables: dict[str, dict[str, Any]], options: dict[str, Any] | None = None) -> str:
    lines = []
    if options is not None:
        lines.append("[options]")
        lines += [f"{k} = {toml_value(v)}" for k, v in options.items()]
    for name, table in tables.items():
        lines.append(f"[schedules.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def load(tables: dict[str, dict[str, Any]], now: int = T0, **kw: Any) -> SchedulesFile:
    return parse_schedules(toml(tables, kw.get("options")), now_ms=now)


def execute(snapshot: Snapshot, plan: ApplyPlan, now: int) -> Snapshot:
    for command in plan.commands:
        snapshot = apply_all(snapshot, handle(snapshot, command, now))
    return snapshot


def applied(tables: dict[str, dict[str, Any]], now: int = T0, snapshot: Snapshot = EMPTY) -> Any:
    file = load(tables, now)
    return execute(snapshot, file.plan(snapshot, now), now)


BACKUP: dict[str, Any] = {"cron": "0 3 * * *", "command": ["pg_dump"]}
TICK: dict[str, Any] = {"every": "2s", "call": "tick"}


# --- adds, idempotence ----------------------------------------------------------------------


def test_adding_to_an_empty_ledger_lists_the_upcoming_fires() -> None:
    plan = load({"backup": BACKUP, "tick": TICK}).plan(EMPTY, T0 + 500)
    assert [(c.action, c.schedule_id) for c in plan.changes] == [
        ("add", "backup"),
        ("add", "tick"),
    ]
    backup, tick = plan.changes
    assert backup.before == ()
    assert backup.after == tuple(T0 + 3 * HOUR + d * DAY for d in range(5))
    # An unanchored every is anchored at the plan's clock reading.
    assert tick.after == tuple(T0 + 500 + k * 2 * SECOND for k in range(1, 6))
    assert [type(c) for c in plan.commands] == [cmd.AddSchedule, cmd.AddSchedule]
    added = plan.commands[1]
    assert isinstance(added, cmd.AddSchedule)
    assert added.spec.trigger == Every(2 * SECOND, T0 + 500)


def test_applying_twice_changes_nothing_the_second_time() -> None:
    tables = {"backup": BACKUP, "tick": {**TICK, "paused": True}}
    snapshot = applied(tables)
    again = load(tables, T0 + HOUR).plan(snapshot, T0 + HOUR)
    assert again.empty
    assert [c.action for c in again.changes] == ["unchanged", "unchanged"]
    assert snapshot.schedules["tick"].paused


def test_fires_counts_and_jitter_and_fire_limit_shape_the_lists() -> None:
    file = load({"j": {**TICK, "every": "1m", "jitter": "20s", "fire_limit": 3}})
    (change,) = file.plan(EMPTY, T0, fires=10).changes
    nominals = [T0 + k * MINUTE for k in (1, 2, 3)]
    assert change.after == tuple(due_at("j", n, 20 * SECOND) for n in nominals)
    assert any(a != n for a, n in zip(change.after, nominals, strict=True))
    assert load({"b": BACKUP}).plan(EMPTY, T0, fires=2).changes[0].after == (
        T0 + 3 * HOUR,
        T0 + 3 * HOUR + DAY,
    )


# --- updates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"cron": "0 4 * * *"}, ("trigger.expr",)),
        ({"timezone": "Europe/Berlin"}, ("trigger.timezone",)),
        ({"cron": None, "every": "1h"}, ("trigger",)),
        ({"command": ["pg_dump", "-v"]}, ("target.argv",)),
        ({"env": {"A": "1"}}, ("target.env",)),
        ({"cwd": "/srv"}, ("target.cwd",)),
        ({"fallback": ["true"]}, ("target.fallback",)),
        ({"command": None, "call": "x"}, ("target",)),
        ({"concurrency": "allow"}, ("concurrency",)),
        ({"misfire": "catch-up"}, ("misfire",)),
        ({"misfire": "catch-up", "catch_up_window": "1h"}, ("misfire", "catch_up_window_ms")),
        ({"misfire_grace": "5m"}, ("misfire_grace_ms",)),
        ({"priority": 3}, ("priority",)),
        ({"retries": 2}, ("retry.max_attempts",)),
        (
            {"retries": 2, "backoff": "2h"},
            ("retry.max_attempts", "retry.backoff_ms", "retry.max_backoff_ms"),
        ),
        ({"timeout": "1h"}, ("timeout_ms",)),
        ({"active_hours": "01:00-05:00"}, ("active_hours",)),
        ({"quiet_hours": "12:00-13:00"}, ("quiet_hours",)),
        ({"jitter": "1m"}, ("jitter_ms",)),
        ({"fire_limit": 4}, ("fire_limit",)),
    ],
)
def test_each_changed_key_is_an_update_naming_the_spec_field(
    changes: dict[str, Any], fields: tuple[str, ...]
) -> None:
    snapshot = applied({"backup": BACKUP})
    table = {k: v for k, v in {**BACKUP, **changes}.items() if v is not None}
    plan = load({"backup": table}, T0 + MINUTE).plan(snapshot, T0 + MINUTE)
    (change,) = plan.changes
    assert (change.action, change.fields) == ("update", fields)
    assert [type(c) for c in plan.commands] == [cmd.UpdateSchedule]
    after = execute(snapshot, plan, T0 + MINUTE)
    assert load({"backup": table}, T0 + HOUR).plan(after, T0 + HOUR).empty


def test_nested_window_fields_are_named_one_by_one() -> None:
    old = spec(active_hours=None)
    new = attrs.evolve(old, priority=2)
    assert spec_diff(old, new) == ("priority",)
    assert spec_diff(old, old) == ()
    snapshot = applied({"b": {**BACKUP, "active_hours": "01:00-05:00"}})
    plan = load({"b": {**BACKUP, "active_hours": "01:00-06:00@Europe/Berlin"}}).plan(snapshot, T0)
    assert plan.changes[0].fields == ("active_hours.end", "active_hours.timezone")


def test_an_update_lists_which_future_fires_change() -> None:
    snapshot = applied({"backup": BACKUP})
    now = T0 + 10 * MINUTE
    plan = load({"backup": {**BACKUP, "cron": "30 4 * * *"}}, now).plan(snapshot, now, fires=3)
    (change,) = plan.changes
    assert change.before == (T0 + 3 * HOUR, T0 + 3 * HOUR + DAY, T0 + 3 * HOUR + 2 * DAY)
    first = T0 + 4 * HOUR + 30 * MINUTE
    assert change.after == (first, first + DAY, first + 2 * DAY)


def test_an_update_that_keeps_the_trigger_keeps_the_pending_fire() -> None:
    snapshot = applied({"tick": {**TICK, "every": "1h"}})
    now = T0 + 10 * MINUTE
    plan = load({"tick": {**TICK, "every": "1h", "priority": 5}}, now).plan(snapshot, now)
    (change,) = plan.changes
    assert change.fields == ("priority",)
    assert change.before == change.after
    assert change.after[0] == T0 + HOUR
    assert execute(snapshot, plan, now).schedules["tick"].next_fire_at == T0 + HOUR


# --- unanchored every -----------------------------------------------------------------------


def test_an_unanchored_every_keeps_its_anchor_until_its_interval_changes() -> None:
    snapshot = applied({"tick": TICK}, T0 + 123)
    assert snapshot.schedules["tick"].spec.trigger == Every(2 * SECOND, T0 + 123)
    later = T0 + DAY
    assert load({"tick": TICK}, later).plan(snapshot, later).empty
    plan = load({"tick": {**TICK, "every": "3s"}}, later).plan(snapshot, later)
    (update,) = plan.commands
    assert isinstance(update, cmd.UpdateSchedule)
    assert update.spec.trigger == Every(3 * SECOND, later)
    assert plan.changes[0].fields == ("trigger.interval_ms", "trigger.anchor_ms")


def test_an_explicit_anchor_is_compared_like_any_field() -> None:
    anchored = {**TICK, "anchor": "2026-01-01T00:00:00.500Z"}
    snapshot = applied({"tick": anchored})
    assert load({"tick": anchored}, T0 + DAY).plan(snapshot, T0 + DAY).empty
    # Dropping the anchor later keeps the stored one: unanchored means "as registered".
    assert load({"tick": TICK}, T0 + DAY).plan(snapshot, T0 + DAY).empty
    moved = {**TICK, "anchor": "2026-01-01T00:00:01Z"}
    plan = load({"tick": moved}).plan(snapshot, T0 + DAY)
    assert plan.changes[0].fields == ("trigger.anchor_ms",)


# --- removal --------------------------------------------------------------------------------


def test_only_schedules_managed_by_files_are_removed() -> None:
    world = World()
    world.add(spec("alice-job", principal="user:alice"))
    world.add(spec("maintenance", principal="system:daemon"))
    world.add(spec("old-file-job"))
    world.do(cmd.SubmitTask(target=spec().target))
    assert world.snapshot.schedules["old-file-job"].spec.principal == MANAGED_PRINCIPAL
    file = load({"backup": BACKUP})
    plan = file.plan(world.snapshot, world.now)
    assert [(c.action, c.schedule_id) for c in plan.changes] == [
        ("remove", "old-file-job"),
        ("add", "backup"),
    ]
    remove = plan.changes[0]
    assert remove.before == tuple(T0 + k * MINUTE for k in range(1, 6))
    assert remove.after == ()
    for command in plan.commands:
        world.do(command)
    assert set(world.snapshot.schedules) == {"alice-job", "maintenance", "backup"}
    assert len(world.snapshot.entries) == 1  # the submitted task is untouched
    assert file.plan(world.snapshot, world.now).empty
    kept = load({}).plan(applied({"x": BACKUP}), T0, prune=False)
    assert kept.empty and kept.changes == ()


def test_a_file_schedule_cannot_take_over_another_principals_schedule() -> None:
    world = World()
    world.add(spec("backup", principal="user:alice"))
    with pytest.raises(InvalidInput) as info:
        load({"backup": BACKUP}).plan(world.snapshot, world.now)
    assert info.value.field == "schedules.backup"
    assert "user:alice" in info.value.problem


# --- pause and resume -----------------------------------------------------------------------


def test_paused_in_the_file_pauses_and_resumes_and_absent_leaves_it() -> None:
    snapshot = applied({"backup": BACKUP})
    plan = load({"backup": {**BACKUP, "paused": True}}).plan(snapshot, T0)
    (change,) = plan.changes
    assert (change.action, change.fields, change.after) == ("pause", ("paused",), ())
    assert len(change.before) == 5
    assert plan.commands == (cmd.PauseSchedule("backup", "apply"),)
    paused = execute(snapshot, plan, T0)
    assert paused.schedules["backup"].paused
    # No `paused` key: an operator's pause stays.
    assert load({"backup": BACKUP}).plan(paused, T0).empty
    resume = load({"backup": {**BACKUP, "paused": False}}).plan(paused, T0 + 4 * HOUR)
    (change,) = resume.changes
    assert (change.action, change.before) == ("resume", ())
    assert change.after[0] == T0 + 3 * HOUR + DAY  # the next fire after the resume instant
    assert resume.commands == (cmd.ResumeSchedule("backup"),)


def test_an_update_that_pauses_pauses_first_and_one_that_resumes_resumes_last() -> None:
    snapshot = applied({"backup": BACKUP})
    pausing = load({"backup": {**BACKUP, "priority": 1, "paused": True}}).plan(snapshot, T0)
    assert pausing.changes[0].fields == ("priority", "paused")
    assert [type(c) for c in pausing.commands] == [cmd.PauseSchedule, cmd.UpdateSchedule]
    paused = execute(snapshot, pausing, T0)
    resuming = load({"backup": {**BACKUP, "paused": False}}).plan(paused, T0)
    assert resuming.changes[0].fields == ("priority", "paused")
    assert [type(c) for c in resuming.commands] == [cmd.UpdateSchedule, cmd.ResumeSchedule]
    assert (
        load({"backup": {**BACKUP, "paused": False}}).plan(execute(paused, resuming, T0), T0).empty
    )


def test_a_paused_add_is_added_then_paused() -> None:
    plan = load({"backup": {**BACKUP, "paused": True}}).plan(EMPTY, T0)
    assert [type(c) for c in plan.commands] == [cmd.AddSchedule, cmd.PauseSchedule]
    assert plan.changes[0].after == ()


# --- one-shots, options, order, json --------------------------------------------------------


def test_a_one_shot_in_the_past_cannot_be_added_or_changed_but_may_stay() -> None:
    once = {"at": "2026-01-01T01:00:00Z", "call": "x"}
    with pytest.raises(InvalidInput) as info:
        load({"once": once}).plan(EMPTY, T0 + 2 * HOUR)
    assert info.value.field == "schedules.once.at"
    world = World()
    for command in load({"once": once}).plan(world.snapshot, world.now).commands:
        world.do(command)
    world.run_until(T0 + 2 * HOUR, step=10 * MINUTE)
    assert world.snapshot.schedules["once"].complete
    plan = load({"once": once}, world.now).plan(world.snapshot, world.now)
    assert plan.empty and plan.changes[0].before == plan.changes[0].after == ()
    with pytest.raises(InvalidInput, match="can no longer be changed"):
        load({"once": {**once, "priority": 2}}, world.now).plan(world.snapshot, world.now)


def test_options_change_first_and_never_touch_draining() -> None:
    draining = apply_all(
        EMPTY,
        handle(EMPTY, cmd.ChangeOptions(Options(draining=True)), T0),
    )
    file = load({}, options={"max_workers": 3})
    plan = file.plan(draining, T0)
    assert plan.options_changed == ("max_workers",)
    assert plan.commands == (
        cmd.ChangeOptions(Options(max_workers=3, draining=True), keep_draining=True),
    )
    assert file.plan(execute(draining, plan, T0), T0).empty
    assert load({}, options={}).plan(EMPTY, T0).empty
    # planned before a daemon drained, appended after: the drain in force stays
    changed = execute(draining, file.plan(EMPTY, T0), T0).options
    assert (changed.max_workers, changed.draining) == (3, True)


def test_changes_and_commands_come_in_a_fixed_order() -> None:
    snapshot = applied({"gone": BACKUP, "upd": BACKUP, "pz": BACKUP, "same": BACKUP})
    file = load(
        {
            "new": TICK,
            "same": BACKUP,
            "pz": {**BACKUP, "paused": True},
            "upd": {**BACKUP, "priority": 1},
        },
        options={"max_workers": 2},
    )
    plan = file.plan(snapshot, T0)
    assert [(c.action, c.schedule_id) for c in plan.changes] == [
        ("remove", "gone"),
        ("update", "upd"),
        ("pause", "pz"),
        ("add", "new"),
        ("unchanged", "same"),
    ]
    assert [type(c).__name__ for c in plan.commands] == [
        "ChangeOptions",
        "RemoveSchedule",
        "UpdateSchedule",
        "PauseSchedule",
        "AddSchedule",
    ]
    doc = plan.to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["summary"] == {
        "remove": 1,
        "update": 1,
        "pause": 1,
        "resume": 0,
        "add": 1,
        "unchanged": 1,
    }
    changes = doc["changes"]
    assert isinstance(changes, list)
    assert changes[0]["before"][0] == "2026-01-01T03:00:00.000Z"
    assert file.plan(execute(snapshot, plan, T0), T0).empty


def test_duplicate_specs_are_refused() -> None:
    with pytest.raises(InvalidInput, match="more than once"):
        plan_apply(EMPTY, [spec("a"), spec("a")], T0)


# --- property: apply, run, apply another file, and the third plan is empty ------------------


NAMES = ("a", "b", "c", "d", "e")
TRIGGERS = st.one_of(
    st.fixed_dictionaries(
        {"cron": st.sampled_from(["*/5 * * * *", "0 3 * * *", "@hourly", "0 1 * * 1-5"])},
        optional={"timezone": st.sampled_from(["UTC", "Europe/Berlin", "Australia/Lord_Howe"])},
    ),
    st.fixed_dictionaries(
        {"every": st.sampled_from(["2s", "1m", "90s", "7m"])},
        optional={"anchor": st.sampled_from(["2026-01-01T00:00:00Z", "2025-12-31T23:59:30Z"])},
    ),
    st.fixed_dictionaries(
        {"at": st.sampled_from(["2026-02-01T00:00:00Z", "2026-03-01T12:00:00Z"])}
    ),
)
TARGETS = st.one_of(
    st.fixed_dictionaries(
        {"command": st.sampled_from([["true"], ["echo", "{scheduled_for}"]])},
        optional={"env": st.sampled_from([{"A": "1"}, {"B": "2", "A": "1"}])},
    ),
    st.fixed_dictionaries({"call": st.sampled_from(["x", "y"])}),
)
EXTRAS = st.fixed_dictionaries(
    {},
    optional={
        "concurrency": st.sampled_from(["forbid", "replace", "queue-one", "queue_one", "allow"]),
        "priority": st.integers(0, 3),
        "retries": st.integers(0, 2),
        "timeout": st.sampled_from(["30s", "1h"]),
        "jitter": st.sampled_from(["0s", "10s"]),
        "fire_limit": st.integers(1, 4),
        "active_hours": st.sampled_from(["08:00-20:00", "22:00-06:00@Europe/Berlin"]),
        "paused": st.booleans(),
    },
)
TABLE = st.builds(lambda t, g, e: {**t, **g, **e}, TRIGGERS, TARGETS, EXTRAS)
FILES = st.dictionaries(st.sampled_from(NAMES), TABLE, max_size=5)
OPTIONS = st.one_of(st.none(), st.fixed_dictionaries({"max_workers": st.integers(1, 4)}))


@st.composite
def edited(draw: st.DrawFn, first: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The next version of a file: tables kept, dropped, paused, resumed, edited or replaced."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in first.items():
        how = draw(st.sampled_from(["keep", "drop", "pause", "resume", "unpin", "edit", "new"]))
        if how == "keep":
            out[name] = table
        elif how in ("pause", "resume"):
            out[name] = {**table, "paused": how == "pause"}
        elif how == "unpin":
            out[name] = {k: v for k, v in table.items() if k != "paused"}
        elif how == "edit":
            out[name] = {**table, "priority": table.get("priority", 0) + 1}
        elif how == "new":
            out[name] = draw(TABLE)
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=2)):
        out.setdefault(name, draw(TABLE))
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    first=FILES,
    options=OPTIONS,
    gap=st.integers(0, 3 * HOUR),
    foreign=st.booleans(),
)
def test_applying_any_file_then_planning_again_is_empty(
    data: st.DataObject,
    first: dict[str, dict[str, Any]],
    options: dict[str, Any] | None,
    gap: int,
    foreign: bool,
) -> None:
    second = data.draw(st.one_of(FILES, edited(first)), label="second")
    world = World()
    if foreign:
        world.add(spec("f", principal="user:alice"))
    for command in load(first, world.now).plan(world.snapshot, world.now).commands:
        world.do(command)
    world.run_until(world.now + gap, step=10 * MINUTE)

    file = parse_schedules(toml(second, options), now_ms=world.now)
    before = world.snapshot
    plan = file.plan(before, world.now)
    for command in plan.commands:
        world.do(command)
    after = world.snapshot
    assert file.plan(after, world.now).empty
    assert file.plan(after, world.now + DAY).empty  # an unanchored every stays unchanged

    managed = {i for i, s in after.schedules.items() if s.spec.principal == MANAGED_PRINCIPAL}
    assert managed == set(second)
    assert ("f" in after.schedules) == foreign
    for wanted in file.schedules:
        got = after.schedules[wanted.id]
        if wanted.id in file.unanchored:
            assert isinstance(got.spec.trigger, Every)
            assert isinstance(wanted.trigger, Every)
            assert got.spec.trigger.interval_ms == wanted.trigger.interval_ms
            wanted = attrs.evolve(wanted, trigger=got.spec.trigger)
        assert got.spec == wanted
        if wanted.id in file.paused:
            assert got.paused == file.paused[wanted.id]
        elif wanted.id in before.schedules:
            assert got.paused == before.schedules[wanted.id].paused
    if file.options is not None:
        assert after.options == attrs.evolve(file.options, draining=False)
    # The plan's lists match what the handlers computed.
    for change in plan.changes:
        if change.action == "remove" or change.schedule_id not in after.schedules:
            continue
        state = after.schedules[change.schedule_id]
        if state.paused or state.complete:
            assert change.after == ()
            continue
        nominal = state.next_fire_at
        assert nominal is not None
        assert change.after[0] == due_at(state.spec.id, nominal, state.spec.jitter_ms)
        if len(change.after) > 1 and not isinstance(state.spec.trigger, At):
            second_nominal = next_fire_after(state.spec.trigger, nominal)
            assert change.after[1] == due_at(state.spec.id, second_nominal, state.spec.jitter_ms)
