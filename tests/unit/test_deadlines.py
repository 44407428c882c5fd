"""The UK deadline table, written from the ICO's "time limits" guidance.

Every expected date was checked against a real calendar (weekday and the GOV.UK
England-and-Wales bank holiday list); the comment on each row says why it lands there.
"""

from __future__ import annotations

from datetime import date

import pytest

from privops.core.deadlines import (
    Pause,
    add_months,
    can_extend,
    clock_start,
    complaint_ack_due,
    count_pauses,
    days_left,
    due_date,
    extend,
    is_working_day,
    next_working_day,
    pause_length,
    paused_days,
)
from privops.core.errors import DomainError

D = date.fromisoformat


@pytest.mark.parametrize(
    ("start", "extended", "paused", "expected"),
    [
        # ICO's own example: received 3 September, due 3 October (a Friday).
        ("2025-09-03", False, 0, "2025-10-03"),
        # No 31 February: last day of February (Fri 28 Feb 2025) ...
        ("2025-01-31", False, 0, "2025-02-28"),
        # ... or 29 February in a leap year (Tue 29 Feb 2028).
        ("2028-01-31", False, 0, "2028-02-29"),
        # No 31 April: Thu 30 April.
        ("2026-03-31", False, 0, "2026-04-30"),
        ("2025-08-31", False, 0, "2025-09-30"),
        # Across the year end.
        ("2025-12-15", False, 0, "2026-01-15"),
        # Received on a Saturday: the clock still starts that day.
        ("2025-10-04", False, 0, "2025-11-04"),
        # Due Sat 8 Nov / Sun 9 Nov 2025 -> Mon 10 Nov.
        ("2025-10-08", False, 0, "2025-11-10"),
        ("2025-10-09", False, 0, "2025-11-10"),
        # 2027: Christmas Sat, Boxing Day Sun, substitute days Mon 27 and Tue 28 -> Wed 29.
        ("2027-11-25", False, 0, "2027-12-29"),
        ("2027-11-26", False, 0, "2027-12-29"),
        ("2027-11-27", False, 0, "2027-12-29"),
        ("2027-11-28", False, 0, "2027-12-29"),
        # 2026: Boxing Day Sat, substitute Mon 28 Dec -> Tue 29 Dec.
        ("2026-11-26", False, 0, "2026-12-29"),
        # Christmas 2025 Thu, Boxing Day Fri, then the weekend -> Mon 29 Dec.
        ("2025-11-25", False, 0, "2025-12-29"),
        # New Year's Day 2028 is a Saturday, substitute Mon 3 Jan -> Tue 4 Jan.
        ("2027-12-01", False, 0, "2028-01-04"),
        # Good Friday 3 Apr 2026, weekend, Easter Monday 6 Apr -> Tue 7 Apr.
        ("2026-03-03", False, 0, "2026-04-07"),
        # Good Friday 26 Mar 2027 and Sun 28 Mar (before Easter Monday 29) -> Tue 30 Mar.
        ("2027-02-26", False, 0, "2027-03-30"),
        ("2027-02-28", False, 0, "2027-03-30"),
        # Early May bank holiday Mon 4 May 2026 -> Tue 5 May.
        ("2026-04-04", False, 0, "2026-05-05"),
        # Spring bank holiday Mon 28 May 2029 -> Tue 29 May.
        ("2029-04-28", False, 0, "2029-05-29"),
        # Extension: three months from the start by the same rule.
        ("2025-09-03", True, 0, "2025-12-03"),
        # 30 Nov + 3 months = no 30 Feb -> Sat 28 Feb 2026 -> Mon 2 Mar.
        ("2025-11-30", True, 0, "2026-03-02"),
        ("2027-11-30", True, 0, "2028-02-29"),
        ("2027-09-25", True, 0, "2027-12-29"),
        # Clarification pause: the due date moves later by the paused days.
        ("2025-09-03", False, 5, "2025-10-08"),
        # Month-end first (28 Feb), then 2 paused days -> Sun 2 Mar -> Mon 3 Mar.
        ("2025-01-31", False, 2, "2025-03-03"),
        # Pause lands the date on Christmas 2027 -> Wed 29 Dec.
        ("2027-11-20", False, 5, "2027-12-29"),
        # Pause and extension together: 3 Dec 2025 + 4 days = Sun 7 Dec -> Mon 8 Dec.
        ("2025-09-03", True, 4, "2025-12-08"),
    ],
)
def test_due_date_table(start: str, extended: bool, paused: int, expected: str) -> None:
    assert due_date(D(start), extended=extended, paused_days=paused) == D(expected)


