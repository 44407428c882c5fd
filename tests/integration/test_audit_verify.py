"""Issue 6 acceptance: `privops audit verify` passes on the worker's chains and names a
record that was tampered with (re-produced with a changed field). Issue 13: the chain is
keyed, `privops audit anchor` writes signed heads outside Kafka, and `verify --anchors`
catches a rewritten chain that plain re-hashing passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from privops.adapters.acls import DPO
from privops.adapters.settings import Settings
from privops.adapters.signing_keys import signing_key
from privops.core import records as r
from privops.core.audit import (
    GENESIS,
    LEGACY_KEY_VERSION,
    AuditChainer,
    compute_hash,
    derive_audit_id,
    hashed_fields,
)
from privops.core.audit_anchor import Anchors, ChainHead, dump_anchors
from privops.core.topics import AUDIT
from privops.core.vocab import Channel, Purpose, System
from tests.conftest import REPO, WorkerProcess
from tests.integration.helpers import Subject, produce, read_topic, wait_for

pytestmark = pytest.mark.integration


def audit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privops.cli.main", "audit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        cwd=REPO,
        timeout=120,
    )


def verify(chain: str, *more: str) -> subprocess.CompletedProcess[str]:
    return audit_cli("verify", "--chain", chain, *more)


def worker_chain(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> tuple[str, list[r.AuditEvent]]:
    """A subject's consent history, audited by the worker: (chain, its records so far)."""
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

    def on_topic() -> list[r.AuditEvent] | None:
        found = [
            c.value
            for c in read_topic(local_runtime, AUDIT)
            if isinstance(c.value, r.AuditEvent) and c.value.chain == chain
        ]
        return found if len(found) >= 2 else None

    return chain, wait_for("the subject's audit chain", on_topic)


def test_tampered_audit_record_is_named(
    local_runtime: Settings, worker: WorkerProcess, uid: str
) -> None:
    chain, records = worker_chain(local_runtime, worker, uid)

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


def test_anchored_worker_chain_verifies_and_a_tampered_anchors_file_fails(
    local_runtime: Settings, worker: WorkerProcess, uid: str, tmp_path: Path
) -> None:
    chain, records = worker_chain(local_runtime, worker, uid)
    assert {record.key_version for record in records} == {1}  # HMAC under the audit key

    anchors = tmp_path / "anchors.json"
    made = audit_cli("anchor", "--chain", chain, "--out", str(anchors))
    assert made.returncode == 0, made.stdout + made.stderr
    assert "anchored 1 chain head(s)" in made.stdout
    ok = verify(chain, "--anchors", str(anchors))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout

    # A prefix that matches nothing checked nothing and said OK (review, session 25).
    typo = verify(f"{uid}-no-such-app/")
    assert typo.returncode == 2, typo.stdout + typo.stderr
    assert "no chain on privacy.audit starts with it" in " ".join(typo.stderr.split())
    elsewhere = verify(chain.split("/")[0] + "-other/", "--anchors", str(anchors))
    assert elsewhere.returncode == 2, elsewhere.stdout + elsewhere.stderr
    assert "holds no chain under it" in " ".join(elsewhere.stderr.split())

    document = json.loads(anchors.read_text())
    document["chains"][chain]["seq"] = 1
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    refused = verify(chain, "--anchors", str(tampered))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "fails its signature check" in " ".join(refused.stderr.split())


def _true_history(chain: str, key: bytes) -> list[r.AuditEvent]:
    chainer = AuditChainer(key=key)
    start = datetime.now(UTC)
    return [
        chainer.next(
            actor="worker",
            action="consent.changed",
            occurred_at=start + timedelta(seconds=i),
            subject_ref="sr_" + "cd" * 16,
            before=before,
            after=after,
            reason="crm event",
            audit_id=derive_audit_id(chain, str(i)),
            chain=chain,
        )
        for i, (before, after) in enumerate(
            [(None, "granted"), ("granted", "withdrawn"), ("withdrawn", "granted")]
        )
    ]


def _plain_rehash(records: list[r.AuditEvent]) -> list[r.AuditEvent]:
    """The chain with its withdrawal edited out, re-hashed as someone without the audit
    key can: plain SHA-256, as the legacy (version 0) records before keyed hashes."""
    out: list[r.AuditEvent] = []
    prev = GENESIS
    for record in records:
        draft = record.model_copy(
            update={"after": "granted", "prev_hash": prev, "key_version": LEGACY_KEY_VERSION}
        )
        out.append(
            draft.model_copy(update={"hash": compute_hash(prev, hashed_fields(draft), key=None)})
        )
        prev = out[-1].hash
    return out


def test_anchors_catch_a_rewritten_chain_that_plain_re_hashing_passes(
    local_runtime: Settings, uid: str, tmp_path: Path
) -> None:
    """Issue 13 acceptance. The topic's history was deleted and the chain produced again,
    edited and re-hashed: what the topic holds afterwards is only the forged chain, at
    offsets past those anchored. The anchors file is what `privops audit anchor` wrote
    while the true history was there: its head, the partition ends, signed with the
    DPO's key."""
    chain = f"rewritten-{uid}/chain"
    true = _true_history(chain, local_runtime.audit_key.encode())
    ends: dict[int, int] = {}
    for c in read_topic(local_runtime, AUDIT):
        ends[c.partition] = max(ends.get(c.partition, 0), c.offset + 1)
    anchors = Anchors(
        topic=AUDIT,
        created_at=datetime.now(UTC),
        chain_prefix=chain,
        offsets=ends,
        chains={chain: ChainHead(seq=true[-1].seq, hash=true[-1].hash)},
    )
    anchors_file = tmp_path / "anchors.json"
    dpo = signing_key(local_runtime, DPO, say=lambda _: None, create=True)
    anchors_file.write_text(dump_anchors(anchors, dpo, 1))

    forged = _plain_rehash(true)
    produce(local_runtime, [(AUDIT, chain, record) for record in forged])

    plain = verify(chain)
    assert plain.returncode == 0, plain.stdout + plain.stderr  # re-hashing checks out
    assert "3 unkeyed record(s)" in " ".join(plain.stdout.split())

    caught = verify(chain, "--anchors", str(anchors_file))
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert f"BROKEN chain {chain} at seq 3" in " ".join(caught.stdout.split())
    assert "anchor_mismatch" in caught.stdout

    report = json.loads(verify(chain, "--anchors", str(anchors_file), "--json").stdout)
    problems = [(b["chain"], b["problem"]) for b in report["breaks"]]
    assert problems[0] == (chain, "anchor_mismatch")
    assert problems.count((chain, "unkeyed_after_anchor")) == 3
