"""A complaint recorded after its acknowledgement was due (DPA 2018 s.164A).

Before, a complaint received 45 days earlier and logged today was acknowledged with "we
will respond by" a date already past, and nothing recorded that the 30-day limit was
missed: an acknowledged complaint raises no deadline alert (review, session 27). Now the
breach is alerted and audited when the acknowledgement goes, and the complainant is given
a response date still to come (privops.core.deadlines.complaint_response_due).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import deadlines
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.identity import merge
from privops.core.sweep import BREACH_DAYS_BEFORE
from privops.core.ticks import Tick, TickKind
from privops.core.timelimits import alert_due
from privops.core.topics import ALERTS
from privops.core.vocab import RequestState, RequestType, System

D = date.fromisoformat
NOW = datetime(2026, 9, 21, 9, 0, tzinfo=UTC)  # Monday
TODAY = NOW.date()
SUBJECT = "subj-c"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def context(dm: DataMap, now: datetime = NOW) -> wf.Context:
    known = merge(None, SUBJECT, System.crm, {"contact_id": "K-1"}, NOW - timedelta(days=90))
    return wf.Context(now=now, today=now.date(), datamap=dm, subject_ref="sr_c", identity=known)


def complaint(received: date) -> r.RequestSubmitted:
    return r.RequestSubmitted(
        command_id=f"c-{next(_ids)}",
        request_id="R-c",
        issued_at=NOW,
        actor="dpo",
        request_type=RequestType.complaint,
        subject_id=SUBJECT,
        received_on=received,
    )


def command(model: type[r.Command], **kw: Any) -> r.Command:
    return model(command_id=f"c-{next(_ids)}", request_id="R-c", issued_at=NOW, actor="dpo", **kw)


def notice(outcome: wf.Outcome) -> str:
    (note,) = [o.record for o in outcome.out if isinstance(o.record, r.SubjectNotification)]
    return note.message


def test_a_complaint_logged_late_records_the_breach_and_promises_a_date_to_come(
    dm: DataMap,
) -> None:
    received = TODAY - timedelta(days=45)  # 2026-08-07
    ack_due = deadlines.complaint_ack_due(received)
    assert ack_due == D("2026-09-07") < TODAY  # 6 September is a Sunday
    outcome = wf.on_command(None, complaint(received), context(dm))
    rec = outcome.record
    assert rec is not None
    assert rec.state is RequestState.in_progress
    assert rec.acknowledged_on == TODAY

    (alert,) = [o for o in outcome.out if o.topic == ALERTS]
    assert isinstance(alert.record, r.DeadlineBreached)
    assert alert.key == SUBJECT
    assert (alert.record.due_on, alert.record.days_overdue) == (ack_due, 14)
    assert alert.record.request_type is RequestType.complaint
    steps = [(a.action, a.after) for a in outcome.audit]
    assert ("deadline_alert", "deadline_breached") in steps
    assert all(SUBJECT not in (a.reason or "") for a in outcome.audit)

    # The response date: 30 days from the acknowledgement, on a working day.
    assert rec.due_on == D("2026-10-21")
    assert rec.due_on > TODAY
    assert notice(outcome) == (
        "Your complaint is with our DPO; we will respond by 2026-10-21. We should have "
        "acknowledged it by 2026-09-07; we are sorry for the delay."
    )
    assert alert_due(rec) is None  # acknowledged: no further deadline alert


def test_a_complaint_received_before_the_duty_came_into_force_missed_no_limit(
    dm: DataMap,
) -> None:
    """s.164A is in force from 19 June 2026: a complaint received on 5 June and logged
    on 20 July was alerted and audited as a breach of it, and the complainant told we
    should have acknowledged it by 6 July (contract review, session 33)."""
    logged = datetime(2026, 7, 20, 9, 0, tzinfo=UTC)
    received = complaint(D("2026-06-05")).model_copy(update={"issued_at": logged})
    outcome = wf.on_command(None, received, context(dm, logged))
    rec = outcome.record
    assert rec is not None
    assert rec.acknowledged_on == logged.date()
    assert not [o for o in outcome.out if o.topic == ALERTS]
    assert "deadline_alert" not in [a.action for a in outcome.audit]
    assert rec.deadline_alerted is None
    assert rec.due_on == D("2026-08-19")  # still answered 30 days on, on a working day
    assert notice(outcome) == "Your complaint is with our DPO; we will respond by 2026-08-19."
    # Received on the day the duty began, due 20 July, logged a day late: a breach.
    day_after = logged + timedelta(days=1)
    first_day = complaint(D("2026-06-19")).model_copy(update={"issued_at": day_after})
    late = wf.on_command(None, first_day, context(dm, day_after))
    assert [o.topic for o in late.out if o.topic == ALERTS] == [ALERTS]


def test_the_sweeps_breach_tick_for_the_missed_date_raises_nothing_more(dm: DataMap) -> None:
    received = TODAY - timedelta(days=45)
    rec = wf.on_command(None, complaint(received), context(dm)).record
    assert rec is not None
    assert rec.deadline_alerted is not None
    assert rec.deadline_alerted.covers(deadlines.complaint_ack_due(received), BREACH_DAYS_BEFORE)
    tick = Tick(
        request_id="R-c",
        kind=TickKind.deadline_breached,
        at=NOW + timedelta(minutes=1),
        due_on=deadlines.complaint_ack_due(received),
    )
    later = wf.on_tick(rec, tick, context(dm, NOW + timedelta(minutes=1)))
    assert not [o for o in later.out if o.topic == ALERTS]


@pytest.mark.parametrize("days_ago", [0, 12, 30], ids=["same-day", "within", "last-day"])
def test_a_complaint_acknowledged_in_time_raises_no_alert_and_keeps_its_date(
    dm: DataMap, days_ago: int
) -> None:
    received = TODAY - timedelta(days=days_ago)
    ack_due = deadlines.complaint_ack_due(received)
    assert ack_due >= TODAY
    outcome = wf.on_command(None, complaint(received), context(dm))
    assert outcome.record is not None
    assert outcome.record.due_on == ack_due
    assert outcome.record.deadline_alerted is None
    assert not [o for o in outcome.out if o.topic == ALERTS]
    assert "deadline_alert" not in [a.action for a in outcome.audit]
    assert notice(outcome) == f"Your complaint is with our DPO; we will respond by {ack_due}."


def test_a_late_complaint_takes_no_clarification_pause(dm: DataMap) -> None:
    """Only an access request's clock stops for clarification (UK GDPR Art. 12A); a
    complaint keeps the response date it was given (DPA 2018 s.164A)."""
    rec = wf.on_command(None, complaint(TODAY - timedelta(days=45)), context(dm)).record
    assert rec is not None
    promised = rec.due_on
    assert promised is not None
    assert promised > TODAY
    asked = wf.on_command(rec, command(r.ClarificationRequested, asked_on=TODAY), context(dm))
    assert asked.rejected is not None
    assert "only for an access request" in (asked.message or "")
    assert asked.record is None or asked.record.due_on == promised


def test_a_complaint_takes_no_extension(dm: DataMap) -> None:
    """An extension moved no complaint's date (its response date is its
    acknowledgement's), yet the complainant was told "we need more time" and the same
    date: it is refused, and nothing is sent."""
    rec = wf.on_command(None, complaint(TODAY - timedelta(days=3)), context(dm)).record
    assert rec is not None
    extend = command(r.DeadlineExtended, notified_on=TODAY, reason="many complaints")
    refused = wf.on_command(rec, extend, context(dm))
    assert refused.rejected is not None
    assert "a complaint has no extension" in (refused.message or "")
    assert not [o for o in refused.out if isinstance(o.record, r.SubjectNotification)]


@pytest.mark.parametrize(
    ("received", "acknowledged", "expected"),
    [
        ("2026-06-19", None, "2026-07-20"),  # before acknowledging: the limit (a Sunday +1)
        ("2026-06-19", "2026-06-19", "2026-07-20"),
        ("2026-06-19", "2026-07-20", "2026-07-20"),  # on the last day: still that day
        ("2026-06-19", "2026-07-21", "2026-08-20"),  # a day late: 30 days on
        ("2026-06-05", "2026-07-20", "2026-08-19"),
        ("2026-06-05", "2026-07-27", "2026-08-26"),
        ("2026-11-01", "2026-12-27", "2027-01-26"),
        ("2026-07-01", "2026-08-05", "2026-09-04"),
        ("2026-07-01", "2026-07-30", "2026-07-31"),
        ("2026-06-19", "2026-07-23", "2026-08-24"),  # 22 August is a Saturday
        ("2026-06-19", "2026-08-01", "2026-09-01"),  # 31 August is a bank holiday
    ],
)
def test_complaint_response_due(received: str, acknowledged: str | None, expected: str) -> None:
    ack = D(acknowledged) if acknowledged else None
    due = deadlines.complaint_response_due(D(received), ack)
    assert due == D(expected)
    assert deadlines.is_working_day(due)
    if ack is not None:
        assert due >= ack
