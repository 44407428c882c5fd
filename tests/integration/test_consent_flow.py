"""Issue 3 acceptance: a realistic mixed stream -> HTTP decisions and the compacted topic,
and the state survives a worker restart."""

from __future__ import annotations

from typing import Any

import pytest

from privops.adapters.settings import Settings
from privops.core import records as r
from privops.core.topics import CONSENT_STATE
from privops.core.vocab import Channel, LawfulBasis, Purpose, System
from tests.conftest import port, start_worker
from tests.integration.helpers import Subject, ToProduce, http_json, produce, read_topic, wait_for

pytestmark = pytest.mark.integration

M = Purpose.marketing


def stream(ann: Subject, bob: Subject, cat: Subject, dan: Subject) -> list[ToProduce]:
    dup = ann.event(r.ConsentGiven, System.crm, minutes=2, purpose=M, channel=Channel.sms)
    return [
        # Ann: every channel granted, then unsubscribes by email and replies STOP by SMS.
        ann.event(r.CustomerCreated, System.crm),
        ann.event(r.ConsentGiven, System.crm, minutes=1, purpose=M, channel=Channel.email),
        dup,
        dup,  # redelivered: changes nothing
        ann.event(r.ConsentGiven, System.crm, minutes=3, purpose=M, channel=Channel.post),
        ann.event(r.ConsentGiven, System.crm, minutes=4, purpose=M, channel=Channel.telephone),
        ann.event(r.UnsubscribeClicked, System.marketing, minutes=10, campaign_id="C-1"),
        ann.event(r.StopReplyReceived, System.marketing, minutes=11, campaign_id="C-2"),
        # Bob: out-of-order pair: the withdrawal (later) arrives before the grant (earlier).
        bob.event(r.CustomerCreated, System.orders),
        bob.event(r.ConsentWithdrawn, System.crm, minutes=20, purpose=M, channel=Channel.email),
        bob.event(r.ConsentGiven, System.crm, minutes=5, purpose=M, channel=Channel.email),
        bob.event(r.ConsentGiven, System.crm, minutes=6, purpose=M, channel=Channel.telephone),
        # Cat: TPS-listed; has not consented to calls. Soft opt-in from an order for email.
        cat.event(r.CustomerCreated, System.orders),
        # PECR reg. 22(3): the sale says the opt-out was offered and marketing is about
        # similar products (absent = not offered: no soft opt-in).
        cat.event(
            r.OrderPlaced,
            System.orders,
            minutes=1,
            order_id="O-1",
            total_pence=4200,
            marketing_opt_out_offered=True,
            similar_products_marketing=True,
        ),
        cat.event(r.TpsStatusChecked, System.telephony, minutes=2, listed=True),
        # Dan: consents everywhere, then objects to direct marketing (absolute).
        dan.event(r.CustomerCreated, System.crm),
        dan.event(
            r.ConsentGiven,
            System.crm,
            minutes=1,
            purpose=M,
            channel=Channel.email,
            basis=LawfulBasis.consent,
        ),
        dan.event(r.ConsentGiven, System.crm, minutes=1, purpose=M, channel=Channel.post),
        dan.event(r.MarketingObjectionRecorded, System.crm, minutes=30),
    ]


EXPECTED = {
    # subject index, channel -> (allowed, rule)
    (0, Channel.email): (False, "consent_withdrawn"),
    (0, Channel.sms): (False, "consent_withdrawn"),
    (0, Channel.post): (True, "consent_granted"),
    (0, Channel.telephone): (True, "consent_granted"),
    (1, Channel.email): (False, "consent_withdrawn"),
    (1, Channel.telephone): (True, "consent_granted"),
    (1, Channel.sms): (False, "pecr_consent_required"),
    (2, Channel.email): (True, "soft_opt_in_valid"),
    (2, Channel.sms): (True, "soft_opt_in_valid"),
    (2, Channel.telephone): (False, "tps_listed"),
    (3, Channel.email): (False, "objection_absolute"),
    (3, Channel.post): (False, "objection_absolute"),
}


def decisions(url: str, subjects: list[Subject]) -> dict[tuple[int, Channel], Any]:
    out = {}
    for i, channel in EXPECTED:
        status, body = http_json(
            f"{url}/consent/{subjects[i].id}?purpose=marketing&channel={channel.value}"
        )
        out[(i, channel)] = (body.get("allowed"), body.get("rule")) if status == 200 else status
    return out


def test_mixed_stream_decisions_topic_and_restart(local_runtime: Settings, uid: str) -> None:
    subjects = [Subject(uid, n) for n in range(4)]
    worker = start_worker(local_runtime, f"consent-{uid}", web_port=port(167))
    try:
        produce(local_runtime, stream(*subjects))
        seen: dict[tuple[int, Channel], Any] = {}

        def settled() -> bool:
            seen.update(decisions(worker.url, subjects))
            return seen == EXPECTED

        try:
            wait_for("the expected consent decisions", settled, timeout=60)
        except AssertionError:
            assert seen == EXPECTED  # shows which decisions differ
        status, body = http_json(
            f"{worker.url}/consent/CUST-nobody-{uid}?purpose=marketing&channel=email"
        )
        assert status == 404
        assert body["error"] == "unknown subject"
        status, body = http_json(
            f"{worker.url}/consent/{subjects[0].id}?purpose=marketing&channel=pigeon"
        )
        assert status == 400
    finally:
        worker.stop()

    # The compacted topic: the latest record per subject carries the same answers.
    latest: dict[str, r.ConsentState] = {}
    for c in read_topic(local_runtime, CONSENT_STATE):
        if isinstance(c.value, r.ConsentState) and c.value.subject_id.startswith(f"CUST-T{uid}"):
            latest[c.value.subject_id] = c.value
    ann = {(p.channel, p.status) for p in latest[subjects[0].id].preferences}
    assert (Channel.email, "withdrawn") in ann
    assert (Channel.sms, "withdrawn") in ann
    assert (Channel.post, "granted") in ann
    assert latest[subjects[2].id].tps_listed
    assert latest[subjects[3].id].marketing_objection

    # Restart on the same tables: the answers are still there.
    worker = start_worker(local_runtime, f"consent-{uid}", web_port=port(167))
    try:
        assert decisions(worker.url, subjects) == EXPECTED
    finally:
        worker.stop()
