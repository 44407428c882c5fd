"""Issue 2 acceptance: real broker + registry + a real `privops worker` subprocess."""

from __future__ import annotations

from typing import Any

import pytest

from privops.adapters.settings import Settings
from privops.core import records as r
from privops.core.topics import AUDIT, DEADLETTER
from privops.core.vocab import Channel, Purpose, System
from tests.conftest import WorkerProcess
from tests.integration.helpers import Subject, produce, read_topic, records_where, wait_for

pytestmark = pytest.mark.integration


def test_event_to_audit_round_trip(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> None:
    subject = Subject(uid)
    produce(
        local_runtime,
        [
            subject.event(r.CustomerCreated, System.crm),
            subject.event(
                r.ConsentGiven,
                System.crm,
                minutes=1,
                purpose=Purpose.marketing,
                channel=Channel.email,
            ),
        ],
    )
    from streams.audit import ref  # the same keyed HMAC the worker uses

    sref = ref(subject.id)
    audits = wait_for(
        "a consent_changed audit event for the subject",
        lambda: records_where(
            local_runtime,
            AUDIT,
            lambda v: (
                isinstance(v, r.AuditEvent)
                and v.subject_ref == sref
                and v.action == "consent_changed"
            ),
        ),
    )
    assert audits[0].after == "granted"
    assert audits[0].actor == "crm"
    assert subject.email not in audits[0].model_dump_json()


def test_garbage_goes_to_deadletter_and_next_event_is_processed(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> None:
    subject = Subject(uid)
    garbage = b"\x00\x00\x00\x00\x07not avro at all " + uid.encode()
    produce(
        local_runtime,
        [
            ("orders.events", subject.id, garbage),
            ("orders.events", subject.id, b"plain text " + uid.encode()),
            subject.event(r.CustomerCreated, System.orders),
            subject.event(
                r.ConsentGiven,
                System.orders,
                minutes=1,
                purpose=Purpose.marketing,
                channel=Channel.sms,
            ),
        ],
    )

    def letters_for_garbage() -> dict[tuple[int, int], Any]:
        # A business system's bytes that do not decode are not copied into the letter
        # (they may hold personal data in plaintext): found by topic and key.
        found = {
            (c.value.partition, c.value.offset): c.value
            for c in read_topic(local_runtime, DEADLETTER)
            if isinstance(c.value, r.DeadLetter)
            and c.value.original_topic == "orders.events"
            and c.value.key == subject.id.encode()
        }
        return found if len(found) == 2 else {}

    letters = wait_for("a dead letter for each garbage message", letters_for_garbage).values()
    for letter in letters:
        assert letter.value is None
        assert "bytes) is not kept" in letter.error
        assert letter.offset >= 0
        assert letter.reason in {"undecodable", "unknown_schema"}
        assert letter.consumer == "ingest"
    from streams.audit import ref

    sref = ref(subject.id)
    wait_for(
        "the good event after the garbage to be processed",
        lambda: records_where(
            local_runtime,
            AUDIT,
            lambda v: (
                isinstance(v, r.AuditEvent) and v.subject_ref == sref and v.after == "granted"
            ),
        ),
    )


def test_event_without_identifiers_is_dead_lettered(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> None:
    subject = Subject(uid)
    topic, key, event = subject.event(r.CustomerCreated, System.web)
    bare = event.model_copy(update={"identifiers": r.Identifiers()})
    produce(local_runtime, [(topic, key, bare)])
    letter = wait_for(
        "a missing_identifier dead letter",
        lambda: [
            c.value
            for c in read_topic(local_runtime, DEADLETTER)
            if isinstance(c.value, r.DeadLetter)
            and c.value.reason == "missing_identifier"
            and c.value.key == subject.id.encode()
        ],
    )[0]
    assert letter.original_topic == "web.events"


def test_local_up_again_says_already_running_and_status_is_ready(local_runtime: Settings) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "privops.cli.main", "local", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            cwd=REPO,
            timeout=120,
        )

    again = cli("up")
    assert again.returncode == 0, again.stderr
    assert "kafka already running" in again.stdout
    assert "registry already running" in again.stdout
    status = cli("status", "--json")
    assert status.returncode == 0
    assert '"ready": true' in status.stdout
