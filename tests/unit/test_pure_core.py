"""The functional core imports nothing impure and reads no clock (CONVENTIONS §1)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "cronledger"
PURE_LAYERS = ("domain", "projectors")
ALLOWED_THIRD_PARTY = {"attrs", "croniter", "immutables"}
ALLOWED_OWN = ("cronledger.domain", "cronledger.projectors", "cronledger.errors")
FORBIDDEN_STDLIB = {
    "os", "sys", "subprocess", "sqlite3", "socket", "threading", "asyncio", "random", "time",
    "uuid", "secrets", "signal", "shutil", "tempfile", "io", "logging", "multiprocessing",
    "concurrent", "selectors", "http", "urllib", "pathlib",
}  # fmt: skip
FORBIDDEN_CALLS = {
    "now", "utcnow", "today", "time", "time_ns", "monotonic", "perf_counter", "uuid4", "uuid1",
    "random", "randint", "open", "print", "getenv",
}  # fmt: skip


def violations(source: str) -> list[str]:
    """Impure imports and calls in one module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top == "cronledger":
                if not name.startswith(ALLOWED_OWN):
                    found.append(f"imports {name}")
            elif top in FORBIDDEN_STDLIB or not (
                top in ALLOWED_THIRD_PARTY or top in sys.stdlib_module_names or top == "__future__"
            ):
                found.append(f"imports {name}")
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in FORBIDDEN_CALLS:
                found.append(f"line {node.lineno} calls {called}()")
    return found


def _modules() -> list[Path]:
    return sorted(p for layer in PURE_LAYERS for p in (ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_layers_import_only_stdlib_attrs_croniter_immutables_and_read_no_clock(
    path: Path,
) -> None:
    assert violations(path.read_text()) == []


def test_the_check_finds_clock_reads_randomness_io_and_adapter_imports() -> None:
    bad = (
        "import random\nimport eventsourcing\nfrom cronledger.adapters import cli\n"
        "from datetime import datetime\nx = datetime.now()\nopen('f')\n"
    )
    assert len(violations(bad)) == 5


def test_the_check_accepts_the_allowed_imports() -> None:
    good = "import attrs\nfrom croniter import croniter\nfrom zoneinfo import ZoneInfo\n"
    assert violations(good + "from cronledger.domain import events\n") == []
