"""An access request's search details (privops.core.search): CCTV footage is filed by
camera and time, so a visitor who never gave a name is found by when and where they
were. Before, their access request was answered "we hold nothing" while the footage
was there."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from privops import contract
from privops.adapters.avro import latest_schemas
from privops.cli import request as request_cli
from privops.cli.common import EXIT_FAILED
from privops.cli.request import follow_up
from privops.cli.request import sealing as cli_sealing
from privops.connectors.reference import CctvConnector, exported_file, seed_customers, seed_stores
from privops.connectors.reference.store import store_path
from privops.core import records as r
from privops.core import sealing, search, shredding
from privops.core import workflow as wf
from privops.core.clock import UK
from privops.core.datamap import DataMap, parse_datamap
from privops.core.errors import ConfigError
from privops.core.fanout import NOTHING_FOUND, NOTHING_OTHER
from privops.core.personal import personal_paths
from privops.core.sealing import personal_values_in
from privops.core.topics import tasks_topic
from privops.core.vocab import RequestState, RequestType, System, TaskState
from privops.tools.command_sealing import NothingToSealUnder, new_key
from tests.unit.test_workflow import (
    ASKED,
    NOW,
    answer,
    at,
    command,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    of_type,
    start,
    submit,
    tasks_out,
    tick,
)

REAL_MAP = Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml"

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


def _copy(system: System, records: int) -> r.ExportReference:
    """A system's export answer for request R-1 (below its export root)."""
    return r.ExportReference(
        location=f"https://exports.allled.example/dsar/{system.value}/R-1.json",
        record_count=records,
        checksum="sha256:" + "0" * 64,
    )


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
    export = _copy(System.cctv, 2)
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
        ({"date": "2025-03-01", "times": "14:00-14:00"}, "start and end at the same minute"),
        # Hours typed the wrong way round are no night's visit (review, session 37).
        ({"date": "2025-03-01", "times": "14:00-13:00"}, "end before they start"),
        ({"date": "2025-03-01", "times": "21:59-10:00"}, "end before they start"),
        # Past midnight into the day after the request.
        ({"date": "2025-03-10", "times": "22:00-02:00"}, "after the request was received"),
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
        # ... and an hour of it is lived twice: both times are searched.
        ({"date": "2025-10-26", "times": "01:15-01:45"}, "2025-10-26T00:15", "2025-10-26T01:45"),
        # The day they go forward: the widest reading of an hour that never was.
        ({"date": "2025-03-30", "times": "01:30-03:00"}, "2025-03-30T00:30", "2025-03-30T02:00"),
        # Hours that end before they start run on into the next day (review, session 36:
        # a visit across midnight had to be two requests).
        ({"date": "2025-03-01", "times": "22:30-01:15"}, "2025-03-01T22:30", "2025-03-02T01:15"),
        ({"date": "2025-07-01", "times": "22:00-10:00"}, "2025-07-01T21:00", "2025-07-02T09:00"),
        # ... into the night the clocks go forward (01:30 of the next day read widest).
        ({"date": "2025-03-29", "times": "23:00-01:30"}, "2025-03-29T23:00", "2025-03-30T01:30"),
    ],
)
def test_the_search_window_is_uk_time(details: dict[str, str], since: str, until: str) -> None:
    window = search.window(details)
    assert window.since == datetime.fromisoformat(since).replace(tzinfo=UTC)
    assert window.until == datetime.fromisoformat(until).replace(tzinfo=UTC)
    assert window.holds(window.since)
    assert not window.holds(window.until)


@pytest.mark.parametrize(
    "details",
    [
        {"date": "2025-03-10"},  # the day the request was received: "I was in today"
        {"date": "2025-03-01", "location": "x" * 300},
        {"date": "2025-03-01", "times": "00:00-23:59"},
        {"date": "2025-03-01", "times": "22:00-10:00"},  # twelve hours past midnight
        {"date": "2025-03-09", "times": "22:30-01:15"},  # into the day it was received
    ],
)
def test_search_details_at_the_limits_are_taken(ctx: wf.Context, details: dict[str, str]) -> None:  # noqa: F811
    assert search.problem(details, date(2025, 3, 10)) is None
    outcome = wf.on_command(None, submit(RequestType.access, search=details), ctx)
    assert outcome.rejected is None, outcome.message


