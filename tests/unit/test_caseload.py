"""The DPO's caseload (privops.core.caseload) and what the schedule knows of each open
request (``Schedule.open_requests``): no record is read to list them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from privops.core import caseload
from privops.core.request import RequestRecord, TaskRecord
from privops.core.schedule import OpenRequest, Schedule
from privops.core.vocab import RequestState, RequestType, System, TaskAction, TaskState

TODAY = date(2026, 12, 1)
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


def record(rid: str, request_type: RequestType, due: date | None, **fields: Any) -> RequestRecord:
    return RequestRecord(
        request_id=rid,
        request_type=request_type,
        subject_id=f"S-{rid}",
        actor="dpo",
        state=fields.pop("state", RequestState.awaiting_systems),
        received_on=TODAY - timedelta(days=10),
        due_on=due,
        created_at=NOW,
        **fields,
    )


def task(rid: str, system: System, state: TaskState) -> TaskRecord:
    return TaskRecord(
        task_id=f"{rid}:{system}:erase",
        system=system,
        action=TaskAction.erase,
        state=state,
        attempts=1,
        first_sent_at=NOW,
        next_check_at=NOW + timedelta(minutes=5),
    )


def test_the_schedule_lists_each_open_request_with_its_clock_and_what_it_waits_on() -> None:
    schedule = Schedule((7, 3, 1))
    erasure = record(
        "R-1",
        RequestType.erasure,
        TODAY + timedelta(days=5),
        tasks={
            t.task_id: t
            for t in (
                task("R-1", System.crm, TaskState.pending),
                task("R-1", System.orders, TaskState.done),
                task("R-1", System.web, TaskState.sent),
            )
        },
    )
    complaint = record(
        "R-2",
        RequestType.complaint,
        TODAY + timedelta(days=20),
        state=RequestState.in_progress,
        acknowledged_on=TODAY - timedelta(days=9),
    )
    paused = record(
        "R-3",
        RequestType.access,
        TODAY + timedelta(days=9),
        state=RequestState.paused,
        clarification_asked_on=TODAY - timedelta(days=1),
    )
    closed = record("R-4", RequestType.erasure, TODAY, state=RequestState.completed)
    for rec in (erasure, complaint, paused, closed):
        schedule.track(rec)
    ids = schedule.open_request_ids()
    assert sorted(ids) == ["R-1", "R-2", "R-3"]
    found = {rid: schedule.open_request(rid) for rid in ids}
    assert found["R-1"] == OpenRequest(
        request_id="R-1",
        subject_id="S-R-1",
        request_type="erasure",
        state="awaiting_systems",
        due_on=TODAY + timedelta(days=5),
        waiting_on=("crm", "web"),
    )
    # An acknowledged complaint: the response it was promised (no deadline alert fires).
    assert found["R-2"] is not None
    assert found["R-2"].due_on == TODAY + timedelta(days=20)
    # A clarification awaited: the clock is stopped, so no due date is watched.
    assert found["R-3"] is not None
    assert found["R-3"].due_on is None
    schedule.track(erasure.model_copy(update={"state": RequestState.completed}))
    assert sorted(schedule.open_request_ids()) == ["R-2", "R-3"]
    assert schedule.open_request("R-1") is None  # closed since its id was read


def listed(rid: str, kind: str, due: date | None) -> OpenRequest:
    return OpenRequest(rid, f"S-{rid}", kind, "in_progress", due, ())


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ({}, {"late", "today", "soon", "none"}),
        ({"due_within": "0"}, {"late", "today"}),
        ({"due_within": "3"}, {"late", "today", "soon"}),
        ({"type": "access"}, {"soon", "none"}),
        ({"type": "access", "due_within": "0"}, set()),
    ],
)
def test_the_filter(query: dict[str, str], kept: set[str]) -> None:
    wanted = caseload.Filter.parse(query)
    found = [
        listed("late", "erasure", TODAY - timedelta(days=1)),
        listed("today", "erasure", TODAY),
        listed("soon", "access", TODAY + timedelta(days=3)),
        listed("none", "access", None),
    ]
    assert {f.request_id for f in found if wanted.matches(f, TODAY)} == kept


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"type": "holiday"}, "type must be one of erasure"),
        ({"due_within": "-1"}, "due_within must be a whole number from 0"),
        ({"due_within": "1e3"}, "due_within must be a whole number"),
        ({"due_within": "99999"}, "to 3660"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 10000"),
        ({"order": "due"}, "unknown parameter(s) order: type, due_within, limit"),
    ],
)
def test_a_bad_query_says_what_to_fix(query: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        caseload.Filter.parse(query)


def test_an_entry_carries_the_subjects_ref_and_days_left_never_the_subject_id() -> None:
    found = OpenRequest("R-1", "ann@example.com", "erasure", "in_progress", TODAY, ("crm",))
    shown = caseload.entry(found, "sr_abc", TODAY + timedelta(days=2))
    assert shown == {
        "request_id": "R-1",
        "request_type": "erasure",
        "state": "in_progress",
        "subject_ref": "sr_abc",
        "due_on": "2026-12-01",
        "days_left": -2,
        "waiting_on": ["crm"],
    }
    assert "ann@example.com" not in str(shown)


def e(rid: str, due: str | None) -> dict[str, Any]:
    return {
        "request_id": rid, "request_type": "erasure", "state": "in_progress",
        "subject_ref": "sr_x", "due_on": due, "days_left": None, "waiting_on": [],
    }  # fmt: skip


def test_a_selection_keeps_the_first_due_within_its_limit_and_counts_every_match() -> None:
    wanted = caseload.Filter.parse({"limit": "3", "type": "erasure"})
    selection = caseload.Selection(wanted, TODAY)
    for day in range(50, 0, -1):  # fed latest first, in slices
        selection.add([listed(f"E-{day:02}", "erasure", TODAY + timedelta(days=day))])
        selection.add([listed(f"A-{day:02}", "access", TODAY)])  # another type: not counted
    selection.add([listed("E-none", "erasure", None)])
    assert selection.total == 51
    assert [f.request_id for f in selection.first()] == ["E-01", "E-02", "E-03"]
    assert len(selection._kept) <= 2 * 3 + 1  # bounded by the limit, not the matches


def test_the_parts_are_merged_due_first_within_the_limit() -> None:
    mine = caseload.Part((0, 1), 7, (e("B", "2026-12-05"), e("N", None), e("A", "2026-11-30")))
    theirs = caseload.Part((2, 3), 2, (e("C", "2026-12-01"), e("D", "2026-12-09")))
    merged = caseload.merged([mine, theirs], partitions=4, limit=10)
    assert merged is not None
    assert [x["request_id"] for x in merged["requests"]] == ["A", "C", "B", "D", "N"]
    assert merged["total"] == 9  # every worker's count, not only what is shown
    two = caseload.merged([mine, theirs], partitions=4, limit=2)
    assert two is not None
    assert [x["request_id"] for x in two["requests"]] == ["A", "C"]


@pytest.mark.parametrize(
    "theirs",
    [(2,), (1, 2, 3), (2, 3, 4)],
    ids=["a partition missing", "a partition twice (moving)", "a partition unknown"],
)
def test_parts_not_covering_each_partition_once_give_no_list(theirs: tuple[int, ...]) -> None:
    parts = [caseload.Part((0, 1), 0, ()), caseload.Part(theirs, 0, ())]
    assert caseload.merged(parts, partitions=4, limit=10) is None


def test_another_workers_part_is_checked_before_it_is_used() -> None:
    good = caseload.Part((2, 3), 1, (e("C", "2026-12-01"),))
    assert caseload.Part.parse(good.json()) == good
    for bad in (
        {"error": "x"},
        [1, 2],
        {**good.json(), "part": None},
        {**good.json(), "partitions": ["2"]},
        {**good.json(), "total": 0},
        {**good.json(), "requests": [{"request_id": "C"}]},
        {**good.json(), "requests": [{**e("C", None), "days_left": "3"}]},
    ):
        with pytest.raises(ValueError, match=r"."):
            caseload.Part.parse(bad)


def test_an_erasure_waiting_for_the_subjects_responses_lists_them() -> None:
    """``privops request list`` shows what a waiting erasure waits on (privops.core.response_first),
    and nothing once its work went out; no system's pending count moves."""
    schedule = Schedule((7, 3, 1))
    waiting = record(
        "R-5",
        RequestType.erasure,
        TODAY + timedelta(days=25),
        state=RequestState.in_progress,
        waits_for=["R-6", "R-7"],
    )
    schedule.track(waiting)
    found = schedule.open_request("R-5")
    assert found is not None
    assert found.waiting_on == ("response R-6", "response R-7")
    assert not schedule.ready  # before the rebuild: any subject's may wait
    assert schedule.erasure_waits("S-anyone")
    schedule.rebuilt()
    assert schedule.erasure_waits("S-R-5")
    assert not schedule.erasure_waits("S-other")
    assert sum(schedule.pending_counts.values()) == 0
    # its work went out (what it waited for stays on its record), every answer in
    sent = waiting.model_copy(
        update={
            "state": RequestState.awaiting_systems,
            "tasks": {t.task_id: t for t in (task("R-5", System.crm, TaskState.done),)},
        }
    )
    schedule.track(sent)
    found = schedule.open_request("R-5")
    assert found is not None
    assert found.waiting_on == ()
