"""UK legal deadlines for rights requests and complaints, as pure functions.

Rules (DESIGN.md section 5, ICO guidance "Time limits for responding"):

- The one-month clock starts on the latest of: receipt of the request, receipt of the
  information asked for to confirm identity (not the day someone finished checking it),
  for a request made by a representative that changes or discloses data, receipt of
  the evidence of their authority, receipt of a fee (only where one was required). The
  day the clock starts is day one, so a request received on 3 September is due on 3
  October.
- Due date = the corresponding date in the next month; where that month has no such
  date, its last day. An extension (complex or numerous requests) gives up to two
  further months: due = the same rule three months from the start, and it must be
  notified to the subject while the first month runs.
- Clarification pause (UK GDPR Art. 12A as inserted by the Data (Use and Access) Act
  2025): the period from the day clarification is asked for to the day it is received,
  both included, does not count, but only the days of it that fall while the clock runs.
  The counted days are added after the month arithmetic (the month is computed from the
  real start date, then the paused days are added), because the controller gets exactly
  the days it waited on top of the month it would otherwise have had.
- Finally, if the date falls on a weekend or an England-and-Wales bank holiday, the next
  working day. Bank holidays come from the `holidays` package, never a hand list.
- Complaints (DPA 2018 s.164A, as inserted by the DUAA 2025): acknowledged within 30 days
  counted from the day after receipt, rolled to the next working day. The response is
  promised by that day, or, for an acknowledgement sent late, as long again from it.

Legal deadlines are UK local dates; callers convert their aware UTC `now` to a UK date.
No function here reads the clock: every date is an argument.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

import holidays

from privops.core.errors import DomainError

DEFAULT_COMPLAINT_ACK_DAYS: Final = 30
COMPLAINT_DUTY_FROM: Final = date(2026, 6, 19)
"""DPA 2018 s.164A (inserted by the DUAA 2025) is in force from this day: a complaint
received before it had no statutory limit to acknowledge it by, so none was missed."""

# England and Wales share one bank-holiday calendar; the package's "ENG" subdivision
# includes substitute ("observed") days. Years are filled in lazily on lookup.
_BANK_HOLIDAYS: Final = holidays.country_holidays("GB", subdiv="ENG")


def is_working_day(day: date) -> bool:
    """Monday to Friday and not an England-and-Wales bank holiday."""
    return day.weekday() < 5 and day not in _BANK_HOLIDAYS


def next_working_day(day: date) -> date:
    """`day` itself if it is a working day, else the first working day after it."""
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def add_months(start: date, months: int) -> date:
    """The corresponding date `months` later, or the last day of that month if none."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(start.day, last))


def clock_start(
    received: date,
    identity_verified: date | None,
    fee_received: date | None = None,
    *,
    fee_required: bool = False,
    identity_received: date | None = None,
    authority_required: bool = False,
    authority_received: date | None = None,
) -> date | None:
    """The day the one-month clock starts, or None while it has not started.

    The identity date that counts is `identity_received`, the day the information asked
    for arrived: a slow check must not push the deadline out. Only when that date is
    absent (older commands, or a caller that does not know it) does the verification
    day stand in for it, which can only make the deadline later than the law's.
    None means the clock waits for the subject: no identity information yet, or a
    required fee not yet paid. Where no identity check is needed, pass
    `identity_verified=received`. A fee date is ignored unless `fee_required` (a fee is
    only chargeable for manifestly unfounded or excessive requests or further copies).
    Identity information from before receipt (a signed-in customer) does not move it.

    A request made by a representative that changes or discloses data
    (`authority_required`) waits for the evidence of their authority as it waits for the
    identity information: the clock starts on the later of the two (privops' reading of
    Art. 12(6) and the ICO's guidance that the third party must show their entitlement;
    docs/legal-rules.md).
    """
    identity = identity_received or identity_verified
    if identity is None:
        return None
    start = max(received, identity)
    if authority_required:
        if authority_received is None:
            return None
        start = max(start, authority_received)
    if fee_required:
        if fee_received is None:
            return None
        start = max(start, fee_received)
    return start


@dataclass(frozen=True, slots=True, order=True)
class Pause:
    """A clarification period: asked on `asked`, the answer received on `answered`."""

    asked: date
    answered: date

    def __post_init__(self) -> None:
        if self.answered < self.asked:
            raise DomainError(
                f"clarification answered ({self.answered}) before it was asked ({self.asked})"
            )


@dataclass(frozen=True, slots=True)
class CountedPause:
    """How much of one pause stopped the clock, and the facts that decided it.

    `counted_from` is the first day that counts (None when no day does): the later of
    the day clarification was asked and the clock's start. `running_until` is the due
    date the clock was running towards when the pause began; a pause asked after it
    counts nothing, because the clock had already run out. `moves` is how far the pause
    moves the month's end the due date is rolled from: its days, and for a pause begun
    after that end (on the weekend or holiday the due date was rolled over) the days
    from that end to the pause too, so the due date is the first working day after the
    answer, as it was the first after the month's end (``count_pauses``).
    """

    pause: Pause
    counted_from: date | None
    days: int
    running_until: date
    moves: int = 0