def test_a_request_without_search_details_is_stored_as_before(ctx: wf.Context) -> None:  # noqa: F811
    """A record without them reads in a release of before 0.36 (a rollback): no key."""
    rec = start(RequestType.erasure, ctx)
    assert "search" not in rec.model_dump(mode="json")
    assert "search" in _searching(ctx).record.model_dump(mode="json")  # type: ignore[union-attr]


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


def test_a_place_is_found_by_any_word_of_it(footage: tuple[Path, Any]) -> None:
    """ "the loading bay at Braintree" finds "CAM-03 loading bay" at "Braintree depot":
    the whole text, searched as one, found neither (review, session 36)."""
    data_dir, clip = footage
    details = _clip_search(clip.captured_at, clip.site)
    details["location"] = f"the {clip.camera.split(' ', 1)[1]} at our {clip.site.split()[0]} place"
    answered = _export(data_dir, details)
    assert answered.kind == "completed"


def test_the_subjects_own_clips_are_not_repeated_as_found_by_search(
    footage: tuple[Path, Any],
) -> None:
    data_dir, clip = footage
    owner = next(c for c in seed_customers(24, anchor=date(2026, 3, 2)) if clip in c.clips)
    answered = _export(
        data_dir, _clip_search(clip.captured_at, clip.site), owner.identifiers(System.cctv)
    )
    path = exported_file(data_dir, answered.export.location)
    assert path is not None
    document = json.loads(path.read_text())
    own = [row["clip_id"] for row in document["tables"]["clips"]["rows"]]
    found = document["found_by_search"].get("clips", {"rows": []})["rows"]
    assert clip.clip_id in own
    assert clip.clip_id not in [row["clip_id"] for row in found]


def test_a_strangers_search_copy_is_deleted_by_age(footage: tuple[Path, Any]) -> None:
    """A copy made for someone the system has no key of is recorded all the same, so
    deletion by age finds it (an erasure cannot: review, session 36)."""
    data_dir, clip = footage
    answered = _export(data_dir, _clip_search(clip.captured_at, clip.site))
    path = exported_file(data_dir, answered.export.location)
    assert path is not None
    assert path.exists()
    connector = CctvConnector(data_dir)
    assert connector.export_limit == timedelta(days=120)  # the shipped data map's
    kept = asyncio.run(connector.purge_expired(datetime.now(UTC) + timedelta(days=119)))
    assert (kept.exports, path.exists()) == (0, True)
    gone = asyncio.run(connector.purge_expired(datetime.now(UTC) + timedelta(days=121)))
    assert (gone.exports, path.exists()) == (1, False)
    assert gone.total >= 1


def test_a_copy_made_before_its_time_was_recorded_is_kept_a_full_period(
    footage: tuple[Path, Any],
) -> None:
    """A store made before 0.36 has no made_at: its copies count from the first
    deletion by age that sees them, never deleted at once."""
    data_dir, clip = footage
    answered = _export(data_dir, _clip_search(clip.captured_at, clip.site))
    path = exported_file(data_dir, answered.export.location)
    assert path is not None
    with closing(sqlite3.connect(store_path(data_dir, System.cctv))) as db, db:
        db.execute("DROP TABLE _export_times")
        # and a 0.35 connector's insert still works on a 0.36 store (a rollback)
        db.execute("INSERT OR REPLACE INTO _exports VALUES ('k', 'R-8', '/nowhere')")
    connector = CctvConnector(data_dir)
    later = datetime.now(UTC) + timedelta(days=400)
    assert asyncio.run(connector.purge_expired(later)).exports == 0
    assert path.exists()
    assert asyncio.run(connector.purge_expired(later + timedelta(days=121))).exports == 1
    assert not path.exists()


# --- the DPO's review of what a search found ---------------------------------------------------


def _found(stranger: wf.Context) -> wf.RequestRecord:
    rec = _searching(stranger).record
    assert rec is not None
    export = _copy(System.cctv, 3)
    held = wf.on_result(rec, answer(rec, System.cctv, export=export), stranger).record
    assert held is not None
    assert held.state is S.awaiting_review
    return held


def test_the_dpo_says_what_a_search_found_is_not_the_subject(stranger: wf.Context) -> None:
    rec = _found(stranger)
    approved = command(r.AccessResponseApproved, not_subject=[System.cctv])
    outcome = wf.on_command(rec, approved, stranger)
    assert outcome.rejected is None, outcome.message
    done = outcome.record
    assert done is not None
    assert done.state is S.completed
    (task,) = done.tasks.values()
    assert (task.state, task.export, task.original_export) == (TaskState.not_found, None, None)
    (note,) = of_type(outcome, r.SubjectNotification)
    # Nothing of theirs was found: they are told so, not that a copy was left out.
    assert (note.message, note.document, note.exports) == (NOTHING_FOUND, None, [])
    assert done.search == {}  # the search is done: its details are not kept
    approval = next(a for a in outcome.audit if a.action == "response_approved")
    assert "not the subject: cctv" in (approval.after or "")


