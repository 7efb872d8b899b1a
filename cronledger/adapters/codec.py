"""Events <-> orjson bytes: the ledger's mapper, planned once per class from the attrs field types.

Payload = a JSON object of the event's fields. Nested attrs values become objects; a field typed
as a union of attrs classes (`Cron | Every | At`, `Command | Call`) carries the class name under
`"_t"`. `"class_version"` is stored only when it is above 1; older payloads are upcast when
read, by the class's `upcast_vN_vN+1(state)` static methods, which see the plain JSON state
(lists, dicts, tags) and may change it in place or return a new dict. A field added with a
default needs no new version: a payload written before it existed reads as that default (in
events and in nested values alike); any other missing or unexpected field is an error.

Events are rebuilt without `__init__` (no validators on load); nested value objects are built by
calling their class. A payload that cannot be decoded raises `LedgerCorrupted` naming the ledger
position, the topic and the problem: nothing is dropped or guessed.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Union

import attrs
import orjson

from cronledger.errors import LedgerCorrupted

if TYPE_CHECKING:
    from cronledger.domain.events import Event

Convert = Callable[[Any], Any]
Decoder = Callable[[bytes, int], "Event"]

TAG: Final = "_t"
VERSION_KEY: Final = "class_version"
_NONE_TYPE: Final = type(None)
_SCALARS: Final[frozenset[Any]] = frozenset({int, str, bool, float, _NONE_TYPE, Any})
_loads = orjson.loads
_dumps = orjson.dumps
_new = object.__new__
_set = object.__setattr__


def _json_kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


# --- per-type converters: (encode, decode); None means "the JSON value is already right" ------

Plan = tuple[Convert | None, Convert | None]


def _plan(tp: Any) -> Plan:
    """Encoder and decoder for one declared type; TypeError for a type the ledger cannot store."""
    if tp in _SCALARS:
        return None, None
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _union_plan(tp)
    if origin is tuple:
        return _tuple_plan(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return None, _enum_decoder(tp)  # orjson writes an enum as its value
    if isinstance(tp, type) and attrs.has(tp):
        return _attrs_plan(tp, tag=None)
    raise TypeError(f"the event codec cannot store values of type {tp!r}")


def _enum_decoder(tp: type[enum.Enum]) -> Convert:
    members = tp._value2member_map_

    def dec(v: Any) -> Any:
        try:
            return members[v]
        except (KeyError, TypeError):  # not hashable, an alias or a missing value
            return tp(v)  # finds it, or raises ValueError naming the value

    return dec


def _maybe(convert: Convert | None) -> Convert | None:
    if convert is None:
        return None
    return lambda v: None if v is None else convert(v)


def _union_plan(tp: Any) -> Plan:
    args = typing.get_args(tp)
    members = [a for a in args if a is not _NONE_TYPE]
    optional = len(members) < len(args)
    if len(members) == 1:
        enc, dec = _plan(members[0])
    elif all(a in _SCALARS for a in members):
        return None, None
    elif all(isinstance(a, type) and attrs.has(a) for a in members):
        enc, dec = _tagged_plan(members)
    else:
        raise TypeError(f"the event codec cannot store the union {tp!r}")
    return (_maybe(enc), _maybe(dec)) if optional else (enc, dec)


def _tuple_plan(tp: Any) -> Plan:
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        item_enc, item_dec = _plan(args[0])

        def enc(v: Any) -> Any:
            return [item_enc(x) for x in v]  # type: ignore[misc]

        def dec(v: Any) -> Any:
            if type(v) is not list:
                raise TypeError(f"expected an array, got a JSON {_json_kind(v)}")
            return tuple(v) if item_dec is None else tuple([item_dec(x) for x in v])

        return (None if item_enc is None else enc), dec

    plans = [_plan(a) for a in args]
    size = len(plans)

    def fixed_enc(v: Any) -> Any:
        return [x if e is None else e(x) for (e, _), x in zip(plans, v, strict=True)]

    def fixed_dec(v: Any) -> Any:
        if type(v) is not list or len(v) != size:
            raise TypeError(f"expected an array of {size} items, got {v!r:.80}")
        return tuple([x if d is None else d(x) for (_, d), x in zip(plans, v, strict=True)])

    return (None if all(e is None for e, _ in plans) else fixed_enc), fixed_dec


def _attrs_plan(cls: type, tag: str | None) -> Plan:
    """Nested value object: a JSON object of its init fields, built back by calling the class."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in attrs.fields(cls) if f.init]  # init=False fields are derived: rebuilt
    specs = [(f.name, f.alias or f.name, *_plan(hints[f.name])) for f in fields]
    keys = frozenset(f.name for f in fields) | ({TAG} if tag else set())
    label = cls.__name__
    defaults = _encoded_defaults(fields, {name: e for name, _, e, _ in specs})

    def enc(v: Any) -> Any:
        out: dict[str, Any] = {TAG: tag} if tag else {}
        for name, _, e, _ in specs:
            x = getattr(v, name)
            out[name] = x if e is None else e(x)
        return out

    def fill(d: Any) -> dict[str, Any]:
        """`d` with the defaults of fields it predates, or the error of its shape."""
        if type(d) is not dict:
            raise TypeError(f"{label}: expected an object, got a JSON {_json_kind(d)}")
        state: dict[str, Any] = d
        if not _fill_defaults(state, keys, defaults):
            raise ValueError(f"{label}: {_key_problem(state.keys(), keys, defaults)}")
        return state

    # Generated like attrs' own __init__: one call with keyword arguments, no loop per field.
    scope: dict[str, Any] = {"cls": cls, "keys": keys, "fill": fill, "dict": dict}
    args = []
    for i, (name, alias, _, dc) in enumerate(specs):
        if not alias.isidentifier():
            raise TypeError(f"{label}: field alias {alias!r} is not an identifier")
        value = f"d[{name!r}]"
        if dc is not None:
            scope[f"c{i}"] = dc
            value = f"c{i}({value})"
        args.append(f"{alias}={value}")
    plain = (
        "__slots__" not in cls.__dict__
        and all(f.converter is None and f.validator is None for f in attrs.fields(cls))
        and len(fields) == len(attrs.fields(cls))
        and not hasattr(cls, "__attrs_post_init__")
        and all(name == alias for name, alias, _, _ in specs)
    )
    if plain:
        # A dict-backed class with nothing to run on init: the JSON object becomes its __dict__.
        scope["new"], scope["set"] = _new, _set
        body = "".join(
            f"    d[{name!r}] = c{i}(d[{name!r}])\n"
            for i, (name, _, _, dc) in enumerate(specs)
            if dc is not None
        )
        if tag:
            body += f"    del d[{TAG!r}]\n"
        source = (
            "def dec(d):\n"
            "    if type(d) is not dict or d.keys() != keys:\n"
            "        d = fill(d)\n" + body + "    o = new(cls)\n"
            "    set(o, '__dict__', d)\n"
            "    return o\n"
        )
    else:
        source = (
            "def dec(d):\n"
            "    if type(d) is not dict or d.keys() != keys:\n"
            "        d = fill(d)\n"
            f"    return cls({', '.join(args)})\n"
        )
    exec(compile(source, f"<cronledger codec for {label}>", "exec"), scope)
    dec: Convert = scope["dec"]
    if plain and not tag and all(e is None for _, _, e, _ in specs):
        names = [name for name, _, _, _ in specs]
        size = len(names)

        def enc_dict(v: Any) -> Any:
            """orjson writes the instance's own field dict (no copy) when it holds only fields."""
            state = v.__dict__
            return state if len(state) == size else {n: state[n] for n in names}

        return enc_dict, dec
    return enc, dec


