"""UK legal deadlines for rights requests and complaints, as pure functions.

Rules (DESIGN.md section 5, ICO guidance "Time limits for responding"):

- The one-month clock starts on the latest of: receipt, identity verified, fee received
  (the fee counts only where one was required). The day the clock starts is day one,
  so a request received on 3 September is due on 3 October.
- Due date = the corresponding date in the next month; where that month has no such
  date, its last day. An extension (complex or numerous requests) gives up to two
  further months: due = the same rule three months from the start.
- Clarification pause (UK GDPR Art. 12A): the days between asking and receiving do not
  count, so the due date moves later by the paused days. The pause is added after the
  month arithmetic (the month is computed from the real start date, then the paused days
  are added), because the controller gets exactly the days it waited on top of the month
  it would otherwise have had.
- Finally, if the date falls on a weekend or an England-and-Wales bank holiday, the next
  working day. Bank holidays come from the `holidays` package, never a hand list.

Legal deadlines are UK local dates; callers convert their aware UTC `now` to a UK date.
No function here reads the clock: `today` is always an argument.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Final

import holidays

from privops.core.errors import DomainError

DEFAULT_COMPLAINT_ACK_DAYS: Final = 30

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
) -> date | None:
    """The day the one-month clock starts, or None while it has not started.

    None means the clock is stopped waiting for the subject: identity not yet verified,
    or a required fee not yet received. Where no identity check is needed, pass
    `identity_verified=received`. A fee date is ignored unless `fee_required` (a fee is
    only chargeable for manifestly unfounded or excessive requests or further copies).
    Identity verified before receipt (e.g. a signed-in customer) does not move the start.
    """
    if identity_verified is None:
        return None
    start = max(received, identity_verified)
    if fee_required:
        if fee_received is None:
            return None
        start = max(start, fee_received)
    return start


def pause_length(asked: date, answered: date) -> int:
    """Days the clock stood still while waiting for clarification (Art. 12A).

    The clock stops on the day the controller asks and runs again from the day the
    answer arrives, so asking on the 5th and hearing back on the 8th pauses 3 days.
    """
    if answered < asked:
        raise DomainError(f"clarification answered ({answered}) before it was asked ({asked})")
    return (answered - asked).days


def due_date(start: date, *, extended: bool = False, paused_days: int = 0) -> date:
    """The date a response is due: month arithmetic, then pause, then next working day."""
    if paused_days < 0:
        raise DomainError(f"paused_days must not be negative, got {paused_days}")
    raw = add_months(start, 3 if extended else 1)
    return next_working_day(raw + timedelta(days=paused_days))


def can_extend(start: date, today: date, *, paused_days: int = 0) -> bool:
    """An extension may be taken only while the first month runs (up to its due date)."""
    return today <= due_date(start, paused_days=paused_days)


def extend(start: date, today: date, reason: str, *, paused_days: int = 0) -> date:
    """The extended due date; refuses without a reason or once the first month is over.

    The reason must be told to the subject; sending that notification is the caller's job.
    """
    if not reason.strip():
        raise DomainError("an extension needs a reason to give the subject")
    if not can_extend(start, today, paused_days=paused_days):
        first_due = due_date(start, paused_days=paused_days)
        raise DomainError(
            f"an extension must be taken within the first month (due {first_due}), today is {today}"
        )
    return due_date(start, extended=True, paused_days=paused_days)


def complaint_ack_due(received: date, days: int = DEFAULT_COMPLAINT_ACK_DAYS) -> date:
    """Last day to acknowledge a complaint.

    DPA 2018 s.164A: acknowledge "within the period of 30 days beginning with the day on
    which the complaint is received", so the day of receipt is day one and the last day
    is `received + days - 1`. Calendar days: the statute does not roll to a working day.
    """
    if days < 1:
        raise DomainError(f"complaint acknowledgement period must be at least 1 day, got {days}")
    return received + timedelta(days=days - 1)


def days_left(due: date, today: date) -> int:
    """Whole days until due: 0 on the due date, negative once overdue."""
    return (due - today).days
