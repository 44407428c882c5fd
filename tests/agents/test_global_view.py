"""The global views' own consumers (streams.global_view)."""

from __future__ import annotations

from streams.app import settings
from streams.global_view import FETCH_WAIT_MS, GlobalView
from streams.tables import suppression


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
