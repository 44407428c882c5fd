"""An erasure beside the subject's access or portability request: the response first.

Asked for a copy of their data and to have it erased, a subject must get the copy: an
erasure sent beside the access request empties the systems before the copies are made
(the subject is told we hold nothing), or deletes a copy made before they fetched it;
and erasing data once asked for it, to keep it from the subject, is an offence (DPA 2018
s. 173). So an erasure the subject asked for, about to send its work, waits (``hold``)
while an access or portability request of theirs is open (whatever it waits for: its
work, the DPO's review, a clarification, their identity), or was answered with copies in
the last ``FETCH_DAYS`` (its letter told them to fetch them).

The wait is bounded by a day fixed when it begins and kept on the record (``erase_on``):
``ERASE_BY_DAYS_BEFORE`` days before the erasure is due (the erasure is a right too,
with its own month), or sooner, ``FETCH_DAYS`` after the last answered response it waits
for closed, where none is open. The worker's follow-up timer wakes it on that day
(``workflow.pending_followups``). A response going out with copies meanwhile tells the
subject that day (``erased_from``), so once it has gone out only that day, or the DPO
(``request erase-now``: the subject has their copies), ends the wait; a response that
closes without copies (nothing held, refused, cancelled) is waited for no longer, and
once none is left the work goes out at once.

Only the requests in the way when the erasure began waiting are waited for: a later
access request never puts it off again. A follow-up erasure privops issues itself (the
end of a retention period) never waits: the subject asked for nothing then. Nor does an
erasure whose day would already have come.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Final

from privops.core.clock import UK
from privops.core.request import (
    FOLLOWUP_ACTOR,
    AuditStep,
    Context,
    Outcome,
    RequestRecord,
    notify_subject,
)
from privops.core.vocab import RequestState, RequestType, TaskState

RESPONSES: Final = frozenset({RequestType.access, RequestType.portability})
"""The requests an erasure waits for: those answered with copies of the subject's data."""
ANSWERED: Final = frozenset({RequestState.completed, RequestState.partially_completed})
"""The states of a response that went out (with copies, if any were made)."""
FETCH_DAYS: Final = timedelta(days=14)
"""The least time a subject is given to fetch a copy: before a letter warns it goes
(``fanout._fetch_by``), and before an erasure asked for after it takes it."""
ERASE_BY_DAYS_BEFORE: Final = 7
"""How many days before an erasure is due its work goes out at the latest, whatever it
waits for: time for the systems to erase within its month."""

RESPONSE_FIRST: Final = (
    "the subject's access or portability response goes out first, so that their copy "
    "shows what was held and can be fetched (UK GDPR Art. 15, 20; DPA 2018 s. 173); the "
    "erasure's clock runs on"
)
RESUMED: Final = "the responses it waited for closed without copies"
DAY_CAME: Final = "the day it waited until came"
RELEASED: Final = "the DPO released it: the subject has their copies, or wants it at once"


def waiting(rec: RequestRecord) -> bool:
    """Whether ``rec`` is an erasure waiting for the subject's responses: open, with
    responses to wait for, and no work sent yet (``waits_for`` stays on the record as
    what it waited for once its work went out)."""
    return bool(rec.waits_for) and rec.open and not rec.tasks


def day_came(rec: RequestRecord, ctx: Context) -> bool:
    """Whether a waiting erasure's day (``erase_on``) has come."""
    return rec.erase_on is not None and ctx.today >= rec.erase_on


def wake_at(rec: RequestRecord) -> datetime | None:
    """When the worker's timer wakes a waiting erasure: the start of its day (UK)."""
    if not waiting(rec) or rec.erase_on is None:
        return None
    return datetime.combine(rec.erase_on, time(0), tzinfo=UK)


