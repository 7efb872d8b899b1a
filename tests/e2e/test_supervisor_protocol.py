"""The run supervisor's wire protocol, spoken directly: what each runner version is sent."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cronledger.adapters import supervisor as sup

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


class Client:
    def __init__(self, runs: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(sup.socket_path(str(runs)))
        self.buf = b""

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self, op: str) -> dict[str, Any]:
        while True:
            while b"\n" not in self.buf:
                data = self.sock.recv(1 << 16)
                assert data, "the supervisor hung up"
                self.buf += data
            line, self.buf = self.buf.split(b"\n", 1)
            message: dict[str, Any] = json.loads(line)
            if message["op"] == op:
                return message


@pytest.fixture
def runs(tmp_path: Path) -> Any:
    runs = tmp_path / "runs"
    runs.mkdir(mode=0o700)
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", sup.__file__, str(runs)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().decode().startswith("ready")
    yield runs
    proc.terminate()
    proc.wait(10)


def spawn_and_exit(client: Client, run_id: str, hello: dict[str, Any]) -> list[Any]:
    client.send({"op": "hello", "env": dict(os.environ), "cwd": os.getcwd(), **hello})
    assert client.receive("hello")["v"] == sup.PROTOCOL
    sh = "/bin/sh"
    item = [run_id, run_id, ["sh", "-c", "printf hello; printf oops >&2"], sh, False, None, None]
    client.send({"op": "spawn", "runs": [item]})
    assert client.receive("spawned")["runs"][0][1] == "ok"
    [exit] = client.receive("exits")["runs"]
    return list(exit)


def test_a_runner_of_protocol_2_gets_the_stdout_size_with_each_exit(runs: Path) -> None:
    assert spawn_and_exit(Client(runs), "new", {"v": 2}) == ["new", 0, False, 4, 5]


def test_an_older_runner_gets_the_exits_it_knows(runs: Path) -> None:
    # a daemon of the previous version, still connected after an upgrade, unpacks 4 items
    assert spawn_and_exit(Client(runs), "old", {}) == ["old", 0, False, 4]


def test_exec_refusing_the_program_spawns_the_spare_sent_along_and_says_fallback(
    runs: Path, tmp_path: Path
) -> None:
    script = tmp_path / "no-shebang"
    script.write_text("echo never\n")
    script.chmod(0o755)  # executable, but exec refuses it: ENOEXEC
    client = Client(runs)
    client.send({"op": "hello", "env": dict(os.environ), "cwd": os.getcwd(), "v": 3})
    client.receive("hello")
    sh = "/bin/sh"
    spare = [["sh", "-c", "printf spare"], sh]
    items = [
        ["a", "a", ["no-shebang"], str(script), False, None, None, spare],  # protocol 3
        ["b", "b", ["no-shebang"], str(script), False, None, None],  # an older runner's item
        ["c", "c", ["no-shebang"], str(script), False, None, None, [["x"], str(script)]],
    ]
    client.send({"op": "spawn", "runs": items})
    a, b, c = client.receive("spawned")["runs"]
    assert a[:2] == ["a", "ok"] and a[3] is True
    assert b == ["b", "failed", f"no-shebang: {os.strerror(errno.ENOEXEC)}"]
    enoexec = os.strerror(errno.ENOEXEC)
    assert c == ["c", "failed", f"no-shebang: {enoexec}; fallback: x: {enoexec}"]
    assert (runs / "a.st").read_text().split()[1] == "1", "the .st says fallback too"
    [exit] = client.receive("exits")["runs"]
    assert exit[:2] == ["a", 0] and (runs / "a.out").read_text() == "spare"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc")
def test_spawning_leaves_no_descriptor_open_in_the_supervisor(runs: Path, tmp_path: Path) -> None:
    script = tmp_path / "no-shebang"
    script.write_text("echo never\n")
    script.chmod(0o755)
    client = Client(runs)
    client.send({"op": "hello", "env": dict(os.environ), "cwd": os.getcwd(), "v": 3})
    pid = client.receive("hello")["pid"]

    def fds() -> int:
        return len(os.listdir(f"/proc/{pid}/fd"))

    def batch(tag: str) -> None:
        sh = ["sh", "-c", "true"], "/bin/sh"
        items = [[f"{tag}{i}", f"{tag}{i}", *sh, False, None, None] for i in range(10)]
        items.append([f"{tag}s", f"{tag}s", ["x"], str(script), False, None, None, [*sh]])
        items.append([f"{tag}r", f"{tag}r", ["x"], str(script), False, None, None])
        client.send({"op": "spawn", "runs": items})
        answers = client.receive("spawned")["runs"]
        assert [a[1] for a in answers] == ["ok"] * 11 + ["failed"]
        exited = 0
        while exited < 11:
            exited += len(client.receive("exits")["runs"])

    batch("a")  # (the first batch may open what the supervisor keeps, e.g. /dev/null lookups)
    before = fds()
    batch("b")
    batch("c")
    assert fds() == before, "each spawn leaks a descriptor"
