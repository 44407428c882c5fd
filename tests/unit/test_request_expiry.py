"""How long privops keeps its own record of a request (``workflow.finished_at``,
``expires_on``, the expiry tick) and the schedule that finds the day (pure, no Kafka)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from privops.adapters.datamap_file import default_datamap_path, load_datamap
from privops.core import records as r
from privops.core import shredding
from privops.core import workflow as wf
from privops.core.datamap import DEFAULT_REQUEST_RECORD_DAYS, parse_datamap
from privops.core.erasure import LegalHold, SubjectFacts
from privops.core.errors import ConfigError
from privops.core.ropa import ropa_record
from privops.core.schedule import Schedule
from privops.core.ticks import TickKind, parse_tick
from privops.core.vocab import Category, RequestState, RequestType, System
from tests.unit.test_workflow import (
    INVOICE,
    KEPT_UNTIL,
    NOW,
    SUBJECT,
    answer,
    answer_all,
    at,
    command,
    identity_map,
    start,
    tick,
)

DAYS = DEFAULT_REQUEST_RECORD_DAYS


@pytest.fixture
def ctx() -> wf.Context:
    return wf.Context(
        now=NOW,
        today=NOW.date(),
        datamap=load_datamap(),
        subject_ref="sr_0123456789abcdef01234567",
        identity=identity_map(),
        facts=SubjectFacts(),
    )


def answered(ctx: wf.Context) -> wf.RequestRecord:
    """A complaint the DPO answered: closed, nothing to follow up."""
    rec = start(RequestType.complaint, ctx)
    outcome = wf.on_command(rec, command(r.RequestAnswered, reason="we apologised"), ctx)
    assert outcome.record is not None
    assert not outcome.record.open
    return outcome.record


def test_a_closed_request_with_nothing_to_follow_finishes_when_it_closed(ctx: wf.Context) -> None:
    rec = answered(ctx)
    assert wf.finished_at(rec) == rec.closed_at == NOW
    assert wf.expires_on(rec, 90) == NOW.date() + timedelta(days=90)


def test_an_open_request_never_finishes(ctx: wf.Context) -> None:
    rec = start(RequestType.access, ctx)
    assert rec.open
    assert wf.finished_at(rec) is None
    assert wf.expires_on(rec, 90) is None


def test_the_day_is_the_uk_day_it_finished_on() -> None:
    """A request closed at 23:30 UTC on 30 June closed on 1 July in London (BST)."""
    rec = wf.RequestRecord(
        request_id="R-bst",
        request_type=RequestType.complaint,
        subject_id=SUBJECT,
        actor="dpo",
        state=RequestState.completed,
        received_on=date(2025, 6, 1),
        due_on=date(2025, 7, 1),
        created_at=datetime(2025, 6, 1, 9, tzinfo=UTC),
        closed_at=datetime(2025, 6, 30, 23, 30, tzinfo=UTC),
    )
    assert wf.expires_on(rec, 90) == date(2025, 7, 1) + timedelta(days=90)


def test_an_erasure_keeping_data_finishes_only_once_its_follow_up_is_issued(
    ctx: wf.Context,
) -> None:
    """Its record is what issues the follow-up erasure when the retention ends; and until
    its subject's own copies are erased (the shred), it is not finished either."""
    ctx = at(ctx, NOW, facts=SubjectFacts(latest_financial_record_at=INVOICE))
    rec = start(RequestType.erasure, ctx)
    retained = answer(rec, System.orders, r.TaskRetained, reason="invoices")
    rec, _ = answer_all(rec, ctx, orders=retained)
    assert rec.state is RequestState.partially_completed
    assert shredding.pending(rec)
    assert wf.finished_at(rec) is None
    rec = shredding.done(rec, NOW)
    assert wf.pending_followups(rec) == [KEPT_UNTIL]
    assert wf.finished_at(rec) is None  # the follow-up is still to come

    after = at(ctx, KEPT_UNTIL + timedelta(hours=1))
    outcome = wf.on_tick(rec, tick(rec, "followup", after.now), after)
    assert outcome.record is not None
    assert wf.finished_at(outcome.record) == KEPT_UNTIL  # handed over to the follow-up
    assert wf.expires_on(outcome.record, DAYS) == date(2030, 4, 1) + timedelta(days=DAYS)


