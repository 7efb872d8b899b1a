"""verify re-plans every recorded tick and names the first fact that does not follow."""

from __future__ import annotations

import attrs

from cronledger.domain import events as ev
from cronledger.domain.verify import verify
from tests.unit.test_projectors import _busy_world


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