def _tagged_plan(classes: list[type]) -> Plan:
    encoders: dict[type, Convert] = {}
    decoders: dict[str, Convert] = {}
    for cls in classes:
        if cls.__name__ in decoders:
            raise TypeError(f"two classes named {cls.__name__!r} in one union")
        enc, dec = _attrs_plan(cls, tag=cls.__name__)
        assert enc is not None and dec is not None
        encoders[cls], decoders[cls.__name__] = enc, dec
    expected = ", ".join(decoders)

    def encode(v: Any) -> Any:
        try:
            return encoders[type(v)](v)
        except KeyError:
            raise TypeError(f"{type(v).__name__} is not one of {expected}") from None

    def decode(d: Any) -> Any:
        if type(d) is not dict:
            raise TypeError(f"expected an object tagged {TAG!r}, got a JSON {_json_kind(d)}")
        dec = decoders.get(d.get(TAG))  # type: ignore[arg-type]
        if dec is None:
            raise ValueError(f"tag {TAG}={d.get(TAG)!r} is not one of {expected}")
        return dec(d)

    return encode, decode


def _encoded_defaults(
    fields: Iterable[attrs.Attribute[Any]], encoders: dict[str, Convert | None]
) -> dict[str, Any]:
    """Each field's plain default as JSON bytes (a payload that predates the field reads as
    it); fields without one, or with a factory, are required."""
    out: dict[str, bytes] = {}
    for f in fields:
        if f.default is attrs.NOTHING or isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
            continue
        encode = encoders.get(f.name)
        value = f.default if encode is None or f.default is None else encode(f.default)
        out[f.name] = _dumps(value)
    return out


