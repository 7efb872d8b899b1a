"""The `cronledger` command line, end to end: every command through a real subprocess on an
SQLite ledger in a temporary directory.

Exit codes: 0 ok, 1 verification or operation failed, 2 usage or bad input. An error is one
line on stderr starting "cronledger: " that names the flag or key at fault, with no traceback
(unless --debug), and bad input leaves the ledger exactly as it was: the stored rows are read
with sqlite3 before and after and compared. `--json` prints one JSON document on stdout.

Each CLI start costs ~0.25 s of imports, so the many one-invocation checks (help, bad input,
ledgers that cannot be opened) are `Shot`s: the `shots` fixture starts every collected shot at
the module's first test on a thread pool, each in its own directory on its own copy of the
seeded ledger, and each shot's test checks its result. Only the `ran` fixture runs the daemon
against the clock (`run --for 4s`); simulate runs on its virtual clock. Fixture files are in
tests/e2e/cli_scenarios/.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

SCENARIOS = Path(__file__).parent / "cli_scenarios"
CLI = [sys.executable, "-m", "cronledger.adapters.cli"]
TIMEOUT_S = 60
WORKERS = min(8, os.cpu_count() or 2)
MONTH = ("--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z")
HEALTH_KEYS = {
    "position",
    "schedules",
    "active_runs",
    "pending",
    "held",
    "assigned",
    "oldest_pending_ms",
    "lag_ms",
    "draining",
}

Rows = list[tuple[int, str, bytes]]
Done = subprocess.CompletedProcess[str]


def cronledger(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Done:
    """`cronledger ARGS...` as a subprocess (CRONLEDGER_LEDGER unset unless `env` sets it)."""
    environ = {k: v for k, v in os.environ.items() if k != "CRONLEDGER_LEDGER"}
    environ.update(env or {})
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def shown(done: Done) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


def future(days: int = 400) -> str:
    """An instant comfortably in the future, as ISO-8601 UTC text."""
    return f"{datetime.now(UTC) + timedelta(days=days):%Y-%m-%dT%H:%M:%SZ}"


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def one_error_line(done: Done, code: int = 2, mentions: Sequence[str] = ()) -> str:
    """The CLI failed with `code` and one clean error line on stderr; returns that line. The
    stdout is empty, or under `--json` the error as one JSON document."""
    assert done.returncode == code, shown(done)
    assert "Traceback" not in done.stderr, shown(done)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, shown(done)
    assert lines[0].startswith("cronledger: "), shown(done)
    if "--json" in done.args[: done.args.index("--") if "--" in done.args else None]:
        assert json.loads(done.stdout)["error"]["exit_code"] == code, shown(done)
    else:
        assert done.stdout == "", shown(done)
    for text in mentions:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


def read_rows(path: Path) -> Rows | None:
    """Every stored event row of an SQLite ledger, or None when there is no file."""
    if not path.exists():
        return None
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT originator_version, topic, state FROM stored_events ORDER BY originator_version"
        ).fetchall()
    finally:
        db.close()


def concurrently(calls: Sequence[Any]) -> list[Any]:
    """Call each zero-argument function in `calls` on a thread pool; results in order."""
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda call: call(), calls))


class Cli:
    """`cronledger --ledger sqlite:///PATH ...`, run in the ledger's directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.cwd = path.parent

    def __call__(self, *args: str) -> Done:
        return cronledger("--ledger", self.url, *args, cwd=self.cwd)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, shown(done)
        return done.stdout

    def json(self, *args: str) -> Any:
        """`--json ARGS`: exit 0, stdout is exactly one JSON document, stderr is empty."""
        done = self("--json", *args)
        assert done.returncode == 0 and done.stderr == "", shown(done)
        document = json.loads(done.stdout)
        if isinstance(document, dict):  # every object says ok first (errors say false)
            assert next(iter(document)) == "ok" and document.pop("ok") is True, shown(done)
        return document

    def jsons(self, *commands: Sequence[str]) -> list[Any]:
        """`json` of several read-only commands, run concurrently."""
        return concurrently([lambda c=c: self.json(*c) for c in commands])

    def fails(self, *args: str, code: int = 2, mentions: Sequence[str] = ()) -> str:
        return one_error_line(self(*args), code, mentions)

    def rows(self) -> Rows | None:
        return read_rows(self.path)

    def position(self) -> int:
        rows = self.rows()
        return rows[-1][0] if rows else 0

    @contextmanager
    def unchanged(self) -> Iterator[None]:
        """The block records nothing (and creates no ledger where there was none)."""
        before = self.rows()
        yield
        assert self.rows() == before, "the ledger changed"

    def copy_to(self, path: Path) -> Cli:
        """A consistent copy of the ledger (sqlite3's backup, so a WAL is included)."""
        src, dst = sqlite3.connect(self.path), sqlite3.connect(path)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        return Cli(path)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A ledger that does not exist yet."""
    return Cli(tmp_path / "ledger.db")


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """Three schedules added with `cronledger add` (copied per test by `seeded`)."""
    cli = Cli(tmp_path_factory.mktemp("seeded") / "ledger.db")
    cli.ok("add", "nightly", "--cron", "0 3 * * *", "--tz", "Europe/Berlin", "--", "echo", "n")
    cli.ok("add", "often", "--every", "5m", "--", "echo", "often")
    cli.ok("add", "job", "--every", "1h", "--call", "pkg.job")
    return cli


@pytest.fixture
def seeded(tmp_path: Path, seeded_template: Cli) -> Cli:
    return seeded_template.copy_to(tmp_path / "ledger.db")


def schedules_in(cli: Cli) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in cli.json("list")["schedules"]}


# --- shots: one invocation each, all run at once ------------------------------------------------


@dataclass(frozen=True)
class Shot:
    """One CLI invocation in a fresh directory DIR ("{dir}" in args and ledger is DIR).

    ledger: "seeded" (DIR/ledger.db, a copy of the seeded ledger), "missing" (DIR/ledger.db,
    not there), "" (no --ledger at all) or a URL. files: (name, text) written into DIR first.
    """

    args: tuple[str, ...]
    ledger: str = "seeded"
    files: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Fired:
    done: Done
    before: Rows | None  # the ledger's rows before and after (DIR/ledger.db)
    after: Rows | None
    created: frozenset[str]  # names that appeared in DIR

    def unchanged(self) -> None:
        assert self.after == self.before, "the ledger changed"


class Shots:
    """The shots' results, by shot; each waits for its shot to have run."""

    def __init__(self, futures: dict[Shot, Future[Fired]]) -> None:
        self.futures = futures

    def __getitem__(self, shot: Shot) -> Fired:
        return self.futures[shot].result(timeout=TIMEOUT_S * 10)


@pytest.fixture(scope="module", autouse=True)
def shots(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    seeded_template: Cli,
) -> Iterator[Shots]:
    """Every Shot a collected test of this module takes (param `shot`), started at the module's
    first test on a thread pool, so they run while the tests that run commands one by one do."""
    wanted: list[Shot] = []
    for item in request.session.items:
        if getattr(item, "module", None) is not request.module:
            continue
        callspec = getattr(item, "callspec", None)
        shot = callspec.params.get("shot") if callspec is not None else None
        if isinstance(shot, Shot) and shot not in wanted:
            wanted.append(shot)
    base = tmp_path_factory.mktemp("shots")

    def fire(index: int, shot: Shot) -> Fired:
        where = base / str(index)
        where.mkdir()
        for name, text in shot.files:
            (where / name).write_text(text)
        path = where / "ledger.db"
        if shot.ledger == "seeded":
            seeded_template.copy_to(path)
        url = shot.ledger.replace("{dir}", str(where))
        if shot.ledger in ("seeded", "missing"):
            url = f"sqlite:///{path}"
        names = set(os.listdir(where))
        before = read_rows(path)
        args = [a.replace("{dir}", str(where)) for a in shot.args]
        done = cronledger(*(["--ledger", url] if url else []), *args, cwd=where)
        return Fired(done, before, read_rows(path), frozenset(set(os.listdir(where)) - names))

    pool = ThreadPoolExecutor(WORKERS)
    yield Shots({shot: pool.submit(fire, i, shot) for i, shot in enumerate(wanted)})
    pool.shutdown(wait=True, cancel_futures=True)


def bad(case: str, command: str, *mentions: str, marks: Any = (), **shot: Any) -> Any:
    """A Shot of `cronledger COMMAND` (shell words) that must fail with exit 2 and one line
    naming each of `mentions`."""
    return pytest.param(Shot(tuple(shlex.split(command)), **shot), mentions, id=case, marks=marks)


# --- help --------------------------------------------------------------------------------------

COMMANDS = (
    "add",
    "update",
    "pause",
    "resume",
    "remove",
    "trigger",
    "submit",
    "hold",
    "release",
    "cancel",
    "apply",
    "list",
    "show",
    "status",
    "history",
    "logs",
    "run",
    "explain",
    "replay",
    "verify",
    "simulate",
)


@pytest.mark.parametrize(
    "shot",
    [Shot(("--help",), ledger=""), *(Shot((c, "--help"), ledger="") for c in COMMANDS)],
    ids=["cronledger", *COMMANDS],
)
def test_help_exits_0(shots: Shots, shot: Shot) -> None:
    result = shots[shot]
    command = shot.args[0] if len(shot.args) == 2 else ""
    assert result.done.returncode == 0, shown(result.done)
    assert result.done.stdout.startswith(f"usage: cronledger {command}".rstrip())
    assert result.created == frozenset(), "--help created files"


@pytest.mark.parametrize("shot", [Shot((), ledger="missing")], ids=["no-command"])
def test_no_command_prints_usage_and_exits_2(shots: Shots, shot: Shot) -> None:
    done = shots[shot].done
    assert done.returncode == 2, shown(done)
    assert "usage: cronledger" in done.stderr
    assert done.stdout == ""
    assert shots[shot].created == frozenset()


