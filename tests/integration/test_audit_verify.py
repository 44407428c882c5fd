"""Issue 6 acceptance: `privops audit verify` passes on the worker's chains and names a
record that was tampered with (re-produced with a changed field)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from privops.core import records as r
from privops.core.topics import AUDIT
from privops.core.vocab import Channel, Purpose, System
from tests.conftest import REPO, WorkerProcess
from tests.integration.helpers import Subject, produce, read_topic, wait_for

pytestmark = pytest.mark.integration


def verify(chain: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privops.cli.main", "audit", "verify", "--chain", chain],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        cwd=REPO,
        timeout=120,
    )


def test_tampered_audit_record_is_named(local_runtime, worker: WorkerProcess, uid: str) -> None:
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
            subject.event(
                r.ConsentWithdrawn,
                System.crm,
                minutes=2,
                purpose=Purpose.marketing,
                channel=Channel.email,
            ),
        ],
    )
    from streams.audit import ref

    chain = f"{worker.env['PRIVOPS_APP_ID']}/{ref(subject.id)}"
    records = wait_for(
        "the subject's audit chain",
        lambda: (
            [
                c.value
                for c in read_topic(local_runtime, AUDIT)
                if isinstance(c.value, r.AuditEvent) and c.value.chain == chain
            ]
            if len(
                [
                    c
                    for c in read_topic(local_runtime, AUDIT)
                    if isinstance(c.value, r.AuditEvent) and c.value.chain == chain
                ]
            )
            >= 2
            else None
        ),
    )

    ok = verify(chain)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout

    original = records[0]
    forged = original.model_copy(update={"after": "withdrawn", "reason": "edited later"})
    produce(local_runtime, [(AUDIT, chain, forged)])
    broken = verify(chain)
    assert broken.returncode == 1, broken.stdout
    assert "BROKEN" in broken.stdout
    assert original.audit_id in broken.stdout