def test_the_tick_deletes_the_record_on_its_day_and_audits_it(ctx: wf.Context) -> None:
    rec = answered(ctx)
    due = wf.expires_on(rec, DAYS)
    assert due is not None
    eve = at(ctx, datetime.combine(due, datetime.min.time(), UTC) - timedelta(hours=12))
    early = wf.on_tick(rec, tick(rec, "record_expired", eve.now), eve)
    assert (early.forget, early.audit, early.recheck_on) == (False, [], None)

    day = at(ctx, datetime.combine(due, datetime.min.time(), UTC) + timedelta(hours=12))
    outcome = wf.on_tick(rec, tick(rec, "record_expired", day.now), day)
    assert outcome.forget
    assert (outcome.record, outcome.out, outcome.answer) == (None, [], None)
    assert [(s.action, s.before) for s in outcome.audit] == [
        ("request_record_deleted", "completed")
    ]
    assert outcome.audit[0].reason == (
        f"finished {NOW.date().isoformat()}; kept {DAYS} days "
        "(data map request_records.period_days)"
    )


def test_a_legal_hold_on_the_subject_keeps_the_record_a_day_at_a_time(ctx: wf.Context) -> None:
    rec = answered(ctx)
    due = wf.expires_on(rec, DAYS)
    assert due is not None
    when = datetime.combine(due, datetime.min.time(), UTC) + timedelta(hours=12)
    hold = LegalHold(
        hold_id="H-1",
        subject_id=SUBJECT,
        categories=(Category.cctv,),
        reason="police investigation",
        placed_at=NOW,
    )
    held = at(ctx, when, holds=(hold,))
    outcome = wf.on_tick(rec, tick(rec, "record_expired", when), held)
    assert (outcome.forget, outcome.audit) == (False, [])
    assert outcome.recheck_on == held.today + wf.HELD_RECHECK

    released = hold.model_copy(update={"released_at": when - timedelta(hours=1)})
    free = at(ctx, when, holds=(released,))
    assert wf.on_tick(rec, tick(rec, "record_expired", when), free).forget
    other = hold.model_copy(update={"subject_id": "someone-else"})
    assert wf.on_tick(rec, tick(rec, "record_expired", when), at(ctx, when, holds=(other,))).forget


def test_the_tick_kind_is_read_from_the_wire() -> None:
    record = r.RequestTick(request_id="R-1", kind="record_expired", at=NOW)
    assert parse_tick(record).kind is TickKind.record_expired


# --- the schedule ------------------------------------------------------------------------


def _expiring(schedule: Schedule, day: date, limit: int = 500) -> list[str]:
    when = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
    return [
        t.request_id
        for t in schedule.due(when, day, expiry_limit=limit)
        if t.kind is TickKind.record_expired
    ]


def test_the_schedule_hands_out_a_finished_requests_expiry_on_its_day_once(
    ctx: wf.Context,
) -> None:
    schedule = Schedule((7, 3, 1), record_days=120)
    rec = answered(ctx)
    schedule.track(start(RequestType.access, ctx).model_copy(update={"request_id": "R-open"}))
    schedule.track(rec)
    day = NOW.date() + timedelta(days=120)
    assert _expiring(schedule, day - timedelta(days=1)) == []
    assert _expiring(schedule, day) == ["R-1"]
    assert _expiring(schedule, day + timedelta(days=5000)) == []  # handed out once
    assert schedule.subject_of("R-1") is None  # the sweep finds it in the request index

    schedule.recheck("R-1", day + timedelta(days=1))  # a hold kept it
    assert _expiring(schedule, day + timedelta(days=3)) == ["R-1"]


