"""The README's examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_embedding_example_in_the_readme_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Embedding the core today\n\n```python\n(.*?)```", readme, re.S)
    assert block is not None, "the README lost its embedding example"
    script = tmp_path / "example.py"
    script.write_text(block.group(1))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "succeeded=1" in done.stdout


def test_the_demo_scenario_runs_and_verifies(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "core_scenario.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "re-planned from their recorded inputs: OK" in done.stdout
