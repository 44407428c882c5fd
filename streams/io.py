"""Topics, encoding and the dead-letter path: how agents read and write records.

Every topic of the catalogue is declared here once, as bytes in and bytes out. Agents
call ``decode`` (which dead-letters what it cannot use and returns None) and ``output``
(sent with the agent's next flush, streams.state); timers, outside any agent, ``emit_all``
(sent at once).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from faust.types import Message, TopicT

from privops.adapters import metrics
from privops.adapters.avro import latest_schemas
from privops.adapters.serde import Serde
from privops.core.audit import step_time
from privops.core.errors import DecodeError, RegistryError
from privops.core.fieldcrypt import DataKey
from privops.core.personal import PersonalPath, personal_paths
from privops.core.records import DeadLetter, Record
from privops.core.sealing import personal_values_in, seal_record
from privops.core.topics import DEADLETTER, catalogue, events_topic, task_results_topic
from privops.core.vocab import System
from streams.app import app, settings
from streams.batching import Outgoing
from streams.state import state

log = logging.getLogger(__name__)

serde = Serde.for_settings(settings)

TOPICS: dict[str, TopicT] = {
    spec.name: app.topic(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
        config=dict(spec.config) or None,
    )
    for spec in catalogue(settings.topic_partitions)
}


def topic(name: str) -> TopicT:
    return TOPICS[name]


async def emit_all(name: str, items: Iterable[tuple[str, Record]]) -> None:
    """Encode each (key, record) and send them all to topic ``name`` now, together: a
    producer batch per partition (streams.batching), delivered when this returns.

    For a timer's records (the sweep's ticks): one awaited ``Topic.send`` each cost
    ~0.8 ms of CPU and a broker round trip, one after another, per overdue task."""
    records: list[Outgoing] = [
        (name, key.encode(), serde.encode(record), None) for key, record in items
    ]
    if records:
        await (await state.queue_all(records))


def output_datum(name: str, key: str, fullname: str, datum: dict[str, Any]) -> None:
    """Like ``output``, for a record the caller holds as its Avro field dict."""
    state.emit(name, key.encode(), serde.encode_datum(fullname, datum))


def output(name: str, key: str | bytes | None, record: Record | None, *, seal: bool = True) -> None:
    """Encode ``record`` and send it, keyed, to topic ``name`` with the agent's flush;
    None is a tombstone (a compacted topic's "nothing under this key any more").

    Its personal values (a task's identifiers, a notification's document and export
    locations) are sealed under the subject's storage key at the flush (streams.state,
    privops.core.sealing); the subject is the record's ``subject_id``, else its key.
    ``seal=False``: sent as it is, for a record signed as written (a command the worker
    issues itself, whose marked fields hold privops' own words)."""
    raw_key = key.encode() if isinstance(key, str) else key
    if record is None:
        state.emit(name, raw_key, None)
        return
    subject = _subject_of(record, raw_key) if seal and _personal(record) else None
    if subject is None:
        state.emit(name, raw_key, serde.encode(record))
        return

    def sealed(data_key: DataKey | None) -> bytes:
        return serde.encode(seal_record(record, subject, data_key, _paths_of(type(record))))

    state.emit_sealed(name, raw_key, subject, sealed, lambda: serde.encode(record))


def _personal(record: Record) -> bool:
    """Whether ``record`` holds a personal value (its type's marked paths, not empty)."""
    paths = _paths_of(type(record))
    return bool(paths) and personal_values_in(record.model_dump(mode="python"), paths)


@functools.cache
def _paths_of(model: type[Record]) -> tuple[PersonalPath, ...]:
    committed = latest_schemas(settings.schema_dir).get(model.fullname())
    return personal_paths(committed.schema) if committed is not None else ()


def _subject_of(record: Record, key: bytes | None) -> str | None:
    subject = getattr(record, "subject_id", None)
    if isinstance(subject, str) and subject:
        return subject
    return key.decode(errors="replace") if key else None


REGISTRY_RETRY_MAX_SECONDS = 30.0

SYSTEMS_TOPICS: frozenset[str] = frozenset(
    [*(events_topic(s) for s in System), *(task_results_topic(s) for s in System)]
)
"""What the business systems write: their events and their answers, whose personal
fields (names, addresses, export locations) are plaintext until every producer seals
them. Bytes of theirs that do not decode (an unknown or untrusted schema, an invalid
record, garbage) cannot be checked for plaintext, so a dead letter does not keep them
(``decode``), as it keeps no event with a plaintext personal field (agents.ingest.refuse):
a dead letter is never shredded with its subject's key. The topic, partition and offset
find the original, kept on its topic for the topic's retention."""
UNREAD = "bytes from a business system that did not decode may hold personal data in plaintext"


async def decode(message: Message, consumer: str) -> Record | None:
    """The record in ``message``, or None after dead-lettering it with the reason.

    A registry that is down is not the message's fault: the agent waits and retries
    (with backoff; /health reports the registry meanwhile) instead of dead-lettering
    good input or stopping; it gives up (``Abandoned``) if the partitions move meanwhile.
    """
    delay = 0.5
    while True:
        try:
            return await serde.decode_async(message.value)
        except DecodeError as exc:
            unread = message.topic in SYSTEMS_TOPICS
            dead_letter(
                message, consumer, exc.reason, exc.detail, keep_value=not unread, why=UNREAD
            )
            return None
        except RegistryError as exc:
            log.warning("schema registry unavailable (%s); retrying in %.1f s", exc, delay)
            await state.backoff(delay)  # Abandoned once the partitions move
            delay = min(delay * 2, REGISTRY_RETRY_MAX_SECONDS)


DEAD_LETTER_KEY_BYTES = 1024
DEAD_LETTER_VALUE_BYTES = 512 * 1024
"""The most of an input's key and value a dead letter copies: an input near the broker's
record limit, copied whole with its key (twice: the letter's own key is the input's)
and the error text, made a dead letter the broker refused, and the refusal stopped the
worker on every restart. A longer one is left out, and the error says so."""


def dead_letter(
    message: Message,
    consumer: str,
    reason: str,
    error: str,
    *,
    keep_value: bool = True,
    why: str = "personal data in plaintext",
) -> None:
    """Keep unusable input whole on privacy.deadletter, count it, and go on. Not kept:
    the value with ``keep_value=False`` (plaintext personal data, or bytes that may hold
    it, ``why``: a dead letter is not shredded with its subject's key), and a key or
    value over its limit above; the original stays on its topic for the topic's
    retention."""
    key, key_note = _kept(message.key, DEAD_LETTER_KEY_BYTES, "key")
    value, value_note = _kept(message.value, DEAD_LETTER_VALUE_BYTES, "value")
    if not keep_value and value is not None:
        value_note = f"; the value ({len(value)} bytes) is not kept ({why})"
        value = None
    letter = DeadLetter(
        original_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key,
        value=value,
        reason=reason,
        error=error[:2000] + key_note + value_note,
        consumer=consumer,
        failed_at=datetime.now(UTC),
    )
    metrics.count_deadletter(message.topic, reason)
    log.warning(
        "dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason
    )
    output(DEADLETTER, key, letter)
    from streams.audit import audit  # streams.audit sends through this module

    audit(
        actor=consumer,
        action="dead_lettered",
        cause=f"{message.topic}:{message.partition}:{message.offset}",
        # Dated by the input, not the clock: replayed after a crash, the same step must
        # be the same record, or `audit verify` reports the chain forked (review,
        # session 35).
        occurred_at=step_time(getattr(message, "timestamp", None), letter.failed_at),
        reason=f"{message.topic}[{message.partition}]@{message.offset}: {reason}",
        # One chain per consumer and partition: a chain is only ever advanced from the
        # partition whose table holds its head.
        chain=f"deadletter/{consumer}/{message.partition}",
    )


def _kept(data: object, limit: int, what: str) -> tuple[bytes | None, str]:
    """``data`` if it is bytes within ``limit``; else None, and a note for the error."""
    if not isinstance(data, bytes):
        return None, ""
    if len(data) > limit:
        return None, f"; the {what} ({len(data)} bytes, over {limit}) is not kept"
    return data, ""
