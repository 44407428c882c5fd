"""The global views' own consumers (streams.global_view)."""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
from faust.types import Message
from hypothesis import strategies as st

from agents import ingest
from privops.adapters.serde import Serde
from privops.core import records as r
from privops.core.identity import suppression_key
from streams import pipeline
from streams.app import settings
from streams.audit import PSEUDONYM_KEY, ref
from streams.global_view import FETCH_WAIT_MS, GlobalView
from streams.state import Unsealable, state
from streams.tables import suppression
from tests.agents.conftest import Outbox
from tests.agents.test_ingest_agent import consent_given


async def test_a_global_views_fetches_wait_a_little_for_data() -> None:
    """Every command writes the request index and every erasure the suppression list:
    each view's fetch waits for data (up to FETCH_WAIT_MS) instead of answering at once
    with one record, and another worker still sees a write within a tenth of a second."""
    for view in (suppression, GlobalView("any.topic")):
        consumer = view.consumer()
        assert consumer._fetch_max_wait_ms == FETCH_WAIT_MS
        assert consumer._fetch_min_bytes == settings.fetch_min_bytes > 1
        assert consumer._group_id is None  # the whole topic, in no group
    assert 0 < FETCH_WAIT_MS <= 100


class MovingOnce:
    """A sealer whose first flush finds the partitions moving (``Unsealable``)."""

    def __init__(self) -> None:
        self.asked = 0

    async def ready(self) -> None:
        return None

    async def storage_keys(self, wanted: Any) -> dict[str, None]:
        self.asked += 1
        if self.asked == 1:
            raise Unsealable("partition 0 of privacy.subject-keys is not this worker's")
        return dict.fromkeys(wanted)

    def lookup(self, _key_id: str) -> None:
        return None


def given(serde: Serde, subject: str, event_id: str, offset: int, **ids: str) -> Message:
    event = consent_given(event_id, subject, r.Identifiers(**ids))
    return Message(
        topic="marketing.events",
        partition=0,  # the agent tests count one partition (conftest.one_partition)
        offset=offset,
        timestamp=0.0,
        timestamp_type=0,
        headers=None,
        key=subject.encode(),
        value=serde.encode(event),
        checksum=None,
    )


async def test_a_put_whose_flush_is_dropped_is_sent_when_its_input_is_replayed(
    serde: Serde, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view's put changes the local copy when decided. If its flush was dropped (the
    partitions moving) and this worker kept the partition, the replay found the key here
    and never put it again: the erased person's new identifier, re-imported, reached
    neither the topic nor any other worker (review, session 26)."""
    erased_email, new_phone = "erased@example.com", "+447700900123"
    suppression._set(suppression_key(PSEUDONYM_KEY, "email", erased_email), ref("S-erased"))
    monkeypatch.setattr(state, "sealer", MovingOnce())
    chunk = [
        given(serde, "S-new", "e-1", 1, email=erased_email, phone=new_phone),  # a re-import
        given(serde, "S-other", "e-2", 2, email="x@example.com"),  # a sealed write: keys asked
    ]
    phone_key = suppression_key(PSEUDONYM_KEY, "phone", new_phone)
    await pipeline.work(chunk, ingest.on_message, None)
    assert phone_key not in suppression  # its flush was dropped: taken back here too
    await pipeline.on_revoked()  # the rebalance; this worker keeps the partition
    await pipeline.work(chunk, ingest.on_message, None)  # replayed from the commit
    sent = [key for topic, key, _ in outbox.views if topic == suppression.topic]
    assert phone_key.encode() in sent
    assert phone_key in suppression


def test_a_removal_sends_one_tombstone_and_spares_a_key_that_names_another_value() -> None:
    """``remove`` (a finished request's record deleted): a tombstone for a key it holds,
    nothing for one it does not, and, given ``if_value``, nothing for a key that now
    holds another value (a request id another subject took since; review, session 30)."""
    view = GlobalView("privops.internal.request-index")
    view._set("R-1", "S-1")
    view._set("R-2", "S-2")
    before = len(state._out)
    view.remove("R-1", if_value="S-1")
    view.remove("R-2", if_value="S-9")
    view.remove("R-3")
    assert (view.get("R-1"), view.get("R-2")) == (None, "S-2")
    assert not view.has_value("S-1")
    assert state._out[before:] == [(view.topic, b"R-1", None)]
    state._out[before:] = []  # never flushed: this view is no table's


def test_a_views_keys_are_found_by_their_value() -> None:
    """The request index answers a subject's requests without a pass over every
    request (an erasure's scrub, a hold's re-sent tasks, an access response's list);
    the suppression list whether a subject is on it. Both follow every change: a
    replaced value, a tombstone, a key set twice to the same value."""
    view = GlobalView("any.topic")
    view._apply(b"R-1", b"S-a")
    view._apply(b"R-2", b"S-a")
    view._apply(b"R-3", b"S-b")
    view._apply(b"R-2", b"S-a")  # the same value again (a replayed record)
    assert view.keys_of("S-a") == ("R-1", "R-2")
    assert view.keys_of("S-b") == ("R-3",)
    assert view.keys_of("S-none") == ()
    view._apply(b"R-1", b"S-b")  # taken by another subject
    assert (view.keys_of("S-a"), view.keys_of("S-b")) == (("R-2",), ("R-3", "R-1"))
    view._apply(b"R-2", None)  # a tombstone: the last of S-a's
    assert view.keys_of("S-a") == ()
    assert not view.has_value("S-a")
    assert view.has_value("S-b")
    view._apply(b"R-3", None)
    view._apply(b"R-1", None)
    assert view._keys == {}
    assert view.data == {}


_KEYS = st.sampled_from([f"R-{n}" for n in range(5)])
_VALUES = st.sampled_from([f"S-{n}" for n in range(3)])
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("read"), _KEYS, st.one_of(st.none(), _VALUES)),  # from the topic
        st.tuples(st.just("put"), _KEYS, _VALUES),
        st.tuples(st.just("remove"), _KEYS, st.one_of(st.none(), _VALUES)),  # if_value
        st.tuples(st.just("settle"), st.booleans(), st.none()),  # a flush handed or dropped
        st.tuples(st.just("clear"), st.none(), st.none()),
    ),
    max_size=40,
)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(steps=_STEPS)
def test_a_views_value_index_is_always_the_inverse_of_its_data(
    steps: list[tuple[str, Any, Any]],
) -> None:
    """Whatever the order of the topic's records, this worker's puts and removes, their
    flushes handed over or dropped (undone), and a clear: ``keys_of`` finds exactly the
    keys holding each value, each once."""
    view = GlobalView("any.topic")
    sent: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(state, "emit", lambda *record: sent.append(record))
        for step, key, value in steps:
            if step == "read":
                view._apply(key.encode(), None if value is None else value.encode())
            elif step == "put":
                view.put(key, value)
            elif step == "remove":
                view.remove(key, if_value=value)
            elif step == "settle":
                view._settle(key)
            else:
                view.clear()
            inverse: dict[str, list[str]] = {}
            for k, v in view.data.items():
                inverse.setdefault(v, []).append(k)
            assert {v: sorted(view.keys_of(v)) for v in inverse} == {
                v: sorted(ks) for v, ks in inverse.items()
            }
            assert all(len(set(view.keys_of(v))) == len(view.keys_of(v)) for v in inverse)
            assert {v for v in (f"S-{n}" for n in range(3)) if view.has_value(v)} == set(inverse)
