"""An access request's search details (privops.core.search): CCTV footage is filed by
camera and time, so a visitor who never gave a name is found by when and where they
were. Before, their access request was answered "we hold nothing" while the footage
was there."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from privops import contract
from privops.adapters.avro import latest_schemas
from privops.connectors.reference import CctvConnector, exported_file, seed_customers, seed_stores
from privops.core import records as r
from privops.core import sealing, search
from privops.core import workflow as wf
from privops.core.clock import UK
from privops.core.datamap import DataMap
from privops.core.fanout import NOTHING_FOUND
from privops.core.personal import personal_paths
from privops.core.sealing import personal_values_in
from privops.core.topics import tasks_topic
from privops.core.vocab import RequestState, RequestType, System
from privops.tools.command_sealing import new_key
from tests.unit.test_workflow import (
    ASKED,
    NOW,
    answer,
    at,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    of_type,
    submit,
    tasks_out,
    tick,
)

S = RequestState
DETAILS = {
    "date": "2025-03-01",
    "times": "14:00-15:30",
    "location": "trade counter, Leeds",
    "appearance": "red coat, grey hair, walking stick",
}


@pytest.fixture
def stranger(ctx: wf.Context) -> wf.Context:  # noqa: F811
    return dataclasses.replace(ctx, identity=None, known_subject=False)


def _searching(context: wf.Context, **kw: Any) -> wf.Outcome:
    outcome = wf.on_command(None, submit(RequestType.access, search=DETAILS, **kw), context)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    return outcome


def _told(outcome: wf.Outcome) -> str:
    """Everything the outcome says outside the sealed values: audit, answer, message."""
    steps = [f"{a.action} {a.after} {a.reason}" for a in outcome.audit]
    return " ".join([*steps, outcome.message or "", str(outcome.answer)])


def test_a_strangers_search_asks_the_system_searched_by_details(stranger: wf.Context) -> None:
    outcome = _searching(stranger, reason="came to the counter and asked in person")
    rec = outcome.record
    assert rec is not None
    assert rec.state is S.awaiting_systems
    (task,) = tasks_out(outcome)
    assert isinstance(task, r.Export)
    assert (task.system, task.identifiers, task.search) == (System.cctv, {}, DETAILS)
    (sent,) = [o for o in outcome.out if o.record is task]
    assert sent.topic == tasks_topic(System.cctv)
    # The DPO's note is kept: the details make the stranger a key anyway.
    assert rec.reason == "came to the counter and asked in person"
    assert rec.search == DETAILS
    # Only the detail names are said, never what the subject gave.
    told = _told(outcome)
    assert "searched by date, times, location, appearance" in told
    for value in DETAILS.values():
        assert value not in told


def test_the_search_details_are_sealed_wherever_they_are_kept(stranger: wf.Context) -> None:
    outcome = _searching(stranger)
    rec = outcome.record
    assert rec is not None
    stored = rec.model_dump(mode="json")
    assert sealing.personal_values(stored, sealing.REQUESTS)
    without = {**stored, "search": {}, "tasks": {}}
    assert not sealing.personal_values(without, sealing.REQUESTS)
    (task,) = tasks_out(outcome)
    paths = personal_paths(latest_schemas(contract.schema_dir())[task.fullname()].schema)
    assert personal_values_in(task.model_dump(mode="python"), paths)
    assert not personal_values_in(
        task.model_copy(update={"search": {}}).model_dump(mode="python"), paths
    )


def test_footage_found_for_a_stranger_waits_for_the_dpos_review(stranger: wf.Context) -> None:
    rec = _searching(stranger).record
    assert rec is not None
    export = r.ExportReference(
        location="https://exports.allled.example/dsar/cctv/R-1.json",
        record_count=2,
        checksum="sha256:" + "0" * 64,
    )
    outcome = wf.on_result(rec, answer(rec, System.cctv, export=export), stranger)
    assert outcome.record is not None
    assert outcome.record.state is S.awaiting_review
    assert of_type(outcome, r.SubjectNotification) == []


def test_a_search_that_finds_nothing_answers_that_nothing_is_held(stranger: wf.Context) -> None:
    rec = _searching(stranger).record
    assert rec is not None
    outcome = wf.on_result(rec, answer(rec, System.cctv, r.NotFound), stranger)
    done = outcome.record
    assert done is not None
    assert done.state is S.completed
    (note,) = of_type(outcome, r.SubjectNotification)
    assert (note.kind, note.message, note.document, note.exports) == (
        "access_response",
        NOTHING_FOUND,
        None,
        [],
    )
    assert done.manifest is None


def test_a_known_subjects_search_goes_to_the_searched_system_only(ctx: wf.Context) -> None:  # noqa: F811
    outcome = _searching(ctx)
    tasks = {t.system: t for t in tasks_out(outcome)}
    assert set(tasks) == ASKED
    assert {s for s, t in tasks.items() if isinstance(t, r.Export) and t.search} == {System.cctv}
    assert tasks[System.cctv].identifiers == {"camera_ref": "cam-3:2025-03-01"}


def test_a_resent_task_carries_the_search_again(stranger: wf.Context) -> None:
    rec = _searching(stranger).record
    assert rec is not None
    (task,) = rec.tasks.values()
    assert task.next_check_at is not None
    when = task.next_check_at + timedelta(seconds=1)
    later = at(stranger, when)
    outcome = wf.on_tick(rec, tick(rec, "task_overdue", when, task_id=task.task_id), later)
    (again,) = tasks_out(outcome)
    assert isinstance(again, r.Export)
    assert (again.attempt, again.search) == (2, DETAILS)


def test_search_details_go_with_an_access_request_only(ctx: wf.Context) -> None:  # noqa: F811
    outcome = wf.on_command(None, submit(RequestType.erasure, search=DETAILS), ctx)
    assert outcome.rejected == "invalid_command"
    assert "access request only" in (outcome.message or "")


def test_search_details_are_refused_where_no_system_is_searched_by_them(
    ctx: wf.Context,  # noqa: F811
    dm: DataMap,  # noqa: F811
) -> None:
    systems = {
        s: spec.model_copy(update={"searched_by_details": False}) for s, spec in dm.systems.items()
    }
    plain = dataclasses.replace(ctx, datamap=dm.model_copy(update={"systems": systems}))
    outcome = wf.on_command(None, submit(RequestType.access, search=DETAILS), plain)
    assert outcome.rejected == "invalid_command"
    assert "searched_by_details" in (outcome.message or "")


@pytest.mark.parametrize(
    ("details", "problem"),
    [
        ({"location": "by the tills"}, "need a date"),
        ({"date": "1 March"}, "not a date"),
        ({"date": "2025-03-11"}, "after the request was received"),
        ({"date": "2025-03-01", "times": "2pm to 3pm"}, "not HH:MM-HH:MM"),
        ({"date": "2025-03-01", "times": "15:30-14:00"}, "end before they start"),
        ({"date": "2025-03-01", "times": "14:00-14:00"}, "end before they start"),
        ({"date": "2025-03-01", "location": "  "}, "location is empty"),
        ({"date": "2025-03-01", "appearance": "x" * 301}, "at most 300"),
        ({"date": "2025-03-01", "ann@example.com": "x"}, "not among date, times"),
    ],
)
def test_bad_search_details_are_refused_without_repeating_them(
    ctx: wf.Context,  # noqa: F811
    details: dict[str, str],
    problem: str,
) -> None:
    outcome = wf.on_command(None, submit(RequestType.access, search=details), ctx)
    assert outcome.rejected == "invalid_command"
    assert problem in (outcome.message or "")
    for name, value in details.items():
        assert not value.strip() or value.strip() not in _told(outcome)
        if "@" in name:
            assert name not in _told(outcome)


@pytest.mark.parametrize(
    ("details", "since", "until"),
    [
        # British Summer Time: UK 14:00 is 13:00 UTC.
        ({"date": "2025-07-01", "times": "14:00-15:30"}, "2025-07-01T13:00", "2025-07-01T14:30"),
        # Greenwich Mean Time: the same.
        ({"date": "2025-03-01", "times": "14:00-15:30"}, "2025-03-01T14:00", "2025-03-01T15:30"),
        # No hours: the whole UK day (starting 23:00 UTC the day before in summer).
        ({"date": "2025-07-01"}, "2025-06-30T23:00", "2025-07-01T23:00"),
        # The day the clocks go back is 25 hours long.
        ({"date": "2025-10-26"}, "2025-10-25T23:00", "2025-10-27T00:00"),
    ],
)
def test_the_search_window_is_uk_time(details: dict[str, str], since: str, until: str) -> None:
    window = search.window(details)
    assert window.since == datetime.fromisoformat(since).replace(tzinfo=UTC)
    assert window.until == datetime.fromisoformat(until).replace(tzinfo=UTC)
    assert window.holds(window.since)
    assert not window.holds(window.until)


def test_a_search_may_make_a_stranger_a_key() -> None:
    """The CLI seals the details under a key made for them (a stranger's text is
    otherwise never given one: privops.tools.command_sealing.new_key)."""
    assert new_key(submit(RequestType.access, search=DETAILS), RequestType.access)
    assert not new_key(submit(RequestType.access), RequestType.access)


# --- the reference CCTV system ---------------------------------------------------------------


def _clip_search(when: datetime, site: str, minutes: int = 20) -> dict[str, str]:
    local = when.astimezone(UK)
    start, end = local - timedelta(minutes=minutes), local + timedelta(minutes=minutes)
    assert start.date() == end.date() == local.date()
    return {
        "date": local.date().isoformat(),
        "times": f"{start:%H:%M}-{end:%H:%M}",
        "location": site.upper(),
    }


def _export(
    data_dir: Path, details: dict[str, str], identifiers: dict[str, str] | None = None
) -> Any:
    task = r.Export(
        task_id="T-1",
        request_id="R-9",
        subject_id="visitor-1",
        system=System.cctv,
        issued_at=NOW,
        identifiers=identifiers or {},
        search=details,
    )
    return asyncio.run(CctvConnector(data_dir).handle(task))


@pytest.fixture
def footage(tmp_path: Path) -> tuple[Path, Any]:
    customers = seed_customers(24, anchor=date(2026, 3, 2))
    seed_stores(tmp_path, customers)
    clip = next(
        c
        for person in customers
        for c in person.clips
        if 2 <= c.captured_at.astimezone(UK).hour <= 21
    )
    return tmp_path, clip


def test_the_reference_cctv_finds_a_clip_by_day_hours_and_place(footage: tuple[Path, Any]) -> None:
    data_dir, clip = footage
    answered = _export(data_dir, _clip_search(clip.captured_at, clip.site))
    assert answered.kind == "completed"
    path = exported_file(data_dir, answered.export.location)
    assert path is not None
    document = json.loads(path.read_text())
    rows = document["found_by_search"]["clips"]["rows"]
    assert clip.clip_id in [row["clip_id"] for row in rows]
    # Whoever the system filed a clip under is not the subject's to see.
    assert all(
        set(row) == {"clip_id", "camera", "site", "captured_at", "footage_uri"} for row in rows
    )
    assert document["search"]["location"] == clip.site.upper()
    assert answered.export.record_count == len(rows)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"date_shift": 1}, id="another-day"),
        pytest.param({"location": "no such place"}, id="another-place"),
        pytest.param({"location": "%"}, id="a-wildcard-is-text"),
        pytest.param({"location": "_"}, id="an-underscore-is-text"),
    ],
)
def test_the_reference_cctv_finds_nothing_elsewhere(
    footage: tuple[Path, Any], change: dict[str, Any]
) -> None:
    data_dir, clip = footage
    details = _clip_search(clip.captured_at, clip.site)
    if "date_shift" in change:
        shifted = date.fromisoformat(details["date"]) + timedelta(days=400)
        details["date"] = shifted.isoformat()
    else:
        details["location"] = change["location"]
    assert _export(data_dir, details).kind == "not_found"
