"""The schedules file: every key parsed into a spec, every mistake named by its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cronledger.adapters.schedules_file import (
    KEYS,
    load_schedules,
    parse_schedules,
    paused_from_table,
    resolve_cwd,
    spec_from_table,
)
from cronledger.domain.hours import Window
from cronledger.domain.state import EMPTY
from cronledger.domain.triggers import At, Cron, Every
from cronledger.domain.values import (
    NO_RETRY,
    Call,
    Command,
    ConcurrencyPolicy,
    MisfirePolicy,
    Options,
    Retry,
    misfire_grace,
)
from cronledger.errors import InvalidInput
from tests.harness import MINUTE, SECOND, T0

HOUR = 60 * MINUTE
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.toml"


def table(**kw: Any) -> dict[str, Any]:
    kw.setdefault("cron", "0 3 * * *")
    if "call" not in kw:
        kw.setdefault("command", ["true"])
    return {k: v for k, v in kw.items() if v is not None}


def parse(**kw: Any) -> Any:
    return spec_from_table("job", table(**kw), now_ms=T0, where="schedules.job")


# --- every key ------------------------------------------------------------------------------


def test_a_full_table_sets_every_field() -> None:
    spec = spec_from_table(
        "backup",
        {
            "cron": "0 3 * * *",
            "timezone": "Europe/Berlin",
            "command": ["pg_dump", "-f", "/backups/{scheduled_for}.sql"],
            "env": {"PGHOST": "db", "LANG": "C"},
            "cwd": "/srv",
            "fallback": ["/usr/bin/true"],
            "concurrency": "queue-one",
            "misfire": "catch-up",
            "misfire_grace": "90s",
            "catch_up_window": "1d",
            "priority": 7,
            "retries": 3,
            "backoff": "30s",
            "max_backoff": "1h30m",
            "timeout": "2h",
            "active_hours": "08:00-20:00",
            "quiet_hours": {"start": "12:00", "end": "13:00", "timezone": "Asia/Tokyo"},
            "jitter": "30s",
            "fire_limit": 10,
            "paused": False,
        },
        now_ms=T0,
        where="schedules.backup",
    )
    assert spec.id == "backup"
    assert spec.trigger == Cron("0 3 * * *", "Europe/Berlin")
    assert spec.target == Command(
        ("pg_dump", "-f", "/backups/{scheduled_for}.sql"),
        env=(("LANG", "C"), ("PGHOST", "db")),  # sorted: reordering the table is no change
        cwd="/srv",
        fallback=("/usr/bin/true",),
    )
    assert spec.concurrency is ConcurrencyPolicy.QUEUE_ONE
    assert spec.misfire is MisfirePolicy.CATCH_UP
    assert (spec.misfire_grace_ms, spec.catch_up_window_ms) == (90 * SECOND, 24 * HOUR)
    assert spec.priority == 7
    assert spec.retry == Retry(max_attempts=4, backoff_ms=30 * SECOND, max_backoff_ms=90 * MINUTE)
    assert spec.timeout_ms == 2 * HOUR
    # Hours without a zone take the cron's zone.
    assert spec.active_hours == Window("08:00", "20:00", "Europe/Berlin")
    assert spec.quiet_hours == Window("12:00", "13:00", "Asia/Tokyo")
    assert (spec.jitter_ms, spec.fire_limit) == (30 * SECOND, 10)
    assert spec.principal == "system:cron"


def test_the_defaults_are_forbid_skip_the_engines_grace_and_no_retry() -> None:
    spec = parse()
    assert spec.trigger == Cron("0 3 * * *", "UTC")
    assert spec.concurrency is ConcurrencyPolicy.FORBID
    assert spec.misfire is MisfirePolicy.SKIP
    assert spec.misfire_grace_ms is None  # the engine's misfire_grace option (60 s by default)
    assert misfire_grace(spec, Options()) == 60 * SECOND
    assert spec.retry == NO_RETRY
    assert spec.timeout_ms is spec.active_hours is spec.quiet_hours is spec.fire_limit is None
    assert (spec.priority, spec.jitter_ms) == (0, 0)


def test_every_is_anchored_at_now_unless_an_anchor_is_given() -> None:
    assert parse(cron=None, every="2s").trigger == Every(2 * SECOND, T0)
    anchored = parse(cron=None, every="1h30m", anchor="2025-06-01T00:00:00+02:00")
    assert anchored.trigger == Every(90 * MINUTE, T0 - 214 * 24 * HOUR - 2 * HOUR)


def test_toml_datetimes_are_accepted_for_at_and_anchor() -> None:
    text = (
        "[schedules.once]\nat = 2026-12-01T09:00:00Z\ncall = 'x'\n"
        "[schedules.tick]\nevery = '5m'\nanchor = 2026-01-01T01:00:00+01:00\ncall = 'x'\n"
    )
    once, tick = parse_schedules(text, now_ms=T0).schedules
    assert once.trigger == At(T0 + 334 * 24 * HOUR + 9 * HOUR)
    assert tick.trigger == Every(5 * MINUTE, T0)


def test_call_targets_and_policy_spellings() -> None:
    spec = parse(call="reports.daily", concurrency="QUEUE_ONE", misfire="catch_up")
    assert spec.target == Call("reports.daily")
    assert spec.concurrency is ConcurrencyPolicy.QUEUE_ONE
    assert spec.misfire is MisfirePolicy.CATCH_UP
    for text, policy in [
        ("forbid", ConcurrencyPolicy.FORBID),
        ("replace", ConcurrencyPolicy.REPLACE),
        ("allow", ConcurrencyPolicy.ALLOW),
        ("queue_one", ConcurrencyPolicy.QUEUE_ONE),
    ]:
        assert parse(concurrency=text).concurrency is policy


def test_hours_windows_in_every_spelling() -> None:
    assert parse(active_hours="22:00-06:00").active_hours == Window("22:00", "06:00", "UTC")
    assert parse(quiet_hours="22:00 - 06:00 @ Europe/Berlin").quiet_hours == Window(
        "22:00", "06:00", "Europe/Berlin"
    )
    every = parse(cron=None, every="1m", active_hours={"start": "08:00", "end": "09:00"})
    assert every.active_hours == Window("08:00", "09:00", "UTC")


def test_a_long_backoff_raises_the_default_max_backoff() -> None:
    assert parse(retries=1, backoff="2h").retry == Retry(2, 2 * HOUR, 2 * HOUR)
    assert parse(retries=2).retry == Retry(3, NO_RETRY.backoff_ms, NO_RETRY.max_backoff_ms)


def test_paused_is_read_separately() -> None:
    assert paused_from_table(table(paused=True)) is True
    assert paused_from_table(table()) is None
    with pytest.raises(InvalidInput) as info:
        paused_from_table(table(paused="yes"), where="schedules.job")
    assert info.value.field == "schedules.job.paused"


def test_a_one_shot_in_the_past_is_refused_for_add_but_loads_from_a_file() -> None:
    with pytest.raises(InvalidInput) as info:
        parse(cron=None, at="2025-01-01T00:00:00Z")
    assert info.value.field == "schedules.job.at"
    assert "past" in info.value.problem
    loaded = parse_schedules(
        "[schedules.job]\nat = '2025-01-01T00:00:00Z'\ncall = 'x'\n", now_ms=T0
    )
    assert loaded.schedules[0].trigger == At(T0 - 365 * 24 * HOUR)


# --- every mistake names its key -------------------------------------------------------------


BAD: list[tuple[dict[str, Any], str, str]] = [
    (table(cron="61 * * * *"), "schedules.job.cron", "minute"),
    (table(cron="0 3 * *"), "schedules.job.cron", "4 fields"),
    (table(cron=""), "schedules.job.cron", "empty"),
    (table(cron=5), "schedules.job.cron", "not text"),
    (table(timezone="Mars/Olympus"), "schedules.job.timezone", "Mars/Olympus"),
    (table(timezone="localtime"), "schedules.job.timezone", "localtime"),
    (table(every="2s"), "schedules.job.every", "cron and every"),
    (table(at="2027-01-01T00:00:00Z"), "schedules.job.at", "cron and at"),
    ({"command": ["true"]}, "schedules.job", "no trigger"),
    ({"cron": "0 3 * * *"}, "schedules.job", "no target"),
    ({**table(), "call": "x"}, "schedules.job.call", "both"),
    (table(command="pg_dump -f 'a b'"), "schedules.job.command", "shell"),
    (table(command=[]), "schedules.job.command", "empty"),
    (table(command=["ls", 3]), "schedules.job.command", "list of strings"),
    (table(fallback=[]), "schedules.job.fallback", "empty"),
    (table(env={"A": 1}), "schedules.job.env.A", "not text"),
    (table(env={"A=B": "x"}), "schedules.job.env.A=B", "environment"),
    (table(env=["A=1"]), "schedules.job.env", "not a table"),
    (table(call="x", env={"A": "1"}), "schedules.job.env", "only applies to command"),
    (table(call="x", cwd="/srv"), "schedules.job.cwd", "only applies to command"),
    (table(cwd=""), "schedules.job.cwd", "empty"),
    (table(call=""), "schedules.job.call", "empty"),
    (table(cron=None, every="2s", timezone="UTC"), "schedules.job.timezone", "only applies"),
    (table(anchor="2026-01-01T00:00:00Z"), "schedules.job.anchor", "only applies"),
    (table(cron=None, every="500ms"), "schedules.job.every", "1 s"),
    (table(cron=None, every="soon"), "schedules.job.every", "not a duration"),
    (table(cron=None, every=5), "schedules.job.every", "no unit"),
    (table(cron=None, at="2026-12-01T09:00:00"), "schedules.job.at", "no UTC offset"),
    (table(cron=None, at="tomorrow"), "schedules.job.at", "ISO-8601"),
    (table(cron=None, every="1m", anchor="2026-01-01 00:00"), "schedules.job.anchor", "offset"),
    (table(concurrency="sometimes"), "schedules.job.concurrency", "queue-one"),
    (table(misfire="later"), "schedules.job.misfire", "catch-up"),
    (table(misfire_grace="-5s"), "schedules.job.misfire_grace", "not a duration"),
    (table(misfire_grace=60), "schedules.job.misfire_grace", "no unit"),
    (table(catch_up_window="1h"), "schedules.job.catch_up_window", "catch-up"),
    (table(priority=-1), "schedules.job.priority", "negative"),
    (table(priority=1.5), "schedules.job.priority", "whole number"),
    (table(priority=True), "schedules.job.priority", "whole number"),
    (table(retries=-1), "schedules.job.retries", "negative"),
    (table(backoff="1s"), "schedules.job.backoff", "retries"),
    (table(retries=1, backoff="1m", max_backoff="1s"), "schedules.job.max_backoff", "shorter"),
    (table(timeout="0s"), "schedules.job.timeout", "zero"),
    (table(jitter="a while"), "schedules.job.jitter", "not a duration"),
    (table(fire_limit=0), "schedules.job.fire_limit", "less than 1"),
    (table(active_hours="8-20"), "schedules.job.active_hours", "HH:MM"),
    (table(active_hours="08:00"), "schedules.job.active_hours", "not a window"),
    (table(active_hours="08:00-08:00"), "schedules.job.active_hours", "both"),
    (table(quiet_hours="22:00-06:00@Nowhere/City"), "schedules.job.quiet_hours", "Nowhere"),
    (
        table(quiet_hours={"start": "22:00", "end": "06:00", "timezone": "Nowhere/City"}),
        "schedules.job.quiet_hours.timezone",
        "Nowhere",
    ),
    (table(quiet_hours={"start": "22:00"}), "schedules.job.quiet_hours.end", "missing"),
    (table(quiet_hours={"from": "22:00"}), "schedules.job.quiet_hours.from", "start, end"),
    (
        table(active_hours="09:00-17:00", quiet_hours="08:00-18:00"),
        "schedules.job.quiet_hours",
        "no fire is ever allowed",
    ),
    (table(paused="no"), "schedules.job.paused", "true or false"),
    (table(shedule="x"), "schedules.job.shedule", "known keys"),
    (table(max_attempts=3), "schedules.job.max_attempts", "retries"),
]


@pytest.mark.parametrize(("raw", "field", "words"), BAD)
def test_a_bad_table_names_the_key_and_the_fix(raw: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        spec_from_table("job", raw, now_ms=T0, where="schedules.job")
    error = info.value
    assert error.field == field
    assert words in str(error)
    assert error.fix, "every error says what to do"


def test_unknown_keys_list_the_known_ones_and_suggest_the_closest() -> None:
    with pytest.raises(InvalidInput) as info:
        parse(retires=2)
    assert "did you mean retries?" in info.value.fix
    assert all(key in info.value.fix for key in KEYS)


def test_a_bad_schedule_name_names_its_table() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_schedules("[schedules.'a b']\ncron = '0 3 * * *'\ncall = 'x'\n", now_ms=T0)
    assert info.value.field == 'schedules."a b"'
    assert "not a valid schedule id" in info.value.problem


def test_without_where_the_field_is_the_bare_key_as_the_cli_passes_it() -> None:
    with pytest.raises(InvalidInput) as info:
        spec_from_table("job", table(cron="0 3 * *"), now_ms=T0)
    assert info.value.field == "cron"


# --- the file -------------------------------------------------------------------------------


def test_a_file_keeps_order_paused_states_and_options() -> None:
    text = """
