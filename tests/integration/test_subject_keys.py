"""The key service and key store on the real broker (streams.keystore, agents/http.py):
one key per subject and scope however many ask at once, stored on the subject's
partition under its key id before it is answered, shredded by a tombstone every ring
applies, rebuilt from the topic by a restarted worker, refused for erased subjects; and
a KEK version still wrapping stored keys cannot be retired."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from privops.adapters import kek as kekfile
from privops.adapters.acls import WORKER, system_principal
from privops.adapters.kafka import client_options, producer, read_all
from privops.adapters.key_topic import KeyRecordCodec, subject_partition
from privops.adapters.settings import Settings
from privops.core import records as r
from privops.core.topics import SUBJECT_DIRECTIVES, SUBJECT_KEYS, events_topic
from privops.core.vocab import System
from streams.keystore import KeyStore
from tests.conftest import REPO, WorkerProcess, port, start_worker
from tests.integration.helpers import Subject, http_json, produce, read_topic, serde_for, wait_for
from tests.unit.test_keystore import following

NAME = "subject-keys"


@pytest.fixture(scope="module")
def kek_path(local_runtime: Settings) -> Path:
    return local_runtime.home / "subject-keys-test" / "kek.json"


@pytest.fixture(scope="module")
def keys_worker(local_runtime: Settings, kek_path: Path) -> Iterator[WorkerProcess]:
    proc = start_worker(
        local_runtime, NAME, web_port=port(86), extra_env={"PRIVOPS_KEK_FILE": str(kek_path)}
    )
    yield proc
    proc.stop()


def post_key(worker: WorkerProcess, subject_id: str, scope: str = "main") -> tuple[int, Any]:
    return http_json(
        f"{worker.url}/subject-keys/{subject_id}?scope={scope}",
        principal=system_principal(System.crm),
        method="POST",
        timeout=15,
    )


def stored(settings: Settings, key_id: str) -> list[tuple[int, bytes | None]]:
    """(partition, value) of every record under ``key_id`` on the topic, in order."""
    consumed = asyncio.run(read_all(client_options(settings, WORKER), SUBJECT_KEYS))
    return [(c.partition, c.value) for c in consumed if c.key == key_id.encode()]  # type: ignore[misc]


def test_two_concurrent_requests_for_a_new_subject_get_one_key_on_its_partition(
    local_runtime: Settings, keys_worker: WorkerProcess, uid: str
) -> None:
    ann = Subject(uid)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: post_key(keys_worker, ann.id), range(2)))
    assert [status for status, _ in answers] == [200, 200]
    first, second = (body for _, body in answers)
    assert first == second
    assert (first["subject_id"], first["scope"], first["kek_version"]) == (ann.id, "main", 1)

    # The subject's events land (default partitioner) on the partition its key is on.
    produce(local_runtime, [ann.event(r.CustomerCreated, System.crm)])
    events = [
        c for c in read_topic(local_runtime, events_topic(System.crm)) if c.key == ann.id.encode()
    ]
    records = stored(local_runtime, first["key_id"])
    assert [p for p, _ in records] == [events[0].partition]
    assert events[0].partition == subject_partition(ann.id, local_runtime.topic_partitions)
    codec = KeyRecordCodec(serde_for(local_runtime))
    assert codec.decode(records[0][1] or b"").key_id == first["key_id"]

    status, listed = http_json(f"{keys_worker.url}/subject-keys/{ann.id}")
    assert status == 200
    assert [k["key_id"] for k in listed["keys"]] == [first["key_id"]]


@contextlib.asynccontextmanager
async def owner_store(settings: Settings, kek_path: Path) -> AsyncIterator[KeyStore]:
    """A key store as the erasure runs it, on every partition, as the worker's principal."""
    options = client_options(settings, WORKER)
    async with producer(options) as prod:

        async def send(topic: str, key: bytes, value: bytes | None, partition: int) -> object:
            return await prod.send_and_wait(topic, value, key=key, partition=partition)

        def consumer() -> AIOKafkaConsumer:
            return AIOKafkaConsumer(**options, enable_auto_commit=False, group_id=None)

        store = KeyStore(
            kekfile.KekWatch(kek_path, "dev", print),
            KeyRecordCodec(serde_for(settings)),
            settings.topic_partitions,
            send=send,
            consumer=consumer,
        )
        async with following(store, set(range(settings.topic_partitions)), seconds=60):
            yield store


