"""The consent-throughput baselines (DESIGN.md section 9): plain aiokafka, no Faust, no tables.

Two loops over the same six `<system>.events` topics the worker reads:
- consume + decode: what reading and Avro-decoding the input costs;
- consume + decode + produce: the same, then the records the worker publishes for each
  event, computed by the same pure core (consent facts folded into the subject's state
  held in a dict; one ConsentState per event that changed consent, one chained
  AuditEvent per change), encoded with the project's Serde and sent to scratch topics
  (never the worker's), the sends of one fetch awaited together. This is the honest
  "what Kafka and Avro cost" figure the worker's rate is compared with.

Both run in the bench's own process, alone, so `time.process_time` around the loop is
their CPU. The produce loop also times its two pure steps (computing the records with
the core, Avro-encoding them) so the report can say how much of its cost is Kafka.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from privops.adapters.serde import Serde
from privops.core import consent as rules
from privops.core import records as r
from privops.core.audit import (
    CURRENT_KEY_VERSION,
    GENESIS,
    chain_key,
    derive_audit_id,
    next_fields,
    redact,
)
from privops.core.facts import admit_ingest, consent_facts, consent_state_fields
from privops.core.identity import subject_ref
from privops.core.topics import AUDIT, CONSENT_STATE
from privops.tools.bench.cpu import own_cpu, per_unit_us
from privops.tools.bench.kafka_io import partitions

# Where the produce baseline writes: copies of the worker's output topics, same config.
SCRATCH_TOPICS: dict[str, str] = {
    CONSENT_STATE: "privops.bench.consent-state",
    AUDIT: "privops.bench.audit",
}
BASELINE_NAMESPACE = "privops-bench-baseline"
DECODE_ONLY = "consume+decode"
DECODE_PRODUCE = "consume+decode+produce"
READ_GIVE_UP_S = 120.0
Output = tuple[str, str, dict[str, Any]]
"""(topic, key, datum) the pipeline publishes, as the worker encodes it: plain Avro field
dicts (privops.core.facts.consent_state_fields, privops.core.audit.next_fields)."""
OUTPUT_RECORDS: dict[str, type[r.Record]] = {
    CONSENT_STATE: r.ConsentState,
    AUDIT: r.AuditEvent,
}


@dataclass(frozen=True)
class BaselineRun:
    """One baseline loop: events read, wall seconds, its CPU seconds, records produced,
    and the seconds spent computing the records (pure core) and encoding them."""

    name: str
    events: int
    seconds: float
    cpu_seconds: float
    produced: int = 0
    core_seconds: float = 0.0
    encode_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us(self) -> float | None:
        return per_unit_us(self.cpu_seconds, self.events)


class ConsentOutputs:
    """The worker's consent outputs for each upstream event, from the pure core alone.

    State lives in dicts (no tables, nothing persisted): what the produce baseline needs
    to publish the same records, not a second worker.
    """

    def __init__(self, *, pseudonym_key: bytes, audit_key: bytes, namespace: str) -> None:
        self._pseudonym_key = pseudonym_key
        self._namespace = namespace
        self._consent: dict[str, rules.SubjectConsent] = {}
        self._refs: dict[str, str] = {}
        self._audit_key = audit_key
        self._heads: dict[str, tuple[int, str]] = {}

    def outputs(self, topic: str, record: r.Record) -> list[tuple[str, str, r.Record]]:
        """What the worker publishes for `record` read from `topic`, as records."""
        return [
            (out_topic, key, OUTPUT_RECORDS[out_topic].model_validate(out))
            for out_topic, key, out in self.produce(topic, record)
        ]

    def produce(self, topic: str, record: r.Record) -> list[Output]:
        """What the worker publishes for `record` read from `topic`, in the form the
        worker encodes it from (raises WrongTopic)."""
        event = admit_ingest(topic, record)
        if not isinstance(event, r.UpstreamEvent):
            return []
        sid = event.subject_id
        # The worker also leaves out what the data map does not let a system record
        # (``agents.ingest.taken_parts``); the bench's inputs carry nothing of that kind
        # (tests/unit/test_bench.py), so the records are the same.
        facts = consent_facts(event)
        state = self._consent.get(sid)
        new_state, changes = rules.apply_all(state, sid, facts)
        if new_state is None:  # first sight, nothing asked: known, published once
            new_state = rules.SubjectConsent(subject_id=sid, updated_at=event.occurred_at)
            self._consent[sid] = new_state
            return [(CONSENT_STATE, sid, consent_state_fields(new_state, event.occurred_at))]
        self._consent[sid] = new_state
        if not changes:
            return []
        out: list[Output] = [self._audit(sid, change) for change in changes]
        at = max(fact.occurred_at for fact in facts)
        out.append((CONSENT_STATE, sid, consent_state_fields(new_state, at)))
        return out

    def _audit(self, sid: str, change: rules.ConsentChange) -> Output:
        sref = self._refs.get(sid)
        if sref is None:
            sref = self._refs[sid] = subject_ref(self._pseudonym_key, sid)
        chain = chain_key(None, sref, self._namespace)
        labels = change.metric_labels()
        action = "consent_changed"
        cause = f"{change.event_id}:{labels['purpose']}:{labels['channel']}"
        reason = (
            f"{labels['purpose']}/{labels['channel']}: {change.reason} (evidence {change.evidence})"
        )
        head = self._heads.get(chain, (0, GENESIS))
        fields = next_fields(
            head,
            key=self._audit_key,
            key_version=CURRENT_KEY_VERSION,
            chain=chain,
            audit_id=derive_audit_id(cause, action, str(head[0] + 1)),
            actor=change.source.value,
            action=action,
            occurred_at=change.occurred_at,
            subject_ref=sref,
            before=change.before.value if change.before else None,
            after=labels["status"],
            reason=redact(reason[:500])[:500],
        )
        self._heads[chain] = (head[0] + 1, str(fields["hash"]))
        return AUDIT, chain, fields


def encode(serde: Serde, topic: str, datum: dict[str, Any]) -> bytes:
    """Framed Avro of one output, encoded the way the worker encodes it."""
    return serde.encode_datum(OUTPUT_RECORDS[topic].fullname(), datum)


async def consume_decode(
    bootstrap: str,
    serde: Serde,
    topics: Sequence[str],
    pipeline: ConsentOutputs | None = None,
) -> BaselineRun:
    """Read every message on `topics` from the start and decode it; with `pipeline`,
    also produce its outputs to the scratch topics, awaiting each fetch's sends at once.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await consumer.start()
    await producer.start()
    try:
        tps = await partitions(consumer, topics)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        total = sum((await consumer.end_offsets(tps)).values())
        count = produced = 0
        core_s = encode_s = 0.0
        cpu_started, started = own_cpu(), time.perf_counter()
        while count < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10000)
            if not batch and time.perf_counter() - started > READ_GIVE_UP_S:
                break
            pending = []
            for messages in batch.values():
                for msg in messages:
                    record = serde.decode(msg.value)
                    count += 1
                    if pipeline is None:
                        continue
                    computing = time.perf_counter()
                    outputs = pipeline.produce(msg.topic, record)
                    encoding = time.perf_counter()
                    values = [encode(serde, topic, out) for topic, _, out in outputs]
                    core_s += encoding - computing
                    encode_s += time.perf_counter() - encoding
                    for (topic, key, _), value in zip(outputs, values, strict=True):
                        pending.append(
                            await producer.send(SCRATCH_TOPICS[topic], value, key=key.encode())
                        )
            if pending:
                await asyncio.gather(*pending)
                produced += len(pending)
        seconds, cpu = time.perf_counter() - started, own_cpu() - cpu_started
    finally:
        await producer.stop()
        await consumer.stop()
    name = DECODE_ONLY if pipeline is None else DECODE_PRODUCE
    return BaselineRun(name, count, seconds, cpu, produced, core_s, encode_s)
