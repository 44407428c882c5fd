"""Deadline alerts: each stage once, removal, a new due date, catch-up, cost and memory."""

from __future__ import annotations

import tracemalloc
import uuid
from datetime import date, timedelta

import pytest

from privops.core.errors import DomainError
from privops.core.sweep import BREACH_DAYS_BEFORE, Alerted, DeadlineIndex, Firing, offsets
from privops.core.vocab import AlertKind

D = date.fromisoformat
DUE = D("2026-03-20")


def sweep_daily(
    index: DeadlineIndex, first: date, last: date
) -> list[tuple[date, str, AlertKind, int | None]]:
    """Run the sweep once a day (twice, to prove ticks do not repeat alerts)."""
    seen: list[tuple[date, str, AlertKind, int | None]] = []
    day = first
    while day <= last:
        for _ in range(2):
            seen += [(day, f.request_id, f.kind, f.days_before) for f in index.pop_due(day)]
        day += timedelta(days=1)
    return seen


def test_each_alert_fires_once_on_its_day() -> None:
    index = DeadlineIndex()
    index.add("r1", DUE)
    fired = sweep_daily(index, D("2026-03-01"), D("2026-04-30"))
    assert fired == [
        (D("2026-03-13"), "r1", AlertKind.deadline_approaching, 7),
        (D("2026-03-17"), "r1", AlertKind.deadline_approaching, 3),
        (D("2026-03-19"), "r1", AlertKind.deadline_approaching, 1),
        (D("2026-03-21"), "r1", AlertKind.deadline_breached, None),
    ]
    assert len(index) == 1  # still open (breached, unfinished) until removed


def test_firing_carries_due_and_stage() -> None:
    index = DeadlineIndex()
    index.add("r1", DUE, thresholds=(14, 7))
    assert index.pop_due(D("2026-03-06")) == [
        Firing("r1", AlertKind.deadline_approaching, DUE, 14, 0)
    ]


def test_completed_request_raises_nothing() -> None:
    index = DeadlineIndex()
    index.add("done-early", DUE)
    index.add("done-late", DUE)
    index.remove("done-early")
    assert index.pop_due(D("2026-03-13")) == [
        Firing("done-late", AlertKind.deadline_approaching, DUE, 7, 0)
    ]
    index.remove("done-late")
    index.remove("never-added")
    assert sweep_daily(index, D("2026-03-13"), D("2026-05-01")) == []
    assert len(index) == 0


def test_reschedule_after_extension_rearms_for_the_new_due_date() -> None:
    index = DeadlineIndex()
    index.add("r1", DUE)
    assert [f.days_before for f in index.pop_due(D("2026-03-13"))] == [7]
    new_due = D("2026-05-20")
    index.add("r1", new_due)
    assert index.due("r1") == new_due
    fired = sweep_daily(index, D("2026-03-14"), D("2026-06-01"))
    assert [(day, kind, before) for day, _, kind, before in fired] == [
        (D("2026-05-13"), AlertKind.deadline_approaching, 7),
        (D("2026-05-17"), AlertKind.deadline_approaching, 3),
        (D("2026-05-19"), AlertKind.deadline_approaching, 1),
        (D("2026-05-21"), AlertKind.deadline_breached, None),
    ]


def test_readd_with_the_same_due_date_is_idempotent() -> None:
    index = DeadlineIndex()
    index.add("r1", DUE)
    assert len(index.pop_due(D("2026-03-13"))) == 1
    index.add("r1", DUE)  # a redelivered command
    index.add("r1", DUE, alerted=7)  # the record caught up with what the index fired
    assert index.pop_due(D("2026-03-13")) == []
    assert [f.days_before for f in index.pop_due(D("2026-03-17"))] == [3]


def test_catch_up_after_a_gap_fires_only_the_most_urgent() -> None:
    index = DeadlineIndex()
    index.add("r1", DUE)
    index.add("r2", DUE + timedelta(days=10))
    # The sweep was down from 1 March until the 19th: r1 gets its 1-day alert only.
    assert index.pop_due(D("2026-03-19")) == [
        Firing("r1", AlertKind.deadline_approaching, DUE, 1, 2)
    ]
    # Down again until long after both due dates: one breach each, nothing else.
    fired = index.pop_due(D("2026-04-30"))
    assert sorted((f.request_id, f.kind) for f in fired) == [
        ("r1", AlertKind.deadline_breached),
        ("r2", AlertKind.deadline_breached),
    ]
    assert index.pop_due(D("2026-05-30")) == []


def test_request_added_inside_the_window_gets_the_current_alert() -> None:
    index = DeadlineIndex()
    index.add("late", DUE)
    assert [f.days_before for f in index.pop_due(D("2026-03-18"))] == [3]


