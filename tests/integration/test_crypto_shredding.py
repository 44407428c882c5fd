"""Issue 15's acceptance on the real broker: an erasure reaches every copy in the event log.

Two subjects, each known to all six systems, whose events the systems encrypt with the
connector SDK under keys from the worker's key service. The first also has a DSAR
(access), a rectification (its corrected name sealed by the CLI), and a dead letter (an
event whose ciphertext was moved to another field). Then they are erased (the
reference connectors answer every task, opening them through the key service).
Afterwards:
- their key records are tombstoned and the key service refuses them; every event of
  theirs on the upstream topics is ciphertext that no key left on the topic opens;
- ``privops subject forget-check`` over every topic from offset 0, every changelog and
  the worker's local stores finds nothing: no email, phone or name in plaintext (tasks,
  notifications, commands, tables and dead letters carry them sealed), no ciphertext
  that still decrypts, no live key or table entry (exit 0);
- the other subject's fields still decrypt and their consent answers are unchanged;
- a fresh worker under a new app id, its tables rebuilt from the topics, does not bring
  them back when their events are replayed to it (flagged re-imports), and flags a
  re-import of their email under a new subject id.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from privops.adapters import kek as kekfile
from privops.adapters.kafka import client_options, read_all
from privops.adapters.key_topic import KeyRecordCodec, read_keys
from privops.adapters.settings import Settings
from privops.connectors.encryption import (
    RingKeySource,
    WorkerKeySource,
    decrypt_record,
    encrypt_record,
)
from privops.core import records as r
from privops.core.fieldcrypt import ShreddedKey, is_encrypted
from privops.core.identity import subject_ref
from privops.core.personal import WITHHELD
from privops.core.subject_keys import KeyRing, SubjectErased, SubjectKey
from privops.core.topics import AUDIT, COMMANDS, DEADLETTER, SUBJECT_KEYS
from privops.core.vocab import Channel, Purpose, RequestType, System
from tests.conftest import REPO, WorkerProcess, port, start_worker
from tests.integration.helpers import (
    Subject,
    http_json,
    key_service,
    produce,
    read_topic,
    serde_for,
    wait_for,
)
from tests.integration.test_request_flow import (
    cli,
    known,
    own_pseudonym_key,
    request,
    simulate,
    stop,
)

pytestmark = pytest.mark.integration

SYSTEMS = tuple(System)
NAME = "Ann Q. Tester"


def sealed_events(subject: Subject, keys: WorkerKeySource) -> list[tuple[str, str, r.Record]]:
    """What each of the six systems sends about the subject, contact details encrypted
    by the SDK."""
    sid = subject.id
    made = [
        subject.event(r.CustomerCreated, System.orders, minutes=0),
        subject.event(r.CustomerCreated, System.crm, minutes=1),
        subject.event(
            r.ConsentGiven,
            System.marketing,
            minutes=2,
            purpose=Purpose.marketing,
            channel=Channel.email,
        ),
        subject.event(
            r.CallRecorded,
            System.telephony,
            minutes=3,
            call_id=f"CALL-{sid}",
            recording_ref=f"recordings/CALL-{sid}.wav",
            duration_seconds=60,
        ),
        subject.event(
            r.CookieConsentRecorded, System.web, minutes=4, analytics=True, marketing=False
        ),
        subject.event(
            r.FootageCaptured,
            System.cctv,
            minutes=5,
            clip_id=f"CLIP-{sid}",
            camera="CAM-01",
            site="HQ",
        ),
    ]
    return [(topic, key, encrypt_record(record, keys)) for topic, key, record in made]


def tampered(subject: Subject, keys: WorkerKeySource) -> tuple[str, str, r.Record]:
    """A crm event whose email ciphertext was moved into the phone field: a dead letter
    (``tampered_field``) that keeps the original bytes, ciphertext only."""
    topic, key, record = subject.event(r.CustomerCreated, System.crm, minutes=9)
    sealed = encrypt_record(record, keys)
    assert isinstance(sealed, r.CustomerCreated)
    moved = sealed.identifiers.model_copy(update={"phone": sealed.identifiers.email})
    return topic, key, sealed.model_copy(update={"identifiers": moved})


def consent(worker: WorkerProcess, subject: Subject) -> dict[str, object]:
    status, body = http_json(f"{worker.url}/consent/{subject.id}?purpose=marketing&channel=email")
    assert status == 200, body
    return dict(body)


def stored_keys(settings: Settings) -> dict[str, SubjectKey]:
    codec = KeyRecordCodec(serde_for(settings))
    return asyncio.run(read_keys(client_options(settings), codec))


def forget_check(worker: WorkerProcess, subject: Subject) -> tuple[int, dict[str, Any]]:
    """``privops subject forget-check`` as the DPO runs it, over every topic, changelog
    and (the worker stopped) its local stores, with the subject's email, phone and name."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "privops.cli.main",
            "subject",
            "forget-check",
            subject.id,
            *("--value", subject.email, "--value", subject.phone, "--value", NAME),
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**worker.env},
        cwd=REPO,
        timeout=180,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    for value in (subject.email, subject.phone, NAME):
        assert value not in proc.stdout + proc.stderr  # never echoed
    return proc.returncode, report


