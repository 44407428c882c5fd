"""What the workflow does with earlier identifiers (review, session 27): every task
carries the values its system knew the subject by before, a re-sent task the same, a
closed request keeps none of them, an erasure that keeps a system's data keeps no
erased system's old address, and ``privops forget-check`` looks for them too."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import records as r
from privops.core import shredding
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.erasure import SubjectFacts
from privops.core.forget_scan import identity_values
from privops.core.identity import IdentityMap, merge
from privops.core.vocab import RequestState, RequestType, System

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
SUBJECT = "subj-1"
OLD_PHONE, NEW_PHONE = "07700 900111", "07700 900222"
OLD_EMAIL, NEW_EMAIL = "ann.old@example.com", "ann.new@example.com"


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def changed() -> IdentityMap:
    found = merge(None, SUBJECT, System.telephony, {"phone": OLD_PHONE}, NOW - timedelta(days=90))
    found = merge(found, SUBJECT, System.marketing, {"email": OLD_EMAIL}, NOW - timedelta(days=90))
    found = merge(found, SUBJECT, System.orders, {"customer_id": "C-1"}, NOW - timedelta(days=90))
    found = merge(found, SUBJECT, System.telephony, {"phone": NEW_PHONE}, NOW - timedelta(days=5))
    return merge(found, SUBJECT, System.marketing, {"email": NEW_EMAIL}, NOW - timedelta(days=5))


def ctx(dm: DataMap) -> wf.Context:
    return wf.Context(
        now=NOW,
        today=NOW.date(),
        datamap=dm,
        subject_ref="sr_0123456789abcdef01234567",
        identity=changed(),
        facts=SubjectFacts(),
    )


def submit(request_type: RequestType) -> r.RequestSubmitted:
    return r.RequestSubmitted(
        command_id="cmd-1",
        request_id="R-1",
        issued_at=NOW,
        actor="dpo",
        request_type=request_type,
        subject_id=SUBJECT,
        received_on=NOW.date(),
        identity_verified_on=NOW.date(),
    )


@pytest.mark.parametrize("kind", [RequestType.erasure, RequestType.access])
def test_each_task_carries_what_its_system_knew_the_subject_by_before(
    dm: DataMap, kind: RequestType
) -> None:
    outcome = wf.on_command(None, submit(kind), ctx(dm))
    tasks = {o.record.system: o.record for o in outcome.out if isinstance(o.record, r.Task)}
    assert tasks[System.telephony].identifiers == {"phone": NEW_PHONE}
    assert tasks[System.telephony].previous_identifiers == {"phone": [OLD_PHONE]}
    assert tasks[System.marketing].previous_identifiers == {"email": [OLD_EMAIL]}
    assert tasks[System.orders].previous_identifiers == {}
    assert outcome.record is not None
    stored = outcome.record.tasks
    assert {t.system: t.previous_identifiers for t in stored.values()}[System.telephony] == {
        "phone": [OLD_PHONE]
    }


def test_a_closed_request_keeps_no_earlier_identifiers(dm: DataMap) -> None:
    rec = wf.on_command(None, submit(RequestType.erasure), ctx(dm)).record
    assert rec is not None
    closed = rec.model_copy(update={"state": RequestState.completed})
    scrubbed = shredding.scrubbed(closed)
    assert scrubbed is not None
    assert OLD_PHONE not in scrubbed.model_dump_json()
    assert all(t.previous_identifiers == {} for t in scrubbed.tasks.values())


def test_what_an_erasure_keeps_holds_no_erased_systems_earlier_address() -> None:
    found = merge(None, SUBJECT, System.orders, {"customer_id": "C-1", "email": NEW_EMAIL}, NOW)
    found = merge(found, SUBJECT, System.marketing, {"email": OLD_EMAIL}, NOW - timedelta(days=9))
    found = merge(found, SUBJECT, System.marketing, {"email": NEW_EMAIL}, NOW - timedelta(days=1))
    kept = shredding._trimmed_identity(found, frozenset({System.orders}))
    assert kept is not None
    assert OLD_EMAIL not in kept.model_dump_json()


def test_forget_check_looks_for_earlier_values_in_plaintext_identity_records() -> None:
    data = json.dumps(changed().model_dump(mode="json")).encode()
    values = {value for _, value in identity_values(data)}
    assert {OLD_PHONE, OLD_EMAIL, "+447700900111"} <= values
