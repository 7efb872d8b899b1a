"""verify re-plans every recorded tick and names the first fact that does not follow."""

from __future__ import annotations

import attrs
import orjson

from cronledger.adapters.codec import default_codec
from cronledger.adapters.fake_runner import Script
from cronledger.domain import events as ev
from cronledger.domain.values import OUTPUT_TAIL_BYTES, Retry
from cronledger.domain.verify import verify
from tests.harness import MINUTE, SECOND, T0, World, spec
from tests.unit.test_projectors import _busy_world

CODEC = default_codec()


def test_an_untouched_log_verifies() -> None:
    w = _busy_world()
    report = verify(enumerate(w.log, 1))
    assert report.ok
    assert report.ticks == len(w.of(ev.TickStarted)) > 10
    assert report.snapshot == w.snapshot


def test_a_tampered_decision_is_reported_with_both_versions() -> None:
    w = _busy_world()
    log = list(w.log)
    index = next(i for i, e in enumerate(log) if isinstance(e, ev.FireRecorded) and i > 40)
    original = log[index]
    assert isinstance(original, ev.FireRecorded)
    log[index] = attrs.evolve(original, late_ms=original.late_ms + 1)
    report = verify(enumerate(log, 1))
    assert not report.ok and report.divergence is not None
    assert report.divergence.position == index + 1
    assert report.divergence.recorded == log[index]
    assert report.divergence.replanned == original


def test_a_dropped_decision_is_reported() -> None:
    w = _busy_world()
    log = list(w.log)
    index = next(i for i, e in enumerate(log) if isinstance(e, ev.RunAssigned) and i > 40)
    del log[index]
    report = verify(enumerate(log, 1))
    assert not report.ok and report.divergence is not None
    assert report.divergence.position <= index + 1


def test_a_forged_clock_reading_in_a_tick_header_is_reported() -> None:
    w = _busy_world()
    log = list(w.log)
    index = next(i for i, e in enumerate(log) if isinstance(e, ev.TickStarted) and i > 40)
    header = log[index]
    assert isinstance(header, ev.TickStarted)
    log[index] = attrs.evolve(header, at=header.at - 30_000)
    assert not verify(enumerate(log, 1)).ok


def _output_world() -> World:
    outcomes = iter([0, 1, 0, 2] * 50)
    w = World(lambda _c: Script(20 * SECOND, next(outcomes), stdout="out\n", stderr="e" * 5000))
    w.add(spec("a", retry=Retry(2, SECOND)))
    w.run_until(T0 + 5 * MINUTE, step=7 * SECOND)
    return w


NEW_FACT_KEYS = ("stdout_tail", "stdout_dropped", "stderr_dropped")


def _as_written_before_stdout_was_kept(event: ev.Event) -> ev.Event:
    """The event as an older version stored it: without the output fields added later (in
    the outcome facts and in the tick header's exits), decoded by today's codec."""
    topic, payload = CODEC.encode(event)
    state = orjson.loads(payload)
    if topic in ("RunSucceeded", "RunFailed"):
        for key in NEW_FACT_KEYS:
            del state[key]
    if topic == "TickStarted":
        for exit in state["exits"]:
            del exit["stdout_tail"], exit["stdout_dropped"]
    return CODEC.decode(topic, orjson.dumps(state), 1)


def test_a_ledger_written_before_stdout_was_kept_still_verifies() -> None:
    w = _output_world()
    outcomes = w.of(ev.RunSucceeded) + w.of(ev.RunFailed)
    assert outcomes and all(e.stdout_tail == "out\n" for e in outcomes)
    assert all(e.stderr_dropped == 5000 - OUTPUT_TAIL_BYTES for e in outcomes)
    assert verify(enumerate(w.log, 1)).ok

    old = [_as_written_before_stdout_was_kept(e) for e in w.log]
    old_outcomes = [e for e in old if isinstance(e, ev.RunSucceeded | ev.RunFailed)]
    assert len(old_outcomes) == len(outcomes)
    assert all(getattr(e, key) is None for e in old_outcomes for key in NEW_FACT_KEYS)
    report = verify(enumerate(old, 1))
    assert report.ok, report.divergence
    assert report.ticks == len(w.of(ev.TickStarted))
