"""Engine options from a TOML file: the `[options]` table, validated with clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs

from cronledger.domain.durations import duration_ms
from cronledger.domain.validation import validate_options, validate_slots
from cronledger.domain.values import Options
from cronledger.errors import InvalidInput

# file key -> (Options field, parser)
_KEYS: dict[str, tuple[str, str]] = {
    "max_workers": ("max_workers", "int"),
    "max_per_tick": ("max_per_tick", "int"),
    "slot_headroom": ("slot_headroom", "int"),
    "fallback_headroom": ("fallback_headroom", "int"),
    "batch_size": ("batch_size", "int"),
    "misfire_grace": ("misfire_grace_ms", "duration"),
    "output_tail_bytes": ("output_tail_bytes", "int"),
}


def options_from_mapping(table: dict[str, Any], base: Options, where: str = "options") -> Options:
    """`base` with the keys of `table` applied; unknown keys and bad values name the key."""
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _KEYS:
            known = ", ".join(sorted(_KEYS))
            raise InvalidInput(f"{where}.{key}", "is not an option", f"use one of: {known}")
        field, kind = _KEYS[key]
        if kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidInput(
                    f"{where}.{key}", f"{value!r} is not a whole number", "write e.g. 8"
                )
            changes[field] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            # (a bare number in a file is ms to the library but seconds to a reader: refused,
            # as in a schedule's table)
            raise InvalidInput(
                f"{where}.{key}",
                f"{value!r} has no unit",
                f'write it as text with a unit, e.g. {key} = "{value}s"; units: ms s m h d w',
            )
        else:
            changes[field] = duration_ms(value, f"{where}.{key}")
    options = attrs.evolve(base, **changes)
    try:
        validate_options(options)
        validate_slots(options, changes)
    except InvalidInput as error:
        key = next((k for k, (f, _) in _KEYS.items() if f == error.field), error.field)
        raise InvalidInput(f"{where}.{key}", error.problem, error.fix) from None
    return options


def read_options(path: str | Path) -> dict[str, Any]:
    """The `[options]` table of a TOML file (empty when it has none); errors name --config."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise InvalidInput(
            "--config", f"{file} does not exist", "pass an existing TOML file"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput("--config", f"cannot read {file}: {error}", "pass a TOML file") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(
            "--config", f"{file} is not valid TOML: {error}", "fix the file's syntax"
        ) from None
    table = data.get("options", {})
    if not isinstance(table, dict):
        raise InvalidInput(
            "--config", f"{file}: options is not a table", "write [options] then key = value"
        )
    return table


def load_options(path: str | Path, base: Options) -> Options:
    """`base` with the `[options]` table of a TOML file applied."""
    return options_from_mapping(read_options(path), base)
