"""Issue 14 point 12 acceptance: Art. 19 recipients come from what was disclosed.

On the real broker: a cash customer (orders and a card payment, no disclosure reported)
and a credit customer (a credit account whose application the orders system reported as
disclosed to the credit reference agency, with the agency's search reference) are both
erased through the CLI. The cash customer's erasure tells no credit agency; the credit
customer's tells exactly the agency that received their data, with its reference.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from privops.adapters import kek as kekfile
from privops.adapters.acls import DPO
from privops.adapters.settings import Settings
from privops.connectors.encryption import decrypt_record
from privops.core import records as r
from privops.core.fieldcrypt import is_encrypted
from privops.core.topics import AUDIT, NOTIFICATIONS
from privops.core.vocab import Category, System, TaskAction
from tests.conftest import REPO, WorkerProcess
from tests.integration.helpers import Subject, http_json, key_service, produce, read_topic, wait_for

pytestmark = pytest.mark.integration

CRA = "Credit reference agencies"  # deploy/datamap.yaml recipients

Items = list[tuple[str, str | bytes, r.Record | bytes]]


def cash_customer(subject: Subject) -> Items:
    return [
        subject.event(r.CustomerCreated, System.orders),
        subject.event(
            r.OrderPlaced, System.orders, 1, order_id=f"O-{subject.id}", total_pence=4200
        ),
        subject.event(
            r.PaymentRecorded,
            System.orders,
            2,
            payment_id=f"P-{subject.id}",
            order_id=f"O-{subject.id}",
            amount_pence=4200,
        ),
    ]


def credit_customer(subject: Subject, search_ref: str) -> Items:
    return [
        subject.event(r.CustomerCreated, System.orders),
        subject.event(
            r.CreditAccountApplied,
            System.orders,
            1,
            application_id=f"APP-{subject.id}",
            credit_reference_agency=CRA,
        ),
        subject.event(
            r.DataDisclosed,
            System.orders,
            2,
            disclosure_id=f"DISC-{subject.id}",
            recipient=CRA,
            categories=[Category.contact, Category.credit],
            recipient_ref=search_ref,
        ),
    ]


def erase(worker: WorkerProcess, subject: Subject) -> str:
    """`privops request erase` as the DPO runs it; returns the request id it prints."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "privops.cli.main",
            "request",
            "erase",
            "--subject",
            subject.id,
            "--verified-now",
            "-q",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **worker.env},
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def known(worker: WorkerProcess, subject: Subject) -> bool:
    return http_json(f"{worker.url}/consent/{subject.id}")[0] == 200


def tasks_sent(worker: WorkerProcess, rid: str) -> bool:
    status, body = http_json(f"{worker.url}/requests/{rid}")
    return status == 200 and bool(body.get("tasks"))


def notices(local_runtime: Settings, rid: str) -> list[r.RecipientNotification]:
    return [
        c.value
        for c in read_topic(local_runtime, NOTIFICATIONS)
        if isinstance(c.value, r.RecipientNotification) and c.value.request_id == rid
    ]


def test_only_recipients_that_received_the_data_are_told_with_their_reference(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> None:
    cash, credit = Subject(uid, 0), Subject(uid, 1)
    search_ref = f"SRCH-{uid}"
    produce(local_runtime, cash_customer(cash) + credit_customer(credit, search_ref))
    wait_for("both subjects to be known", lambda: known(worker, cash) and known(worker, credit))

    cash_rid = erase(worker, cash)
    wait_for("the cash customer's erasure tasks", lambda: tasks_sent(worker, cash_rid))
    credit_rid = erase(worker, credit)
    told = wait_for(
        "the credit customer's Art. 19 notice", lambda: notices(local_runtime, credit_rid)
    )

    # The cash customer's data went to no credit agency (nor anyone else reported).
    assert notices(local_runtime, cash_rid) == []

    # Exactly the agency that searched the credit customer, with its own reference: on
    # the topic sealed under the subject's key, opened by the notifier with the KEK (while
    # the erasure waits for its systems, the key is there; no connector answers here).
    assert all(is_encrypted(ref) for n in told for ref in n.recipient_refs)
    keys = key_service(worker.url, kekfile.provider(local_runtime.kek_file, "dev", print), DPO)
    try:
        told = [decrypt_record(n, keys, subject_id=credit.id) for n in told]  # its Kafka key
    finally:
        keys.close()
    assert [(n.recipient, n.action, n.recipient_refs) for n in told] == [
        (CRA, TaskAction.erase, [search_ref])
    ]
    assert told[0].categories == [Category.contact, Category.credit]
    assert told[0].subject_ref.startswith("sr_")
    assert credit.email not in told[0].model_dump_json()

    audited = [
        c.value
        for c in read_topic(local_runtime, AUDIT)
        if isinstance(c.value, r.AuditEvent)
        and c.value.request_id in (cash_rid, credit_rid)
        and c.value.action == "notification_sent"
        and c.value.reason
        and "Art. 19" in c.value.reason
    ]
    assert [(a.request_id, a.after) for a in audited] == [(credit_rid, CRA)]
