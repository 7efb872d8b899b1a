"""The event codec: exact round trips, upcasting, and decode errors that name the position."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cronledger.adapters.codec import EventCodec
from cronledger.domain.events import (
    ALL_EVENTS,
    EntryQueued,
    Event,
    FireRecorded,
    RunAssigned,
    RunFailed,
    RunSucceeded,
    ScheduleAdded,
    TickStarted,
)
from cronledger.domain.values import Call, Command, ExitKind, RunExit
from cronledger.errors import LedgerCorrupted
from tests.integration.conftest import covers_all_events, one_of_each_event

CODEC = EventCodec()


def round_trip(event: Event, codec: EventCodec = CODEC) -> Event:
    topic, payload = codec.encode(event)
    return codec.decode(topic, payload, 1)


# --- round trips ----------------------------------------------------------------------------


def test_every_event_class_round_trips_exactly() -> None:
    events = one_of_each_event()
    assert covers_all_events(events)
    for event in events:
        back = round_trip(event)
        assert back == event
        assert type(back) is type(event)


def test_the_topic_is_the_class_name_and_the_payload_a_json_object_of_the_fields() -> None:
    event = RunSucceeded(
        at=5, run_id="r", entry_id="e", exit_code=1, duration_ms=2, stderr_tail="boom"
    )
    topic, payload = CODEC.encode(event)
    assert topic == "RunSucceeded"
    assert orjson.loads(payload) == {
        "at": 5,
        "run_id": "r",
        "entry_id": "e",
        "exit_code": 1,
        "duration_ms": 2,
        "stderr_tail": "boom",
        "stdout_tail": None,
        "stdout_dropped": None,
        "stderr_dropped": None,
    }
    assert CODEC.topics == {cls.__name__ for cls in ALL_EVENTS}


def test_tuples_and_enums_come_back_as_tuples_and_enum_members() -> None:
    tick, assigned, added = (
        next(e for e in one_of_each_event() if type(e) is cls)
        for cls in (TickStarted, RunAssigned, ScheduleAdded)
    )
    tick_back = round_trip(tick)
    assert isinstance(tick_back, TickStarted)
    assert type(tick_back.exits) is tuple and type(tick_back.requests) is tuple
    assert tick_back.exits[1].kind is ExitKind.SIGNALED
    assigned_back = round_trip(assigned)
    assert isinstance(assigned_back, RunAssigned)
    assert type(assigned_back.argv) is tuple
    added_back = round_trip(added)
    assert isinstance(added_back, ScheduleAdded)
    target = added_back.spec.target
    assert isinstance(target, Command)
    assert type(target.env) is tuple and all(type(pair) is tuple for pair in target.env)
    assert type(target.fallback) is tuple


def test_union_members_are_tagged_with_their_class_name() -> None:
    added = next(e for e in one_of_each_event() if type(e) is ScheduleAdded)
    state = orjson.loads(CODEC.encode(added)[1])
    assert state["spec"]["trigger"]["_t"] == "Cron"
    assert state["spec"]["target"]["_t"] == "Command"
    assert "_t" not in state["spec"]["retry"]  # not a union: no tag


def test_rebuilding_an_event_does_not_run_its_init() -> None:
    @attrs.frozen(kw_only=True, slots=False)
    class Audited(Event):
        note: str = attrs.field(validator=attrs.validators.max_len(3))

    with pytest.raises(ValueError):
        Audited(at=1, note="longer than three")
    codec = EventCodec(classes=[Audited])
    payload = b'{"at": 1, "note": "longer than three"}'  # stored before the rule existed
    back = codec.decode("Audited", payload, 9)
    assert isinstance(back, Audited)
    assert back.note == "longer than three"


texts = st.text(max_size=40)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
instants = st.integers(min_value=0, max_value=2**53)
maybe_ints = st.none() | ints

run_exits = st.builds(
    RunExit,
    run_id=texts,
    kind=st.sampled_from(ExitKind),
    finished_at=instants,
    exit_code=maybe_ints,
    signal=st.none() | st.integers(1, 64),
    stderr_tail=st.text(max_size=200),
    stderr_dropped=st.integers(0, 2**32),
    error=texts,
)
targets = st.one_of(
    st.builds(
        Command,
        argv=st.lists(texts, max_size=6).map(tuple),
        env=st.lists(st.tuples(texts, texts), max_size=4).map(tuple),
        cwd=st.none() | texts,
        fallback=st.none() | st.lists(texts, max_size=3).map(tuple),
    ),
    st.builds(Call, name=texts),
)
generated_events = st.one_of(
    st.builds(
        RunAssigned,
        at=instants,
        run_id=texts,
        entry_id=texts,
        attempt=st.integers(1, 100),
        argv=st.lists(texts, max_size=8).map(tuple),
        call=st.none() | texts,
        deadline=st.none() | instants,
    ),
    st.builds(
        RunFailed,
        at=instants,
        run_id=texts,
        entry_id=texts,
        reason=st.sampled_from(["exit", "timeout", "cancelled", "spawn_failed", "lost"]),
        exit_code=maybe_ints,
        signal=st.none() | st.integers(1, 64),
        duration_ms=ints,
        stderr_tail=st.text(max_size=500),
        error=texts,
        final=st.booleans(),
    ),
    st.builds(
        FireRecorded,
        at=instants,
        schedule_id=texts,
        nominal=instants,
        entry_id=texts,
        represents=st.integers(1, 10_000),
        late_ms=ints,
        hold=st.none() | texts,
        request_id=st.none() | texts,
        next_fire_at=st.none() | instants,
        due_at=st.none() | instants,
    ),
    st.builds(
        TickStarted,
        at=instants,
        tick=ints,
        exits=st.lists(run_exits, max_size=5).map(tuple),
        requests=st.lists(texts, max_size=5).map(tuple),
        decisions=st.integers(0, 10_000),
    ),
    st.builds(
        EntryQueued,
        at=instants,
        entry_id=texts,
        target=targets,
        priority=ints,
        hold=st.none() | texts,
        max_attempts=st.integers(1, 100),
        backoff_ms=ints,
        max_backoff_ms=ints,
        timeout_ms=st.none() | ints,
        principal=texts,
    ),
)


@given(generated_events)
def test_generated_events_round_trip_exactly(event: Event) -> None:
    assert round_trip(event) == event


@given(generated_events, generated_events)
def test_different_events_never_share_an_encoding(a: Event, b: Event) -> None:
    # A codec that dropped or merged fields would still "round trip" some values; not this.
    if a != b:
        assert CODEC.encode(a) != CODEC.encode(b)
    else:
        assert CODEC.encode(a) == CODEC.encode(b)


# --- upcasting ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=False)
class Pinged(Event):
    """Test-only history: v1 {host, tag}; v2 added port; v3 turned tag into tags."""

    class_version: ClassVar[int] = 3
    host: str
    port: int
    tags: tuple[str, ...]

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["port"] = 80

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> dict[str, Any]:
        tag = state.pop("tag")
        return {**state, "tags": [tag] if tag else []}


PING_CODEC = EventCodec(classes=[*ALL_EVENTS, Pinged])


def test_old_payloads_are_upcast_step_by_step_to_the_current_version() -> None:
    v1 = b'{"at": 1, "host": "db1", "tag": "primary"}'
    v2 = b'{"at": 2, "host": "db2", "port": 5433, "tag": "", "class_version": 2}'
    assert PING_CODEC.decode("Pinged", v1, 1) == Pinged(
        at=1, host="db1", port=80, tags=("primary",)
    )
    assert PING_CODEC.decode("Pinged", v2, 2) == Pinged(at=2, host="db2", port=5433, tags=())


def test_the_current_version_is_stored_only_above_one_and_round_trips() -> None:
    ping = Pinged(at=3, host="db3", port=6432, tags=("a", "b"))
    topic, payload = PING_CODEC.encode(ping)
    assert orjson.loads(payload)["class_version"] == 3
    assert PING_CODEC.decode(topic, payload, 3) == ping
    assert "class_version" not in orjson.loads(PING_CODEC.encode(one_of_each_event()[0])[1])


def test_a_payload_from_a_newer_version_is_corrupt_here_and_says_upgrade() -> None:
    v4 = b'{"at": 1, "host": "h", "port": 1, "tags": [], "class_version": 4}'
    with pytest.raises(LedgerCorrupted, match="upgrade") as caught:
        PING_CODEC.decode("Pinged", v4, 77)
    assert caught.value.position == 77


def test_a_class_version_without_its_upcasters_is_refused_when_the_codec_is_built() -> None:
    @attrs.frozen(kw_only=True, slots=False)
    class Forgetful(Event):
        class_version: ClassVar[int] = 2
        x: int

    with pytest.raises(TypeError, match="upcast_v1_v2"):
        EventCodec(classes=[Forgetful])


def test_field_types_the_ledger_cannot_store_are_refused_when_the_codec_is_built() -> None:
    @attrs.frozen(kw_only=True, slots=False)
    class Loose(Event):
        tags: set[str]

    with pytest.raises(TypeError, match="cannot store"):
        EventCodec(classes=[Loose])


def test_only_registered_classes_can_be_encoded() -> None:
    with pytest.raises(TypeError, match="not a registered event class"):
        EventCodec(classes=[RunSucceeded]).encode(one_of_each_event()[0])


def test_a_payload_written_before_a_field_with_a_default_existed_reads_as_that_default() -> None:
    # RunSucceeded gained its stdout fields later, with defaults; so did RunExit, nested in
    # the tick header: neither needed a new class_version
    old = b'{"at": 5, "run_id": "r", "entry_id": "e", "exit_code": 0, "duration_ms": 2, '
    old += b'"stderr_tail": "w"}'
    back = CODEC.decode("RunSucceeded", old, 9)
    assert back == RunSucceeded(
        at=5, run_id="r", entry_id="e", exit_code=0, duration_ms=2, stderr_tail="w"
    )
    assert (back.stdout_tail, back.stdout_dropped, back.stderr_dropped) == (None, None, None)
    header = CODEC.decode("TickStarted", TICK % (b"[" + EXIT % b'"exited"' + b"]"), 10)
    [exit] = header.exits  # type: ignore[attr-defined]
    assert exit == RunExit(run_id="r", kind=ExitKind.EXITED, finished_at=1, exit_code=0)
    assert (exit.stdout_tail, exit.stdout_dropped) == (None, 0)


@attrs.frozen(kw_only=True, slots=False)
class Box:
    size: int = 1
    label: str = "small"


@attrs.frozen(kw_only=True, slots=False)
class Tagged(Event):
    """Test-only: v1 was {at, name}; tags, box and kind were added later, with defaults."""

    name: str
    tags: tuple[str, ...] = ()
    box: Box = Box()
    kind: ExitKind = ExitKind.EXITED


TAGGED_CODEC = EventCodec(classes=[*ALL_EVENTS, Tagged])


def test_defaults_of_any_storable_type_read_as_if_stored_for_every_old_payload() -> None:
    # a tuple default reads as a tuple, a nested value as its own object, an enum as a member,
    # however many old payloads are read
    decoded = [TAGGED_CODEC.decode("Tagged", b'{"at": %d, "name": "x"}' % i, i) for i in (1, 2)]
    assert decoded == [Tagged(at=1, name="x"), Tagged(at=2, name="x")]
    assert decoded[0].box is not decoded[1].box
    nested = b'{"at": 3, "name": "y", "box": {"size": 9}, "tags": ["a"]}'
    assert TAGGED_CODEC.decode("Tagged", nested, 3) == Tagged(
        at=3, name="y", box=Box(size=9), tags=("a",)
    )


def test_a_missing_field_without_a_default_is_still_corrupt_even_beside_defaulted_ones() -> None:
    # exit_code has no default: only fields that have one may be missing
    payload = b'{"at": 5, "run_id": "r", "entry_id": "e", "duration_ms": 2, "stderr_tail": ""}'
    with pytest.raises(LedgerCorrupted, match=r"missing fields \['exit_code'\]"):
        CODEC.decode("RunSucceeded", payload, 3)
    nested = TICK % b'[{"run_id": "r", "kind": "exited", "stdout_tail": "x"}]'
    with pytest.raises(LedgerCorrupted, match=r"RunExit: missing fields \['finished_at'\]"):
        CODEC.decode("TickStarted", nested, 4)


# --- decode errors --------------------------------------------------------------------------

TICK = b'{"at": 1, "tick": 1, "exits": %s, "requests": [], "decisions": 0}'
EXIT = b'{"run_id": "r", "kind": %s, "finished_at": 1, "exit_code": 0, "signal": null, '
EXIT += b'"stderr_tail": "", "stderr_dropped": 0, "error": ""}'
ADDED = orjson.loads(CODEC.encode(one_of_each_event()[0])[1])

BAD_PAYLOADS = {
    "unknown_topic": ("NoSuchEvent", b"{}", "unknown event topic 'NoSuchEvent'"),
    "invalid_json": ("RunSucceeded", b'{"at": 1,', "RunSucceeded: payload is not valid JSON"),
    "not_an_object": ("RunSucceeded", b"[1, 2]", "payload is a JSON array"),
    "missing_field": ("RunStarted", b'{"at": 1, "run_id": "r", "pid": 3}', "missing fields"),
    "extra_field": (
        "RunStarted",
        b'{"at": 1, "run_id": "r", "pid": 3, "fallback": false, "colour": "red"}',
        "unexpected fields ['colour']",
    ),
    "tuple_is_a_string": ("TickStarted", TICK % b'"oops"', "field 'exits'"),
    "bad_enum_value": ("TickStarted", TICK % (b"[" + EXIT % b'"vanished"' + b"]"), "vanished"),
    "nested_missing_field": ("TickStarted", TICK % b'[{"run_id": "r"}]', "RunExit: missing"),
    "unknown_union_tag": (
        "ScheduleAdded",
        orjson.dumps({**ADDED, "spec": {**ADDED["spec"], "trigger": {"_t": "Hourly"}}}),
        "Hourly",
    ),
    "bad_class_version": ("RunStarted", b'{"at": 1, "class_version": "two"}', "class_version"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_a_payload_that_cannot_be_decoded_names_the_position_and_the_problem(case: str) -> None:
    topic, payload, problem = BAD_PAYLOADS[case]
    with pytest.raises(LedgerCorrupted) as caught:
        CODEC.decode(topic, payload, 1234)
    assert caught.value.position == 1234
    assert problem in str(caught.value)
    assert str(caught.value).startswith("ledger position 1234: ")


def test_a_lean_decoder_leaves_tick_exits_undecoded_and_everything_else_equal() -> None:
    from cronledger.adapters.codec import EventCodec
    from cronledger.domain.events import TickStarted
    from cronledger.domain.values import ExitKind, RunExit

    codec = EventCodec()
    header = TickStarted(
        at=5, tick=2, requests=("a!3",), decisions=4,
        exits=(RunExit(run_id="a@1#1", kind=ExitKind.EXITED, finished_at=4, exit_code=0),),
    )  # fmt: skip
    topic, payload = codec.encode(header)
    lean = codec.decoder_for(topic, lean=True)
    full = codec.decoder_for(topic)
    assert lean is not None and full is not None
    assert full(payload, 1) == header
    lean_header = lean(payload, 1)
    assert isinstance(lean_header, TickStarted)
    assert lean_header.exits == ()
    assert (lean_header.at, lean_header.tick, lean_header.requests) == (5, 2, ("a!3",))