def _fill_defaults(state: dict[str, Any], want: frozenset[str], defaults: dict[str, bytes]) -> bool:
    """Add the defaults of the fields `state` lacks, each a fresh JSON value (as if stored:
    a tuple reads as an array, and no two payloads share one); False if it lacks a field
    without one or has one `want` does not name (the caller reports the shape)."""
    have = state.keys()
    if not have <= want:
        return False
    missing = want - have
    if not missing <= defaults.keys():
        return False
    for name in sorted(missing):
        state[name] = _loads(defaults[name])
    return True


def _key_problem(got: Iterable[str], want: frozenset[str], optional: Iterable[str] = ()) -> str:
    have = set(got)
    parts = []
    if missing := sorted(want - have - set(optional)):
        parts.append(f"missing fields {missing}")
    if extra := sorted(have - want):
        parts.append(f"unexpected fields {extra} (written by a newer cronledger, or altered)")
    return ", ".join(parts)


# --- events ---------------------------------------------------------------------------------

# Fields the snapshot fold never reads, left undecoded (as ()) in a replay: a tick header's
# exits are a third of all decode time, and only `verify` (which decodes fully) needs them.
REPLAY_SKIPS: Final[dict[str, tuple[str, ...]]] = {"TickStarted": ("exits",)}


def _skipped(_value: Any) -> Any:
    return ()


class _EventPlan:
    """Everything needed to encode and decode one event class, built once."""

    __slots__ = (
        "cls", "decode", "defaults", "encoders", "lean_decode", "names", "size", "topic", "version",
    )  # fmt: skip

    def __init__(self, cls: type[Event]) -> None:
        if not attrs.has(typing.cast(Any, cls)) or not hasattr(_new(cls), "__dict__"):
            raise TypeError(f"{cls.__name__} must be an attrs class with slots=False")
        self.cls = cls
        self.topic = cls.__name__
        self.version: int = cls.class_version
        hints = typing.get_type_hints(cls)
        fields = attrs.fields(typing.cast(Any, cls))
        if any(not f.init for f in fields):
            raise TypeError(f"{cls.__name__}: events cannot have init=False fields")
        self.names = frozenset(f.name for f in fields)
        self.size = len(fields)
        if VERSION_KEY in self.names:
            raise TypeError(f"{cls.__name__}: a field cannot be named {VERSION_KEY!r}")
        plans = [(f.name, *_plan(hints[f.name])) for f in fields]
        self.encoders = tuple((n, e) for n, e, _ in plans if e is not None)
        self.defaults = _encoded_defaults(fields, {n: e for n, e, _ in plans})
        upcasters = []
        for v in range(1, self.version):
            name = f"upcast_v{v}_v{v + 1}"
            up = getattr(cls, name, None)
            if not callable(up):
                raise TypeError(f"{cls.__name__} has class_version {self.version} but no {name}")
            upcasters.append(up)
        decoders = tuple((n, d) for n, _, d in plans if d is not None)
        self.decode = _event_decoder(cls, self.names, decoders, upcasters, self.defaults)
        skipped = REPLAY_SKIPS.get(self.topic, ())
        self.lean_decode = (
            _event_decoder(
                cls,
                self.names,
                tuple((n, _skipped if n in skipped else d) for n, d in decoders),
                upcasters,
                self.defaults,
            )
            if skipped
            else self.decode
        )

    def encode(self, event: Event) -> bytes:
        state = event.__dict__
        if len(state) != self.size:  # e.g. a cached attribute: keep the fields only
            state = {n: state[n] for n in self.names}
        if self.encoders or self.version > 1:
            state = dict(state)
            for name, enc in self.encoders:
                state[name] = enc(state[name])
            if self.version > 1:
                state[VERSION_KEY] = self.version
        return _dumps(state)