def test_the_ledger_url_can_come_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    env = {"CRONLEDGER_LEDGER": url}
    done = cronledger("add", "e", "--every", "1m", "--", "true", cwd=tmp_path, env=env)
    assert done.returncode == 0, shown(done)
    assert [row[1] for row in read_rows(tmp_path / "env.db") or []] == ["ScheduleAdded"]


@pytest.mark.parametrize("shot", [Shot(("--debug", "show", "nope"))], ids=["show"])
def test_debug_shows_the_traceback(shots: Shots, shot: Shot) -> None:
    done = shots[shot].done
    assert done.returncode == 2
    assert "Traceback" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("cronledger: error: unknown schedule 'nope'")


@pytest.mark.parametrize("shot", [Shot(("--version",), ledger="")], ids=["version"])
def test_version_prints_the_package_version(shots: Shots, shot: Shot) -> None:
    from importlib.metadata import version

    done = shots[shot].done
    assert done.returncode == 0, shown(done)
    assert done.stdout == f"cronledger {version('cronledger')}\n"
    assert done.stderr == ""


@pytest.mark.parametrize("shot", [Shot((), ledger="missing")], ids=["no-command"])
def test_no_command_prints_a_short_usage_the_commands_and_one_error(
    shots: Shots, shot: Shot
) -> None:
    done = shots[shot].done
    assert done.returncode == 2, shown(done)
    assert "options:" not in done.stderr, "the full help was printed"
    assert f"commands: {', '.join(COMMANDS)}\n" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("cronledger: error: a COMMAND is required")


@pytest.mark.parametrize(
    ("shot", "help_of"),
    [
        (Shot(tuple(shlex.split("add x --every 1m --bogus -- true"))), "cronledger add"),
        (Shot(("history", "--bogus")), "cronledger history"),
        (Shot(("run", "--once", "--bogus")), "cronledger run"),
        (Shot(("--bogus",)), "cronledger"),
    ],
    ids=["add", "history", "run", "top-level"],
)
def test_an_unrecognized_argument_points_to_the_help_of_the_command_in_use(
    shots: Shots, shot: Shot, help_of: str
) -> None:
    result = shots[shot]
    line = one_error_line(result.done, 2, ["--bogus"])
    assert line.startswith("cronledger: error: unrecognized arguments: --bogus")
    assert line.endswith(f"(see `{help_of} --help`)")
    result.unchanged()


def test_under_json_an_error_is_a_json_document_on_stdout_too(seeded: Cli) -> None:
    """A script reading stdout gets JSON whatever happened; stderr keeps the one line."""

    def error_of(*args: str, code: int) -> dict[str, Any]:
        done = seeded("--json", *args)
        assert done.returncode == code, shown(done)
        assert len(done.stderr.splitlines()) == 1, shown(done)
        assert done.stderr.startswith("cronledger: error: "), shown(done)
        document = json.loads(done.stdout)
        assert document["ok"] is False and document["error"]["exit_code"] == code
        assert document["error"]["message"] in done.stderr
        error: dict[str, Any] = document["error"]
        return error

    with seeded.unchanged():
        bad = error_of("add", "x", "--every", "5x", "--", "true", code=2)
        assert (bad["type"], bad["field"]) == ("InvalidInput", "--every")
        assert "5x" in bad["problem"] and bad["fix"]
        unknown = error_of("pause", "nope", code=2)
        assert unknown["type"] == "UnknownSchedule" and "nope" in unknown["message"]
        usage = error_of("history", "--bogus", code=2)
        assert usage["type"] == "UsageError" and "--bogus" in usage["message"]
        after = error_of("explain", "nope", "--json", code=2)  # --json after the command too
        assert after["field"] == "RUN_ID|NAME|REQUEST_ID"
        short = seeded("--js", "history", "--bogus")  # argparse's prefix of --json
        assert json.loads(short.stdout)["error"]["type"] == "UsageError", shown(short)
        bare = seeded("--json")
        assert bare.returncode == 2 and json.loads(bare.stdout)["error"]["exit_code"] == 2
        unreachable = error_of("--state-dir", "/proc/no-such-dir", "run", "--once", code=1)
        assert unreachable["type"] == "StateDirError"  # one line, no traceback
        assert "state dir '/proc/no-such-dir'" in unreachable["message"]
        assert "--state-dir DIR" in unreachable["message"], unreachable  # the fix
    down = cronledger(  # a server that is down: the operation failed (1), the input is fine
        "--json", "--ledger", "postgresql://postgres@127.0.0.1:9/test", "status", cwd=seeded.cwd
    )
    assert down.returncode == 1, shown(down)
    assert json.loads(down.stdout)["error"]["type"] == "LedgerUnavailable"


@pytest.mark.postgres
def test_a_postgres_database_that_does_not_exist_is_bad_input_not_a_server_down(
    tmp_path: Path,
) -> None:
    from tests.integration.conftest import require_postgres

    require_postgres()
    url = "postgresql://postgres@127.0.0.1:5432/no_such_database_here"
    done = cronledger("--json", "--ledger", url, "status", cwd=tmp_path)
    assert done.returncode == 2, shown(done)  # the URL is wrong: the server answered
    error = json.loads(done.stdout)["error"]
    assert error["field"] == "--ledger" and "does not exist" in error["problem"]
    assert "createdb no_such_database_here" in error["fix"], error
    nobody = cronledger(
        "--json", "--ledger", "postgresql://no_such_role@127.0.0.1:5432/test", "status",
        cwd=tmp_path,
    )  # fmt: skip
    assert nobody.returncode == 2, shown(nobody)
    assert "user 'no_such_role'" in json.loads(nobody.stdout)["error"]["fix"]


@pytest.mark.postgres
def test_a_postgres_password_is_never_shown(tmp_path: Path, postgres_schema: str) -> None:
    """`status` and the daemon's start-up line show the ledger URL with the password masked
    (trust authentication here: the password is sent and ignored)."""
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:5432/test?schema={postgres_schema}"
    shown_texts = [
        cronledger("--ledger", url, "add", "a", "--every", "1h", "--", "true", cwd=tmp_path),
        cronledger("--ledger", url, "status", cwd=tmp_path),
        cronledger("--json", "--ledger", url, "status", cwd=tmp_path),
        cronledger(
            "--ledger", url, "--state-dir", str(tmp_path / "state"), "run", "--once",
            cwd=tmp_path,
        ),
    ]  # fmt: skip
    for done in shown_texts:
        assert done.returncode == 0, shown(done)
        assert "s3cret-pw" not in done.stdout + done.stderr, shown(done)
    assert "postgres:***@127.0.0.1" in shown_texts[1].stdout, shown(shown_texts[1])
    assert "postgres:***@127.0.0.1" in shown_texts[3].stderr, shown(shown_texts[3])


# --- add, show, update, pause, resume, remove, trigger, submit -------------------------------


def test_add_cron_with_every_policy_flag_and_show_reflects_them(cli: Cli, tmp_path: Path) -> None:
    flags = {
        "--cron": "30 2 * * 1-5",
        "--tz": "America/New_York",
        "--concurrency": "queue-one",
        "--misfire": "catch-up",
        "--grace": "5m",
        "--catch-up-window": "2h",
        "--priority": "7",
        "--retries": "3",
        "--backoff": "10s",
        "--max-backoff": "5m",
        "--timeout": "90s",
        "--active-hours": "01:00-05:00@America/New_York",
        "--quiet-hours": "03:00-03:10@UTC",
        "--jitter": "20s",
        "--fire-limit": "12",
        "--cwd": str(tmp_path),
        "--fallback": "echo fallback",
    }
    argv = ("sh", "-c", "echo {schedule} --not-a-flag")
    words = [w for flag, value in flags.items() for w in (flag, value)]
    added = cli.json("add", "full", *words, "--env", "A=1", "--env", "B=x=y", "--", *argv)
    assert added["added"] == "full"
    assert added["position"] == 1 == cli.position()
    assert added["next_fire_at"].endswith("Z") and isinstance(added["next_fire_at_ms"], int)

    shown_json, text = cli.json("show", "full"), cli.ok("show", "full")
    spec = shown_json["schedule"]["spec"]
    assert spec["trigger"] == {
        "kind": "cron",
        "expr": "30 2 * * 1-5",
        "timezone": "America/New_York",
        "text": "cron '30 2 * * 1-5' (America/New_York)",
    }
    assert spec["target"] == {
        "kind": "command",
        "argv": list(argv),
        "env": {"A": "1", "B": "x=y"},
        "cwd": str(tmp_path),
        "fallback": ["echo", "fallback"],
    }
    assert spec["concurrency"] == "queue_one"
    assert spec["misfire"] == "catch_up"
    assert spec["misfire_grace_ms"] == 300_000
    assert spec["catch_up_window_ms"] == 7_200_000
    assert spec["priority"] == 7
    assert spec["retry"] == {"max_attempts": 4, "backoff_ms": 10_000, "max_backoff_ms": 300_000}
    assert spec["timeout_ms"] == 90_000
    assert spec["active_hours"] == {
        "start": "01:00",
        "end": "05:00",
        "timezone": "America/New_York",
    }
    assert spec["quiet_hours"] == {"start": "03:00", "end": "03:10", "timezone": "UTC"}
    assert spec["jitter_ms"] == 20_000
    assert spec["fire_limit"] == 12
    assert spec["principal"] == "user:cli"
    assert shown_json["zone"] == "America/New_York"
    assert shown_json["schedule"]["fires_remaining"] == 12
    assert shown_json["recent_runs"] == []
    fires = shown_json["next_fires"]
    assert len(fires) == 5
    assert all(re.fullmatch(r".*T02:30:00\.000-0[45]:00", f["local"]) for f in fires), fires
    assert "schedule full" in text and "queue_one" in text and "next 5 fire times" in text
    assert "01:00-05:00@America/New_York" in text and "Window(" not in text  # as --active-hours