def test_only_a_copy_found_by_search_alone_may_be_said_not_the_subjects(ctx: wf.Context) -> None:  # noqa: F811
    """A known subject's footage copy holds what their own identifiers found too: the
    DPO redacts what is not theirs."""
    rec = _searching(ctx).record
    assert rec is not None
    export = _copy(System.cctv, 3)
    for task in list(rec.tasks.values()):
        found = export if task.system is System.cctv else None
        rec = wf.on_result(rec, answer(rec, task.system, export=found), ctx).record or rec
    assert rec.state is S.awaiting_review
    outcome = wf.on_command(rec, command(r.AccessResponseApproved, not_subject=[System.cctv]), ctx)
    assert outcome.rejected is not None
    assert "redact what is not theirs" in (outcome.message or "")


def test_what_a_search_found_is_reviewed_whatever_the_data_map_says(
    stranger: wf.Context,
    dm: DataMap,  # noqa: F811
) -> None:
    """The data map refuses a searched system without review; a map built around that
    check still holds the copy (a search finds whoever was there)."""
    systems = {
        s: spec.model_copy(update={"review_before_disclosure": False})
        for s, spec in dm.systems.items()
    }
    loose = dataclasses.replace(stranger, datamap=dm.model_copy(update={"systems": systems}))
    _found(loose)


def test_a_searched_system_needs_its_copies_to_expire() -> None:
    text = REAL_MAP.read_text()
    start_at = text.index("access_exports:")
    end_at = text.index("\n\n", start_at)
    with pytest.raises(ConfigError) as info:
        parse_datamap(text[:start_at] + text[end_at + 2 :])
    assert "access_exports.period_days: cctv searched_by_details" in str(info.value)
    short = text.replace("  period_days: 120", "  period_days: 30", 1)
    with pytest.raises(ConfigError) as info:
        parse_datamap(short)
    assert "access_exports.period_days" in str(info.value)


def test_a_searched_system_must_be_reviewed() -> None:
    text = REAL_MAP.read_text().replace("    review_before_disclosure: true\n", "", 1)
    with pytest.raises(ConfigError) as info:
        parse_datamap(text)
    assert "set review_before_disclosure: true" in str(info.value)


def _answered(rec: wf.RequestRecord, context: wf.Context) -> wf.Outcome:
    """Every task of ``rec`` answered: orders with a copy, the others holding nothing."""
    export = _copy(System.orders, 2)
    outcome = wf.Outcome(record=rec)
    for task in list(rec.tasks.values()):
        if task.system is System.orders:
            result = answer(rec, task.system, export=export)
        else:
            result = answer(rec, task.system, r.NotFound)
        outcome = wf.on_result(rec, result, context)
        rec = outcome.record or rec
    return outcome


def test_the_letter_says_until_when_the_copies_are_kept(ctx: wf.Context) -> None:  # noqa: F811
    (note,) = of_type(_answered(start(RequestType.access, ctx), ctx), r.SubjectNotification)
    # 120 days (the shipped data map's access_exports) from the first send (10 March,
    # before any copy was made), less a day: every copy is kept through the day told.
    assert "The copies are kept until 2025-07-07: please fetch them by then" in note.message
    # Answered four months late: the subject is told to fetch at once, and how to get
    # a copy that is gone.
    late = at(ctx, NOW + timedelta(days=115))
    (note,) = of_type(_answered(start(RequestType.access, ctx), late), r.SubjectNotification)
    assert "Some copies are kept only until 2025-07-07: fetch them at once" in note.message
    forever = ctx.datamap.access_exports.model_copy(update={"period_days": None})
    keep_all = dataclasses.replace(
        ctx, datamap=ctx.datamap.model_copy(update={"access_exports": forever})
    )
    (note,) = of_type(
        _answered(start(RequestType.access, keep_all), keep_all), r.SubjectNotification
    )
    assert "kept until" not in note.message


# --- someone privops knows only by an earlier request -------------------------------------------