def test_due_date_rejects_negative_pause() -> None:
    with pytest.raises(DomainError, match="paused_days"):
        due_date(D("2025-09-03"), paused_days=-1)


def test_bank_holidays_come_from_the_package_with_substitute_days() -> None:
    for day in ("2027-12-27", "2027-12-28", "2026-12-28", "2026-04-03", "2026-04-06"):
        assert not is_working_day(D(day))
    assert is_working_day(D("2027-12-29"))
    assert next_working_day(D("2027-12-24")) == D("2027-12-24")
    assert next_working_day(D("2027-12-25")) == D("2027-12-29")


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2025-01-31", 1, "2025-02-28"),
        ("2024-01-31", 1, "2024-02-29"),
        ("2025-11-30", 3, "2026-02-28"),
        ("2025-12-31", 1, "2026-01-31"),
        ("2025-10-31", 14, "2026-12-31"),
    ],
)
def test_add_months(start: str, months: int, expected: str) -> None:
    assert add_months(D(start), months) == D(expected)


@pytest.mark.parametrize(
    ("received", "identity", "fee", "fee_required", "expected"),
    [
        # Only a verification date known (no receipt date given): it stands in for the
        # day the identity information arrived.
        # ID verified after receipt: the clock starts on verification.
        ("2025-09-03", "2025-09-10", None, False, "2025-09-10"),
        # Known customer, verified before the request arrived: receipt starts it.
        ("2025-09-03", "2025-08-01", None, False, "2025-09-03"),
        # Identity not yet verified: no clock.
        ("2025-09-03", None, None, False, None),
        # Fee required and received after verification: the fee starts it.
        ("2025-09-03", "2025-09-10", "2025-09-15", True, "2025-09-15"),
        # Fee required but not received: no clock.
        ("2025-09-03", "2025-09-10", None, True, None),
        # A fee date is irrelevant where no fee was chargeable.
        ("2025-09-03", "2025-09-10", "2025-09-20", False, "2025-09-10"),
        # Fee paid before verification: the later of the two.
        ("2025-09-03", "2025-09-12", "2025-09-05", True, "2025-09-12"),
    ],
)
def test_clock_start(
    received: str, identity: str | None, fee: str | None, fee_required: bool, expected: str | None
) -> None:
    got = clock_start(
        D(received),
        D(identity) if identity else None,
        D(fee) if fee else None,
        fee_required=fee_required,
    )
    assert got == (D(expected) if expected else None)


# ICO "Time limits for responding" / DESIGN.md section 5 (issue 14.9): the clock starts on
# receipt of the identity information, not on the day someone finished checking it.
@pytest.mark.parametrize(
    ("received", "identity_received", "verified", "expected"),
    [
        # Documents in on the 5th, checked on the 10th: the clock starts on the 5th.
        pytest.param("2025-09-03", "2025-09-05", "2025-09-10", "2025-09-05", id="ico-receipt"),
        # Still being checked: the clock already runs from receipt of the documents.
        pytest.param("2025-09-03", "2025-09-05", None, "2025-09-05", id="ico-checking"),
        # Documents sent with the request (or before it): receipt of the request.
        pytest.param("2025-09-03", "2025-09-01", "2025-09-10", "2025-09-03", id="ico-with-request"),
        # Receipt date absent: fall back to the verification date.
        pytest.param("2025-09-03", None, "2025-09-10", "2025-09-10", id="fallback-verified"),
        pytest.param("2025-09-03", None, None, None, id="no-identity-yet"),
    ],
)
def test_clock_starts_on_receipt_of_identity_information(
    received: str, identity_received: str | None, verified: str | None, expected: str | None
) -> None:
    got = clock_start(
        D(received),
        D(verified) if verified else None,
        identity_received=D(identity_received) if identity_received else None,
    )
    assert got == (D(expected) if expected else None)


def test_identity_verified_later_moves_the_due_date() -> None:
    start = clock_start(D("2025-09-03"), D("2025-09-10"))
    assert start is not None
    assert due_date(start) == D("2025-10-10")


