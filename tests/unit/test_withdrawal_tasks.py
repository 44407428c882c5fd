"""A consent withdrawal told to the DPO reaches the systems that use that consent.

Before, it sent no task: honoured only where a system asked ``/consent`` before every use
(review, session 27). Now each system a purpose resting on the withdrawn consent lists
(data map ``consent_purpose``) gets a Restrict: at a system that markets, a marketing stop
(``marketing_objection``, which no restriction lift undoes and which leaves its other uses
of the data alone); elsewhere a restriction of the categories that purpose uses.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from privops.core import records as r
from privops.core import workflow as wf
from privops.core.datamap import DataMap, load_datamap
from privops.core.identity import IdentityMap, merge
from privops.core.topics import SUBJECT_DIRECTIVES
from privops.core.vocab import (
    Category,
    Channel,
    ObjectionScope,
    Purpose,
    RequestState,
    RequestType,
    System,
)

C = Category
NOW = datetime(2026, 7, 20, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
SUBJECT = "subj-w"
EMAIL = "ann@example.com"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def identity(systems: dict[System, dict[str, str]]) -> IdentityMap:
    found: IdentityMap | None = None
    for system, ids in systems.items():
        found = merge(found, SUBJECT, system, ids, NOW - timedelta(days=30))
    assert found is not None
    return found


CUSTOMER = identity(
    {
        System.orders: {"customer_id": "C-1", "email": EMAIL},
        System.crm: {"contact_id": "K-1", "email": EMAIL},
        System.marketing: {"email": EMAIL},
    }
)


def context(dm: DataMap, known: IdentityMap = CUSTOMER) -> wf.Context:
    return wf.Context(now=NOW, today=TODAY, datamap=dm, subject_ref="sr_w", identity=known)


def withdraw(purpose: Purpose | None = None, channel: Channel | None = None) -> r.RequestSubmitted:
    return r.RequestSubmitted(
        command_id=f"c-{next(_ids)}",
        request_id="R-w",
        issued_at=NOW,
        actor="dpo",
        request_type=RequestType.consent_withdrawal,
        subject_id=SUBJECT,
        received_on=TODAY,
        withdrawn_purpose=purpose,
        withdrawn_channel=channel,
    )


def restricts(outcome: wf.Outcome) -> dict[System, r.Restrict]:
    found = {o.record.system: o.record for o in outcome.out if isinstance(o.record, r.Restrict)}
    assert len(found) == sum(isinstance(o.record, r.Task) for o in outcome.out)
    return found


MARKETING = {C.contact, C.marketing_preferences}


@pytest.mark.parametrize(
    "channel", [None, Channel.email, Channel.post], ids=["every-channel", "email", "post"]
)
def test_a_marketing_withdrawal_stops_marketing_at_every_system_that_markets(
    dm: DataMap, channel: Channel | None
) -> None:
    outcome = wf.on_command(None, withdraw(Purpose.marketing, channel), context(dm))
    assert outcome.rejected is None, outcome.message
    sent = restricts(outcome)
    assert set(sent) == {System.crm, System.marketing}  # not orders, web or telephony
    for system, task in sent.items():
        assert set(task.categories) == MARKETING, system
        assert task.marketing_objection, system  # needs /tmp/s27/i3/retries.py.patch
    assert sent[System.marketing].identifiers == {"email": EMAIL}
    assert outcome.record is not None
    assert outcome.record.state is RequestState.awaiting_systems
    # The consent state learns it as before.
    (directive,) = [o.record for o in outcome.out if o.topic == SUBJECT_DIRECTIVES]
    assert isinstance(directive, r.SubjectDirective)
    assert (directive.kind, directive.purpose, directive.channel) == (
        "withdrawn",
        Purpose.marketing,
        channel,
    )


def test_an_analytics_withdrawal_restricts_the_websites_analytics(dm: DataMap) -> None:
    outcome = wf.on_command(None, withdraw(Purpose.analytics), context(dm))
    sent = restricts(outcome)
    assert list(sent) == [System.web]  # asked by the customer number and email it uses
    assert sent[System.web].categories == [C.web]
    assert not sent[System.web].marketing_objection  # a restriction of the analytics data


def test_withdrawing_every_consent_reaches_every_system_using_one(dm: DataMap) -> None:
    outcome = wf.on_command(None, withdraw(), context(dm))
    sent = restricts(outcome)
    assert set(sent) == {System.crm, System.marketing, System.web}
    assert sent[System.crm].marketing_objection
    assert sent[System.marketing].marketing_objection
    assert not sent[System.web].marketing_objection


def test_the_withdrawal_completes_when_the_systems_answer(dm: DataMap) -> None:
    ctx = context(dm)
    rec = wf.on_command(None, withdraw(Purpose.marketing, Channel.email), ctx).record
    assert rec is not None
    outcome = wf.Outcome(record=rec)
    for task in list(rec.tasks.values()):
        result = r.TaskCompleted(
            task_id=task.task_id, request_id=rec.request_id, system=task.system, answered_at=NOW
        )
        outcome = wf.on_result(rec, result, ctx)
        assert outcome.record is not None
        rec = outcome.record
    assert rec.state is RequestState.completed
    notes = [o.record for o in outcome.out if isinstance(o.record, r.SubjectNotification)]
    assert [n.message for n in notes] == [
        "We recorded that you withdrew your consent to marketing by email."
    ]


def test_a_subject_no_marketing_system_knows_is_recorded_at_once(dm: DataMap) -> None:
    cctv_only = identity({System.cctv: {"camera_ref": "cam-1:2026-07-01"}})
    outcome = wf.on_command(None, withdraw(Purpose.marketing), context(dm, cctv_only))
    assert restricts(outcome) == {}
    assert outcome.record is not None
    assert outcome.record.state is RequestState.completed


def test_an_objection_still_stops_marketing_at_the_same_systems(dm: DataMap) -> None:
    objection = withdraw().model_copy(
        update={
            "request_id": "R-o",
            "request_type": RequestType.objection,
            "objection_scope": ObjectionScope.direct_marketing,
        }
    )
    sent = restricts(wf.on_command(None, objection, context(dm)))
    assert set(sent) == {System.crm, System.marketing}
    assert all(t.marketing_objection for t in sent.values())
