"""consent-throughput with ``--encrypt``: what decrypting personal fields costs the worker.

Two measured runs of one fresh worker over the same kind of events, each with contact
details (email and phone, the personal fields of every upstream event): once in
plaintext, once encrypted the way the connector SDK encrypts them (per-subject keys,
docs/crypto-shredding.md). The difference in CPU µs per event is the decryption (key
lookups included), as is, more steadily, the encrypted worker's own timer around
opening the fields (``open_us_per_event``). The encrypted run's keys are all on
``privacy.subject-keys`` before the worker starts, as the key service would have stored
them when each system first met the subject, so the window holds decryption only, not
key creation.

The bench writes those key records itself, with privops' own record, partition and
KEK (the runtime's), because creating 20,000 keys through the worker's key service
would take longer than the measurement. In a deployment the key service is the only
creator.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial

from aiokafka import AIOKafkaProducer

from privops.adapters import kek as kekfile
from privops.adapters.key_topic import KeyRecordCodec, subject_partition
from privops.connectors.encryption import RingKeySource, encrypt_record
from privops.core.records import UpstreamEvent
from privops.core.subject_keys import KeyRing, SubjectKey, create
from privops.core.topics import SUBJECT_KEYS
from privops.tools.bench.group import GroupRun, run_group
from privops.tools.bench.inputs import Message, consent_events, encode_events
from privops.tools.bench.kafka_io import produce
from privops.tools.bench.measure import OPEN_PERSONAL_FIELDS, Result
from privops.tools.bench.runtime import BenchRuntime

SCENARIO = "consent-throughput"
PLAINTEXT = "1 worker, contact details in plaintext"
ENCRYPTED = "1 worker, contact details encrypted"


def encrypted(
    events: Sequence[UpstreamEvent], kek: kekfile.KekFile
) -> tuple[list[UpstreamEvent], list[SubjectKey]]:
    """``events`` with their personal fields encrypted under one main key per subject,
    and the key records that must be stored first."""
    made: list[SubjectKey] = []
    ring = KeyRing(kek.unwrapper())

    def new_key(subject_id: str, scope: str) -> SubjectKey:
        record, _ = create(subject_id, scope, kek.current(), datetime.now(UTC))
        made.append(record)
        return record

    keys = RingKeySource(ring, new_key)
    return [encrypt_record(event, keys) for event in events], made


async def store_keys(rt: BenchRuntime, records: Sequence[SubjectKey]) -> None:
    """The key records on ``privacy.subject-keys``: keyed by key id, on the subject's
    partition, acknowledged by the broker before any event under them is produced."""
    codec = KeyRecordCodec(rt.serde)
    partitions = rt.settings.topic_partitions
    producer = AIOKafkaProducer(bootstrap_servers=rt.bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        pending = [
            await producer.send(
                SUBJECT_KEYS,
                value=codec.encode(record),
                key=record.key_id.encode(),
                partition=subject_partition(record.subject_id, partitions),
            )
            for record in records
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def encryption_cost(
    rt: BenchRuntime, *, events: int, subjects: int, timeout: float
) -> list[Result]:
    """The plaintext run, then the encrypted one, each on its own new events."""
    kek = kekfile.provider(rt.settings.kek_file, "dev", rt.say)
    runs: dict[str, GroupRun] = {}
    for name in (PLAINTEXT, ENCRYPTED):
        tag = uuid.uuid4().hex[:6]
        batch = consent_events(events, subjects, tag, contact=True)
        keys: list[SubjectKey] = []
        if name == ENCRYPTED:
            rt.say(f"{name}: encrypting {events:,} events under {subjects:,} subject keys")
            batch, keys = encrypted(batch, kek)
        load = partial(_load, rt, keys, encode_events(rt.serde, batch))
        rt.say(f"{name}: measured on {events:,} new events")
        runs[name] = run_group(rt, 1, events, timeout, prepare=load)
    return [_row(runs[ENCRYPTED], runs[PLAINTEXT], subjects)]


def _load(rt: BenchRuntime, keys: Sequence[SubjectKey], messages: Sequence[Message]) -> None:
    """The keys first (a key is stored before any data under it), then the events."""
    if keys:
        asyncio.run(store_keys(rt, keys))
    asyncio.run(produce(rt.bootstrap, messages))


def _row(enc: GroupRun, plain: GroupRun, subjects: int) -> Result:
    cost = (
        enc.cpu_us - plain.cpu_us if enc.cpu_us is not None and plain.cpu_us is not None else None
    )
    return Result(
        SCENARIO,
        f"{ENCRYPTED} vs {PLAINTEXT}",
        enc.rate,
        plain.rate,
        "events/s",
        "reported",
        None,
        {
            "subjects": subjects,
            "events_each": enc.backlog,
            "finished": enc.finished and plain.finished,
            "decrypt_cpu_us_per_event": round(cost, 1) if cost is not None else None,
            # The encrypted worker's own timer around opening the fields: steadier than
            # the difference of two workers' CPU, which the machine's spread moves.
            "open_us_per_event": enc.timers_us().get(OPEN_PERSONAL_FIELDS),
            "window_seconds": [round(plain.seconds, 2), round(enc.seconds, 2)],
        },
        cpu_us=enc.cpu_us,
        baseline_cpu_us=plain.cpu_us,
        baseline_name=PLAINTEXT,
    )