# UK GDPR Art. 12A as inserted by the DUAA 2025 (issue 14.6): the period from the day
# clarification is asked for to the day it is received, both days included.
@pytest.mark.parametrize(
    ("asked", "answered", "days"),
    [
        pytest.param("2025-09-05", "2025-09-08", 4, id="art12A-5th-to-8th-is-4"),
        pytest.param("2025-09-05", "2025-09-05", 1, id="art12A-same-day-is-1"),
        pytest.param("2025-09-28", "2025-10-02", 5, id="art12A-across-month-end"),
    ],
)
def test_pause_length(asked: str, answered: str, days: int) -> None:
    assert pause_length(D(asked), D(answered)) == days


def test_pause_answered_before_asked_is_an_error() -> None:
    with pytest.raises(DomainError, match="before it was asked"):
        pause_length(D("2025-09-08"), D("2025-09-05"))


# UK GDPR Art. 12A (DUAA 2025), issue 14.7: only the paused days that fall while the
# clock runs count; none before it started, none once it had run out.
@pytest.mark.parametrize(
    ("start", "pauses", "counted", "due"),
    [
        # Objection received 1 Mar 2026, clarification asked 20 Feb, answered 5 Mar: only
        # 1-5 Mar count (5 days): 1 Apr + 5 = Mon 6 Apr, Easter Monday -> Tue 7 Apr
        # (counting all 14 days would give 15 Apr, counting 13 gave 14 Apr).
        pytest.param(
            "2026-03-01", [("2026-02-20", "2026-03-05")], 5, "2026-04-07", id="art12A-issue-row"
        ),
        pytest.param(
            "2026-03-01", [("2026-02-20", "2026-02-27")], 0, "2026-04-01", id="art12A-all-before"
        ),
        pytest.param(
            "2026-03-10", [("2026-03-11", "2026-03-13")], 3, "2026-04-13", id="art12A-inside"
        ),
        # Asked after the due date (2 Apr 2026): the clock had run out, nothing to stop.
        pytest.param(
            "2026-03-02", [("2026-04-03", "2026-04-10")], 0, "2026-04-02", id="art12A-after-due"
        ),
        # Asked on the due date itself (3 Oct 2025): the clock still ran that day, so the
        # pause counts whole, 3-6 Oct (test review, session 35: either boundary moved by
        # a day passed every test, and gave a false breach on 3 Oct).
        pytest.param(
            "2025-09-03", [("2025-10-03", "2025-10-06")], 4, "2025-10-07", id="art12A-on-due"
        ),
        # Two pauses add up; the second is measured against the due date the first moved
        # (2 Apr + 2 = Sat 4 Apr -> Easter -> Tue 7 Apr), so asking on 3 Apr still counts.
        pytest.param(
            "2026-03-02",
            [("2026-03-05", "2026-03-06"), ("2026-04-03", "2026-04-03")],
            3,
            "2026-04-07",
            id="art12A-two-pauses",
        ),
        # Asked in the roll-over (3 Apr 2026 is Good Friday: due Tue 7 Apr), on the 7th,
        # answered the 9th: the clock had one day left, and resumes on the 10th. From
        # the month's end the 3 days moved nothing (3 Apr + 3 rolled to 7 Apr again),
        # and the request was breached once the answer was recorded (legal review,
        # session 43): it moves the month's end by its 3 days and the 4 to the 7th.
        pytest.param(
            "2026-03-03", [("2026-04-07", "2026-04-09")], 7, "2026-04-10", id="art12A-roll-over"
        ),
        # Asked on the Saturday between (6 days to the 9th, 1 from the month's end): the
        # same 10 Apr, never later than asking on the 7th (second review: measured to the
        # rolled day, it gave Mon 13 Apr).
        pytest.param(
            "2026-03-03", [("2026-04-04", "2026-04-09")], 7, "2026-04-10", id="art12A-roll-sat"
        ),
        # Due Sat 28 Mar 2026 -> Mon 30 Mar; asked on the 30th, the 29th or the 28th,
        # answered the 31st: due Wed 1 Apr, the first working day after the answer.
        pytest.param(
            "2026-02-28", [("2026-03-30", "2026-03-31")], 4, "2026-04-01", id="art12A-weekend"
        ),
        pytest.param(
            "2026-02-28", [("2026-03-29", "2026-03-31")], 4, "2026-04-01", id="art12A-sunday"
        ),
        pytest.param(
            "2026-02-28", [("2026-03-28", "2026-03-31")], 4, "2026-04-01", id="art12A-month-end"
        ),
    ],
)
def test_paused_days_only_while_the_clock_runs(
    start: str, pauses: list[tuple[str, str]], counted: int, due: str
) -> None:
    periods = [Pause(D(a), D(b)) for a, b in pauses]
    assert paused_days(D(start), periods) == counted
    assert due_date(D(start), paused_days=counted) == D(due)