def test_add_every_at_and_call(cli: Cli) -> None:
    at = future()
    cli.ok("add", "tick", "--every", "90s", "--anchor", "2026-01-01T00:00:00Z", "--", "true")
    cli.ok("add", "once", "--at", at, "--", "echo", "once")
    cli.ok("add", "fn", "--every", "1h", "--call", "pkg.module.fn", "--priority", "2")
    listed, once = cli.jsons(["list"], ["show", "once"])
    assert listed["position"] == 3
    assert [s["id"] for s in listed["schedules"]] == ["fn", "once", "tick"]
    fn, at_spec, tick = (s["spec"] for s in listed["schedules"])
    assert tick["trigger"]["kind"] == "every"
    assert tick["trigger"]["interval_ms"] == 90_000
    assert tick["trigger"]["anchor"] == "2026-01-01T00:00:00.000Z"
    assert at_spec["trigger"]["kind"] == "at"
    assert at_spec["trigger"]["at"] == at.replace("Z", ".000Z")
    assert [f["at"] for f in once["next_fires"]] == [at_spec["trigger"]["at"]]
    assert fn["target"] == {"kind": "call", "name": "pkg.module.fn"}
    assert fn["priority"] == 2
    assert "call pkg.module.fn" in cli.ok("list")


def test_update_changes_only_the_given_field(seeded: Cli) -> None:
    before = schedules_in(seeded)
    assert seeded.json("update", "nightly", "--priority", "9")["updated"] == "nightly"
    seeded.ok("update", "often", "--timeout", "30s")
    after = schedules_in(seeded)
    old, new = before["nightly"]["spec"], after["nightly"]["spec"]
    assert new["priority"] == 9
    assert {k for k in old if old[k] != new[k]} == {"priority"}
    old, new = before["often"]["spec"], after["often"]["spec"]
    assert {k for k in old if old[k] != new[k]} == {"timeout_ms"}  # the anchor stays
    assert new["timeout_ms"] == 30_000
    assert after["job"] == before["job"]

    with seeded.unchanged():
        again = seeded.json("update", "nightly", "--priority", "9")
    assert again["updated"] is None and again["events"] == 0

    seeded.ok("update", "nightly", "--tz", "Asia/Tokyo")  # the zone alone: the cron stays
    trigger = schedules_in(seeded)["nightly"]["spec"]["trigger"]
    assert (trigger["expr"], trigger["timezone"]) == ("0 3 * * *", "Asia/Tokyo")


def test_pause_resume_remove_and_trigger_show_in_list(seeded: Cli) -> None:
    paused = seeded.json("pause", "often", "--reason", "maintenance")
    assert paused == {"paused": "often", "changed": True, "events": 1, "position": 4}
    assert schedules_in(seeded)["often"]["paused"] is True
    with seeded.unchanged():
        assert "already paused" in seeded.ok("pause", "often")

    assert seeded.json("resume", "often")["changed"] is True
    assert schedules_in(seeded)["often"]["paused"] is False
    with seeded.unchanged():
        assert "nothing to do" in seeded.ok("resume", "often")

    triggered = seeded.json("trigger", "nightly")
    assert triggered["triggered"] == "nightly" and triggered["request_id"]
    assert triggered["position"] == seeded.position() == 6
    assert (seeded.rows() or [])[-1][1] == "TriggerRequested"
    asked = seeded.json("explain", triggered["request_id"])  # the id it printed is explainable
    assert (asked["kind"], asked["decision"]) == ("manual trigger", "waiting")

    removed = seeded.json("remove", "job")
    assert removed == {"removed": "job", "changed": True, "events": 1, "position": 7}
    listed = seeded.json("list")
    assert sorted(s["id"] for s in listed["schedules"]) == ["nightly", "often"]
    assert listed["position"] == 7
    seeded.fails("show", "job", mentions=("job",))
    assert seeded.json("history", "job")["runs"] == []  # a removed schedule keeps its history


def test_a_relative_cwd_is_stored_resolved_against_where_the_command_was_typed(
    cli: Cli, tmp_path: Path
) -> None:
    cli.ok("add", "x", "--every", "1h", "--cwd", "./work", "--", "true")
    target = schedules_in(cli)["x"]["spec"]["target"]
    assert target["cwd"] == str(cli.cwd / "work")  # not left to the daemon's directory


def test_update_with_a_new_command_keeps_env_cwd_and_fallback(cli: Cli, tmp_path: Path) -> None:
    cli.ok("add", "x", "--every", "1h", "--env", "A=1", "--cwd", str(tmp_path),
           "--fallback", "echo fb", "--", "echo", "old")  # fmt: skip
    cli.ok("update", "x", "--", "echo", "new")
    target = schedules_in(cli)["x"]["spec"]["target"]
    assert target == {
        "kind": "command",
        "argv": ["echo", "new"],
        "env": {"A": "1"},
        "cwd": str(tmp_path),
        "fallback": ["echo", "fb"],
    }
    cli.ok("update", "x", "--env", "B=2", "--", "echo", "newer")  # a flag given replaces
    target = schedules_in(cli)["x"]["spec"]["target"]
    assert (target["argv"], target["env"], target["cwd"]) == (
        ["echo", "newer"],
        {"B": "2"},
        str(tmp_path),
    )


def test_update_to_misfire_skip_drops_the_catch_up_window(cli: Cli) -> None:
    cli.ok("add", "x", "--every", "1h", "--misfire", "catch-up", "--catch-up-window", "2h",
           "--", "true")  # fmt: skip
    cli.ok("update", "x", "--misfire", "skip")
    spec = schedules_in(cli)["x"]["spec"]
    assert (spec["misfire"], spec["catch_up_window_ms"]) == ("skip", None)


def test_submit_records_the_task_as_user_cli(cli: Cli) -> None:
    document = cli.json("submit", "--", "true")
    submitted = document["submitted"]
    assert (document["events"], document["position"]) == (1, cli.position())  # as add reports
    (entry,) = cli.json("status")["queue"]
    assert (entry["id"], entry["principal"]) == (submitted, "user:cli")


def test_submit_shows_in_the_status_queue(seeded: Cli) -> None:
    first = seeded.json(
        "submit", "--priority", "5", "--retries", "2", "--timeout", "30s", "--", "echo", "hi"
    )
    second = seeded.json("submit", "--call", "pkg.fn", "--hold", "review")
    assert first["held"] is None and second["held"] == "review"
    assert "held (later)" in seeded.ok("submit", "--hold", "later", "--", "true")

    status = seeded.json("status")
    assert set(status["health"]) >= HEALTH_KEYS
    assert status["health"]["pending"] == 1 and status["health"]["held"] == 2
    queue = {e["id"]: e for e in status["queue"]}
    command, call = queue[first["submitted"]], queue[second["submitted"]]
    assert command["status"] == "pending"
    assert command["priority"] == 5
    assert command["target"]["argv"] == ["echo", "hi"]
    assert command["max_attempts"] == 3 and command["timeout_ms"] == 30_000
    assert call["status"] == "held" and call["hold_reason"] == "review"
    assert call["target"] == {"kind": "call", "name": "pkg.fn"}
    assert status["runs"] == []
    assert first["submitted"] in seeded.ok("status")


# --- bad input: exit 2, one line naming the input, the ledger unchanged ------------------------