def pause_length(asked: date, answered: date) -> int:
    """Days in a clarification period, both ends included (Art. 12A).

    The period runs from the day the controller asks to the day the answer is
    received, both days part of it: asking on the 5th and hearing back on the 8th
    stops the clock for 4 days; asking and hearing back the same day for 1.
    """
    pause = Pause(asked, answered)
    return (pause.answered - pause.asked).days + 1


def count_pauses(
    start: date, pauses: Iterable[Pause], *, extended: bool = False, already: int = 0
) -> list[CountedPause]:
    """Each pause, oldest first, with the days of it that fell while the clock ran.

    Days before the clock started do not count (it was not running), nor does a pause
    asked for after the due date it was running towards. Pauses may not overlap: the
    clock cannot be stopped twice on one day. ``already``: days paused before all of
    these (``privops dsar due-date --paused-days``), which moved that due date out too.

    A pause begun after the month's end, while the due date was rolled over a weekend or
    holiday (asked on Tuesday 7 April 2026, the day Friday 3 April's due date rolled to,
    or on the Saturday between, answered on the 9th), makes the due date the first
    working day after the answer, as it was the first after the month's end: Friday 10
    April. Counted from the month's end, its three days moved nothing (3 April + 3
    rolls to 7 April again), and the request was breached the day its answer was
    recorded (legal review, session 43).
    """
    counted: list[CountedPause] = []
    total = already
    months = 3 if extended else 1
    previous: Pause | None = None
    for pause in sorted(pauses):
        if previous is not None and pause.asked <= previous.answered:
            raise DomainError(f"clarification periods overlap: {previous} and {pause}")
        previous = pause
        running_until = due_date(start, extended=extended, paused_days=total)
        first = max(pause.asked, start)
        if pause.asked > running_until or first > pause.answered:
            counted.append(CountedPause(pause, None, 0, running_until))
            continue
        days = pause_length(first, pause.answered)
        month_end = add_months(start, months) + timedelta(days=total)
        rolled = (first - month_end).days if first > month_end else 0
        total += days + rolled
        counted.append(CountedPause(pause, first, days, running_until, days + rolled))
    return counted


def paused_days(start: date, pauses: Iterable[Pause], *, extended: bool = False) -> int:
    """Days the pauses move the month's end by (``CountedPause.moves``): the days the
    clock stood still, and for a pause begun on a rolled-over day, those to that day."""
    return sum(c.moves for c in count_pauses(start, pauses, extended=extended))


def due_date(start: date, *, extended: bool = False, paused_days: int = 0) -> date:
    """The date a response is due: month arithmetic, then pause, then next working day."""
    if paused_days < 0:
        raise DomainError(f"paused_days must not be negative, got {paused_days}")
    raw = add_months(start, 3 if extended else 1)
    return next_working_day(raw + timedelta(days=paused_days))


def can_extend(start: date, notified_on: date, *, paused_days: int = 0) -> bool:
    """An extension counts only if notified while the first month runs (up to its due date).

    The day that matters is the day the subject was told (the command's `notified_on`),
    not the day a worker happens to process the command.
    """
    return start <= notified_on <= due_date(start, paused_days=paused_days)


def extend(start: date, notified_on: date, reason: str, *, paused_days: int = 0) -> date:
    """The extended due date; refuses without a reason or if notified outside the first month.

    The reason must be told to the subject; sending that notification is the caller's job.
    """
    if not reason.strip():
        raise DomainError("an extension needs a reason to give the subject")
    if not can_extend(start, notified_on, paused_days=paused_days):
        first_due = due_date(start, paused_days=paused_days)
        raise DomainError(
            f"an extension must be notified within the first month ({start} to {first_due}), "
            f"it was notified on {notified_on}"
        )
    return due_date(start, extended=True, paused_days=paused_days)


def complaint_ack_due(received: date, days: int = DEFAULT_COMPLAINT_ACK_DAYS) -> date:
    """Last day to acknowledge a complaint.

    DPA 2018 s.164A (inserted by the DUAA 2025), read as DESIGN.md section 5 does: the
    days are counted from the day after receipt, so that day is day one and the last
    day is `received + days`; a last day on a weekend or bank holiday rolls to the next
    working day.
    """
    if days < 1:
        raise DomainError(f"complaint acknowledgement period must be at least 1 day, got {days}")
    return next_working_day(received + timedelta(days=days))


def complaint_response_due(
    received: date, acknowledged: date | None, days: int = DEFAULT_COMPLAINT_ACK_DAYS
) -> date:
    """The date a complaint's acknowledgement tells the complainant they will hear back by.

    s.164A limits the acknowledgement only; the outcome is owed "without undue delay",
    and privops promises it by the acknowledgement's own last day
    (``complaint_ack_due``). An acknowledgement sent after that day (a complaint logged
    late) gets as long again from the day it is sent, rolled to a working day: a date
    already past is no promise, and the DPO has only just seen the complaint. The late
    acknowledgement itself is a breach, recorded when it is sent
    (privops.core.fanout).
    """
    due = complaint_ack_due(received, days)
    if acknowledged is None or acknowledged <= due:
        return due
    return complaint_ack_due(acknowledged, days)


def days_left(due: date, today: date) -> int:
    """Whole days until due: 0 on the due date, negative once overdue."""
    return (due - today).days
