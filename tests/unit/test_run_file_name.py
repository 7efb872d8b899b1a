"""Run file stems: an id's stem is its percent-encoding (quote with "@#!+=," safe), never
'.'-led, cut with a hash past 180 bytes; the shortcut for plain ids must agree with it."""

from __future__ import annotations

import hashlib
import urllib.parse

from hypothesis import given
from hypothesis import strategies as st

from cronledger.adapters.process_runner import run_file_name


def encoded(run_id: str) -> str:
    """The stem by the long way: what every id's stem was before the shortcut."""
    name = urllib.parse.quote(run_id, safe="@#!+=,")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > 180:
        name = name[:120] + "%h" + hashlib.sha256(run_id.encode()).hexdigest()[:40]
    return name


PLAIN = st.text(alphabet="abcXYZ019_.~@#!+=,-", min_size=1, max_size=200)
ANY = st.text(alphabet=st.sampled_from("aZ9_.~@#!+=,-:/ %é\u00a0\U0001f600"), max_size=200)


@given(PLAIN | ANY)
def test_the_stem_of_any_id_is_its_encoding(run_id: str) -> None:
    assert run_file_name(run_id) == encoded(run_id)


def test_the_usual_ids_are_their_own_stems() -> None:
    for run_id in ("task-12#1", "backup@20261202T150000Z#2", "a!7#3"):
        assert run_file_name(run_id) == run_id
    assert run_file_name(".hidden#1") == "%2Ehidden#1"
