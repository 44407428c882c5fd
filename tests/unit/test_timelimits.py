"""A request's time limit through the workflow: clock start, Art. 12A pause, extension,
complaints. Each table row names its source; every row failed on the rules before
issue 14 and passes now.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import deadlines, timelimits
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.identity import IdentityMap, merge
from privops.core.ticks import Tick, TickKind
from privops.core.timelimits import alert_due
from privops.core.vocab import FeeGround, ObjectionScope, Purpose, RequestState, RequestType, System

S = RequestState
D = date.fromisoformat
SUBJECT = "subj-clock"
SYSTEMS = {System.orders: {"customer_id": "C-9"}, System.crm: {"email": "bo@example.com"}}


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def ctx_on(dm: DataMap, day: str) -> wf.Context:
    now = datetime.combine(D(day), datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)
    identity: IdentityMap | None = None
    for system, ids in SYSTEMS.items():
        identity = merge(identity, SUBJECT, system, ids, now - timedelta(days=400))
    # The worker's clock shifted to ``day`` (settings.clock_offset_days): the commands
    # below are signed now, by the wall clock.
    return wf.Context(
        now=now,
        today=now.date(),
        datamap=dm,
        subject_ref="sr_x",
        identity=identity,
        clock_offset=now - datetime.now(UTC),
    )


_ids = iter(range(1, 100_000))


def submit(request_type: RequestType, received: str, **kw: Any) -> r.RequestSubmitted:
    fields: dict[str, Any] = {
        "command_id": f"c{next(_ids)}",
        "request_id": "R-clock",
        "issued_at": datetime.now(UTC),
        "actor": "dpo",
        "request_type": request_type,
        "subject_id": SUBJECT,
        "received_on": D(received),
        "identity_verified_on": D(received),
    }
    fields.update(kw)
    return r.RequestSubmitted(**fields)


def command(model: type[r.Command], **kw: Any) -> r.Command:
    return model(
        command_id=f"c{next(_ids)}",
        request_id="R-clock",
        issued_at=datetime.now(UTC),
        actor="dpo",
        **kw,
    )


def apply(rec: wf.RequestRecord | None, cmd: r.Command, ctx: wf.Context) -> wf.RequestRecord:
    outcome = wf.on_command(rec, cmd, ctx)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    return outcome.record


def ask(rec: wf.RequestRecord, dm: DataMap, day: str) -> wf.RequestRecord:
    """Clarification asked for on ``day``, recorded that day."""
    return apply(rec, command(r.ClarificationRequested, asked_on=D(day)), ctx_on(dm, day))


def pause(rec: wf.RequestRecord, dm: DataMap, asked: str, answered: str) -> wf.RequestRecord:
    rec = apply(rec, command(r.ClarificationRequested, asked_on=D(asked)), ctx_on(dm, answered))
    return apply(
        rec, command(r.ClarificationReceived, received_on=D(answered)), ctx_on(dm, answered)
    )


# --- Art. 12A pause (issue 14.6, 14.7) ----------------------------------------------------


@pytest.mark.parametrize(
    ("received", "asked", "answered", "paused", "due"),
    [
        # UK GDPR Art. 12A as inserted by the DUAA 2025: both days included. Received Tue
        # 10 Mar 2026 (due Fri 10 Apr); asked 12th, answered 15th: 4 days -> Tue 14 Apr
        # (3 days gave Mon 13 Apr).
        pytest.param("2026-03-10", "2026-03-12", "2026-03-15", 4, "2026-04-14", id="art12A-4-days"),
        # Same day counts 1 (was 0): Tue 10 Mar 2026 -> Fri 10 Apr + 1 = Sat -> Mon 13 Apr.
        pytest.param(
            "2026-03-10", "2026-03-12", "2026-03-12", 1, "2026-04-13", id="art12A-same-day"
        ),
        # Only days while the clock runs (issue 14.7): received 1 Mar 2026, clarification
        # asked 20 Feb, answered 5 Mar: 1-5 Mar count -> Tue 7 Apr (was 14 Apr).
        pytest.param(
            "2026-03-01", "2026-02-20", "2026-03-05", 5, "2026-04-07", id="art12A-running"
        ),
    ],
)
def test_clarification_pause(
    dm: DataMap, received: str, asked: str, answered: str, paused: int, due: str
) -> None:
    rec = apply(None, submit(RequestType.access, received), ctx_on(dm, received))
    rec = pause(rec, dm, asked, answered)
    assert rec.state is S.awaiting_systems  # its exports still to come
    assert rec.paused_days == paused
    assert rec.due_on == D(due)


@pytest.mark.parametrize(
    "request_type",
    # Every other type, as the lifecycle's guard says (tests/unit/test_lifecycle.py); these
    # through the workflow, from a plain submission.
    [
        RequestType.erasure,
        RequestType.restriction,
        RequestType.objection,
        RequestType.consent_withdrawal,
        RequestType.complaint,
    ],
)
def test_only_an_access_requests_clock_stops_for_clarification(
    dm: DataMap, request_type: RequestType
) -> None:
    """UK GDPR Art. 12A: the clock stops while clarification is awaited for "a request
    under Article 15" only. Paused, an erasure's or an objection's deadline was
    understated and its breach never alerted (DPO review, session 38)."""
    scope = ObjectionScope.legitimate_interest if request_type is RequestType.objection else None
    extra: dict[str, Any] = {"objection_scope": scope} if scope else {}
    if request_type is RequestType.consent_withdrawal:
        extra = {"withdrawn_purpose": Purpose.marketing}
    submitted = wf.on_command(
        None, submit(request_type, "2026-03-02", **extra), ctx_on(dm, "2026-03-02")
    )
    assert submitted.record is not None, submitted.message
    asked = wf.on_command(
        submitted.record,
        command(r.ClarificationRequested, asked_on=D("2026-03-05")),
        ctx_on(dm, "2026-03-05"),
    )
    assert asked.rejected is not None
    if submitted.record.open:
        assert "only for an access request (UK GDPR Art. 12A)" in (asked.message or "")
        assert "privops request extend" in (asked.message or "")


def test_a_pause_an_earlier_release_let_another_request_take_counts_no_day(dm: DataMap) -> None:
    """An objection paused before 0.38: its alerts fire against the due date without
    the pause at once, and the next time the due date is worked out it has none."""
    scope = ObjectionScope.legitimate_interest  # stays in_progress, awaiting the DPO
    rec = apply(
        None,
        submit(RequestType.objection, "2026-03-10", objection_scope=scope),
        ctx_on(dm, "2026-03-10"),
    )
    assert rec.due_on == D("2026-04-10")
    # As 0.37 stored it: paused from the 12th, and once answered 4 days later.
    old = rec.model_copy(
        update={
            "state": S.paused,
            "clarification_asked_on": D("2026-03-20"),
            "pauses": [deadlines.Pause(D("2026-03-12"), D("2026-03-15"))],
            "paused_days": 4,
            "due_on": D("2026-04-14"),
        }
    )
    assert alert_due(old) == D("2026-04-10")  # paused, and still watched
    resumed = apply(
        old, command(r.ClarificationReceived, received_on=D("2026-03-22")), ctx_on(dm, "2026-03-22")
    )
    assert (resumed.paused_days, resumed.due_on) == (0, D("2026-04-10"))
    assert alert_due(resumed) == D("2026-04-10")


def _extended_in_an_old_pause(dm: DataMap, told: str) -> wf.RequestRecord:
    """An objection received 2 Mar, as 0.37 stored it: paused 10-20 Mar (11 days, which
    made its first month end on 13 Apr) and extended, the subject told on ``told``."""
    scope = ObjectionScope.legitimate_interest
    rec = apply(
        None,
        submit(RequestType.objection, "2026-03-02", objection_scope=scope),
        ctx_on(dm, "2026-03-02"),
    )
    return rec.model_copy(
        update={
            "pauses": [deadlines.Pause(D("2026-03-10"), D("2026-03-20"))],
            "paused_days": 11,
            "extended": True,
            "extension_reason": "many systems",
            "extension_notified_on": D(told),
            "due_on": D("2026-06-15"),
        }
    )


def test_an_extension_an_earlier_releases_pause_let_through_late_is_withdrawn(
    dm: DataMap,
) -> None:
    """An objection received 2 Mar (first month to Thu 2 Apr) paused 10-20 Mar by 0.37,
    which moved the first month to 13 Apr and so took an extension told on 10 Apr. The
    pause stopped no clock: the extension came after the first month. The alerts go by
    the due date without either at once; the next decision stores it and audits the
    withdrawal as the report reads it."""
    old = _extended_in_an_old_pause(dm, "2026-04-10")
    assert timelimits.due_in_force(old) == D("2026-04-02")
    assert alert_due(old) == D("2026-04-02")
    day = ctx_on(dm, "2026-04-03")
    tick = Tick(old.request_id, TickKind.deadline_breached, day.now, due_on=D("2026-04-02"))
    outcome = wf.on_tick(old, tick, day)
    assert [type(o.record).__name__ for o in outcome.out] == ["DeadlineBreached"]
    settled = outcome.record
    assert settled is not None
    assert (settled.extended, settled.paused_days, settled.due_on) == (False, 0, D("2026-04-02"))
    withdrawn = [a for a in outcome.audit if a.action == "deadline_extended"]
    assert len(withdrawn) == 1
    assert (withdrawn[0].reason or "").startswith(timelimits.EXTENSION_WITHDRAWN)
    assert "does not stop this request's clock" in (withdrawn[0].reason or "")
    # Stored: nothing more to settle at the next decision.
    again = wf.on_tick(settled, tick, day)
    assert not [a for a in again.audit if "earlier release" in (a.reason or "")]


def test_an_extension_told_during_an_old_pause_is_judged_on_the_running_clock(
    dm: DataMap,
) -> None:
    """Told on 5 Apr while 0.37's pause (from 20 Mar) still ran: that pause stopped no
    clock, so the first month ended on 2 Apr and the extension is refused."""
    scope = ObjectionScope.legitimate_interest
    rec = apply(
        None,
        submit(RequestType.objection, "2026-03-02", objection_scope=scope),
        ctx_on(dm, "2026-03-02"),
    )
    old = rec.model_copy(update={"state": S.paused, "clarification_asked_on": D("2026-03-20")})
    extend = command(r.DeadlineExtended, notified_on=D("2026-04-05"), reason="many systems")
    assert wf.on_command(old, extend, ctx_on(dm, "2026-04-05")).rejected is not None
    access = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    access = ask(access, dm, "2026-03-20")  # an access request's pause does count
    assert wf.on_command(access, extend, ctx_on(dm, "2026-04-05")).rejected is None


def test_an_extension_told_within_the_first_month_stands_after_an_old_pause(dm: DataMap) -> None:
    old = _extended_in_an_old_pause(dm, "2026-03-25")
    assert timelimits.due_in_force(old) == deadlines.due_date(D("2026-03-02"), extended=True)


def test_clarification_answered_before_asked_is_rejected(dm: DataMap) -> None:
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    rec = ask(rec, dm, "2026-03-09")
    bad = wf.on_command(
        rec, command(r.ClarificationReceived, received_on=D("2026-03-05")), ctx_on(dm, "2026-03-10")
    )
    assert bad.rejected == "invalid_transition"


# --- stop the clock for access requests awaiting systems (issue 14.8) ---------------------


def export_done(rec: wf.RequestRecord, system: System, when: str) -> r.TaskCompleted:
    # Under the system's declared export_root, named after the request (issue 13.7).
    location = f"https://exports.allled.example/dsar/{system.value}/{rec.request_id}.json"
    ref = r.ExportReference(location=location, record_count=1, checksum="sha256:00")
    return r.TaskCompleted(
        task_id=f"R-clock:{system.value}:export",
        request_id=rec.request_id,
        system=system,
        answered_at=datetime.combine(D(when), datetime.min.time(), tzinfo=UTC),
        export=ref,
    )


def test_access_awaiting_systems_can_stop_the_clock_and_finishes_on_resume(dm: DataMap) -> None:
    """UK GDPR Art. 12A applies to access requests too: tasks already out keep going, the
    answers are recorded, but the response waits for the clarification."""
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    assert rec.state is S.awaiting_systems
    asked = wf.on_command(
        rec, command(r.ClarificationRequested, asked_on=D("2026-03-05")), ctx_on(dm, "2026-03-05")
    )
    assert asked.rejected is None, asked.message  # was invalid_transition
    assert asked.record is not None
    rec = asked.record
    assert rec.state is S.paused
    assert alert_due(rec) is None  # no deadline alert while the clock stands still

    # Every system asked: those that reported the subject, and those that look subjects
    # up by an identifier they gave (web, marketing: fanout.holdings).
    for system in sorted({t.system for t in rec.tasks.values()}):
        answered = wf.on_result(
            rec, export_done(rec, system, "2026-03-06"), ctx_on(dm, "2026-03-06")
        )
        assert answered.record is not None
        rec = answered.record
    assert rec.state is S.paused
    assert rec.manifest is None
    # Refusal and cancellation stay before-work-goes-out only.
    cancel = wf.on_command(rec, command(r.RequestCancelled, reason="x"), ctx_on(dm, "2026-03-07"))
    assert cancel.rejected == "invalid_transition"

    resumed = wf.on_command(
        rec, command(r.ClarificationReceived, received_on=D("2026-03-08")), ctx_on(dm, "2026-03-08")
    )
    assert resumed.record is not None
    assert resumed.record.state is S.completed
    assert resumed.record.paused_days == 4
    notes = [o.record for o in resumed.out if isinstance(o.record, r.SubjectNotification)]
    assert [n.kind for n in notes] == ["access_response"]
    history = [h.state for h in resumed.record.history][-3:]
    assert history == [S.in_progress, S.awaiting_systems, S.completed]


def test_paused_access_goes_back_to_awaiting_systems_while_answers_are_out(dm: DataMap) -> None:
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    rec = pause(rec, dm, "2026-03-05", "2026-03-06")
    assert rec.state is S.awaiting_systems
    assert alert_due(rec) == D("2026-04-07")  # 2 Apr + 2 paused = Sat 4 Apr -> Easter -> 7 Apr


# --- the clock starts on receipt of the identity information (issue 14.9) -----------------


@pytest.mark.parametrize(
    ("submitted", "verified", "start", "state"),
    [
        # ICO "Time limits for responding": the clock starts when the identity information
        # arrives (5 Mar), not when the check ends (10 Mar).
        pytest.param(
            {"identity_received_on": D("2026-03-05"), "identity_verified_on": D("2026-03-10")},
            None,
            "2026-03-05",
            S.awaiting_systems,
            id="ico-received-then-verified-at-submission",
        ),
        pytest.param(
            {"identity_verified_on": None},
            {"verified_on": D("2026-03-10"), "information_received_on": D("2026-03-05")},
            "2026-03-05",
            S.awaiting_systems,
            id="ico-identity-verified-command",
        ),
        # Information in, still being checked: the clock already runs, nothing is sent.
        pytest.param(
            {"identity_received_on": D("2026-03-05"), "identity_verified_on": None},
            None,
            "2026-03-05",
            S.identity_unverified,
            id="ico-checking-clock-runs",
        ),
        # No receipt date given: the verification day stands in for it.
        pytest.param(
            {"identity_verified_on": None},
            {"verified_on": D("2026-03-10")},
            "2026-03-10",
            S.awaiting_systems,
            id="fallback-verification-day",
        ),
    ],
)
def test_clock_start_is_receipt_of_identity_information(
    dm: DataMap,
    submitted: dict[str, Any],
    verified: dict[str, Any] | None,
    start: str,
    state: RequestState,
) -> None:
    rec = apply(
        None, submit(RequestType.erasure, "2026-03-02", **submitted), ctx_on(dm, "2026-03-10")
    )
    if verified is not None:
        rec = apply(rec, command(r.IdentityVerified, **verified), ctx_on(dm, "2026-03-10"))
    assert rec.clock_start == D(start)
    assert rec.state is state
    assert rec.due_on is not None
    if state is S.identity_unverified:
        assert rec.tasks == {}


# --- extension checked against notified_on (issue 14.10) ----------------------------------


@pytest.mark.parametrize(
    ("notified", "processed", "accepted"),
    [
        # UK GDPR Art. 12(3): the subject must be told within one month of receipt. A
        # command notified in time but processed late is in time ...
        pytest.param("2026-04-01", "2026-04-10", True, id="art12-3-notified-in-time"),
        # ... and one notified late is late, whenever the worker sees it.
        pytest.param("2026-04-06", "2026-03-20", False, id="art12-3-notified-late"),
        pytest.param("2026-03-01", "2026-03-20", False, id="art12-3-notified-before-receipt"),
    ],
)
def test_extension_is_checked_against_notified_on(
    dm: DataMap, notified: str, processed: str, accepted: bool
) -> None:
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    assert rec.due_on == D("2026-04-02")
    cmd = command(r.DeadlineExtended, reason="numerous requests", notified_on=D(notified))
    outcome = wf.on_command(rec, cmd, ctx_on(dm, processed))
    assert (outcome.rejected is None) is accepted, outcome.message
    if accepted:
        assert outcome.record is not None
        assert outcome.record.due_on == D("2026-06-02")


# --- complaints (issue 14.13) -------------------------------------------------------------


def test_acknowledged_complaint_raises_no_breach_and_keeps_its_age(dm: DataMap) -> None:
    """DPA 2018 s.164A (DUAA 2025): once acknowledged, no DeadlineBreached; the outcome is
    tracked by age instead (``acknowledged_on``, the HTTP view's ``age_days``)."""
    rec = apply(
        None,
        submit(RequestType.complaint, "2026-06-19", identity_verified_on=None),
        ctx_on(dm, "2026-06-19"),
    )
    assert rec.acknowledged_on == D("2026-06-19")
    assert rec.due_on == D("2026-07-20")  # 19 Jul is a Sunday
    assert alert_due(rec) is None
    late = ctx_on(dm, "2026-08-01")
    for kind, days in ((TickKind.deadline_approaching, 1), (TickKind.deadline_breached, None)):
        tick = Tick(rec.request_id, kind, late.now, days_before=days, due_on=rec.due_on)
        outcome = wf.on_tick(rec, tick, late)
        assert outcome.out == []
        assert outcome.record is None


# --- pauses back to back, late pauses, extensions during a pause (session 24 review) ------


def test_a_question_asked_the_day_the_last_answer_came_counts_that_day_once(dm: DataMap) -> None:
    """An answer may raise a new question the same day. Before, the second pause
    overlapped the first on that day and every ClarificationReceived was refused as
    overlapping: the request stayed paused for ever, no alert, no response."""
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    rec = pause(rec, dm, "2026-03-10", "2026-03-12")  # 3 days: due 2 Apr -> Tue 7 Apr
    assert rec.due_on == D("2026-04-07")
    rec = pause(rec, dm, "2026-03-12", "2026-03-16")  # 13th-16th: 4 more days
    assert rec.state is S.awaiting_systems
    assert rec.paused_days == 7
    assert rec.due_on == D("2026-04-09")
    # Asked and answered on the day the last answer came: nothing more stops the clock.
    rec = pause(rec, dm, "2026-03-16", "2026-03-16")
    assert rec.paused_days == 7


def test_a_question_dated_before_the_last_answer_is_refused(dm: DataMap) -> None:
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    rec = pause(rec, dm, "2026-03-10", "2026-03-12")
    bad = wf.on_command(
        rec, command(r.ClarificationRequested, asked_on=D("2026-03-11")), ctx_on(dm, "2026-03-13")
    )
    assert bad.rejected == "invalid_transition"
    assert bad.message is not None
    assert "before the last one was answered" in bad.message


def test_a_clarification_asked_after_the_due_date_does_not_silence_the_breach(
    dm: DataMap,
) -> None:
    """The clock had run out, so the late pause stops nothing (it counts 0 days): the
    breach alert still fires while the request waits for the answer."""
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    assert rec.due_on == D("2026-04-02")
    rec = ask(rec, dm, "2026-04-10")
    assert rec.state is S.paused
    assert alert_due(rec) == D("2026-04-02")
    day = ctx_on(dm, "2026-04-11")
    tick = Tick(rec.request_id, TickKind.deadline_breached, day.now, due_on=rec.due_on)
    outcome = wf.on_tick(rec, tick, day)
    assert [type(o.record).__name__ for o in outcome.out] == ["DeadlineBreached"]
    # One asked while the clock ran still stops the alerts.
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    rec = ask(rec, dm, "2026-03-25")
    assert alert_due(rec) is None


def test_an_extension_notified_during_a_pause_counts_the_paused_days(dm: DataMap) -> None:
    """Paused since 25 Mar, the first month (due 2 Apr) had not run out on 6 Apr: the
    clock was stopped. Before, the open pause was ignored and the extension refused."""
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    rec = ask(rec, dm, "2026-03-25")
    cmd = command(r.DeadlineExtended, reason="complex: six systems", notified_on=D("2026-04-06"))
    told = wf.on_command(rec, cmd, ctx_on(dm, "2026-04-06"))
    # The date without the open pause, and that it moves by it: alone, the date was one
    # privops then moved without a word (legal review, session 43).
    (notice,) = [o.record for o in told.out if isinstance(o.record, r.SubjectNotification)]
    assert (
        "We will respond by 2026-06-02, and later by the days from 2026-03-25 until we have "
        "your answer to our question" in notice.message
    )
    assert told.record is not None
    rec = told.record
    assert rec.extended
    rec = apply(
        rec, command(r.ClarificationReceived, received_on=D("2026-04-20")), ctx_on(dm, "2026-04-20")
    )
    assert rec.paused_days == 27  # 25 Mar - 20 Apr
    assert rec.due_on == D("2026-06-29")  # 2 Jun + 27 days
    # Notified after the paused-for first month ran out: still refused.
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    rec = ask(rec, dm, "2026-03-25")
    rec = apply(
        rec, command(r.ClarificationReceived, received_on=D("2026-03-26")), ctx_on(dm, "2026-03-26")
    )
    assert rec.due_on == D("2026-04-07")  # 2 Apr + 2 = Sat 4 Apr; Easter Monday 6 Apr
    late = command(r.DeadlineExtended, reason="complex", notified_on=D("2026-04-08"))
    assert wf.on_command(rec, late, ctx_on(dm, "2026-04-08")).rejected == "invalid_transition"


def test_a_fee_after_the_work_went_out_or_after_the_due_date_moves_no_clock(
    dm: DataMap,
) -> None:
    """A fee is charged before the work; before, any FeeReceived restarted the clock, so
    one recorded after the due date made a breached request a month from then."""
    rec = apply(None, submit(RequestType.erasure, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    assert rec.tasks
    assert rec.due_on == D("2026-04-02")
    fee = command(r.FeeReceived, ground=FeeGround.excessive, received_on=D("2026-04-20"))
    outcome = wf.on_command(rec, fee, ctx_on(dm, "2026-04-20"))
    assert outcome.rejected == "invalid_transition"
    # Before identity is verified (no work out) a fee starts the clock ...
    waiting = submit(RequestType.access, "2026-03-02", identity_verified_on=None)
    rec = apply(None, waiting, ctx_on(dm, "2026-03-02"))
    assert rec.due_on is None
    rec = apply(
        rec,
        command(r.FeeReceived, ground=FeeGround.excessive, received_on=D("2026-03-09")),
        ctx_on(dm, "2026-03-09"),
    )
    verified = command(r.IdentityVerified, verified_on=D("2026-03-04"))
    rec = apply(rec, verified, ctx_on(dm, "2026-03-10"))
    assert rec.clock_start == D("2026-03-09")
    # ... but not one after the due date the clock already had.
    started = submit(
        RequestType.objection, "2026-03-02", objection_scope=ObjectionScope.legitimate_interest
    )
    rec = apply(None, started, ctx_on(dm, "2026-03-02"))
    assert not rec.tasks
    assert rec.due_on == D("2026-04-02")
    late = wf.on_command(
        rec,
        command(r.FeeReceived, ground=FeeGround.excessive, received_on=D("2026-04-03")),
        ctx_on(dm, "2026-04-03"),
    )
    assert late.rejected == "dates_out_of_order"


def test_an_extension_a_late_recorded_answer_shows_came_too_late_is_withdrawn(
    dm: DataMap,
) -> None:
    """Paused 25 Mar, answered 26 Mar but recorded only after an extension notified on
    20 Apr: while the pause seemed to run, the first month had not ended, and the
    extension was accepted. The answer's date ends the first month on 7 Apr, before the
    subject was told, so the extension does not count: it is withdrawn and audited, as
    recording the same facts in date order refuses it (review, session 24)."""
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    rec = ask(rec, dm, "2026-03-25")
    told = command(r.DeadlineExtended, reason="complex", notified_on=D("2026-04-20"))
    rec = apply(rec, told, ctx_on(dm, "2026-04-20"))
    assert rec.extended
    answered = command(r.ClarificationReceived, received_on=D("2026-03-26"))
    outcome = wf.on_command(rec, answered, ctx_on(dm, "2026-04-21"))
    assert outcome.rejected is None
    assert outcome.record is not None
    assert not outcome.record.extended
    assert outcome.record.due_on == D("2026-04-07")
    (step,) = [a for a in outcome.audit if a.action == "deadline_extended"]
    assert step.reason is not None
    assert "does not count" in step.reason
    # Told within the first month, the extension stands whenever the answer is recorded.
    rec = apply(None, submit(RequestType.access, "2026-03-02"), ctx_on(dm, "2026-03-02"))
    rec = ask(rec, dm, "2026-03-25")
    early = command(r.DeadlineExtended, reason="complex", notified_on=D("2026-04-01"))
    rec = apply(rec, early, ctx_on(dm, "2026-04-01"))
    rec = apply(rec, answered, ctx_on(dm, "2026-04-21"))
    assert rec.extended
    assert rec.due_on == D("2026-06-04")


# --- a verification never moves a running clock out (session 42) --------------------------


def _checking(dm: DataMap) -> wf.RequestRecord:
    """An erasure whose identity information arrived on 5 Mar and is being checked: its
    clock runs from 5 Mar (due 7 Apr: 5 Apr is a Sunday, 6 Apr Easter Monday)."""
    rec = apply(
        None,
        submit(
            RequestType.erasure,
            "2026-03-02",
            identity_received_on=D("2026-03-05"),
            identity_verified_on=None,
        ),
        ctx_on(dm, "2026-03-05"),
    )
    assert (rec.state, rec.clock_start, rec.due_on) == (
        S.identity_unverified,
        D("2026-03-05"),
        D("2026-04-07"),
    )
    return rec


def test_a_later_information_day_is_refused_while_the_clock_runs(dm: DataMap) -> None:
    rec = _checking(dm)
    cmd = command(
        r.IdentityVerified, verified_on=D("2026-03-12"), information_received_on=D("2026-03-10")
    )
    outcome = wf.on_command(rec, cmd, ctx_on(dm, "2026-03-12"))
    assert outcome.rejected is not None
    assert "would move the deadline out" in (outcome.message or "")
    assert "2026-03-05" in (outcome.message or "")


@pytest.mark.parametrize(
    ("given", "start", "due", "corrected"),
    [
        pytest.param(None, "2026-03-05", "2026-04-07", False, id="the-day-recorded-stands"),
        pytest.param("2026-03-05", "2026-03-05", "2026-04-07", False, id="the-same-day"),
        # received 2 Mar: due Thu 2 Apr, before Easter
        pytest.param("2026-03-02", "2026-03-02", "2026-04-02", True, id="an-earlier-day"),
    ],
)
def test_a_verification_keeps_or_brings_forward_the_running_clock(
    dm: DataMap, given: str | None, start: str, due: str, corrected: bool
) -> None:
    rec = _checking(dm)
    day = {"information_received_on": D(given)} if given else {}
    cmd = command(r.IdentityVerified, verified_on=D("2026-03-12"), **day)
    outcome = wf.on_command(rec, cmd, ctx_on(dm, "2026-03-12"))
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.clock_start == D(start)
    assert outcome.record.due_on == D(due)
    assert outcome.record.state is S.awaiting_systems
    reasons = [a.reason or "" for a in outcome.audit]
    assert any("corrected from 2026-03-05" in why for why in reasons) is corrected


def test_a_later_information_day_that_moves_no_clock_stands(dm: DataMap) -> None:
    """The clock runs from a representative's authority (20 Mar), later than either
    identity day: a later identity day moves nothing, so it is taken (and audited)."""
    rec = apply(
        None,
        submit(
            RequestType.erasure,
            "2026-03-02",
            identity_received_on=D("2026-03-05"),
            identity_verified_on=None,
            representative="Smith & Co, 1 High St",
            capacity="authorised",
            authority_received_on=D("2026-03-20"),
        ),
        ctx_on(dm, "2026-03-20"),
    )
    assert rec.clock_start == D("2026-03-20")
    cmd = command(
        r.IdentityVerified, verified_on=D("2026-03-21"), information_received_on=D("2026-03-12")
    )
    outcome = wf.on_command(rec, cmd, ctx_on(dm, "2026-03-21"))
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.clock_start == D("2026-03-20")
    reasons = [a.reason or "" for a in outcome.audit]
    assert any("2026-03-12 (corrected from 2026-03-05)" in why for why in reasons)