BAD_INPUT = [
    # add: the trigger
    bad("cron-field", "add x --cron '61 * * * *' -- true", "--cron", "61"),
    bad("cron-fields", "add x --cron '* * *' -- true", "--cron"),
    bad("zone", "add x --cron '0 3 * * *' --tz Mars/Base -- true", "--tz", "Mars/Base"),
    bad("every", "add x --every 5x -- true", "--every", "5x"),
    bad("every-zero", "add x --every 0s -- true", "--every"),
    bad("anchor-naive", "add x --every 1m --anchor 2026-01-01T00:00:00 -- true", "--anchor"),
    bad("at-naive", "add x --at 2030-01-01T00:00:00 -- true", "--at", "offset"),
    bad("at-past", "add x --at 2020-01-01T00:00:00Z -- true", "--at", "past"),
    bad("two-triggers", "add x --every 1m --cron '* * * * *' -- true", "cron", "every"),
    bad("no-trigger", "add x -- true", "trigger", "--every"),
    # add: durations and windows
    bad("grace", "add x --every 1m --grace abc -- true", "--grace"),
    bad("timeout", "add x --every 1m --timeout 10x -- true", "--timeout"),
    bad("backoff", "add x --every 1m --retries 2 --backoff xx -- true", "--backoff"),
    bad("catch-up-window", "add x --every 1m --catch-up-window zz -- true", "--catch-up-window"),
    bad("jitter", "add x --every 1m --jitter 1q -- true", "--jitter"),
    bad("active-hours", "add x --every 1m --active-hours 25:00-26:00 -- true", "--active-hours"),
    bad(
        "active-hours-zone",
        "add x --every 1m --active-hours 08:00-20:00@Mars/Base -- true",
        *("--active-hours", "Mars/Base"),
    ),
    bad("quiet-hours-empty", "add x --every 1m --quiet-hours 08:00-08:00 -- true", "--quiet-hours"),
    # add: the other flags, the name and the command
    bad("priority", "add x --every 1m --priority -1 -- true", "--priority"),
    bad("retries", "add x --every 1m --retries -1 -- true", "--retries"),
    bad("fire-limit", "add x --every 1m --fire-limit 0 -- true", "--fire-limit"),
    bad("concurrency", "add x --every 1m --concurrency sometimes -- true", "--concurrency"),
    bad("cwd-empty", "add x --every 1m --cwd '' -- true", "--cwd"),
    bad("env", "add x --every 1m --env FOO -- true", "--env", "FOO"),
    bad("no-command", "add x --every 1m", "COMMAND"),
    bad("call-and-command", "add x --every 1m --call f -- true", "--call"),
    bad("name", "add 'bad name!' --every 1m -- true", "NAME", "bad name!"),
    bad("duplicate", "add often --every 1m -- true", "often", "already exists"),
    bad("unknown-flag", "add x --every 1m --bogus -- true", "--bogus"),
    bad("unknown-command", "frobnicate", "frobnicate"),
    bad("json", "--json add x --cron nope -- true", "--cron"),
    # unknown names
    bad("update-unknown", "update nope --every 5m", "nope"),
    bad("pause-unknown", "pause nope", "nope"),
    bad("resume-unknown", "resume nope", "nope"),
    bad("remove-unknown", "remove nope", "nope"),
    bad("trigger-unknown", "trigger nope", "nope"),
    bad("show-unknown", "show nope", "nope"),
    bad("history-unknown", "history nope", "nope"),
    bad("explain-unknown", "explain nope", "nope"),
    bad("logs-unknown", "logs nope#1", "RUN_ID", "nope#1"),
    # update
    bad("update-nothing", "update often", "nothing to change"),
    bad("update-zone", "update nightly --tz Mars/Base", "--tz", "Mars/Base"),
    bad("update-zone-on-every", "update often --tz UTC", "--tz"),
    bad("update-grace", "update often --grace late", "--grace"),
    bad("update-at-past", "update often --at 2020-01-01T00:00:00Z", "--at", "past"),
    bad("update-env", "update often --env X", "--env"),
    # submit
    bad("submit-no-command", "submit", "COMMAND"),
    bad("submit-call-and-command", "submit --call f -- true", "--call"),
    bad("submit-backoff", "submit --backoff xx -- true", "--backoff"),
    bad("submit-timeout", "submit --timeout zz -- true", "--timeout"),
    bad("submit-retries", "submit --retries -1 -- true", "--retries"),
    # the read commands and the audit tools
    bad("history-since", "history --since yesterday", "--since"),
    bad("history-limit", "history --limit 0", "--limit"),
    bad("show-runs", "show often --runs 0", "--runs"),
    bad("explain-at", "explain often --at bad", "--at"),
    bad("explain-at-before", "explain often --at 2020-01-01T00:00:00Z", "--at"),
    bad("replay-neither", "replay", "--at", "--position"),
    bad("replay-beyond", "replay --position 99", "--position", "99"),
    bad("replay-at", "replay --at garbage", "--at"),
    bad("replay-both", "replay --at 2026-01-01T00:00:00Z --position 1", "--position"),
    bad("replay-at-naive", "replay --at 2026-01-01T00:00:00", "--at", "offset"),
    bad("history-naive", "history --since 2026-01-01T00:00:00", "--since", "offset"),
    # run: the daemon refuses before it starts
    bad("run-for", "run --for 5x", "--for"),
    bad("run-until", "run --until tomorrow", "--until"),
    bad("run-drain-timeout", "run --drain-timeout zz --once", "--drain-timeout"),
    bad("run-config", "run --config missing.toml --once", "missing.toml"),
    bad("run-config-flag", "run --config missing.toml --once -q", "--config"),
    bad("run-max-workers", "run --max-workers 0 --once", "--max-workers"),
    bad("run-options-then-bad-for", "run --max-workers 4 --for 5x", "--for"),
    # apply
    bad("apply-missing-file", "apply missing.toml", "missing.toml", "does not exist"),
    bad(
        "apply-name-of-a-cli-schedule",
        "apply {dir}/clash.toml",
        *("schedules.often", "user:cli"),
        files=(("clash.toml", '[schedules.often]\nevery = "1m"\ncommand = ["true"]\n'),),
    ),
]