def test_a_pause_in_the_roll_over_says_its_own_days_and_how_far_it_moves() -> None:
    (only,) = count_pauses(D("2026-03-03"), [Pause(D("2026-04-07"), D("2026-04-09"))])
    assert (only.days, only.moves, only.running_until) == (3, 7, D("2026-04-07"))


def test_count_pauses_says_where_counting_began() -> None:
    (only,) = count_pauses(D("2026-03-01"), [Pause(D("2026-02-20"), D("2026-03-05"))])
    assert only.counted_from == D("2026-03-01")
    assert only.days == 5
    assert only.running_until == D("2026-04-01")


def test_overlapping_pauses_are_an_error() -> None:
    pauses = [Pause(D("2026-03-05"), D("2026-03-09")), Pause(D("2026-03-09"), D("2026-03-10"))]
    with pytest.raises(DomainError, match="overlap"):
        paused_days(D("2026-03-01"), pauses)


@pytest.mark.parametrize(
    ("notified_on", "paused", "allowed"),
    [
        ("2025-09-03", 0, True),
        ("2025-10-03", 0, True),  # the first month's due date itself
        ("2025-10-04", 0, False),
        ("2025-10-06", 5, True),  # a pause lengthens the first month (due 8 Oct)
        ("2025-10-09", 5, False),
        # UK GDPR Art. 12(3), issue 14.10: notified before the clock started is not
        # "within one month of receipt" either.
        pytest.param("2025-09-02", 0, False, id="art12-3-notified-before-start"),
    ],
)
def test_can_extend_only_if_notified_while_first_month_runs(
    notified_on: str, paused: int, allowed: bool
) -> None:
    assert can_extend(D("2025-09-03"), D(notified_on), paused_days=paused) is allowed


def test_extend_gives_three_months_from_start() -> None:
    assert extend(D("2025-09-03"), D("2025-09-20"), "numerous requests") == D("2025-12-03")


@pytest.mark.parametrize("reason", ["", "   "])
def test_extend_needs_a_reason(reason: str) -> None:
    with pytest.raises(DomainError, match="reason"):
        extend(D("2025-09-03"), D("2025-09-20"), reason)


def test_extend_refused_if_notified_after_first_month() -> None:
    with pytest.raises(DomainError, match="notified on 2025-10-04"):
        extend(D("2025-09-03"), D("2025-10-04"), "complex")


# DPA 2018 s.164A as inserted by the DUAA 2025 (from 19 June 2026), issue 14.13: 30 days
# counted from the day after receipt, rolled to the next working day.
@pytest.mark.parametrize(
    ("received", "days", "expected"),
    [
        # Received Sun 1 Mar: 2 Mar is day 1, Tue 31 Mar day 30 (was 30 Mar).
        pytest.param("2026-03-01", 30, "2026-03-31", id="s164A-day-after-receipt"),
        # Day 14 is Sun 15 Mar -> Mon 16 Mar (was Sat 14 Mar).
        pytest.param("2026-03-01", 14, "2026-03-16", id="s164A-shorter-period-rolls"),
        # Received Thu 5 Feb: day 30 is Sat 7 Mar -> Mon 9 Mar (was Fri 6 Mar).
        pytest.param("2026-02-05", 30, "2026-03-09", id="s164A-weekend-rolls"),
        # Received on commencement, Fri 19 Jun: day 30 is Sun 19 Jul -> Mon 20 Jul.
        pytest.param("2026-06-19", 30, "2026-07-20", id="s164A-commencement-day"),
        # Received Wed 25 Nov: day 30 is Christmas Day; Boxing Day's substitute is Mon 28
        # Dec -> Tue 29 Dec (was Thu 24 Dec).
        pytest.param("2026-11-25", 30, "2026-12-29", id="s164A-christmas-rolls"),
    ],
)
def test_complaint_ack_due(received: str, days: int, expected: str) -> None:
    assert complaint_ack_due(D(received), days) == D(expected)


def test_complaint_ack_due_rejects_empty_period() -> None:
    with pytest.raises(DomainError):
        complaint_ack_due(D("2026-03-01"), 0)


@pytest.mark.parametrize(
    ("today", "left"),
    [("2025-10-03", 7), ("2025-10-10", 0), ("2025-10-11", -1), ("2025-11-10", -31)],
)
def test_days_left(today: str, left: int) -> None:
    assert days_left(D("2025-10-10"), D(today)) == left
