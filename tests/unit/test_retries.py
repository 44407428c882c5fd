"""Task scheduling and retries (privops.core.retries), ticks and the worker's schedule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import records as r
from privops.core.datamap import RetryPolicy, SystemSpec
from privops.core.errors import DecodeError
from privops.core.holds import LegalHold
from privops.core.request import Context, FollowupItem, Outcome, RequestRecord, TaskRecord
from privops.core.retries import answer_window, is_due, next_checks, on_overdue, retry_later
from privops.core.schedule import Schedule
from privops.core.sweep import Alerted
from privops.core.ticks import Tick, TickKind, parse_tick
from privops.core.vocab import (
    Category,
    RequestState,
    RequestType,
    System,
    TaskAction,
    TaskState,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SPEC = SystemSpec(
    description="crm",
    categories=("contact",),
    identifiers=("email",),
    task_topic="privacy.tasks.crm",
    sla_seconds=10,
    retry=RetryPolicy(max_attempts=3, backoff_seconds=5, backoff_multiplier=2),
)


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [
        (1, 10),  # the system's SLA
        (2, 5),  # then the backoff: 5 s after the first timeout
        (3, 10),
        (4, 20),  # the escalated task's wait (max_attempts + 1) ...
        (9, 20),  # ... and every re-send after it: the longest step
    ],
)
def test_answer_window(attempt: int, seconds: float) -> None:
    assert answer_window(SPEC, attempt) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(1, 5), (2, 10), (3, 20), (4, 20), (20, 20)],  # capped at the longest step
)
def test_a_retryable_failure_waits_the_backoff_of_its_attempt(attempts: int, seconds: int) -> None:
    """Re-sent at the next sweep, a system answering "retry later" at once used every
    attempt in seconds; uncapped, the 20th waited weeks (reviews, session 33)."""
    task = record(attempts=attempts).tasks["R:crm:erase"]
    retry_later(task, SPEC, NOW)
    assert task.next_check_at == NOW + timedelta(seconds=seconds)


def test_not_now_said_faster_than_the_backoff_backs_off_once_an_attempt() -> None:
    """Each "retry later" moved the check out by the backoff: a system saying it every
    2 s (backoff 5 s) kept its task from being re-sent or escalated for ever (review,
    session 43). The first of an attempt sets the check; the task is due then, and the
    re-send's own "not now" backs off again."""
    rec = record()
    task = rec.tasks["R:crm:erase"]
    for answered in range(0, 20, 2):
        retry_later(task, SPEC, NOW + timedelta(seconds=answered))
    assert task.next_check_at == NOW + timedelta(seconds=5)
    assert is_due(rec, task, NOW + timedelta(seconds=5))
    task.attempts += 1  # re-sent
    later = NOW + timedelta(seconds=6)
    retry_later(task, SPEC, later)
    assert task.next_check_at == later + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("reason", "said"),
    [(None, "crm silent after 3 attempts"), ("busy", "crm no final answer after 3 attempts")],
)
def test_an_escalation_says_whether_the_system_answered(reason: str | None, said: str) -> None:
    """A system that kept answering "retry later" was not silent (review, session 33)."""
    rec = record(attempts=3, outcome_reason=reason)
    ctx = Context(now=NOW, today=NOW.date(), datamap=load_datamap(), subject_ref="sr")
    out = Outcome(record=rec)
    on_overdue(rec, rec.tasks["R:crm:erase"], ctx, out)
    [step] = [a for a in out.audit if a.action == "task_escalated"]
    assert step.reason == said


def record(
    request_state: RequestState = RequestState.awaiting_systems, **task: Any
) -> RequestRecord:
    fields: dict[str, Any] = {
        "task_id": "R:crm:erase",
        "system": System.crm,
        "action": TaskAction.erase,
        "state": TaskState.sent,
        "attempts": 1,
        "next_check_at": NOW,
    }
    fields.update(task)
    return RequestRecord(
        request_id="R",
        request_type=RequestType.erasure,
        subject_id="s",
        actor="dpo",
        state=request_state,
        received_on=NOW.date(),
        due_on=date(2026, 4, 2),
        tasks={"R:crm:erase": TaskRecord(**fields)},
        created_at=NOW,
    )


@pytest.mark.parametrize(
    ("rec", "now", "due"),
    [
        (record(), NOW, True),
        (record(), NOW - timedelta(seconds=1), False),  # not yet
        (record(request_state=RequestState.paused), NOW, True),  # tasks keep going while paused
        (record(state=TaskState.escalated), NOW, True),
        (record(request_state=RequestState.cancelled), NOW, False),
        (record(state=TaskState.done), NOW, False),
        (record(state=TaskState.pending, next_check_at=None), NOW, False),  # never sent
    ],
)
def test_is_due_and_next_checks_agree(rec: RequestRecord, now: datetime, due: bool) -> None:
    task = rec.tasks["R:crm:erase"]
    assert is_due(rec, task, now) is due
    assert bool([w for w, _ in next_checks(rec) if w <= now]) is due