@pytest.mark.parametrize(("shot", "mentions"), BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_records_nothing(
    shots: Shots, shot: Shot, mentions: tuple[str, ...]
) -> None:
    result = shots[shot]
    one_error_line(result.done, 2, mentions)
    result.unchanged()


def _toml(case: str, text: str, *mentions: str, dry_run: bool = False) -> Any:
    command = "apply --dry-run {dir}/bad.toml" if dry_run else "apply {dir}/bad.toml"
    return bad(case, command, *mentions, files=(("bad.toml", text),))


@pytest.mark.parametrize(
    ("shot", "mentions"),
    [
        _toml("syntax", '[schedules.a]\nevery = 1m\ncommand = ["true"]\n', "bad.toml:2:10:"),
        _toml(
            "syntax-dry-run",
            '[schedules.a]\nevery = 1m\ncommand = ["true"]\n',
            "bad.toml:2:10:",
            dry_run=True,
        ),
        _toml("unclosed", '[schedules.a]\ncommand = ["true"\nretries = 2\n', "bad.toml:3:1:"),
        _toml("duplicate", '[schedules.a]\nevery = "1m"\nevery = "2m"\n', "bad.toml:3:"),
        _toml(
            "unknown-key",
            '[schedules.a]\nevery = "1m"\ncommand = ["true"]\nretires = 2\n',
            *("schedules.a.retires", "retries"),
        ),
        _toml(
            "hinted-key",
            '[schedules.a]\nevery = "1m"\ncommand = ["true"]\nmax_attempts = 2\n',
            *("schedules.a.max_attempts", "retries"),
        ),
        _toml("unknown-section", '[schedule.a]\nevery = "1m"\ncommand = ["true"]\n', "schedule"),
        _toml("cron", '[schedules.a]\ncron = "* * *"\ncommand = ["true"]\n', "schedules.a.cron"),
        _toml(
            "zone",
            '[schedules.a]\ncron = "0 3 * * *"\ntimezone = "Mars/Base"\ncommand = ["true"]\n',
            *("schedules.a.timezone", "Mars/Base"),
        ),
        _toml(
            "every", '[schedules.a]\nevery = "1 week"\ncommand = ["true"]\n', "schedules.a.every"
        ),
        _toml("no-target", '[schedules.a]\nevery = "1m"\n', "schedules.a", "command"),
        _toml("no-trigger", '[schedules.a]\ncommand = ["true"]\n', "schedules.a", "every"),
        _toml(
            "options",
            '[options]\nmax_workers = 0\n[schedules.a]\nevery = "1m"\ncommand = ["true"]\n',
            "options.max_workers",
        ),
    ],
)
def test_apply_refuses_a_bad_file(shots: Shots, shot: Shot, mentions: tuple[str, ...]) -> None:
    result = shots[shot]
    one_error_line(result.done, 2, mentions)
    result.unchanged()


@pytest.mark.parametrize(
    ("shot", "mentions"),
    [
        bad("cron-every", "add x --every 1m --cron '* * * * *' -- true", "--every", "--cron"),
        bad("every-at", "add x --every 1m --at 2030-01-01T00:00:00Z -- true", "--at", "--every"),
        bad("tz-every", "add x --every 1m --tz UTC -- true", "--tz", "--cron"),
        bad(
            "anchor-cron",
            "add x --cron '0 3 * * *' --anchor 2026-01-01T00:00:00Z -- true",
            "--anchor",
            "--every",
        ),
        bad("call-command", "add x --every 1m --call f -- true", "--call", "COMMAND"),
        bad("call-cwd", "add x --every 1m --call f --cwd /tmp", "--cwd", "--call"),
        bad(
            "backoff-no-retries", "add x --every 1m --backoff 5s -- true", "--backoff", "--retries"
        ),
        bad(
            "window-no-catch-up",
            "add x --every 1m --catch-up-window 1h -- true",
            "--catch-up-window",
            "--misfire catch-up",
        ),
        bad("update-call-env", "update job --env A=1", "--env", "--call"),
        bad("submit-call-command", "submit --call f -- true", "--call", "COMMAND"),
    ],
)
def test_a_flag_conflict_names_the_flags_not_file_keys(
    shots: Shots, shot: Shot, mentions: tuple[str, ...]
) -> None:
    result = shots[shot]
    line = one_error_line(result.done, 2, mentions)
    assert not re.search(r"\b(keep exactly one|set retries|misfire=|drop the window)\b", line)
    assert line.startswith(f"cronledger: error: {mentions[0]}: ")
    result.unchanged()


@pytest.mark.parametrize(
    ("shot", "mentions"),
    [
        bad("add-timeout", "add x --every 1m --timeout -5s -- true", "--timeout", "-5s"),
        bad("add-every", "add x --every -5m -- true", "--every", "-5m"),
        bad("add-grace", "add x --every 1m --grace -1m -- true", "--grace", "-1m"),
        bad("submit-timeout", "submit --timeout -5s -- true", "--timeout", "-5s"),
        bad("submit-timeout-equals", "submit --timeout=-5s -- true", "--timeout", "-5s"),
        bad("run-for", "run --for -5s", "--for", "-5s"),
    ],
)
def test_a_negative_duration_is_refused_with_or_without_equals(
    shots: Shots, shot: Shot, mentions: tuple[str, ...]
) -> None:
    result = shots[shot]
    line = one_error_line(result.done, 2, mentions)
    assert re.search(r"must be (positive|0 or more)", line), line
    result.unchanged()
    assert result.created == frozenset(), "files were created"


@pytest.mark.parametrize(
    ("shot", "mentions"),
    [
        bad("for", "run --for 5x", "--for"),
        bad("max-workers", "run --max-workers 0 --once", "--max-workers"),
        bad("config", "run --config missing.toml --once", "--config", "missing.toml"),
        bad(
            "config-key",
            "run --config {dir}/c.toml --once",
            "--config",
            "options.max_wrkers",
            files=(("c.toml", "[options]\nmax_wrkers = 2\n"),),
        ),
        bad("until-past", "run --until 2020-01-01T00:00:00Z", "--until", "future"),
        bad("until-naive", "run --until 2030-01-01T00:00:00", "--until", "offset"),
        bad("until-and-for", f"run --until {future()} --for 5s", "--for", "--until"),
        bad("once-and-for", "run --once --for 5s", "--for", "--once"),
        bad("drain-timeout", "run --once --drain-timeout -1s", "--drain-timeout"),
        bad("node-blank", "run --once --node ' '", "--node", "node name"),
        bad("ledger", "run --once", "--ledger", "foo", ledger="foo://x"),
        bad(
            "ledger-dir",
            "run --once",
            "--ledger",
            "no-such-dir",
            ledger="sqlite:///{dir}/no-such-dir/x.db",
        ),
    ],
)
def test_run_errors_are_one_error_line_naming_the_flag(
    shots: Shots, shot: Shot, mentions: tuple[str, ...]
) -> None:
    result = shots[shot]
    line = one_error_line(result.done, 2, mentions)
    assert line.startswith(f"cronledger: error: {mentions[0]}: "), line
    result.unchanged()
    assert result.created == frozenset(), "files were created"


@pytest.mark.parametrize(
    "shot", [Shot(("explain", "often", "--at", "2020-01-01T00:00:00Z"))], ids=["explain"]
)
def test_explain_at_errors_name_the_flag(shots: Shots, shot: Shot) -> None:
    result = shots[shot]
    line = one_error_line(result.done, 2, ["--at"])
    assert line.startswith("cronledger: error: --at: 'often' does not exist yet"), line


# --- ledgers that cannot be opened -------------------------------------------------------------

NO_DIR = "sqlite:///{dir}/no-such-dir/x.db"
POSTGRES_DOWN = "postgresql://nobody@127.0.0.1:1/x"
ADD = "add x --every 1m -- true"


@pytest.mark.parametrize(
    ("shot", "mentions"),
    [
        bad("missing-dir-add", ADD, "ledger", "no-such-dir", ledger=NO_DIR),
        bad("missing-dir-submit", "submit -- true", "ledger", "no-such-dir", ledger=NO_DIR),
        bad(
            "missing-dir-apply",
            f"apply {shlex.quote(str(SCENARIOS / 'schedules.toml'))}",
            *("ledger", "no-such-dir"),
            ledger=NO_DIR,
        ),
        bad("postgres-down-add", ADD, "ledger", "127.0.0.1:1", ledger=POSTGRES_DOWN),
        bad("postgres-down-list", "list", "ledger", "127.0.0.1:1", ledger=POSTGRES_DOWN),
        bad("postgres-down-run", "run --once", "ledger", "127.0.0.1:1", ledger=POSTGRES_DOWN),
        bad("bogus-scheme-add", ADD, "ledger", "foo", ledger="foo://x"),
        bad("bogus-scheme-list", "list", "ledger", "foo", ledger="foo://x"),
        bad("bogus-scheme-run", "run --once -q", "ledger", "foo", ledger="foo://x"),
        bad("sqlite-two-slashes", "list", "ledger", "sqlite:///", ledger="sqlite://relative.db"),
    ],
)
def test_a_ledger_url_that_cannot_be_opened(
    shots: Shots, shot: Shot, mentions: tuple[str, ...]
) -> None:
    result = shots[shot]
    down = shot.ledger == POSTGRES_DOWN  # the operation failed (1); the URL is not wrong (2)
    one_error_line(result.done, 1 if down else 2, mentions)
    assert result.created == frozenset(), "files were created"


@pytest.mark.parametrize("shot", [Shot(("run", "--once", "-q"), ledger=NO_DIR)], ids=["run"])
def test_run_on_a_ledger_in_a_missing_directory(shots: Shots, shot: Shot) -> None:
    result = shots[shot]
    assert "no-such-dir" not in result.created
    one_error_line(result.done, 2, ["ledger", "no-such-dir"])


@pytest.mark.parametrize("shot", [Shot(("run", "--once"), ledger="foo://x")], ids=["run"])
def test_run_on_a_ledger_url_that_cannot_be_opened_leaves_nothing(shots: Shots, shot: Shot) -> None:
    result = shots[shot]
    one_error_line(result.done, 2, ["ledger"])
    assert result.created == frozenset(), "files were created"


@pytest.mark.parametrize(
    ("shot", "mentions"),
    [
        bad(command.replace(" ", "-"), command, "--ledger", ledger="missing")
        for command in (
            "list",
            "show x",
            "status",
            "history",
            "logs x#1",
            "explain x",
            "replay --position 0",
            "verify",
            "--json list",
            "update x --every 1m",
            "pause x",
            "trigger x",
        )
    ],
)
def test_a_command_on_a_missing_ledger_file(
    shots: Shots, shot: Shot, mentions: tuple[str, ...]
) -> None:
    result = shots[shot]
    line = one_error_line(result.done, 2, mentions)
    assert "there is no ledger at" in line and "ledger.db" in line
    assert result.created == frozenset(), "a ledger was created"


@pytest.mark.parametrize(
    ("shot", "mentions"),
    [
        bad("add-bad-cron", "add x --cron '61 * * * *' -- true", "--cron", ledger="missing"),
        bad("add-bad-zone", "add x --every 1m --tz Mars/Base -- true", "--tz", ledger="missing"),
        bad("submit-bad-backoff", "submit --backoff xx -- true", "--backoff", ledger="missing"),
    ],
)
def test_bad_input_creates_no_ledger(shots: Shots, shot: Shot, mentions: tuple[str, ...]) -> None:
    result = shots[shot]
    one_error_line(result.done, 2, mentions)
    assert result.created == frozenset(), "bad input created a ledger"


# --- apply -------------------------------------------------------------------------------------


def test_apply_plans_then_records_and_is_idempotent(cli: Cli, tmp_path: Path) -> None:
    file = tmp_path / "schedules.toml"
    shutil.copy(SCENARIOS / "schedules.toml", file)

    dry = cli.ok("apply", "--dry-run", str(file))  # no ledger yet: a dry run creates none
    assert "dry run: nothing was recorded" in dry
    assert re.search(r"add\s.*hourly", dry) and re.search(r"add\s.*nightly", dry)
    assert cli.rows() is None

    cli.ok("add", "mine", "--every", "1h", "--", "echo", "mine")  # principal user:cli
    with cli.unchanged():
        plan = cli.json("apply", "--dry-run", str(file))
    assert plan["dry_run"] is True and plan["applied"] is False
    assert plan["summary"]["add"] == 2 and plan["summary"]["remove"] == 0
    added = {c["schedule_id"]: c for c in plan["changes"] if c["action"] == "add"}
    assert set(added) == {"hourly", "nightly"}
    assert all(t.endswith(":00:00.000Z") for t in added["hourly"]["after"])

    applied = cli.ok("apply", str(file))
    assert "applied: 2 facts recorded (ledger position 3)" in applied
    assert cli.position() == 3
    with cli.unchanged():
        assert "the ledger already matches; nothing to do" in cli.ok("apply", str(file))
        schedules, again = cli.jsons(["list"], ["apply", str(file)])
    assert again["empty"] is True and again["applied"] is False
    assert again["summary"]["unchanged"] == 2
    by_id = {s["id"]: s["spec"] for s in schedules["schedules"]}
    assert set(by_id) == {"hourly", "mine", "nightly"}
    assert by_id["nightly"]["principal"] == "system:cron"
    assert by_id["nightly"]["retry"]["max_attempts"] == 3
    assert by_id["mine"]["principal"] == "user:cli"


def test_apply_an_edited_file_updates_and_removes(cli: Cli, tmp_path: Path) -> None:
    file = tmp_path / "schedules.toml"
    text = (SCENARIOS / "schedules.toml").read_text()
    file.write_text(text)
    cli.ok("add", "mine", "--every", "1h", "--", "echo", "mine")
    cli.ok("apply", str(file))

    file.write_text(text.replace('cron = "0 3 * * *"', 'cron = "30 4 * * *"'))
    with cli.unchanged():
        plan = cli.json("apply", "--dry-run", str(file))
    (change,) = [c for c in plan["changes"] if c["action"] != "unchanged"]
    assert change["action"] == "update" and change["schedule_id"] == "nightly"
    assert change["fields"] == ["trigger.expr"]
    assert all(":00:00.000Z" in t for t in change["before"])  # 03:00 Berlin
    assert all(":30:00.000Z" in t for t in change["after"])  # 04:30 Berlin
    assert plan["summary"]["unchanged"] == 1

    out = cli.ok("apply", str(file))
    assert re.search(r"update\s.*nightly\s.*trigger\.expr", out), out
    assert "1 schedule(s) unchanged" in out

    file.write_text(text.split("[schedules.nightly]")[0])  # nightly left out of the file
    kept = cli.json("apply", "--keep", str(file))
    assert kept["empty"] is True
    assert schedules_in(cli)["nightly"]["spec"]["trigger"]["expr"] == "30 4 * * *"

    out = cli.ok("apply", str(file))
    assert re.search(r"remove\s.*nightly", out), out
    assert set(schedules_in(cli)) == {"hourly", "mine"}  # `mine` came from the CLI: kept


def test_apply_paused_key(cli: Cli, tmp_path: Path) -> None:
    file = tmp_path / "paused.toml"
    file.write_text('[schedules.p]\nevery = "1h"\ncommand = ["true"]\npaused = true\n')
    cli.ok("apply", str(file))
    assert schedules_in(cli)["p"]["paused"] is True
    file.write_text('[schedules.p]\nevery = "1h"\ncommand = ["true"]\npaused = false\n')
    assert re.search(r"resume\s.*\bp\b", cli.ok("apply", str(file)))
    assert schedules_in(cli)["p"]["paused"] is False


# --- run, history, logs, explain, status, verify (one real run) --------------------------------


@dataclass(frozen=True)
class Ran:
    cli: Cli
    runs: dict[str, list[dict[str, Any]]]  # `--json history NAME` of each schedule
    every: list[dict[str, Any]]  # `--json history`


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """jobs.toml applied, then `cronledger run --for 4s` (real time, real processes)."""
    cli = Cli(tmp_path_factory.mktemp("ran") / "ledger.db")
    cli.ok("apply", str(SCENARIOS / "jobs.toml"))
    done = cli("run", "--for", "4s", "--drain-timeout", "10s")
    assert done.returncode == 0, shown(done)
    assert "started: ledger" in done.stderr and "stopped at position" in done.stderr
    names = ("ok", "fails", "yearly")
    *each, every = cli.jsons(*(["history", n, "--limit", "1000"] for n in names), ["history"])
    return Ran(cli, {n: h["runs"] for n, h in zip(names, each, strict=True)}, every["runs"])


def test_run_then_history_shows_the_runs(ran: Ran) -> None:
    ok, fails = ran.runs["ok"], ran.runs["fails"]
    assert len(ok) >= 2, ok
    assert {r["outcome"] for r in ok} == {"succeeded"}
    assert all(r["exit_code"] == 0 and r["schedule_id"] == "ok" for r in ok)
    assert all(r["argv"] == ["sh", "-c", "echo out-ok; echo err-1 >&2"] for r in ok)
    assert all(r["stderr_tail"] == "err-1\n" for r in ok)
    assert len(fails) >= 2
    assert {(r["outcome"], r["exit_code"]) for r in fails} == {("failed", 3)}
    assert ran.runs["yearly"] == []
    assert len(ran.every) == len(ok) + len(fails)

    last, since, shown_json = ran.cli.jsons(
        ["history", "ok", "--limit", "1"],
        ["history", "ok", "--since", ok[-1]["assigned_at"]],
        ["show", "ok", "--runs", "2"],
    )
    assert last["runs"] == since["runs"] == ok[-1:]
    assert shown_json["recent_runs"] == ok[-2:]
    assert shown_json["schedule"]["last_outcome"] == "succeeded"
    assert shown_json["schedule"]["fire_count"] >= len(ok)
    text = ran.cli.ok("history", "ok")
    assert ok[0]["run_id"] in text and "succeeded" in text


def test_logs_of_a_run(ran: Ran) -> None:
    ok, fails = ran.runs["ok"][-1], ran.runs["fails"][-1]
    text = ran.cli.ok("logs", ok["run_id"])
    assert f"run {ok['run_id']}: succeeded" in text
    assert "err-1" in text
    out = ran.cli.json("logs", fails["run_id"])
    assert out["run"]["run_id"] == fails["run_id"]
    assert out["run"]["outcome"] == "failed"
    assert out["recorded_stderr"] == "boom\n"


def test_logs_of_a_run_that_could_not_be_spawned_show_both_streams(cli: Cli) -> None:
    """Each stream has its section, one with nothing recorded too (an explorer saw only
    stderr's)."""
    cli.ok("add", "np", "--every", "1h", "--", "/no/such/program")
    cli.ok("trigger", "np")
    cli.ok("run", "--once", "-q")
    [run] = cli.json("history", "np")["runs"]
    assert run["outcome"] == "failed" and run["reason"] == "spawn_failed", run
    text = cli.ok("logs", run["run_id"])
    assert "--- stdout (none recorded)" in text and "--- stderr" in text, text


def test_explain_a_run_and_a_schedule(ran: Ran) -> None:
    first, last = ran.runs["ok"][0], ran.runs["ok"][-1]
    run, schedule, then, yearly = ran.cli.jsons(
        ["explain", last["run_id"]],
        ["explain", "ok"],
        ["explain", "ok", "--at", first["assigned_at"]],
        ["explain", "yearly"],
    )
    assert (run["kind"], run["subject"], run["decision"]) == ("run", last["run_id"], "succeeded")
    assert run["rule"] and run["sentences"] and run["timeline"]
    assert (schedule["kind"], schedule["decision"]) == ("schedule", "fired")
    assert schedule["rule"].startswith("§3")
    assert then["decision"] == "fired" and then["rule"]
    assert then["position"] < schedule["position"]
    assert yearly["decision"] == "not_due" and yearly["rule"]

    text = ran.cli.ok("explain", last["run_id"])
    assert text.startswith(f"run {last['run_id']}: succeeded")
    assert "\nrule: §8" in text


def test_explain_json_follows_the_instant_convention(ran: Ran) -> None:
    x = ran.cli.json("explain", "ok")
    assert isinstance(x["at"], str) and x["at"].endswith("Z")
    assert isinstance(x["at_ms"], int)


def test_status_and_verify_after_a_run(ran: Ran) -> None:
    status, report = ran.cli.jsons(["status"], ["verify"])
    assert set(status["health"]) >= HEALTH_KEYS
    assert status["health"]["schedules"] == 3
    assert status["health"]["active_runs"] == 0
    assert status["health"]["position"] == ran.cli.position()
    assert status["last_tick_at"].endswith("Z") and isinstance(status["last_tick_at_ms"], int)
    assert status["options"]["max_workers"] >= 1
    assert status["runs"] == []
    assert report["divergence"] is None  # (ok true: checked by cli.json)
    assert report["events"] == ran.cli.position() and report["ticks"] >= 4
    assert ran.cli.ok("verify").startswith("verify OK:")


def _tamper(cli: Cli, topic: str, change: dict[str, Any], skip: int = 1) -> int:
    """Rewrite one stored fact's JSON state; returns its ledger position."""
    db = sqlite3.connect(cli.path)
    try:
        position, state = db.execute(
            "SELECT originator_version, state FROM stored_events WHERE topic = ? "
            "ORDER BY originator_version LIMIT 1 OFFSET ?",
            (topic, skip),
        ).fetchone()
        fact = json.loads(state)
        assert set(change) <= set(fact), fact
        fact.update(change)
        db.execute(
            "UPDATE stored_events SET state = ? WHERE originator_version = ?",
            (json.dumps(fact).encode(), position),
        )
        db.commit()
    finally:
        db.close()
    return int(position)


@pytest.mark.parametrize(
    ("topic", "change"),
    [
        pytest.param("FireRecorded", {"nominal": 1_000}, id="fire-nominal"),
        pytest.param("RunAssigned", {"argv": ["rm", "-rf", "/"]}, id="run-argv"),
    ],
)
def test_verify_catches_a_tampered_ledger(
    ran: Ran, tmp_path: Path, topic: str, change: dict[str, Any]
) -> None:
    cli = ran.cli.copy_to(tmp_path / "tampered.db")
    position = _tamper(cli, topic, change)
    text, as_json = concurrently([lambda: cli("verify"), lambda: cli("--json", "verify")])

    assert text.returncode == 1, shown(text)
    assert "Traceback" not in text.stderr
    assert re.search(rf"verify FAILED at ledger position {position}\b", text.stderr), shown(text)
    assert "recorded:" in text.stderr and "re-planned:" in text.stderr

    assert as_json.returncode == 1, shown(as_json)
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert report["divergence"]["position"] == position
    assert report["divergence"]["tick_position"] < position
    # the error object every failing --json command carries, and the line on stderr
    assert report["error"]["type"] == "Diverged" and report["error"]["exit_code"] == 1
    assert f"ledger position {position} " in report["error"]["message"]
    assert as_json.stderr.startswith("verify FAILED at ledger position"), shown(as_json)


def test_verify_of_a_ledger_with_an_undecodable_fact_fails_with_exit_1(cli: Cli) -> None:
    cli.ok("add", "a", "--every", "1h", "--", "true")
    cli.ok("add", "b", "--every", "2h", "--", "true")
    db = sqlite3.connect(cli.path)
    db.execute("UPDATE stored_events SET state = ? WHERE originator_version = 2", (b"{not json",))
    db.commit()
    db.close()
    done = cli("verify")
    assert done.returncode == 1, shown(done)
    assert done.stderr.startswith("verify FAILED: ledger position 2:"), shown(done)
    assert "Traceback" not in done.stderr
    as_json = cli("--json", "verify")
    assert as_json.returncode == 1, shown(as_json)
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["corrupted"]["position"] == 2
    assert "not valid JSON" in report["corrupted"]["problem"]
    assert report["error"]["type"] == "LedgerCorrupted" and report["error"]["exit_code"] == 1
    assert report["error"]["message"].startswith("verify FAILED: ledger position 2:")
    assert as_json.stderr.startswith("verify FAILED: ledger position 2:"), shown(as_json)


def test_a_daemon_on_a_missing_sqlite_ledger_says_it_started_a_new_one(tmp_path: Path) -> None:
    """`list` refuses a missing ledger; `run` creates it (a daemon may start first), and says
    so (an explorer's mistyped --ledger looked like a ledger with nothing due)."""
    done = cronledger("--ledger", "sqlite:///typo.db", "run", "--once", "-q", cwd=tmp_path)
    assert done.returncode == 0, shown(done)
    assert "no ledger at typo.db: started on a new, empty one" in done.stderr, shown(done)
    cronledger("--ledger", "sqlite:///typo.db", "submit", "--", "true", cwd=tmp_path)
    again = cronledger("--json", "--ledger", "sqlite:///typo.db", "run", "--once", cwd=tmp_path)
    assert again.returncode == 0 and "no ledger" not in again.stderr, shown(again)
    report = json.loads(again.stdout)  # what the daemon did, for a script
    assert report["ok"] is True and report["active_runs"] == 0, report
    # its own facts: the options change, the tick, the run's start and end (no other writer)
    assert report["position"] - report["started_at_position"] == report["facts"] >= 4, report


def test_run_once_then_logs_while_the_run_files_exist(cli: Cli) -> None:
    argv = ("sh", "-c", "echo to-out; echo to-err >&2")
    cli.ok("add", "yearly", "--cron", "0 0 1 1 *", "--", *argv)
    request = cli.json("trigger", "yearly")["request_id"]
    done = cli("run", "--once", "-q", "--drain-timeout", "0s")  # leave the run to the next daemon
    assert done.returncode == 0, shown(done)

    deadline = time.monotonic() + 20
    while True:  # the job's own output files, until the next daemon collects the run
        (run,) = cli.json("history", "yearly")["runs"]
        out = cli.json("logs", run["run_id"])
        if out["files"] and out["stdout"] == "to-out\n" and out["stderr"] == "to-err\n":
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.05)
    assert run["run_id"].startswith(request)
    assert run["outcome"] in ("running", "assigned")
    text = cli.ok("logs", run["run_id"])
    assert "--- stdout\nto-out" in text and "--- stderr\nto-err" in text

    done = cli("run", "--once", "-q")  # collects the exit
    assert done.returncode == 0, shown(done)
    (run,) = cli.json("history", "yearly")["runs"]
    assert (run["outcome"], run["exit_code"], run["stderr_tail"]) == ("succeeded", 0, "to-err\n")
    assert (run["stdout_tail"], run["stdout_dropped"], run["stderr_dropped"]) == ("to-out\n", 0, 0)
    text, verified = concurrently([lambda: cli.ok("logs", run["run_id"]), lambda: cli.ok("verify")])
    # the files are gone once the outcome is durable: both tails come from the ledger
    recorded = "(recorded in the ledger)"
    assert f"--- stdout {recorded}\nto-out" in text and f"--- stderr {recorded}\nto-err" in text
    assert verified.startswith("verify OK")
    out = cli.json("logs", run["run_id"])
    assert out["files"] is False and out["stdout"] is None
    assert (out["recorded_stdout"], out["recorded_stderr"]) == ("to-out\n", "to-err\n")
    assert out["recorded_stdout_dropped"] == out["recorded_stderr_dropped"] == 0