def test_a_shred_writes_a_tombstone_and_every_ring_forgets(
    local_runtime: Settings, keys_worker: WorkerProcess, kek_path: Path, uid: str
) -> None:
    ann, bob = Subject(uid, 1), Subject(uid, 2)
    _, key = post_key(keys_worker, ann.id)
    _, other = post_key(keys_worker, bob.id)

    async def shred() -> None:
        async with owner_store(local_runtime, kek_path) as store:
            assert await store.key_for(key["key_id"]) is not None  # read from the topic
            await store.shred(ann.id, [key["key_id"]])
            assert await store.key_for(key["key_id"]) is None
            assert await store.key_for(other["key_id"]) is not None

    asyncio.run(shred())
    assert stored(local_runtime, key["key_id"])[-1][1] is None  # the tombstone
    # The worker's ring applied it too: the subject has no key left there.
    assert http_json(f"{keys_worker.url}/subject-keys/{ann.id}")[1]["keys"] == []
    assert len(http_json(f"{keys_worker.url}/subject-keys/{bob.id}")[1]["keys"]) == 1


def test_an_erased_subject_gets_410(
    local_runtime: Settings, keys_worker: WorkerProcess, uid: str
) -> None:
    ann = Subject(uid, 3)
    produce(local_runtime, [ann.event(r.CustomerCreated, System.crm)])
    directive = r.SubjectDirective(
        directive_id=f"d-{uid}",
        subject_id=ann.id,
        request_id=f"R-{uid}",
        kind="suppressed",
        occurred_at=datetime.now(UTC),
    )
    produce(local_runtime, [(SUBJECT_DIRECTIVES, ann.id, directive)])
    wait_for(
        "the subject's suppression",
        lambda: http_json(f"{keys_worker.url}/consent/{ann.id}")[1].get("suppressed"),
    )
    status, body = post_key(keys_worker, ann.id)
    assert status == 410
    assert body["error"] == "subject erased"
    assert post_key(keys_worker, Subject(uid, 4).id)[0] == 200  # others are served


def kek_cli(settings: Settings, kek_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRIVOPS_HOME": str(settings.home), "PRIVOPS_KEK_FILE": str(kek_path)}
    return subprocess.run(
        [sys.executable, "-m", "privops.cli.main", "keys", "kek", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_restarted_worker_rebuilds_its_keys_from_the_topic_and_the_kek_guards_them(
    local_runtime: Settings, keys_worker: WorkerProcess, kek_path: Path, uid: str
) -> None:
    ann = Subject(uid, 5)
    _, before = post_key(keys_worker, ann.id)
    keys_worker.stop()
    restarted = start_worker(
        local_runtime, NAME, web_port=port(86), extra_env={"PRIVOPS_KEK_FILE": str(kek_path)}
    )
    keys_worker.proc = restarted.proc  # the module's fixture stops this one
    assert http_json(f"{restarted.url}/subject-keys/{ann.id}")[1]["keys"] == [before]
    assert post_key(restarted, ann.id) == (200, before)  # the same key, not a new one

    shown = kek_cli(local_runtime, kek_path, "show", "--stored", "--json")
    assert shown.returncode == 0, shown.stderr
    versions = json.loads(shown.stdout)["versions"]
    assert versions[0]["version"] == 1
    assert versions[0]["stored_keys"] >= 1
    assert kek_cli(local_runtime, kek_path, "rotate").returncode == 0
    refused = kek_cli(local_runtime, kek_path, "retire", "1")
    assert refused.returncode == 1
    assert "still wrapped under KEK version 1" in " ".join(refused.stderr.split())
    assert sorted(kekfile.load(kek_path).keys) == [1, 2]
    # New keys are wrapped under the new version at once.
    assert post_key(restarted, Subject(uid, 6).id)[1]["kek_version"] == 2