# --- ticks --------------------------------------------------------------------------------


def wire(kind: str, **kw: Any) -> r.RequestTick:
    return r.RequestTick(request_id="R", kind=kind, at=NOW, **kw)


@pytest.mark.parametrize(
    "tick",
    [
        Tick("R", TickKind.task_overdue, NOW, task_id="R:crm:erase"),
        Tick("R", TickKind.followup, NOW),
        Tick("R", TickKind.deadline_approaching, NOW, days_before=3, due_on=date(2026, 4, 2)),
        Tick("R", TickKind.deadline_breached, NOW, due_on=date(2026, 4, 2)),
    ],
    ids=lambda t: t.kind.value,
)
def test_every_tick_kind_round_trips_through_the_wire(tick: Tick) -> None:
    assert parse_tick(tick.to_record()) == tick


@pytest.mark.parametrize(
    ("record", "reason", "detail"),
    [
        (wire("deadline_exploded"), "unknown_value", "unknown tick kind 'deadline_exploded'"),
        (wire("task_overdue"), "invalid_record", "without task_id"),
        (wire("deadline_breached"), "invalid_record", "without due_on"),
        (wire("deadline_approaching", due_on=date(2026, 4, 2)), "invalid_record", "days_before"),
        (
            wire("deadline_approaching", due_on=date(2026, 4, 2), days_before=-3),
            "invalid_record",
            "days_before",
        ),
    ],
)
def test_unusable_ticks_are_decode_errors(record: r.RequestTick, reason: str, detail: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_tick(record)
    assert info.value.reason == reason
    assert detail in info.value.detail


# --- the schedule -------------------------------------------------------------------------


class Seen:
    def __init__(self) -> None:
        self.pending: dict[str, int] = {}
        self.open: dict[tuple[str, str], int] = {}
        self.due: list[tuple[RequestType, date | None, date | None]] = []
        self.promised: list[tuple[date | None, date | None]] = []
        self.awaited: list[tuple[date | None, date | None]] = []

    def tasks_pending(self, system: str, count: int) -> None:
        self.pending[system] = count

    def requests_open(self, request_type: str, state: str, count: int) -> None:
        self.open[(request_type, state)] = count

    def due_moved(self, request_type: RequestType, old: date | None, new: date | None) -> None:
        self.due.append((request_type, old, new))

    def promise_moved(self, old: date | None, new: date | None) -> None:
        self.promised.append((old, new))

    def identity_awaited(self, old: date | None, new: date | None) -> None:
        self.awaited.append((old, new))


def test_a_request_waiting_for_identity_is_watched_until_it_comes() -> None:
    """No clock runs and no deadline alert comes while a request waits for the subject's
    identity; one forgotten sat unseen (legal review, session 35)."""
    seen = Seen()
    schedule = Schedule((7, 3, 1), seen)
    waiting = record(request_state=RequestState.identity_unverified)
    schedule.track(waiting)
    schedule.track(waiting)  # tracked again, unchanged: told once
    assert seen.awaited == [(None, waiting.received_on)]
    schedule.track(waiting.model_copy(update={"state": RequestState.in_progress}))
    assert seen.awaited[-1] == (waiting.received_on, None)
    schedule.track(waiting)
    schedule.clear()  # partitions moved: reported gone
    assert seen.awaited[-1] == (waiting.received_on, None)


def test_schedule_hands_out_typed_ticks_once_and_reports_counts() -> None:
    seen = Seen()
    schedule = Schedule((7, 3, 1), seen)
    schedule.track(record())
    assert seen.pending == {"crm": 1}
    assert seen.open == {("erasure", "awaiting_systems"): 1}
    assert seen.due == [(RequestType.erasure, None, date(2026, 4, 2))]
    ticks = schedule.due(NOW + timedelta(days=25), date(2026, 3, 27))
    assert [(t.kind, t.task_id, t.days_before) for t in ticks] == [
        (TickKind.task_overdue, "R:crm:erase", None),
        (TickKind.deadline_approaching, None, 7),
    ]
    assert schedule.due(NOW + timedelta(days=25), date(2026, 3, 27)) == []


def test_an_acknowledged_complaint_is_watched_by_the_response_date_it_was_promised() -> None:
    """A complaint is acknowledged at once (s.164A's limit met: no deadline alert), and the
    acknowledgement tells the complainant when they will hear back. Before, nothing
    watched that date: an unanswered complaint was seen nowhere but its own record."""
    seen = Seen()
    schedule = Schedule((7, 3, 1), seen)
    promised = date(2026, 4, 9)
    complaint = record(request_state=RequestState.in_progress).model_copy(
        update={"request_type": RequestType.complaint, "tasks": {}, "due_on": promised}
    )
    schedule.track(complaint)  # not acknowledged yet: the legal deadline is watched
    assert seen.promised == []
    acknowledged = complaint.model_copy(update={"acknowledged_on": NOW.date()})
    schedule.track(acknowledged)
    schedule.track(acknowledged)  # tracked again, unchanged: told once
    assert seen.promised == [(None, promised)]
    assert schedule.due(NOW + timedelta(days=40), date(2026, 4, 19)) == []  # no alert event
    schedule.track(acknowledged.model_copy(update={"state": RequestState.completed}))
    assert seen.promised == [(None, promised), (promised, None)]
    schedule.track(acknowledged.model_copy(update={"request_id": "R2"}))
    schedule.clear()  # partitions moved: reported gone
    assert seen.promised[-1] == (promised, None)


def test_schedule_watches_no_deadline_while_paused_and_resumes_after_the_record() -> None:
    seen = Seen()
    schedule = Schedule((7, 3, 1), seen)
    paused = record(request_state=RequestState.paused, next_check_at=None)
    schedule.track(paused.model_copy(update={"request_type": RequestType.access}))
    assert schedule.due(NOW, date(2026, 4, 30)) == []
    # Resumed after a restart: the record says the 3-day warning went out.
    rec = record(next_check_at=None).model_copy(
        update={"deadline_alerted": Alerted(date(2026, 4, 2), 3)}
    )
    schedule.track(rec)
    ticks = schedule.due(NOW, date(2026, 4, 1))
    assert [(t.kind, t.days_before) for t in ticks] == [(TickKind.deadline_approaching, 1)]
    assert seen.due == [(RequestType.erasure, None, date(2026, 4, 2))]


def test_schedule_watches_the_deadline_of_another_request_paused_by_an_earlier_release() -> None:
    """Only an access request's clock stops for clarification (Art. 12A): an erasure
    0.37 paused is watched against its due date without the pause."""
    schedule = Schedule((7, 3, 1), Seen())
    paused = record(request_state=RequestState.paused, next_check_at=None).model_copy(
        update={"clock_start": date(2026, 3, 2), "paused_days": 5, "due_on": date(2026, 4, 7)}
    )
    schedule.track(paused)
    ticks = schedule.due(NOW, date(2026, 4, 1))
    assert [(t.kind, t.days_before) for t in ticks] == [(TickKind.deadline_approaching, 1)]


def test_the_schedule_hands_out_at_most_the_limit_of_overdue_answers_longest_first() -> None:
    """A sweep after an outage re-sends a bounded number; the rest stay due, in order."""
    schedule = Schedule((7, 3, 1), Seen())
    for i in range(5):
        rec = record(next_check_at=NOW + timedelta(minutes=i))
        schedule.track(rec.model_copy(update={"request_id": f"R{i}"}))
    later = NOW + timedelta(hours=1)

    def overdue(limit: int | None) -> list[str | None]:
        return [
            t.task_id
            for t in schedule.due(later, NOW.date(), overdue_limit=limit)
            if t.kind is TickKind.task_overdue
        ]

    assert overdue(2) == ["R0:crm:erase", "R1:crm:erase"]
    assert overdue(2) == ["R2:crm:erase", "R3:crm:erase"]
    assert overdue(None) == ["R4:crm:erase"]
    assert overdue(2) == []


def test_a_resent_erase_task_keeps_what_a_hold_placed_since_holds() -> None:
    """DESIGN.md section 5: legal holds block erasure of the held categories. A hold placed
    after the erasure was planned, while a system has not answered, reaches that system
    with the re-send: the held category moves from erase to keep. Before, every re-send
    repeated the plan's categories, hold or not."""

    rec = record(categories=[Category.contact, Category.interactions])
    task = rec.tasks["R:crm:erase"]
    hold = LegalHold(
        hold_id="H-9",
        subject_id="s",
        categories=(Category.interactions,),
        reason="tribunal claim",
        placed_at=NOW - timedelta(minutes=5),
    )
    elsewhere = hold.model_copy(update={"hold_id": "H-10", "subject_id": "other"})
    ctx = Context(
        now=NOW, today=NOW.date(), datamap=load_datamap(), subject_ref="sr", holds=(hold, elsewhere)
    )
    out = Outcome(record=rec)
    on_overdue(rec, task, ctx, out)
    [sent] = [o.record for o in out.out]
    assert isinstance(sent, r.Erase)
    assert sent.categories == [Category.contact]
    assert [(k.category, k.until) for k in sent.keep] == [(Category.interactions, None)]
    assert "legal hold H-9" in sent.keep[0].ground
    assert task.categories == [Category.contact]  # the record says what was asked last
    assert "kept under a legal hold: interactions" in (out.audit[-1].reason or "")
    # A hold on another subject, or one released, changes nothing.
    rec2 = record(categories=[Category.contact, Category.interactions])
    released = hold.model_copy(update={"released_at": NOW - timedelta(minutes=1)})
    ctx2 = Context(
        now=NOW,
        today=NOW.date(),
        datamap=load_datamap(),
        subject_ref="sr",
        holds=(released, elsewhere),
    )
    out2 = Outcome(record=rec2)
    on_overdue(rec2, rec2.tasks["R:crm:erase"], ctx2, out2)
    [again] = [o.record for o in out2.out]
    assert isinstance(again, r.Erase)
    assert again.categories == [Category.contact, Category.interactions]


def test_a_request_tracked_again_queues_each_followup_time_once() -> None:
    """Every change tracks a request again (a completed erasure twice); each time pushed
    its follow-up times anew, so the queue grew with every tracking, and a deferred
    erasure's retries doubled their ticks each round (review, session 24)."""
    schedule = Schedule((7, 3, 1), Seen())
    later = NOW + timedelta(days=30)
    rec = record(request_state=RequestState.completed, state=TaskState.done).model_copy(
        update={
            "followups": [
                FollowupItem(system=System.orders, categories=[Category.purchases], due_at=later),
                FollowupItem(system=System.crm, categories=[Category.contact], due_at=later),
            ]
        }
    )
    for _ in range(50):
        schedule.track(rec)
    assert len(schedule._followups) == 1
    ticks = schedule.due(later, later.date())
    assert [(t.kind, t.request_id) for t in ticks] == [(TickKind.followup, "R")]
    assert schedule.due(later, later.date()) == []
    schedule.track(rec)  # tracked again after it fired: queued again, once
    assert len(schedule.due(later, later.date())) == 1


def test_a_request_tracked_again_queues_each_task_check_once() -> None:
    """Every change tracks a request again: each pushed every waiting task's check anew,
    so the last task of an erasure answered one system at a time came due as 21 overdue
    ticks, which used up the sweep's re-send budget (review, session 35)."""
    schedule = Schedule((7, 3, 1), Seen())
    rec = record()
    for _ in range(20):
        schedule.track(rec)
    assert len(schedule._tasks) == 1
    ticks = schedule.due(NOW, NOW.date(), overdue_limit=5)
    assert [(t.kind, t.task_id) for t in ticks if t.kind is TickKind.task_overdue] == [
        (TickKind.task_overdue, "R:crm:erase")
    ]
    schedule.track(rec)  # still waiting after the tick: checked again, once
    assert [t.task_id for t in schedule.due(NOW, NOW.date())] == ["R:crm:erase"]


def test_a_rebuild_never_puts_a_stored_request_back_over_a_newer_one() -> None:
    """After a rebalance the schedule is rebuilt from the stored requests; a flush's values
    reach the store only once delivered, so the agent may already have tracked a newer
    one (an extension). Before, the rebuild put the stored value back: the deadline
    index kept the old due date, and the alert for the new one never came (review,
    session 26)."""
    seen = Seen()
    schedule = Schedule((7, 3, 1), seen)
    schedule.clear()  # partitions assigned
    stored = record()
    extended = stored.model_copy(update={"due_on": date(2026, 6, 2)})
    schedule.track(extended)  # decided, not yet stored
    schedule.track_stored(stored)  # what the store still holds
    schedule.rebuilt()
    assert seen.due[-1] == (RequestType.erasure, None, date(2026, 6, 2))
    assert warnings(schedule, date(2026, 3, 31)) == []  # not counting to 2 April
    assert warnings(schedule, date(2026, 5, 31)) == [3]
    # Once rebuilt, the store is not asked again: a stored value indexes as any other.
    schedule.track_stored(stored)
    assert seen.due[-1:] == [(RequestType.erasure, date(2026, 6, 2), date(2026, 4, 2))]


def warnings(schedule: Schedule, today: date) -> list[int | None]:
    ticks = schedule.due(NOW, today)
    return [t.days_before for t in ticks if t.kind is TickKind.deadline_approaching]


def test_a_task_that_never_backed_off_is_stored_as_0_42_reads_it() -> None:
    """``backed_off`` is new in 0.43, and 0.42's model forbids a field it does not know:
    written as null on every task, every request record would have stopped a rolled-back
    worker (review, session 43). Only a task that backed off carries it."""
    task = record().tasks["R:crm:erase"]
    assert "backed_off" not in task.model_dump(mode="json")
    retry_later(task, SPEC, NOW)
    assert task.model_dump(mode="json")["backed_off"] == 1