def _event_decoder(
    cls: type[Event],
    names: frozenset[str],
    decoders: tuple[tuple[str, Convert], ...],
    upcasters: list[Callable[[dict[str, Any]], dict[str, Any] | None]],
    defaults: dict[str, bytes],
) -> Decoder:
    """The hot path: one orjson.loads, a key check, converters only for non-scalar fields."""
    topic = cls.__name__
    version = len(upcasters) + 1

    def fix_shape(loaded: Any, position: int) -> dict[str, Any]:
        if type(loaded) is not dict:
            raise LedgerCorrupted(
                position, f"{topic}: payload is a JSON {_json_kind(loaded)}, expected an object"
            )
        state: dict[str, Any] = loaded
        stored = state.pop(VERSION_KEY, 1)
        if type(stored) is not int or stored < 1:
            raise LedgerCorrupted(position, f"{topic}: invalid {VERSION_KEY} {stored!r}")
        if stored > version:
            raise LedgerCorrupted(
                position,
                f"{topic}: stored {VERSION_KEY} {stored} is newer than this code's {version} "
                "(upgrade cronledger to read this ledger)",
            )
        for v in range(stored, version):
            try:
                result = upcasters[v - 1](state)
            except Exception as e:
                raise LedgerCorrupted(
                    position, f"{topic}: upcast_v{v}_v{v + 1} failed: {e!r}"
                ) from e
            if result is not None:
                state = result
        if state.keys() != names and not _fill_defaults(state, names, defaults):
            problem = _key_problem(state.keys(), names, defaults)
            raise LedgerCorrupted(position, f"{topic}: {problem}")
        return state

    def decode(payload: bytes, position: int) -> Event:
        try:
            state = _loads(payload)
        except orjson.JSONDecodeError as e:
            raise LedgerCorrupted(position, f"{topic}: payload is not valid JSON ({e})") from None
        if type(state) is not dict or state.keys() != names:
            state = fix_shape(state, position)
        if decoders:
            name = ""
            try:
                for name, dec in decoders:
                    state[name] = dec(state[name])
            except Exception as e:
                raise LedgerCorrupted(position, f"{topic}: field {name!r}: {e}") from e
        event = _new(cls)
        event.__dict__.update(state)
        return event

    return decode


class EventCodec:
    """Maps events to (topic, orjson payload) and back; topic = the event class name."""

    def __init__(self, classes: Iterable[type[Event]] | None = None) -> None:
        if classes is None:
            from cronledger.domain.events import ALL_EVENTS

            classes = ALL_EVENTS
        self._by_class: dict[type, _EventPlan] = {}
        self._decoders: dict[str, Decoder] = {}
        self._lean: dict[str, Decoder] = {}
        for cls in classes:
            plan = _EventPlan(cls)
            if plan.topic in self._decoders and self._by_class.get(cls) is None:
                raise TypeError(f"two event classes share the topic {plan.topic!r}")
            self._by_class[cls] = plan
            self._decoders[plan.topic] = plan.decode
            self._lean[plan.topic] = plan.lean_decode

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self._decoders)

    def encode(self, event: Event) -> tuple[str, bytes]:
        """(topic, payload) for a registered event; TypeError for anything else."""
        plan = self._by_class.get(type(event))
        if plan is None:
            raise TypeError(f"{type(event).__name__} is not a registered event class")
        return plan.topic, plan.encode(event)

    def decode(self, topic: str, payload: bytes, position: int) -> Event:
        """The event stored at `position`; LedgerCorrupted when it cannot be rebuilt exactly."""
        decoder = self._decoders.get(topic)
        if decoder is None:
            raise LedgerCorrupted(position, f"unknown event topic {topic!r:.100}")
        return decoder(payload, position)

    def decoder_for(self, topic: str, *, lean: bool = False) -> Decoder | None:
        """The decoder of one topic (for bulk reads that cache it), or None if unknown.

        `lean` decoders leave the fields of REPLAY_SKIPS undecoded: for folding only.
        """
        return (self._lean if lean else self._decoders).get(topic)


_default: EventCodec | None = None


def default_codec() -> EventCodec:
    """The codec of `ALL_EVENTS`, built on first use (nothing happens at import time)."""
    global _default
    if _default is None:
        _default = EventCodec()
    return _default


def value_codec(tp: Any) -> tuple[Convert, Convert]:
    """(encode, decode) between a value of declared type `tp` and its JSON form."""
    enc, dec = _plan(tp)
    return (enc or _identity), (dec or _identity)


def _identity(value: Any) -> Any:
    return value