def test_the_schedule_hands_out_at_most_the_limit_per_sweep_the_oldest_first(
    ctx: wf.Context,
) -> None:
    """An upgrade finds years of finished requests due at once: a sweep hands out only
    so many, and the next sweeps the rest."""
    schedule = Schedule((7, 3, 1), record_days=90)
    rec = answered(ctx)
    for i in range(5):
        closed = NOW + timedelta(days=i)
        schedule.track(rec.model_copy(update={"request_id": f"R-{i}", "closed_at": closed}))
    late = NOW.date() + timedelta(days=400)
    first = _expiring(schedule, late, limit=2)
    assert sorted(first) == ["R-0", "R-1"]
    assert len(_expiring(schedule, late, limit=2)) == 2
    assert _expiring(schedule, late, limit=2) == ["R-4"]
    assert _expiring(schedule, late, limit=2) == []

    schedule.track(rec)
    schedule.clear()  # the partitions moved: rebuilt from the requests owned now
    assert _expiring(schedule, late) == []


# --- the data map --------------------------------------------------------------------------


def _datamap_text(section: str) -> str:
    """The shipped data map with its request_records section replaced by ``section``."""
    text = default_datamap_path().read_text()
    return text[: text.index("request_records:")] + section + text[text.index("\nrecipients:") :]


def test_the_period_comes_from_the_data_map_with_a_floor_and_a_default() -> None:
    assert parse_datamap(_datamap_text("")).request_records.period_days == DAYS
    shorter = parse_datamap(_datamap_text("request_records:\n  period_days: 400\n"))
    assert shorter.request_records.period_days == 400
    assert ropa_record(shorter)["request_records"]["period_days"] == 400
    with pytest.raises(
        ConfigError, match=r"request_records\.period_days .*greater than or equal to 90"
    ):
        parse_datamap(_datamap_text("request_records:\n  period_days: 30\n"))


def test_the_schedule_knows_which_records_an_open_request_links_to(ctx: wf.Context) -> None:
    schedule = Schedule((7, 3, 1), record_days=120)
    complaint = start(RequestType.complaint, ctx, request_id="C-1", linked_request_id="R-1")
    schedule.track(complaint)
    assert schedule.referenced("R-1")
    assert not schedule.referenced("C-1")
    outcome = wf.on_command(complaint, command(r.RequestAnswered, reason="answered"), ctx)
    assert outcome.record is not None
    schedule.track(outcome.record)  # closed: it no longer keeps R-1
    assert not schedule.referenced("R-1")


def test_a_finished_request_tracked_again_and_again_is_handed_out_once(ctx: wf.Context) -> None:
    schedule = Schedule((7, 3, 1), record_days=120)
    rec = answered(ctx)
    for _ in range(5):  # an answer to a late command each time, the same day
        schedule.track(rec)
    assert _expiring(schedule, NOW.date() + timedelta(days=120)) == ["R-1"]


def test_the_last_command_a_record_answered_moves_its_day(ctx: wf.Context) -> None:
    rec = answered(ctx)
    later = at(ctx, NOW + timedelta(days=30))
    duplicate = wf.on_command(rec, command(r.RequestCancelled, reason="twice"), later)
    assert duplicate.rejected is not None
    assert duplicate.record is not None
    assert wf.finished_at(duplicate.record) == later.now


def test_a_restriction_in_force_is_kept_until_a_lift_ends_it(ctx: wf.Context) -> None:
    """Forgotten by the record period, a lift of another restriction took that one for
    the last and lifted both (review, session 45); once lifted, or the subject erased,
    its record goes as any other."""
    rec, _ = answer_all(start(RequestType.restriction, ctx, request_id="R-A"), ctx)
    assert not rec.open
    due = wf.expires_on(rec, DAYS)
    assert due is not None
    when = datetime.combine(due, datetime.min.time(), UTC) + timedelta(hours=12)
    standing = at(ctx, when, subject_requests=lambda: [rec])
    outcome = wf.on_tick(rec, tick(rec, "record_expired", when), standing)
    assert (outcome.forget, outcome.recheck_on) == (False, standing.today + wf.HELD_RECHECK)
    lift = start(
        RequestType.restriction_lift,
        at(ctx, when, restricted=True, subject_requests=lambda: [rec]),
        request_id="L-1",
        issued_at=when,
    )
    lifted = at(ctx, when, subject_requests=lambda: [rec, lift])
    assert wf.on_tick(rec, tick(rec, "record_expired", when), lifted).forget