def test_logs_of_a_finished_chatty_run_show_the_recorded_tails_and_what_was_dropped(
    cli: Cli,
) -> None:
    argv = ("sh", "-c", "seq 1 3000; seq 1 2000 >&2; exit 4")  # 13,893 and 8,893 bytes
    cli.ok("add", "chatty", "--cron", "0 0 1 1 *", "--", *argv)
    cli.ok("trigger", "chatty")
    done = cli("run", "--once", "-q")
    assert done.returncode == 0, shown(done)
    (run,) = cli.json("history", "chatty")["runs"]
    assert (run["outcome"], run["exit_code"]) == ("failed", 4)
    assert run["stdout_tail"].endswith("\n2999\n3000\n") and len(run["stdout_tail"]) == 4096
    assert run["stdout_dropped"] == 13_893 - 4096
    assert run["stderr_tail"].endswith("\n2000\n") and run["stderr_dropped"] == 8_893 - 4096
    text = cli.ok("logs", run["run_id"])
    assert "--- stdout (recorded in the ledger; 9,797 earlier bytes dropped)\n" in text
    assert "--- stderr (recorded in the ledger; 4,797 earlier bytes dropped)\n" in text
    assert text.rstrip().endswith("1999\n2000")


def test_run_once_waits_for_the_runs_it_started_and_records_them(cli: Cli) -> None:
    cli.ok("add", "yearly", "--cron", "0 0 1 1 *", "--", "sh", "-c", "sleep 0.5; echo done")
    cli.ok("trigger", "yearly")
    done = cli("run", "--once", "-q")
    assert done.returncode == 0, shown(done)
    (run,) = cli.json("history", "yearly")["runs"]
    assert (run["outcome"], run["exit_code"]) == ("succeeded", 0)
    status = cli.json("status")
    assert status["runs"] == [] and status["health"]["draining"] is False
    assert cli.ok("verify").startswith("verify OK")
    assert "--drain-timeout" in cli.ok("run", "--help")


