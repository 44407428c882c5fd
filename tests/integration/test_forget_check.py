"""Issue 15 point 6: `privops subject forget-check` on the real broker.

A subject with a plaintext email on an upstream topic, a field encrypted under a key
that is live on privacy.subject-keys (written here with the SubjectKey schema, as the
worker's key service would) and an identity record in a worker's RocksDB store: the
scan exits 1 naming each, without the values. Once the key is tombstoned its ciphertext
no longer counts, and a subject with nothing planted exits 0. No worker runs: the key
records and the store are written here, as they are on disk and on the topic.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rocksdict import Options, Rdict
from typer.testing import CliRunner

from privops.adapters.acls import WORKER
from privops.adapters.kafka import client_options, create_topics, producer
from privops.adapters.settings import Settings
from privops.cli.main import app
from privops.core import records as r
from privops.core import subject_keys
from privops.core.fieldcrypt import encrypt_field
from privops.core.identity import merge
from privops.core.topics import REQUEST_INDEX, SUBJECT_KEYS, TopicSpec, compacted
from privops.core.vocab import System
from tests.conftest import REPO
from tests.integration.helpers import Subject, produce

pytestmark = pytest.mark.integration


def forget_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privops.cli.main", "subject", "forget-check", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
        cwd=REPO,
        timeout=300,
    )


def report_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def found(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(place, kind, where) of every finding; stores by their table file's name."""
    return {
        (
            Path(f["place"]).name if f["place"].startswith("store ") else f["place"],
            f["kind"],
            f["where"],
        )
        for f in report["findings"]
    }


@pytest.fixture(scope="module")
def key_topic(local_runtime: Settings) -> Settings:
    """privacy.subject-keys as the worker will create it (compacted, keyed by key id)."""
    spec = TopicSpec(SUBJECT_KEYS, "key id", local_runtime.topic_partitions, compacted())
    asyncio.run(create_topics(client_options(local_runtime, WORKER), [spec]))
    return local_runtime


def plant_store(data_dir: Path, subject_id: str, email: str) -> None:
    """A worker's identities store holding the subject (Faust's layout, raw mode)."""
    tables = data_dir / "privops-forget" / "v1" / "tables"
    tables.mkdir(parents=True)
    (data_dir / "privops-forget" / "worker.lock").touch()
    identity = merge(None, subject_id, System.crm, {"email": email}, datetime.now(UTC))
    db = Rdict(str(tables / "identities-0.db"), Options(raw_mode=True))
    db[subject_id.encode()] = identity.__pydantic_serializer__.to_json(identity)
    db[b"someone-else"] = b'{"subject_id": "someone-else"}'
    db[b"__faust\x00offset__"] = b"2"
    db.close()


def tombstone(settings: Settings, topic: str, key: str) -> None:
    async def send() -> None:
        async with producer(client_options(settings, WORKER)) as prod:
            await prod.send_and_wait(topic, None, key=key.encode())

    asyncio.run(send())


def test_forget_check_finds_plaintext_live_ciphertext_and_stored_identities(
    key_topic: Settings, uid: str, tmp_path: Path
) -> None:
    settings = key_topic
    ann = Subject(uid)
    shadow = f"shadow-{uid}@example.com"  # only the worker's identity record holds it
    kek = subject_keys.Kek(1, os.urandom(32))
    key_record, key = subject_keys.create(ann.id, "main", kek, datetime.now(UTC))
    sealed = encrypt_field(key, ann.id, "identifiers{email}", ann.email)
    encrypted = r.CustomerCreated(
        event_id=uuid.uuid4().hex,
        occurred_at=ann.base,
        source=System.orders,
        subject_id=ann.id,
        identifiers=r.Identifiers(customer_id=ann.id, email=sealed),
    )
    produce(
        settings,
        [
            (SUBJECT_KEYS, key_record.key_id, key_record),
            ann.event(r.CustomerCreated, System.crm),  # identifiers in plaintext
            ("orders.events", ann.id, encrypted),
            (REQUEST_INDEX, ann.id, b"not tombstoned"),  # any compacted privops topic
        ],
    )
    data_dir = tmp_path / "worker"
    plant_store(data_dir, ann.id, shadow)

    done = forget_check(ann.id, "--value", ann.email.upper(), "--data-dir", str(data_dir), "--json")
    assert done.returncode == 1, done.stderr
    report = report_of(done)
    assert {
        ("crm.events", "plaintext", "value identifiers.email"),
        ("orders.events", "live-ciphertext", "value identifiers.email"),
        (SUBJECT_KEYS, "live-key", "key"),
        (REQUEST_INDEX, "live-entry", "key"),
        ("identities-0.db", "live-entry", "key"),
        ("identities-0.db", "plaintext", "value systems.crm.email.value"),
    } <= found(report)
    # the shadow email came from the identity record, not from the DPO
    labels = {f["what"].split(" (")[0] for f in report["findings"] if f["kind"] == "plaintext"}
    assert labels == {"value 1", "identity record email"}
    assert report["stores"] == 1
    assert report["store_entries"] == 2

    table = forget_check(ann.id, "--value", ann.email, "--data-dir", str(data_dir))
    assert table.returncode == 1, table.stderr
    assert "crm.events" in table.stdout
    assert "live-ciphertext" in table.stdout
    assert "key live: decryptable by anyone holding the KEK" in table.stdout
    assert "is not forgotten" in table.stdout
    for output in (done.stdout + done.stderr, table.stdout + table.stderr):
        for value in (ann.email, shadow, ann.phone):
            assert value.lower() not in output.lower()

    tombstone(settings, SUBJECT_KEYS, key_record.key_id)
    tombstone(settings, REQUEST_INDEX, ann.id)
    after = forget_check(ann.id, "--skip-stores", "--json")
    assert after.returncode == 0, after.stdout + after.stderr
    cleared = report_of(after)
    assert cleared["findings"] == []
    assert cleared["shredded"] >= 1  # the orders event's field, now noise
    assert "local stores not scanned (--skip-stores)" in cleared["warnings"]

    bob = Subject(uid, 1)
    # (Subject gives bob ann's phone: the scan rightly finds it, so bob gets his own)
    clean = forget_check(
        bob.id, "--value", bob.email, "--value", "+44 20 7946 0999", "--data-dir", str(data_dir)
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"nothing of {bob.id} remains readable" in clean.stdout


def test_a_running_worker_s_stores_are_not_read_under_it(
    key_topic: Settings, tmp_path: Path
) -> None:
    data_dir = tmp_path / "worker"
    plant_store(data_dir, "CUST-locked", "locked@example.com")
    with (data_dir / "privops-forget" / "worker.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as streams.startup does
        done = forget_check("CUST-locked", "--data-dir", str(data_dir))
    assert done.returncode == 3
    assert "a worker is running on" in done.stderr
    assert "--skip-stores" in done.stderr


def test_an_unreachable_cluster_exits_3() -> None:
    env = {"PRIVOPS_KAFKA_BOOTSTRAP": "127.0.0.1:9"}  # discard port: nothing listens
    done = forget_check("CUST-1", "--skip-stores", env=env)
    assert done.returncode == 3
    assert "unreachable" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["CUST-1", "--value", "Ann"], "value 1 is shorter than 4 characters"),
        (["bad/subject"], "invalid subject id"),
        (["CUST-1", "--data-dir", "/nonexistent/forget"], "is not a directory"),
        (["CUST-1", "--from-file", "/nonexistent/values"], "cannot read --from-file"),
    ],
)
def test_bad_arguments_exit_2_before_anything_is_read(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["subject", "forget-check", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Ann" not in result.output