def test_a_stranger_whose_earlier_request_is_kept_is_told_what_is_kept(
    stranger: wf.Context,
) -> None:
    """A visitor who asked again, without search details, was told "we hold nothing"
    while the record of their earlier request was kept (review, session 36)."""
    earlier = _searching(stranger).record
    assert earlier is not None
    earlier = earlier.model_copy(update={"request_id": "R-0"})
    known = dataclasses.replace(stranger, subject_requests=lambda: [earlier])
    outcome = wf.on_command(None, submit(RequestType.access, reason="asked again"), known)
    rec = outcome.record
    assert rec is not None
    assert rec.reason == "asked again"  # kept: privops holds them already
    (note,) = of_type(outcome, r.SubjectNotification)
    assert not note.message.startswith(wf.NOTHING_HELD)
    assert rec.manifest is not None
    listed = rec.manifest["privacy_records"]["rights_requests"]["listed"]
    assert [p["request_id"] for p in listed] == ["R-0"]


def test_the_request_itself_does_not_make_a_stranger_known(stranger: wf.Context) -> None:
    first = wf.on_command(None, submit(RequestType.access, verified=False), stranger).record
    assert first is not None
    itself = dataclasses.replace(stranger, subject_requests=lambda: [first])
    verified = wf.on_command(first, command(r.IdentityVerified, verified_on=NOW.date()), itself)
    (note,) = of_type(verified, r.SubjectNotification)
    assert note.message == wf.NOTHING_HELD + wf.SEARCH_OFFER


def test_the_search_details_go_whenever_the_record_loses_its_values(stranger: wf.Context) -> None:
    """Written with no key to seal under, and scrubbed after an erasure."""
    rec = _searching(stranger).record
    assert rec is not None
    stored = rec.model_dump(mode="json")
    assert sealing.REQUESTS.without_key(stored)["search"] == {}  # type: ignore[index]
    closed = rec.model_copy(update={"state": S.completed})
    assert (shredding.scrubbed(closed) or closed).search == {}


def test_a_strangers_failed_search_is_told_as_not_done(stranger: wf.Context) -> None:
    """Not as footage held of them (review, session 36): the search was not done."""
    rec = _searching(stranger).record
    assert rec is not None
    failed = answer(rec, System.cctv, r.TaskFailed, reason="archive offline", retryable=False)
    outcome = wf.on_result(rec, failed, stranger)
    done = outcome.record
    assert done is not None
    assert done.state is S.partially_completed
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.message.startswith(NOTHING_OTHER)
    assert "could not complete the search of cctv" in note.message
    assert (note.document, note.exports) == (None, [])


def test_nothing_held_offers_a_search_only_where_a_system_is_searched(
    stranger: wf.Context,
    dm: DataMap,  # noqa: F811
) -> None:
    systems = {
        s: spec.model_copy(update={"searched_by_details": False}) for s, spec in dm.systems.items()
    }
    plain = dataclasses.replace(stranger, datamap=dm.model_copy(update={"systems": systems}))
    (note,) = of_type(wf.on_command(None, submit(RequestType.access), plain), r.SubjectNotification)
    assert note.message == wf.NOTHING_HELD


# --- the DPO's CLI ------------------------------------------------------------------------------


def test_the_cli_will_not_send_a_search_for_an_erased_subject(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its key is gone for good: sent withheld, the details would reach the worker
    unreadable, and the search would find nothing (exit 1, nothing sent)."""

    def erased(subject_id: str, _fields: dict[str, str], _new_key: bool) -> dict[str, str]:
        raise NothingToSealUnder(subject_id, erased=True)

    monkeypatch.setattr(cli_sealing, "key_service_seal", erased)
    searching = submit(RequestType.access, search=DETAILS)
    with pytest.raises(typer.Exit) as exited:
        cli_sealing.sealed_commands(
            [searching], [cli_sealing.Addressed("visitor-1", RequestType.access)]
        )
    assert exited.value.exit_code == EXIT_FAILED


def test_approve_sends_what_is_not_the_subjects(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[r.Command] = []
    monkeypatch.setattr(follow_up, "publish_one", lambda command, *_args: sent.append(command))
    out = CliRunner().invoke(
        request_cli.app, ["approve", "REQ-AAAAAAAAAAAA", "--not-subject", "cctv", "--no-wait"]
    )
    assert out.exit_code == 0, out.output
    (approved,) = sent
    assert isinstance(approved, r.AccessResponseApproved)
    assert (approved.not_subject, approved.withheld, approved.disclosed) == ([System.cctv], [], [])