def test_run_once_fires_nothing_while_it_waits_and_leaves_draining_off(cli: Cli) -> None:
    cli.ok("add", "slow", "--cron", "0 0 1 1 *", "--", "sleep", "1.5")
    cli.ok("add", "fast", "--every", "1s", "--", "true")
    cli.ok("trigger", "slow")
    done = cli("run", "--once", "-q")
    assert done.returncode == 0, shown(done)
    topics = [topic.rsplit(".", 1)[-1].split(":")[-1] for _, topic, _ in cli.rows() or []]
    assert "FireSkipped" not in topics, "the wait judged fires it was not going to run"
    assert topics.count("FireRecorded") <= 2, "slow's trigger and at most fast's first fire"
    assert topics.count("TickStarted") >= 2, topics  # the exit came in a later tick
    (run,) = cli.json("history", "slow")["runs"]
    assert run["outcome"] == "succeeded"
    assert cli.json("status")["health"]["draining"] is False
    assert cli.ok("verify").startswith("verify OK")


# --- replay ------------------------------------------------------------------------------------


def test_replay_at_a_position_and_an_instant(cli: Cli) -> None:
    cli.ok("add", "a", "--every", "1h", "--", "true")
    cli.ok("add", "b", "--every", "2h", "--", "true")
    cli.ok("pause", "a")
    added_b = cli.json("show", "b")["schedule"]["added_at_ms"]

    def ids(document: dict[str, Any]) -> list[str]:
        return [s["id"] for s in document["schedules"]]

    empty, one, two, three, before_b, at_b, early = cli.jsons(
        ["replay", "--position", "0"],
        ["replay", "--position", "1"],
        ["replay", "--position", "2"],
        ["replay", "--position", "3"],
        ["replay", "--at", iso_ms(added_b - 1)],
        ["replay", "--at", iso_ms(added_b)],
        ["replay", "--at", "2020-01-01T00:00:00Z"],
    )
    assert (empty["position"], ids(empty)) == (0, [])
    assert (one["position"], ids(one)) == (1, ["a"])
    assert ids(two) == ["a", "b"] and two["schedules"][0]["paused"] is False
    assert three["schedules"][0]["paused"] is True
    assert (before_b["position"], ids(before_b)) == (1, ["a"])
    assert at_b["position"] >= 2 and ids(at_b) == ["a", "b"]
    assert (early["position"], ids(early)) == (0, [])

    text = cli.ok("replay", "--position", "1")
    assert "state as of --position 1: ledger position 1" in text
    assert "every 1h" in text and "every 2h" not in text
    cli.fails("replay", "--position", "4", mentions=("--position", "4", "3"))


# --- simulate ----------------------------------------------------------------------------------


def test_simulate_a_month(cli: Cli) -> None:
    file = str(SCENARIOS / "month.toml")
    text, report = concurrently(
        [lambda: cli.ok("simulate", file, *MONTH), lambda: cli.json("simulate", file, *MONTH)]
    )
    assert re.search(r"hourly\s+│\s+744\s", text), text
    fires = {s["schedule_id"]: s["fires"] for s in report["schedules"]}
    assert fires == {"hourly": 744, "daily": 31, "slow": 31 * 144}
    assert report["total"]["fires"] == 744 + 31 + 31 * 144
    assert report["total"]["failed"] == 0 and report["total"]["missed"] == 0
    assert (report["from"], report["to"]) == (
        "2026-01-01T00:00:00.000Z",
        "2026-02-01T00:00:00.000Z",
    )
    assert cli.rows() is None, "simulate touched the ledger"


def test_simulate_leaves_a_schedule_the_file_pauses_paused(cli: Cli, tmp_path: Path) -> None:
    """`paused = true` in the file: no fires (an explorer saw 24 a day, as if running)."""
    file = tmp_path / "paused.toml"
    file.write_text(
        '[schedules.p]\nevery = "1h"\ncommand = ["true"]\npaused = true\n\n'
        '[schedules.q]\nevery = "1h"\ncommand = ["true"]\npaused = false\n'
    )
    report = cli.json(
        "simulate", str(file), "--from", "2026-01-01T00:00Z", "--to", "2026-01-02T00:00Z"
    )
    fires = {s["schedule_id"]: s["fires"] for s in report["schedules"]}
    assert fires == {"p": 0, "q": 24}, fires


def test_simulate_failures_outages_and_runtimes(cli: Cli) -> None:
    file = str(SCENARIOS / "month.toml")
    outage = "2026-01-10T00:00:00Z..2026-01-11T00:00:00Z"
    failing, out = cli.jsons(
        ["simulate", file, *MONTH, "--fail-rate", "0.5", "--seed", "3"],
        ["simulate", file, *MONTH, "--outage", outage, "--runtime", "uniform:1s..5s"],
    )
    assert failing["fail_rate"] == 0.5
    assert 0 < failing["total"]["failed"] < failing["total"]["runs"]
    assert out["outages"] == [
        {"from": "2026-01-10T00:00:00.000Z", "to": "2026-01-11T00:00:00.000Z"}
    ]
    assert out["runtime"] == "uniform 1000..5000 ms"
    assert out["total"]["missed"] > 0
    hourly = next(s for s in out["schedules"] if s["schedule_id"] == "hourly")
    assert hourly["fires"] < 744
    assert cli.rows() is None


def test_simulate_compare_forbid_with_queue_one(cli: Cli) -> None:
    args = (
        *("simulate", str(SCENARIOS / "month.toml"), *MONTH, "--runtime", "15m"),
        *("--compare", str(SCENARIOS / "month_queue_one.toml")),
    )
    c, text = concurrently([lambda: cli.json(*args), lambda: cli.ok(*args)])
    assert c["changed"] == ["slow"]
    slow = next(s for s in c["schedules"] if s["schedule_id"] == "slow")
    assert slow["base"]["skipped"] > 0 and slow["other"]["skipped"] == 0
    assert slow["other"]["coalesced"] > 0
    assert slow["delta"]["runs"] > 0
    assert re.search(r"slow\s+│\s+\+\d+", text), text
    assert "2 schedule(s) behave the same" in text


