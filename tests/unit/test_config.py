"""Engine options from a TOML file: applied on top of the current ones, errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cronledger.adapters.config import load_options
from cronledger.domain.values import Options
from cronledger.errors import InvalidInput


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cronledger.toml"
    path.write_text(text)
    return path


def test_options_are_read_from_the_options_table(tmp_path: Path) -> None:
    text = '[options]\nmax_workers = 4\nmisfire_grace = "90s"\nbatch_size = 32\n'
    path = _write(tmp_path, text + "output_tail_bytes = 512\n")
    options = load_options(path, Options())
    assert (options.max_workers, options.misfire_grace_ms, options.batch_size) == (4, 90_000, 32)
    assert options.output_tail_bytes == 512
    assert options.max_per_tick == Options().max_per_tick


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[options]\nmax_wrkers = 4\n", "options.max_wrkers"),
        ('[options]\nmax_workers = "four"\n', "options.max_workers"),
        ("[options]\nmax_workers = 0\n", "options.max_workers"),
        ("[options]\nslot_headroom = -1\n", "options.slot_headroom"),
        ('[options]\nmisfire_grace = "soon"\n', "options.misfire_grace"),
        ("[options]\noutput_tail_bytes = 65537\n", "options.output_tail_bytes"),
        ("[options]\noutput_tail_bytes = -1\n", "options.output_tail_bytes"),
        ("[options\nmax_workers = 4\n", "--config"),
        ("[options]\nmisfire_grace = 30\n", "options.misfire_grace"),  # no unit: not 30 ms
        ("[options]\nmisfire_grace = 1.5\n", "options.misfire_grace"),
        ("[options]\nmax_workers = 2\nslot_headroom = 2\n", "options.slot_headroom"),
        ("[options]\nmax_workers = 2\nslot_headroom = 5\n", "options.slot_headroom"),
    ],
)
def test_a_bad_options_file_names_the_key_and_the_fix(
    tmp_path: Path, text: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        load_options(_write(tmp_path, text), Options())
    assert caught.value.field == field


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_options(tmp_path / "nope.toml", Options())