def settled(worker: WorkerProcess, rid: str, timeout: float = 120) -> dict[str, Any]:
    body: dict[str, Any] = wait_for(
        f"request {rid} to complete",
        lambda: (
            (b := request(worker, rid)).get("state") in ("completed", "partially_completed") and b
        ),
        timeout=timeout,
    )
    return body


def audited(settings: Settings, after: str) -> set[str]:
    """The subject refs of the audit steps recorded as ``after``."""
    return {
        c.value.subject_ref or ""
        for c in read_topic(settings, AUDIT)
        if isinstance(c.value, r.AuditEvent) and c.value.after == after
    }


def test_erasure_shreds_the_key_that_reads_every_copy(
    local_runtime: Settings, tmp_path: Path, uid: str
) -> None:
    erased, other = Subject(uid, 1), Subject(uid, 2)
    env = own_pseudonym_key(uid)
    pseudonym_key = env["PRIVOPS_PSEUDONYM_KEY"].encode()

    def ref(subject_id: str) -> str:  # as the workers write it in the audit
        return subject_ref(pseudonym_key, subject_id)

    worker = start_worker(local_runtime, f"shred-{uid}", web_port=port(211), extra_env=env)
    connectors = simulate(local_runtime, tmp_path / "systems", customers=1, worker_url=worker.url)
    kek = kekfile.provider(local_runtime.kek_file, "dev", print)
    keys = key_service(worker.url, kek)
    try:
        produce(local_runtime, [*sealed_events(erased, keys), *sealed_events(other, keys)])
        for subject in (erased, other):
            wait_for(f"{subject.id} to be known", lambda s=subject: known(worker, s.id))  # type: ignore[misc]
        before = wait_for(
            "the other subject's consent to be applied",
            lambda: (c := consent(worker, other))["allowed"] is True and c,
        )
        produce(local_runtime, [tampered(erased, keys)])
        wait_for(
            "the moved ciphertext to be dead-lettered",
            lambda: [
                c.value
                for c in read_topic(local_runtime, DEADLETTER)
                if isinstance(c.value, r.DeadLetter)
                and c.key == erased.id.encode()
                and c.value.reason == "tampered_field"
            ],
        )

        def ask(*args: str) -> str:
            return cli(
                "request", *args, "--subject", erased.id, "--verified-now", "-q", env=worker.env
            )

        settled(worker, ask("access"), timeout=150)
        rectified = settled(worker, ask("rectify", "--set", f"name={NAME}"))
        assert rectified["request_type"] == "rectification"
        rid = ask("erase")
        settled(worker, rid)
        wait_for(
            "the erased subject's keys to be gone",
            lambda: http_json(f"{worker.url}/subject-keys/{erased.id}")[1].get("keys") == [],
            timeout=60,
        )
        with pytest.raises(SubjectErased):
            key_service(worker.url, kek, retry_seconds=1).current_key(erased.id, "main")
        # Nothing of theirs is kept, so nothing can be sealed for them: the key service
        # answers 410, and the CLI sends a complaint without the DPO's text about them
        # (it would have stayed readable on privacy.commands), never in plaintext.
        status, _ = http_json(
            f"{worker.url}/subject-keys/{erased.id}/seal",
            method="POST",
            body={"fields": {"reason": NAME}},
            timeout=15,
        )
        assert status == 410
        complained = subprocess.run(
            [
                *(sys.executable, "-m", "privops.cli.main", "request", "complain"),
                *("--subject", erased.id, "--reason", f"{NAME} rang again", "-q"),
            ],
            capture_output=True,
            text=True,
            env=worker.env,
            cwd=REPO,
            timeout=60,
            check=False,
        )
        assert "is not sent" in " ".join(complained.stderr.split()), complained.stderr
        assert NAME not in complained.stderr + complained.stdout
        (complaint,) = [
            c.value
            for c in read_topic(local_runtime, COMMANDS)
            if isinstance(c.value, r.RequestSubmitted)
            and c.value.request_type is RequestType.complaint
            and c.value.subject_id == erased.id
        ]
        assert complaint.reason == WITHHELD

        # The topic: the erased subject's key is tombstoned, the other's is still stored.
        live = stored_keys(local_runtime)
        assert not [k for k in live.values() if k.subject_id == erased.id]
        assert [k for k in live.values() if k.subject_id == other.id]
        tombstones = [
            c for c in asyncio.run(_raw(local_runtime)) if c[0].startswith(f"{erased.id}/")
        ]
        assert tombstones
        assert tombstones[-1][1] is None

        # Every copy on the upstream topics is ciphertext that no longer opens; the other
        # subject's still does, through a ring rebuilt from the topic alone.
        ring = KeyRing(kek.unwrapper())
        for key_id, record in live.items():
            ring.apply(key_id, record)
        source = RingKeySource(ring, _no_new_keys)
        upstream: dict[str, list[r.UpstreamEvent]] = {erased.id: [], other.id: []}
        for system in SYSTEMS:
            for c in read_topic(local_runtime, f"{system.value}.events"):
                event = c.value
                if not isinstance(event, r.UpstreamEvent) or event.subject_id not in upstream:
                    continue
                upstream[event.subject_id].append(event)
                assert event.identifiers.email is not None
                assert is_encrypted(event.identifiers.email)
                if event.subject_id == other.id:
                    assert decrypt(event, source).identifiers.email == other.email
                else:
                    with pytest.raises(ShreddedKey):
                        decrypt(event, source)
        assert len(upstream[erased.id]) >= len(SYSTEMS)

        # The other subject's consent answers are unchanged.
        assert consent(worker, other) == before
    finally:
        keys.close()
        stop(connectors)
        worker.stop()

    # Nothing of the erased subject is left readable anywhere privops or Kafka holds it.
    code, report = forget_check(worker, erased)
    assert report["findings"] == [], report["findings"]
    assert code == 0

    # A fresh worker under a new app id: its tables come from its own (empty) changelogs,
    # the suppression list and the keys from their topics. A replay of the subject's
    # upstream events does not bring them back, nor does their email under a new id.
    rebuilt = start_worker(local_runtime, f"rebuilt-{uid}", web_port=port(212), extra_env=env)
    try:
        replay = [
            (topic, erased.id, raw) for topic, raw in _upstream_bytes(local_runtime, erased.id)
        ]
        newcomer = f"CUST-NEW{uid}"
        produce(
            local_runtime,
            [
                *replay,
                (
                    "marketing.events",
                    newcomer,
                    r.CustomerCreated(
                        event_id=f"{newcomer}-created",
                        occurred_at=erased.base,
                        source=System.marketing,
                        subject_id=newcomer,
                        identifiers=r.Identifiers(email=erased.email.upper()),
                    ),
                ),
            ],
        )
        wait_for(
            "the replay and the re-import to be flagged",
            lambda: {ref(erased.id), ref(newcomer)} <= audited(local_runtime, "reimport_flagged"),
            timeout=90,
        )
        # The erased subject is answered as suppressed (the suppression list names them),
        # never as a live subject; the newcomer under the erased email is not taken in.
        status, state = http_json(f"{rebuilt.url}/consent/{erased.id}")
        assert (status, state["suppressed"], any(state["decisions"].values())) == (200, True, False)
        assert not known(rebuilt, newcomer)
    finally:
        rebuilt.stop()


def _upstream_bytes(settings: Settings, subject_id: str) -> list[tuple[str, bytes]]:
    """The subject's records on the upstream topics, byte for byte (a replay)."""

    async def read() -> list[tuple[str, bytes]]:
        found = []
        for system in SYSTEMS:
            topic = f"{system.value}.events"
            for c in await read_all(client_options(settings), topic):
                if c.key == subject_id.encode() and isinstance(c.value, bytes):
                    found.append((topic, c.value))
        return found

    return asyncio.run(read())


def decrypt(event: r.UpstreamEvent, source: RingKeySource) -> r.UpstreamEvent:
    return decrypt_record(event, source)


def _no_new_keys(subject_id: str, scope: str) -> SubjectKey:
    raise AssertionError(f"reading must not create a key ({subject_id}, {scope})")


async def _raw(settings: Settings) -> list[tuple[str, bytes | None]]:
    return [
        (c.key.decode(), c.value if isinstance(c.value, bytes) else None)
        for c in await read_all(client_options(settings), SUBJECT_KEYS)
        if c.key is not None
    ]