[options]
max_workers = 4
misfire_grace = "2m"

[schedules.b]
every = "1m"
call = "x"
paused = true

[schedules.a]
cron = "@daily"
command = ["true"]
paused = false

[schedules.c]
every = "1m"
anchor = "2026-01-01T00:00:00Z"
call = "x"
"""
    file = parse_schedules(text, now_ms=T0, source="f.toml", base_options=Options(batch_size=8))
    assert [s.id for s in file.schedules] == ["b", "a", "c"]
    assert dict(file.paused) == {"b": True, "a": False}
    assert file.options == Options(max_workers=4, misfire_grace_ms=120_000, batch_size=8)
    assert file.unanchored == {"b"}
    assert file.path == "f.toml"


def test_a_file_without_options_or_schedules_is_empty() -> None:
    file = parse_schedules("", now_ms=T0)
    assert (file.schedules, dict(file.paused), file.options) == ((), {}, None)


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("[schedules.a]\ncron = '0 3 * * *\ncall = 'x'\n", "file", "<string>:2:"),
        (
            "[schedules.a]\ncron='@daily'\ncall='x'\n[schedules.a]\ncron='@daily'\n",
            "file",
            "<string>:4:",
        ),
        ("[schedules.a]\ncron='@daily'\ncron='@hourly'\n", "file", "may appear once"),
        ("[backup]\ncron = '@daily'\ncall = 'x'\n", "backup", "[schedules.backup]"),
        ("title = 'x'\n", "title", "[options]"),
        ("schedules = 3\n", "schedules", "not a table"),
        ("[schedules]\na = 3\n", "schedules.a", "not a table"),
        ("[options]\nmax_wrkers = 4\n", "options.max_wrkers", "max_workers"),
        ("[options]\nmax_workers = 0\n", "options.max_workers", "1 or more"),
        ("options = 4\n", "options", "not a table"),
        ("[schedules.a]\ncron='@daily'\ncall='x'\npaused=1\n", "schedules.a.paused", "true"),
    ],
)
def test_a_bad_file_names_the_place(text: str, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_schedules(text, now_ms=T0)
    assert info.value.field == field
    assert words in str(info.value)


def test_load_reads_a_file_and_reports_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "cron.toml"
    path.write_text("[schedules.a]\ncron = '@hourly'\ncall = 'x'\n")
    assert load_schedules(path, now_ms=T0).path == str(path)
    with pytest.raises(InvalidInput) as info:
        load_schedules(tmp_path / "nope.toml", now_ms=T0)
    assert (info.value.field, "does not exist" in info.value.problem) == ("file", True)
    with pytest.raises(InvalidInput) as info:
        load_schedules(tmp_path, now_ms=T0)
    assert info.value.field == "file"
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(InvalidInput, match="UTF-8"):
        load_schedules(tmp_path / "bad.toml", now_ms=T0)
    (tmp_path / "syntax.toml").write_text("\n\n[schedules.a\n")
    with pytest.raises(InvalidInput, match=r"syntax\.toml:3:"):
        load_schedules(tmp_path / "syntax.toml", now_ms=T0)


def test_the_demo_file_parses_and_plans_five_adds() -> None:
    file = load_schedules(DEMO, now_ms=T0)
    assert [s.id for s in file.schedules] == [
        "tick",
        "flaky",
        "overlap-forbid",
        "overlap-queue",
        "quiet",
    ]
    assert all(isinstance(s.target, Command) for s in file.schedules)
    plan = file.plan(EMPTY, T0)
    assert [c.action for c in plan.changes] == ["add"] * 5
    assert file.options is not None


def test_a_relative_cwd_in_a_file_is_resolved_against_the_file_s_directory(
    tmp_path: Path,
) -> None:
    file = tmp_path / "conf" / "schedules.toml"
    file.parent.mkdir()
    file.write_text(
        '[schedules.a]\nevery = "1m"\ncommand = ["true"]\ncwd = "../app"\n'
        '[schedules.b]\nevery = "1m"\ncommand = ["true"]\ncwd = "/srv"\n'
    )
    specs = {s.id: s for s in load_schedules(file, now_ms=T0).schedules}
    assert isinstance(specs["a"].target, Command) and isinstance(specs["b"].target, Command)
    assert specs["a"].target.cwd == str(tmp_path / "conf" / "..") + "/app"  # ".." left to exec
    assert specs["b"].target.cwd == "/srv"
    assert parse(cwd="rel").target.cwd == "rel", "a lone table has no directory to resolve by"


def test_resolve_cwd_keeps_absolute_paths_and_dotdot_and_drops_dots() -> None:
    assert resolve_cwd("/srv", "/base") == "/srv"
    assert resolve_cwd(".", "/base") == "/base"
    assert resolve_cwd("./a//b/.", "/base") == "/base/a/b"
    assert resolve_cwd("../a", "/base/link") == "/base/link/../a"  # through a symlink, as cd
