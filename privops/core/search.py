"""An access request's search details: how to find someone a system holds under no
identifier. Pure.

CCTV footage is filed by camera and time, not by person: a visitor who never gave a
name is in it all the same, and asks for it as anyone may (UK GDPR Art. 15). The ICO's
guidance on video surveillance has the controller ask for what finds them: the day,
the hours, the place, and a description to recognise them by. A system the data map
marks ``searched_by_details`` gets these with its export task even when privops knows no
identifier for it, and even when no system ever reported the subject. Before, such a
request was answered "we hold nothing" while the footage was there.

The details are personal data (a description of the subject, where they were): they
are sealed under the subject's key wherever they are kept, as a rectification's values
are, and never appear in an answer, an audit reason or a log; a problem names the
detail, never its value.

Times are UK wall-clock times, as the subject gives them; ``window`` turns them into
the UTC instants a system's timestamps are compared with. Hours that end before they
start run on into the next day ("22:30-01:15": a night shift, a late delivery), from
0.37, for up to ``MAX_OVERNIGHT``; before, such a visit had to be two requests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from privops.core.clock import UK
from privops.core.vocab import SearchDetail

MAX_DETAIL_CHARS: Final = 300
"""The longest place or description: a sentence or two, carried by the request and by
each searched system's task."""
TEXT_DETAILS: Final = (SearchDetail.location, SearchDetail.appearance)
_TIMES = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
EXAMPLE: Final = (
    "--search date=2026-11-20 --search times=14:00-15:30 --search location='trade counter' "
    "--search appearance='red coat'"
)
"""As the DPO gives them (``privops request access``): one detail a ``--search``."""


@dataclass(frozen=True)
class Window:
    """When the subject says they were there, as UTC instants (``until`` exclusive)."""

    since: datetime
    until: datetime

    def holds(self, at: datetime) -> bool:
        return self.since <= at.astimezone(UTC) < self.until


def problem(details: Mapping[str, str], received_on: date) -> str | None:
    """What is wrong with ``details`` for a request received on ``received_on``, naming
    the detail and never its value; None when they can be searched by.

    A day is required (no system searches all its footage for a description) and may
    not come after the request; hours, a place and a description are optional."""
    known = ", ".join(d.value for d in SearchDetail)
    unknown = sorted(k for k in details if k not in set(SearchDetail))
    if unknown:
        return f"{len(unknown)} search detail(s) not among {known}"
    if SearchDetail.date not in details:
        return f"search details need a date (YYYY-MM-DD) to search by; e.g. {EXAMPLE}"
    try:
        day = date.fromisoformat(details[SearchDetail.date].strip())
    except ValueError:
        return "the search date is not a date: give it as YYYY-MM-DD"
    if day > received_on:
        return f"the search date is after the request was received ({received_on})"
    times = details.get(SearchDetail.times)
    if times is not None and (found := _times_problem(times, day, received_on)):
        return found
    for name in TEXT_DETAILS:
        text = details.get(name)
        if text is None:
            continue
        if not text.strip():
            return f"the search {name} is empty: give it, or leave it out"
        if len(text) > MAX_DETAIL_CHARS:
            return f"the search {name} is {len(text)} characters: at most {MAX_DETAIL_CHARS}"
    return None


MAX_OVERNIGHT: Final = timedelta(hours=12)
"""The longest span hours that end before they start are read as (past midnight): a
night's visit is hours long, where hours typed the wrong way round (14:00-13:00 for
13:00-14:00) would be read as most of a day without the hour meant, and be searched and
kept so, silently (review, session 37)."""


def _times_problem(times: str, day: date, received_on: date) -> str | None:
    found = _TIMES.match(times.strip())
    if found is None:
        return "the search times are not HH:MM-HH:MM (UK time, 24-hour), e.g. 14:00-15:30"
    start = timedelta(hours=int(found.group(1)), minutes=int(found.group(2)))
    end = timedelta(hours=int(found.group(3)), minutes=int(found.group(4)))
    if start == end:
        return (
            "the search times start and end at the same minute: give the hours the visit "
            "took, HH:MM-HH:MM"
        )
    if end < start and end + timedelta(days=1) - start > MAX_OVERNIGHT:
        return (
            "the search times end before they start: hours past midnight are read so only "
            f"up to {MAX_OVERNIGHT.seconds // 3600} hours (22:30-01:15); otherwise give "
            "them in order, HH:MM-HH:MM"
        )
    if end < start and day == received_on:
        return (
            "the search times run past midnight into the day after the request was "
            "received: give hours on that day only"
        )
    return None


def window(details: Mapping[str, str]) -> Window:
    """The UTC instants the details' day (and hours, if given) cover in UK time; the
    whole day without hours. ``details`` passed ``problem``."""
    day = date.fromisoformat(details[SearchDetail.date].strip())
    times = details.get(SearchDetail.times)
    if times is None:
        since, until = (
            datetime.combine(day, time(), UK),
            datetime.combine(day + timedelta(days=1), time(), UK),
        )
    else:
        # On the day the clocks go back an hour is lived twice: from its first time to
        # its second, so a search of 01:00-01:30 covers both; on the day they go forward,
        # widest too (01:30-03:00 covers 01:00-02:00 UTC; an hour that never was is read
        # as both of its offsets). An end before the start is on the next day (the
        # strings compare as the times do: HH:MM, zero-padded).
        start, _, end = times.strip().partition("-")
        last = day + timedelta(days=1) if end < start else day
        since = min(_instants(day, start))
        until = max(_instants(last, end))
        return Window(since, until)
    return Window(since.astimezone(UTC), until.astimezone(UTC))


def _instants(day: date, clock: str) -> tuple[datetime, datetime]:
    """The UTC instants ``clock`` on ``day`` may name in UK time: two when the clocks go
    back (the hour lived twice), or a gap's two readings when they go forward."""
    local = datetime.combine(day, time.fromisoformat(clock), UK)
    return (local.replace(fold=0).astimezone(UTC), local.replace(fold=1).astimezone(UTC))


def shown(details: Mapping[str, str]) -> str:
    """The details' names, for an audit reason or a note (never their values)."""
    return ", ".join(d.value for d in SearchDetail if d in details)