def test_sweep_work_grows_with_due_items_not_open_items() -> None:
    index = DeadlineIndex()
    for n in range(50_000):
        index.add(f"far-{n}", D("2027-01-01") + timedelta(days=n % 300))
    for n in range(10):
        index.add(f"near-{n}", DUE)
    index.pops = 0
    assert len(index.pop_due(D("2026-03-13"))) == 10
    assert index.pops == 10
    assert index.pop_due(D("2026-03-13")) == []
    assert index.pops == 10
    # Removed-but-due entries are dropped lazily: still work proportional to what is due.
    for n in range(5):
        index.remove(f"near-{n}")
    index.pops = 0
    assert len(index.pop_due(D("2026-03-17"))) == 5
    assert index.pops == 10


def test_stale_entries_are_compacted() -> None:
    index = DeadlineIndex()
    for n in range(5_000):
        index.add(f"r{n}", DUE)
    for n in range(4_000):
        index.remove(f"r{n}")
    for n in range(4_000, 5_000):
        index.add(f"r{n}", DUE + timedelta(days=1))
    assert len(index._heap) <= 2 * len(index) + 1024
    assert len(index.pop_due(D("2026-03-14"))) == 1_000


def test_rebuild_from_request_table_skips_what_the_record_says_was_raised() -> None:
    index = DeadlineIndex()
    index.add("r1", DUE, alerted=7)  # the 7-day alert was sent before the restart
    assert index.pop_due(D("2026-03-13")) == []
    assert [f.stage for f in index.pop_due(D("2026-03-17"))] == [1]
    index.add("r2", DUE, alerted=BREACH_DAYS_BEFORE)  # breached before the restart
    assert sweep_daily(index, D("2026-03-18"), D("2026-05-01")) == [
        (D("2026-03-19"), "r1", AlertKind.deadline_approaching, 1),
        (D("2026-03-21"), "r1", AlertKind.deadline_breached, None),
    ]
    with pytest.raises(DomainError, match="below the breach"):
        index.add("r3", DUE, alerted=-2)


def test_thresholds_are_deduplicated_sorted_and_validated() -> None:
    index = DeadlineIndex()
    index.add("r1", DUE, thresholds=[1, 7, 7])
    assert [f.days_before for f in index.pop_due(D("2026-03-13"))] == [7]
    with pytest.raises(DomainError, match=">= 0"):
        index.add("r2", DUE, thresholds=(-1,))
    assert "r1" in index
    assert "r2" not in index


def test_memory_per_open_request_is_under_1kb() -> None:
    count = 50_000
    ids = [str(uuid.UUID(int=n)) for n in range(count)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index = DeadlineIndex()
        for n, rid in enumerate(ids):
            index.add(rid, DUE + timedelta(days=n % 90))
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The ids were allocated before measuring; count them in as the index keeps them.
    id_bytes = sum(len(rid) + 49 for rid in ids)
    assert len(index) == count
    assert (used + id_bytes) / count < 1024


# --- the once-per-stage rule the workflow applies to its record ---------------------------


@pytest.mark.parametrize(
    ("alerted", "due", "days_before", "covered"),
    [
        (None, DUE, 7, False),
        (Alerted(DUE, 7), DUE, 7, True),  # the same stage again
        (Alerted(DUE, 3), DUE, 7, True),  # a less urgent stage arriving late
        (Alerted(DUE, 7), DUE, 3, False),  # the next stage
        (Alerted(DUE, 1), DUE, BREACH_DAYS_BEFORE, False),  # the breach after the last warning
        (Alerted(DUE, BREACH_DAYS_BEFORE), DUE, 1, True),  # nothing after the breach
        (Alerted(DUE, BREACH_DAYS_BEFORE), DUE, BREACH_DAYS_BEFORE, True),
        # A new due date (extension, pause) re-arms every stage.
        (Alerted(DUE, BREACH_DAYS_BEFORE), DUE + timedelta(days=61), 7, False),
    ],
)
def test_alerted_covers(
    alerted: Alerted | None, due: date, days_before: int, covered: bool
) -> None:
    assert (alerted is not None and alerted.covers(due, days_before)) is covered


def test_offsets_end_with_the_breach_and_survive_a_threshold_change() -> None:
    assert offsets((1, 7, 3, 7)) == (7, 3, 1, BREACH_DAYS_BEFORE)
    assert offsets(()) == (BREACH_DAYS_BEFORE,)
    # The record keeps an offset, not a position: with new thresholds (14, 2) a request
    # that was warned 3 days before gets only the 2-day warning and the breach.
    index = DeadlineIndex()
    index.add("r1", DUE, thresholds=(14, 2), alerted=3)
    fired = sweep_daily(index, D("2026-03-01"), D("2026-04-01"))
    assert [(day, before) for day, _, _, before in fired] == [
        (D("2026-03-18"), 2),
        (D("2026-03-21"), None),
    ]