def _sim(case: str, args: str, *mentions: str, marks: Any = (), **shot: Any) -> Any:
    file = shot.pop("file", SCENARIOS / "month.toml")
    command = f"simulate {shlex.quote(str(file))} {args}"
    return bad(case, command, *mentions, marks=marks, ledger="missing", **shot)


FROM_TO = " ".join(MONTH)


@pytest.mark.parametrize(
    ("shot", "mentions"),
    [
        _sim("runtime", f"{FROM_TO} --runtime bogus", "runtime", "bogus"),
        _sim("outage", f"{FROM_TO} --outage garbage", "outage", "garbage"),
        _sim(
            "outage-order",
            f"{FROM_TO} --outage 2026-01-11T00:00:00Z..2026-01-10T00:00:00Z",
            "outage",
        ),
        _sim("fail-rate", f"{FROM_TO} --fail-rate 2", "--fail-rate"),
        _sim(
            "to-before-from",
            "--from 2026-02-01T00:00:00Z --to 2026-01-01T00:00:00Z",
            *("--to", "--from"),
        ),
        _sim("to-garbage", "--from 2026-01-01T00:00:00Z --to later", "--to"),
        _sim("no-from", "--to 2026-01-01T00:00:00Z", "--from"),
        _sim("compare-missing", f"{FROM_TO} --compare missing.toml", "missing.toml"),
        _sim("missing-file", FROM_TO, "missing.toml", "does not exist", file="missing.toml"),
        _sim(
            "unknown-key",
            FROM_TO,
            "schedules.a.retires",
            file="{dir}/bad.toml",
            files=(("bad.toml", '[schedules.a]\nevery = "1m"\ncommand = ["true"]\nretires = 2\n'),),
        ),
        _sim("runtime-flag", f"{FROM_TO} --runtime bogus --seed 1", "--runtime"),
        _sim("outage-flag", f"{FROM_TO} --outage garbage --seed 1", "--outage"),
        _sim(
            "from-naive",
            "--from 2026-01-01T00:00:00 --to 2026-02-01T00:00:00Z",
            *("--from", "offset"),
        ),
    ],
)
def test_simulate_bad_input(shots: Shots, shot: Shot, mentions: tuple[str, ...]) -> None:
    result = shots[shot]
    one_error_line(result.done, 2, mentions)
    assert result.created == frozenset(), "simulate created files"


def test_global_flags_are_taken_after_the_command_too(seeded: Cli, tmp_path: Path) -> None:
    """`cronledger list --json` is `cronledger --json list`; a `--ledger` after the command
    wins over the one before it; and the command's help lists them."""
    before = seeded.json("list")
    after = seeded("list", "--json")
    assert after.returncode == 0 and after.stderr == "", shown(after)
    assert json.loads(after.stdout) == {"ok": True, **before}
    status = seeded("status", "--json")
    assert status.returncode == 0 and "health" in json.loads(status.stdout), shown(status)
    elsewhere = tmp_path / "elsewhere.db"
    seeded.fails(
        "list", "--ledger", f"sqlite:///{elsewhere}", mentions=["--ledger", str(elsewhere)]
    )
    assert not elsewhere.exists()
    assert "--json" in seeded.ok("list", "--help")


def test_hold_release_and_cancel_a_queue_entry(cli: Cli) -> None:
    """A task submitted held is released, held again and cancelled; each verb says whether it
    changed anything, and an entry that has left the queue is refused (exit 2)."""
    entry = cli.json("submit", "--hold", "review", "--", "true")["submitted"]
    assert cli.json("release", entry) | {"position": 0} == {
        "released": entry,
        "changed": True,
        "events": 1,
        "position": 0,
    }
    assert cli.json("release", entry)["changed"] is False
    assert "nothing to do (it is pending)" in cli.ok("release", entry)
    assert cli.ok("hold", entry, "--reason", "later").strip() == f"held {entry}"
    status = cli.json("status")
    [queued] = [e for e in status["queue"] if e["id"] == entry]
    assert (queued["status"], queued["hold_reason"]) == ("held", "later")
    assert cli.ok("cancel", entry).strip() == f"cancelled {entry}"
    with cli.unchanged():
        cli.fails("cancel", entry, mentions=[entry, "cronledger status"])
        cli.fails("hold", "nope", mentions=["nope"])


def test_run_applies_the_config_file_and_max_workers_and_records_them(
    cli: Cli, tmp_path: Path
) -> None:
    config = tmp_path / "daemon.toml"
    config.write_text(
        '[options]\nmax_workers = 3\nbatch_size = 7\nmisfire_grace = "2m"\n'
        "output_tail_bytes = 100\n"
    )
    done = cli("run", "--once", "--config", str(config), "--max-workers", "5")
    assert done.returncode == 0, shown(done)
    options = cli.json("status")["options"]
    assert (options["max_workers"], options["batch_size"]) == (5, 7)  # the flag wins
    assert (options["misfire_grace_ms"], options["output_tail_bytes"]) == (120_000, 100)
    assert options["draining"] is False
    report = cli.json("verify")
    assert report["divergence"] is None, report
    # a file is the whole table, as for `apply`: what it leaves out takes its default
    config.write_text("[options]\nmax_per_tick = 3\n")
    assert cli("run", "--once", "-q", "--config", str(config)).returncode == 0
    options = cli.json("status")["options"]
    assert (options["max_workers"], options["max_per_tick"], options["batch_size"]) == (16, 3, 64)
    assert cli("run", "--once", "-q", "--max-workers", "2").returncode == 0  # a flag alone
    options = cli.json("status")["options"]
    assert (options["max_workers"], options["max_per_tick"]) == (2, 3)  # changes only itself
    # a file's headroom with a flag's max_workers is judged whole (a review saw it refused)
    config.write_text("[options]\nslot_headroom = 20\n")
    both = cli("run", "--once", "-q", "--config", str(config), "--max-workers", "32")
    assert both.returncode == 0, shown(both)
    assert cli.json("status")["options"]["slot_headroom"] == 20
    # the flag alone, over options in force with headroom 20: refused under the flag's name
    cli.fails("run", "--once", "-q", "--max-workers", "8", mentions=("--max-workers", "20"))


def test_a_second_daemon_under_the_same_name_is_refused_and_records_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    cli.ok("submit", "--", "sleep", "8")
    environ = {k: v for k, v in os.environ.items() if k != "CRONLEDGER_LEDGER"}
    first = subprocess.Popen(
        [sys.executable, "-m", "cronledger.adapters.cli", "--ledger", cli.url, "run"],
        cwd=cli.cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        # the first daemon runs the job, and has recorded its RunStarted (a later tick does)
        while not any(r["pid"] for r in cli.json("status")["runs"]):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        before = cli.position()
        other_dir = tmp_path / "other-state"
        second = cli("run", "--once", "--max-workers", "1", "--state-dir", str(other_dir))
        assert second.returncode == 1, shown(second)
        assert not other_dir.exists(), "refused before its state dir was made"
        assert "another daemon is running on this ledger unnamed" in second.stderr
        assert "--node NAME" in second.stderr
        assert cli.position() == before, "the refused daemon recorded nothing"
        named = cli("run", "--once", "-q", "--node", "n2")  # another name may run beside it
        assert named.returncode == 0, shown(named)
        assert not any(t == "RunLost" for _, t, _ in cli.rows() or []), "the live run is kept"
        text = cli.ok("status")
        table = text.split("active runs\n", 1)[-1]
        assert re.search(r"run\W+node\W+started", table), table  # the node column
        assert re.search(r"task-1#1\W+-\W", table), table  # "-": started by the unnamed one
        assert re.search(r"daemons\W+unnamed running\s", text), text
        assert cli.json("status")["daemons"] == [{"node": None, "running": True}]
    finally:
        first.send_signal(signal.SIGTERM)  # drains: waits for the job, then undoes draining
        first.wait(timeout=30)
    assert [r["outcome"] for r in cli.json("history")["runs"]] == ["succeeded"]
    assert cli.json("status")["health"]["draining"] is False
    assert cli.json("status")["daemons"] == [{"node": None, "running": False}]
    assert cli.ok("verify").startswith("verify OK")


def test_run_names_its_node_on_the_runs_it_starts(cli: Cli) -> None:
    cli.ok("submit", "--", "true")
    done = cli("run", "--once", "--node", "box-7")
    assert done.returncode == 0, shown(done)
    assert "node box-7;" in done.stderr
    default = cli("run", "--once")
    assert "node (unnamed);" in default.stderr
    rows = read_rows(cli.cwd / "ledger.db") or []
    [assigned] = [json.loads(state) for _, topic, state in rows if topic == "RunAssigned"]
    assert assigned["node"] == "box-7"


def test_sigterm_during_run_once_s_wait_stops_it_and_undoes_draining(cli: Cli) -> None:
    cli.ok("submit", "--", "sleep", "30")
    environ = {k: v for k, v in os.environ.items() if k != "CRONLEDGER_LEDGER"}
    daemon = subprocess.Popen(
        [*CLI, "--ledger", cli.url, "run", "--once", "--drain-timeout", "60s"],
        cwd=cli.cwd,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not cli.json("status")["health"]["draining"]:  # waiting for its run now
            assert daemon.poll() is None and time.monotonic() < deadline, "no wait began"
            time.sleep(0.05)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, err
    status = cli.json("status")
    assert status["health"]["draining"] is False, "draining left in the ledger"
    assert len(status["runs"]) == 1, "the job is left to the next daemon"
    [run] = status["runs"]
    os.killpg(run["pid"], signal.SIGKILL)
