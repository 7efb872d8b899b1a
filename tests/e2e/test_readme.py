"""The README's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_embedding_example_in_the_readme_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Embedding\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 2, "the README lost its embedding examples"
    script = tmp_path / "example.py"
    script.write_text(blocks[1])
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "nightly-backup@20260329T010000Z#1 succeeded" in done.stdout  # DST night: 03:00 CEST
    assert "runs: 15" in done.stdout


def test_the_readme_s_inline_value_calls_are_valid_python() -> None:
    """Every inline `Every(...)`, `At(...)`, `Retry(...)` or `Command(...)` call with
    arguments in the README builds (an explorer found `Every(interval, anchor=None)` written
    where the keyword is `anchor_ms`)."""
    import cronledger

    readme = (ROOT / "README.md").read_text()
    calls = re.findall(r"`((?:Every|At|Retry|Command)\([^`]*\))`", readme)
    concrete = [c for c in calls if '"' in c]  # values, not a signature or `Every(1s)` prose
    assert concrete, "the README lost its inline examples"
    names = {"timedelta": __import__("datetime").timedelta, **vars(cronledger)}
    for call in concrete:
        eval(call, names)  # (the README's own text)
    signatures = [c for c in calls if c not in concrete]
    for signature in signatures:  # e.g. Every(interval_ms, anchor_ms=None): keywords exist
        kind = getattr(cronledger, signature.split("(")[0])
        for keyword in re.findall(r"(\w+)=", signature):
            assert keyword in {f.name for f in __import__("attrs").fields(kind)}, signature


def test_make_demo_runs_applies_and_verifies(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "cronledger"
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh")],
        env={**os.environ, "DEMO_SECONDS": "6", "CRONLEDGER": str(cli), "PYTHON": sys.executable,
             "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for expected in ("applied: 6 facts", "status", "history", "skipped", "deferred", "verify OK"):
        assert expected in done.stdout, expected
    assert "--- stdout (recorded in the ledger)\ntick for 20" in done.stdout  # `logs` of a tick


def test_the_demo_scenario_runs_and_verifies(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "core_scenario.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "re-planned from their recorded inputs: OK" in done.stdout
