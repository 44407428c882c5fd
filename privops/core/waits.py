"""An erasure beside the subject's access or portability request: the response first.

Asked for a copy of their data and to have it erased, a subject must get the copy: an
erasure sent beside the access request empties the systems before the copies are made
(the subject is told we hold nothing), or deletes a copy made before they fetched it;
and erasing data once asked for it, to keep it from the subject, is an offence (DPA 2018
s. 173). So an erasure about to send its work waits (``wait``) while an access or
portability request of the same subject is under way (its work begun, or held for the
DPO's review; not one paused for the subject's clarification, nor one still waiting for
their identity, either of which may never come), or was answered with copies in the last
``FETCH_DAYS`` (the letter told the subject to fetch them).

The wait is bounded by the erasure's own deadline: its work goes out once each response
it waits for has closed without copies (refused, nothing held, cancelled) or paused, and
at the latest ``ERASE_BY_DAYS_BEFORE`` days before it is due, on its first deadline tick
(``privops.core.sweep.DEFAULT_THRESHOLDS``), whatever it still waits for: the erasure is
a right too, with its own month. A response with copies is told the day the erasure will
take them (``erased_from``), so the subject fetches them first.

Only the requests under way when the erasure began waiting are waited for: a later
access request never puts it off again. A follow-up erasure privops issues itself (the
end of a retention period) never waits: the subject asked for nothing then.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final

from privops.core.request import AuditStep, Context, Outcome, RequestRecord
from privops.core.sweep import DEFAULT_THRESHOLDS
from privops.core.vocab import RequestState, RequestType

RESPONSES: Final = frozenset({RequestType.access, RequestType.portability})
"""The requests an erasure waits for: those answered with copies of the subject's data."""
UNDER_WAY: Final = frozenset(
    {RequestState.in_progress, RequestState.awaiting_systems, RequestState.awaiting_review}
)
"""A response's states an erasure waits for: its work begun, or held for the DPO."""
ANSWERED: Final = frozenset({RequestState.completed, RequestState.partially_completed})
FETCH_DAYS: Final = timedelta(days=14)
"""The least time a subject is given to fetch a copy before the letter warns it goes."""
ERASE_BY_DAYS_BEFORE: Final = max(DEFAULT_THRESHOLDS)
"""How many days before an erasure is due its work goes out at the latest: its first
deadline alert's, so the tick that raises the alert ends the wait too."""
FOLLOWUP_ACTOR: Final = "privops-scheduler"
"""The actor of the follow-up erasures the worker issues itself (workflow.SCHEDULER)."""

RESPONSE_FIRST: Final = (
    "the subject's access or portability response goes out first, so that their copy "
    "shows what was held (UK GDPR Art. 15, 20; DPA 2018 s. 173); the erasure's clock "
    "runs on"
)
RESUMED: Final = "the responses it waited for closed without copies or paused"
DEADLINE_NEAR: Final = f"{ERASE_BY_DAYS_BEFORE} days before it is due: it waits no longer"
RELEASED: Final = "the DPO released it: the subject has their copies, or wants it at once"


def erase_by(rec: RequestRecord) -> date | None:
    """The day an erasure's work goes out at the latest, or None without a clock."""
    if rec.due_on is None:
        return None
    return rec.due_on - timedelta(days=ERASE_BY_DAYS_BEFORE)


def waiting(rec: RequestRecord) -> bool:
    """Whether ``rec`` is an erasure waiting for the subject's responses."""
    return bool(rec.waits_for) and rec.open


def wait(rec: RequestRecord, ctx: Context, out: Outcome) -> bool:
    """Whether ``rec``, a request about to send its work, waits for the subject's
    responses first: an erasure the subject asked for, due later than
    ``ERASE_BY_DAYS_BEFORE`` days from today, with a response in the way. It records what
    it waits for (``waits_for``), audits ``erasure_waiting`` and says so in the answer."""
    if rec.request_type is not RequestType.erasure or rec.actor == FOLLOWUP_ACTOR:
        return False
    by = erase_by(rec)
    if by is None or ctx.today >= by:
        return False
    ids = in_the_way(rec, ctx)
    if not ids:
        return False
    rec.waits_for = ids
    out.audit.append(AuditStep("erasure_waiting", after=",".join(ids), reason=RESPONSE_FIRST))
    said = f"{out.message}; " if out.message else ""
    out.message = (
        f"{said}the erasure waits for the subject's {', '.join(ids)} to go out first; its "
        f"work goes out once that closes, on {by} at the latest"
    )
    return True


def in_the_way(rec: RequestRecord, ctx: Context) -> list[str]:
    """The ids of the subject's access and portability requests ``rec``, an erasure,
    waits for: under way, or answered with copies in the last ``FETCH_DAYS``; once it
    waits, only among those it waits for already. Read from the subject's records on
    this partition (``Context.subject_requests``)."""
    waited = set(rec.waits_for)
    return sorted(
        other.request_id
        for other in ctx.subject_requests()
        if other.request_id != rec.request_id
        and other.subject_id == rec.subject_id
        and other.request_type in RESPONSES
        and (not waited or other.request_id in waited)
        and _in_the_way(other, ctx)
    )


def _in_the_way(other: RequestRecord, ctx: Context) -> bool:
    if other.state in UNDER_WAY:
        return True
    return (
        other.state in ANSWERED
        and other.closed_at is not None
        and ctx.now - other.closed_at < FETCH_DAYS
        and any(t.export is not None for t in other.tasks.values())
    )


def erased_from(rec: RequestRecord, ctx: Context) -> date | None:
    """The day the subject's erasure waiting for ``rec``, a response going out with
    copies, takes them at the latest (the earliest, if several wait), or None."""
    days = [
        day
        for other in ctx.subject_requests()
        if other.request_type is RequestType.erasure
        and waiting(other)
        and rec.request_id in other.waits_for
        and (day := erase_by(other)) is not None
    ]
    return min(days, default=None)
