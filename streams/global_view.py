"""Global views: a whole compacted topic, held by every worker of the group.

Everything about a subject lives on the subject's partition, so almost nothing is
global. Two things are: the suppression list (keyed by identifier hash, so an erased
subject's key may belong to any subject's partition) and the request-id -> subject-id
index (which tells a worker, or the CLI, where a request lives). Each is a compacted
topic that every worker reads from the beginning with its own unassigned consumer (no
group): the worker that owns the writing partition updates its copy at once, and the
others see the write within a fetch (``FETCH_WAIT_MS`` at most). A view is ``ready``
once it has read up to the end offsets it found at start; the worker's health waits
for that.

Faust's GlobalTable would do the same job, but its standby-driven reading of global
changelogs has a history of workers silently missing records (faust-streaming issue
#212, robinhood/faust #716); a plain consumer of a compacted topic has no such mode.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from privops.adapters.kafka import stop_client
from streams.app import kafka_client, settings
from streams.state import state

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
# How long a view's fetch waits on the broker for PRIVOPS_FETCH_MIN_BYTES. Every command
# writes the request index, and every erasure the suppression list: with Kafka's
# one-byte default each such write was a fetch of its own on the event loop. Other
# workers see a write this much later at most; the writing worker at once.
FETCH_WAIT_MS = 100


class GlobalView:
    """The latest value per key of one compacted topic (str keys and values).

    The topic has the catalogue's partition count (privops.core.topics; the worker
    creates it at start), so every partition is assigned without a metadata query.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.data: dict[str, str] = {}
        self.ready = asyncio.Event()
        # The keys holding each value: the key itself while it is the only one (what a
        # Counter's count cost; a list only for a value held by several), so a subject's
        # requests are found without a pass over every request (``keys_of``).
        self._keys: dict[str, str | list[str]] = {}
        # This worker's puts whose flush has not handed their records over yet: the key's
        # value before (None: absent), put back if that flush is dropped.
        self._unsettled: dict[str, str | None] = {}
        state.on_outputs_settled(self._settle)

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def has_value(self, value: str) -> bool:
        """Whether some key holds ``value`` (the suppression list: an erased subject's ref)."""
        return value in self._keys

    def keys_of(self, value: str) -> tuple[str, ...]:
        """The keys holding ``value`` (the request index: a subject's requests), in the
        order they were set."""
        keys = self._keys.get(value)
        if keys is None:
            return ()
        return (keys,) if isinstance(keys, str) else tuple(keys)

    def clear(self) -> None:
        self.data.clear()
        self._keys.clear()
        self._unsettled.clear()

    def _set(self, key: str, value: str | None) -> None:
        old = self.data.pop(key, None) if value is None else self.data.get(key)
        if old == value:
            return
        if old is not None:
            self._unlink(key, old)
        if value is not None:
            self.data[key] = value
            self._link(key, value)

    def _link(self, key: str, value: str) -> None:
        held = self._keys.get(value)
        if held is None:
            self._keys[value] = key
        elif isinstance(held, str):
            self._keys[value] = [held, key]
        else:
            held.append(key)

    def _unlink(self, key: str, value: str) -> None:
        held = self._keys[value]
        if isinstance(held, str):
            del self._keys[value]
            return
        held.remove(key)
        if len(held) == 1:
            self._keys[value] = held[0]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def put(self, key: str, value: str) -> None:
        """Record ``key`` here at once, and on the topic (for every other worker) with the
        agent's next flush. If that flush is dropped (the partitions moving), the key is
        taken back here too: its input is replayed, and must find it missing to put it
        again. Before, the replay found it here and never sent it, so the topic, every
        other worker and any rebuilt one never learnt it (review, session 26: an erased
        person's new identifier, re-imported, missing from the suppression list)."""
        self._change(key, value)

    def remove(self, key: str, *, if_value: str | None = None) -> None:
        """``put``'s opposite: ``key`` is gone here at once, and a tombstone goes on the
        topic with the agent's next flush (taken back here if that flush is dropped).
        ``if_value``: only while ``key`` holds that value (a request id another subject
        took since stays theirs)."""
        if key in self.data and (if_value is None or self.data[key] == if_value):
            self._change(key, None)

    def _change(self, key: str, value: str | None) -> None:
        if key not in self._unsettled:
            self._unsettled[key] = self.data.get(key)
        self._set(key, value)
        state.emit(self.topic, key.encode(), None if value is None else value.encode())

    def _settle(self, handed_over: bool) -> None:
        """A flush handed its outputs over (the puts stand) or was dropped (undone)."""
        if not handed_over:
            for key, before in self._unsettled.items():
                self._set(key, before)
        self._unsettled.clear()

    async def follow(self) -> None:
        """Read the topic from the beginning, then keep reading (runs for the worker's life)."""
        while True:
            try:
                await self._follow_once()
            except (KafkaError, OSError) as exc:
                log.warning(
                    "global view %s: %s; reconnecting in %.0f s", self.topic, exc, RETRY_SECONDS
                )
                await asyncio.sleep(RETRY_SECONDS)

    def consumer(self) -> AIOKafkaConsumer:
        """A consumer of the whole topic, in no group, whose fetches wait a little."""
        return AIOKafkaConsumer(
            **kafka_client,
            enable_auto_commit=False,
            group_id=None,
            isolation_level="read_committed",
            fetch_max_wait_ms=FETCH_WAIT_MS,
            fetch_min_bytes=settings.fetch_min_bytes,
        )

    async def _follow_once(self) -> None:
        consumer = self.consumer()
        await consumer.start()
        try:
            partitions = [TopicPartition(self.topic, p) for p in range(settings.topic_partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=5_000)
                for messages in batch.values():
                    for message in messages:
                        self._apply(message.key, message.value)
                if not self.ready.is_set() and await _reached(consumer, ends):
                    log.info("global view %s ready: %d keys", self.topic, len(self.data))
                    self.ready.set()
        finally:
            await stop_client(consumer)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        text = key.decode(errors="replace")
        self._unsettled.pop(text, None)  # the topic's value stands, whatever a drop undoes
        self._set(text, None if value is None else value.decode(errors="replace"))


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