def hold(rec: RequestRecord, ctx: Context, out: Outcome) -> bool:
    """Whether ``rec``, a request about to send its work, waits for the subject's
    responses first: an erasure the subject asked for, with a response in the way, whose
    day is still to come. It records what it waits for (``waits_for``) and its day
    (``erase_on``), audits ``erasure_waiting`` and says so in the command's answer."""
    if rec.request_type is not RequestType.erasure or rec.actor == FOLLOWUP_ACTOR:
        return False
    if rec.due_on is None:
        return False
    others = [o for o in in_the_way(rec, ctx) if o.open or _fresh_copies(o, ctx)]
    if not others:
        return False
    day = rec.due_on - timedelta(days=ERASE_BY_DAYS_BEFORE)
    out_already = [o for o in others if not o.open]
    if len(out_already) == len(others):  # only copies to fetch: FETCH_DAYS to do it
        closed = [o.closed_at for o in others if o.closed_at is not None]
        day = min(day, max(closed).astimezone(UK).date() + FETCH_DAYS)
    if ctx.today >= day:
        # No wait: a response still to go out says the erasure came first (erased_from).
        rec.waits_for = [o.request_id for o in others if o.open]
        rec.erase_on = ctx.today if rec.waits_for else None
        return False
    rec.waits_for = [o.request_id for o in others]
    rec.erase_on = day
    ids = ", ".join(rec.waits_for)
    out.audit.append(
        AuditStep("erasure_waiting", after=ids, reason=f"{RESPONSE_FIRST}; until {day} at most")
    )
    if out_already:  # their letters gave a later day: the subject is told this one
        notify_subject(rec, out, ctx, "erasure_waiting", COPIES_GO.format(day=day.isoformat()))
    said = f"{out.message}; " if out.message else ""
    out.message = (
        f"{said}the erasure waits for the subject's {ids}: its work goes out on {day}, or "
        "sooner if each still to go out closes without copies (privops request erase-now "
        "once the subject has them)"
    )
    return True


COPIES_GO: Final = (
    "We will erase your data, as asked, from {day}. The copies we made for your earlier "
    "request for your data go with it then, before the day that request's letter gave: "
    "please fetch them before {day}."
)
"""What the subject is told when their erasure waits for copies already sent to them."""


def still_waits_for(rec: RequestRecord, ctx: Context) -> list[str]:
    """Of the responses a waiting erasure waits for, those still in the way, and those
    whose record was not found (one that does not open is never taken as closed)."""
    found = {other.request_id for other in ctx.subject_requests()}
    missing = [i for i in rec.waits_for if i not in found]
    return sorted({*(other.request_id for other in in_the_way(rec, ctx)), *missing})


def in_the_way(rec: RequestRecord, ctx: Context) -> list[RequestRecord]:
    """The subject's access and portability requests ``rec``, an erasure, waits for: of
    those it waits for already, once it does, each still open or answered with copies
    (their letter gave the subject its day); before, any open or answered with copies.
    Read from the subject's records on this partition (``Context.subject_requests``)."""
    waited = set(rec.waits_for)
    return sorted(
        (
            other
            for other in ctx.subject_requests()
            if other.request_id != rec.request_id
            and other.subject_id == rec.subject_id
            and other.request_type in RESPONSES
            and (not waited or other.request_id in waited)
            and (other.open or _copies(other))
        ),
        key=lambda other: other.request_id,
    )


def _copies(other: RequestRecord) -> bool:
    """Answered with a copy of the subject's data, or promised one: a copy that could not
    be made is one the DPO follows up (the letter says so), so the data it is made from
    is kept until the erasure's day too."""
    return other.state in ANSWERED and any(
        t.export is not None or t.state is TaskState.failed for t in other.tasks.values()
    )


def _fresh_copies(other: RequestRecord, ctx: Context) -> bool:
    """Answered with copies in the last ``FETCH_DAYS``: the subject may not have them."""
    return _copies(other) and other.closed_at is not None and ctx.now - other.closed_at < FETCH_DAYS


def erased_from(rec: RequestRecord, ctx: Context) -> tuple[date, bool] | None:
    """For ``rec``, a response going out with copies: the day the subject's erasure that
    waited for it takes them (the earliest, if several), and whether its work went out
    already (its day came, or the DPO released it, before this response went out); or
    None."""
    found: list[tuple[date, bool]] = []
    for other in ctx.subject_requests():
        if (
            other.request_type is RequestType.erasure
            and rec.request_id in other.waits_for
            and other.erase_on is not None
        ):
            if waiting(other):
                found.append((other.erase_on, False))
            elif other.tasks:
                sent = [t.first_sent_at for t in other.tasks.values() if t.first_sent_at]
                found.append((min(sent).astimezone(UK).date() if sent else ctx.today, True))
    return min(found, default=None)
