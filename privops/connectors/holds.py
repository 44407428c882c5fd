"""Legal holds at one system: ``privacy.legal-holds.<system>`` read whole, told to the connector.

The topic is compacted and keyed by subject id; each record (``LegalHoldState``) is the
whole of what legal holds keep of one subject at this system, and a tombstone says
nothing is held there any more. So it is read like the worker's global views
(streams.global_view): every partition assigned, from the earliest offset, in no
consumer group (the system's principal may read the topic, and needs no group for it).
Each record goes to ``Connector.hold``, each tombstone to ``Connector.release``.

The same topic carries, under a request's preservation key (``topics.preservation_key``,
which no subject id can be), what an open access request's search details must keep
from deletion by age (``SearchPreserved``, to ``Connector.preserve``); its tombstone
goes to ``Connector.end_preservation``, and the requests the connector preserves for
from before (``Connector.preserving``) that the topic no longer has are ended as stale
holds are released.

``ready`` is set once the topic is read up to the end offsets found at start, every
record read applied, and the holds the connector kept from before that the topic no
longer has released (``Connector.holding``). Deletion by age must wait for it: before,
a system starting would delete what a hold it had not read yet keeps. Once caught up,
the reader asks the end offsets again every ``CONFIRM_SECONDS`` and, having read to
them, is current as of when it asked; ``ready`` is cleared after ``STALE_SECONDS``
without such a confirmation (a broker the client rides out without an error, leaders
it cannot reach), and set again once it has one. It is cleared
while a record cannot be applied (a key that cannot be had now, the registry down, the
connector raising, a value that does not decode), and the record is tried again until
it applies; and it is cleared when the reading ends (``stop``, or an error). A keyed
record whose value does not decode (a schema version newer than this connector's, a
registry that does not know the id yet) may be a hold: skipped, its subject would be
released as stale at the next start and its data deleted by age, so it waits like the
others, and so does all deletion by age (the alert on ``privops_connector_holds_ready``
says so). Skipped are only the records that say what they are and are not this
system's hold: another system's, keyed by another subject, another record type, or no
key (a compacted topic refuses those). A record whose identifiers cannot be opened
ever (the key destroyed by an erasure, a ciphertext that does not authenticate) still
reaches the connector, with its subject id and categories and no identifiers; a later
record sealed under a key that lives (the worker writes one after an erasure) brings
them back.

The partitions are those the topic has when the reading (re)connects: partitions
added while it runs are read from the next start (the topic is co-partitioned with the
worker's and its count is not changed while anything runs: docs/connectors.md).

Nothing personal is logged: partitions, offsets, reasons and counts, never a subject
id or an identifier.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, Final, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from privops.adapters.kafka import partitions_of, stop_client
from privops.connectors.base import Connector, honours_holds, preserves_searches, unpreserving
from privops.connectors.metrics import (
    HOLD_OUTCOMES,
    HOLD_RECORDS,
    HOLDS,
    HOLDS_IGNORED,
    HOLDS_READY,
)
from privops.core.errors import DecodeError, PrivopsError, RegistryError
from privops.core.records import Erase, LegalHoldState, Record, SearchPreserved
from privops.core.topics import legal_holds_topic, preservation_key, preserved_request
from privops.core.vocab import Category, System

log = logging.getLogger(__name__)

RETRY_SECONDS: Final = 2.0
RETRY_MAX_SECONDS: Final = 30.0
FETCH_WAIT_MS: Final = 300
CONFIRM_SECONDS: Final = 10.0
"""How often a reader that has caught up asks the topic's end offsets again."""
CONFIRM_TIMEOUT_SECONDS: Final = 5.0
"""How long it waits for them: no answer counts as not confirmed."""
STALE_SECONDS: Final = 45.0
"""How long a reader may go without confirming that it has applied everything written to
the topic up to some moment before ``ready`` is cleared: a broker the client cannot
reach (an outage it rides out without an error, partition leaders cut off) keeps
deletion by age waiting instead of running on holds it may not have."""

Decode = Callable[[bytes | None], Awaitable[Record]]
Held = TypeVar("Held", LegalHoldState, SearchPreserved)


class Open(Protocol):
    """Opens a record's personal fields (the runner's key source): ``DecodeError`` when
    they never will (a destroyed key, not authentic), another ``PrivopsError`` when the
    key cannot be had now."""

    def __call__(self, record: Held, about: str, /) -> Awaitable[Held]: ...


class _NotNow(Exception):
    """A record that cannot be applied now, but may later: tried again."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class HoldReader:
    """Follows one system's legal-holds topic for the runner's life (see the module)."""

    def __init__(self, connector: Connector, decode: Decode, open_: Open) -> None:
        self.connector = connector
        self.system = System(connector.system)
        self.topic = legal_holds_topic(self.system)
        self.ready = asyncio.Event()
        self.kept: dict[str, tuple[frozenset[Category], datetime]] = {}
        """Per subject whose latest record on the topic is a hold (not a tombstone), the
        categories it keeps here, and when privops wrote that record."""
        self._seen: set[str] = set()
        """Keys a hold, preservation or tombstone has been applied for (subject ids, and
        preservation keys)."""
        self.honoured = honours_holds(connector)
        self.preserves = preserves_searches(connector)
        self.preserved: set[str] = set()
        """Request ids whose latest record on the topic preserves a search here."""
        self._told_unpreserved = False
        self._decode = decode
        self._open = open_
        self._positions: dict[TopicPartition, int] = {}
        self._caught_up = False
        self._confirmed_at = 0.0
        """When the end offsets were taken that this reading has since applied up to."""
        self._asked_at = 0.0
        self._target: tuple[float, dict[TopicPartition, int]] | None = None
        """End offsets asked for (when) and not reached yet."""
        for outcome in HOLD_OUTCOMES:
            HOLD_RECORDS.labels(self.system, outcome)
        HOLDS.labels(self.system).set(0)
        HOLDS_READY.labels(self.system).set(0)
        HOLDS_IGNORED.labels(self.system).set(0 if self.honoured else 1)

    def blocks(self, task: Erase) -> frozenset[Category]:
        """The categories a legal hold read here keeps that ``task`` would erase: the
        subject's held categories it does not keep, among those it lists (all, when it
        lists none), when privops wrote the hold at or after it issued this attempt.
        privops moves a newly held category to ``keep`` when it re-sends the task
        (privops.core.retries); an attempt planned before the hold, still waiting in a
        system's backlog, must not be executed meanwhile. An attempt issued after the
        hold was written was planned knowing it (both times are privops' clock)."""
        found = self.kept.get(task.subject_id)
        if found is None:
            return frozenset()
        held, written = found
        if written < task.issued_at:
            return frozenset()
        kept = {k.category for k in task.keep}
        listed = set(task.categories)
        return frozenset(c for c in held if c not in kept and (not listed or c in listed))

    @property
    def held(self) -> set[str]:
        """Subject ids whose latest record on the topic is a hold (not a tombstone)."""
        return set(self.kept)

    def say_if_ignored(self) -> None:
        """Warn, once at start, that this connector keeps nothing for a legal hold."""
        if self.honoured:
            return
        log.warning(
            "connector %s does not implement hold and release: legal holds on %s are not "
            "applied, and if the system deletes data by age (privops ropa lists the "
            "periods) it deletes held data (docs/connectors.md, "
            '"Legal holds and deletion by age")',
            self.system,
            self.topic,
        )

    async def follow(self, client: Mapping[str, Any], stop: asyncio.Event) -> None:
        """Read the topic (from the start, then on from where it stopped after a broken
        connection) until ``stop`` is set."""
        self.say_if_ignored()
        delay = RETRY_SECONDS
        try:
            while not stop.is_set():
                try:
                    await self._follow_once(client, stop)
                except (KafkaError, OSError, _NotNow) as exc:
                    # Records written meanwhile are unread: deletion by age waits until
                    # the reading has caught up again.
                    delay = RETRY_SECONDS if self._caught_up else delay
                    self._not_ready()
                    why = exc.why if isinstance(exc, _NotNow) else type(exc).__name__
                    log.warning("%s: %s; reading again in %.0f s", self.topic, why, delay)
                    await stopped(stop, delay)
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
        finally:
            # Not followed any more (stopped, cancelled, failed): a hold written from now
            # on would not be applied, so deletion by age must not go on.
            self._not_ready()

    def consumer(self, client: Mapping[str, Any]) -> AIOKafkaConsumer:
        """A consumer of the whole topic, in no group."""
        return AIOKafkaConsumer(
            **client,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )

    async def _follow_once(self, client: Mapping[str, Any], stop: asyncio.Event) -> None:
        self._caught_up = False
        consumer = self.consumer(client)
        await consumer.start()
        try:
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            for tp in partitions:
                if tp in self._positions:  # a connection broken since: on from there
                    consumer.seek(tp, self._positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            # What the connector holds, read before the end offsets: a hold it has that is
            # not in the topic up to them was there before them, so is stale unless read.
            # Read after, it could take in one another instance applied from a record
            # past them, which this reading has not reached yet (a shared holds table).
            kept: set[str] = set()
            if not await self._until_applied(partial(self._holding, kept), stop):
                return
            asked = time.monotonic()
            ends = dict(await consumer.end_offsets(partitions))
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=500)
                for tp, messages in batch.items():
                    for message in messages:
                        if not await self._until_applied(partial(self.apply, message), stop):
                            return
                        self._positions[tp] = message.offset + 1
                if self._caught_up:
                    await self._confirm(consumer, partitions)
                elif await _reached(consumer, ends):
                    if not await self._until_applied(partial(self._release_stale, kept), stop):
                        return
                    self._caught_up = True
                    self._confirmed_at, self._asked_at, self._target = asked, 0.0, None
                    log.info(
                        "%s read: %d subjects held here%s",
                        self.topic,
                        len(self.kept),
                        "" if self.honoured else " (not applied: the connector ignores holds)",
                    )
                    self._maybe_ready()
        finally:
            await stop_client(consumer)

    async def _confirm(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        """Keep confirming, once caught up, that everything written up to a recent moment
        is applied: the end offsets are asked again every ``CONFIRM_SECONDS``, and once
        the reading reaches them, it is current as of when they were asked. Not current
        for ``STALE_SECONDS``: ``ready`` cleared until it is again (a broker error, as
        ever, ends the connection and is retried)."""
        now = time.monotonic()
        if self._target is not None and await _reached(consumer, self._target[1]):
            self._confirmed_at, self._target = self._target[0], None
        if self._target is None and now - self._asked_at >= CONFIRM_SECONDS:
            self._asked_at = now
            try:
                ends = await asyncio.wait_for(
                    consumer.end_offsets(partitions), CONFIRM_TIMEOUT_SECONDS
                )
            except TimeoutError:
                log.warning("%s: the end offsets were not answered", self.topic)
            else:
                self._target = (now, dict(ends))
        if not self._fresh() and self.ready.is_set():
            log.warning(
                "%s: not confirmed current for %.0f s; deletion by age paused until it is",
                self.topic,
                STALE_SECONDS,
            )
            self._not_ready()
        else:
            self._maybe_ready()

    def _fresh(self) -> bool:
        return time.monotonic() - self._confirmed_at <= STALE_SECONDS

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """Every partition of the topic, as the broker's metadata has them now (the
        worker creates the topic; its count is the worker's, not this host's setting)."""
        found = await partitions_of(consumer, self.topic)
        if not found:
            raise _NotNow("the topic is not there, or this principal may not read it")
        return [TopicPartition(self.topic, p) for p in sorted(found)]

    async def _until_applied(
        self, step: Callable[[], Awaitable[None]], stop: asyncio.Event
    ) -> bool:
        """``step`` done, tried again with backoff while it cannot be now (``ready``
        cleared meanwhile: deletion by age waits); False if ``stop`` came first."""
        delay = RETRY_SECONDS
        while True:
            try:
                await step()
            except _NotNow as exc:
                if self.ready.is_set():
                    log.warning("%s: deletion by age paused until it applies", self.topic)
                self._not_ready()
                log.warning("%s: %s; trying again in %.0f s", self.topic, exc.why, delay)
                if await stopped(stop, delay):
                    return False
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            else:
                self._maybe_ready()
                return True

    def _maybe_ready(self) -> None:
        """``ready`` set if the reading has caught up, applied every record so far, and
        confirmed lately that it is current."""
        if self._caught_up and self._fresh() and not self.ready.is_set():
            self.ready.set()
            HOLDS_READY.labels(self.system).set(1)

    def _not_ready(self) -> None:
        self.ready.clear()
        HOLDS_READY.labels(self.system).set(0)

    async def apply(self, message: Any) -> None:
        """One record of the topic, told to the connector. ``_NotNow`` when it cannot be
        applied now (tried again), a value that does not decode included; a record that
        decodes and is not this system's hold is skipped."""
        where = f"partition {message.partition} offset {message.offset}"
        if message.key is None:
            self._skip(where, "no key")
            return
        subject = message.key.decode(errors="replace")
        if message.value is None:
            await self._release(subject, where)
            return
        try:
            record = await self._decode(message.value)
        except DecodeError as exc:
            # Under a subject's key, it may be their hold: skipped, it would be released as
            # stale at the next start, and deletion by age would take what it keeps.
            self._count("failed")
            hint = (
                ": newer than this connector's schemas? upgrade it"
                if exc.reason == "unknown_schema"
                else ""
            )
            raise _NotNow(f"{where} does not decode ({exc.reason}{hint})") from None
        except RegistryError:
            raise _NotNow(f"the schema registry is unavailable ({where})") from None
        if (request_id := preserved_request(subject)) is not None:
            await self._preserve(request_id, record, where)
            return
        if not isinstance(record, LegalHoldState):
            self._skip(where, "not a legal hold state")
            return
        if record.system != self.system or record.subject_id != subject:
            self._skip(where, "another system's, or keyed by another subject")
            return
        state, opened = await self._opened(record, where)
        await self._tell(self.connector.hold(state), where)
        self.kept[subject] = (frozenset(record.categories), record.updated_at)
        self._seen.add(subject)
        self._count("ignored" if not self.honoured else "held" if opened else "unopened")

    async def _release(self, key: str, where: str) -> None:
        """A tombstone (or a hold or preservation the topic no longer has): the subject's
        holds released, or the request's preservation ended, as the key says."""
        request_id = preserved_request(key)
        if request_id is None:
            await self._tell(self.connector.release(key), where)
            self.kept.pop(key, None)
            honoured = self.honoured
        else:
            if self.preserves:
                await self._tell(self.connector.end_preservation(request_id), where)
            self.preserved.discard(request_id)
            honoured = self.preserves
        self._seen.add(key)
        self._count("released" if honoured else "ignored")

    async def _preserve(self, request_id: str, record: Record, where: str) -> None:
        """A ``SearchPreserved`` record, told to the connector with its details opened
        (without them when they never will open: it keeps what it kept)."""
        if not isinstance(record, SearchPreserved):
            self._skip(where, "not a search preservation")
            return
        if record.system != self.system or record.request_id != request_id:
            self._skip(where, "another system's, or keyed by another request")
            return
        if self.preserves:
            opened, ok = await self._opening(
                record, "search details", where, lambda rec: rec.model_copy(update={"search": {}})
            )
            await self._tell(self.connector.preserve(opened), where)
            outcome = "preserved" if ok else "unopened"
        else:
            # Neither opened (no key asked for) nor told: a connector with preserve and
            # no end_preservation would keep what it preserves for ever.
            self._say_unpreserved()
            outcome = "ignored"
        self.preserved.add(request_id)
        self._seen.add(preservation_key(request_id))
        self._count(outcome)

    def _say_unpreserved(self) -> None:
        """Warn, once, that this connector keeps nothing for a search preservation."""
        if self._told_unpreserved:
            return
        self._told_unpreserved = True
        log.warning(
            "connector %s does not implement %s: what an access request's search details "
            "find is not kept from its deletion by age, and may be deleted before it is "
            'searched (docs/connectors.md, "Searches kept from deletion by age")',
            self.system,
            " and ".join(unpreserving(self.connector)),
        )

    async def _opening(
        self, record: Held, fields: str, where: str, bare: Callable[[Held], Held]
    ) -> tuple[Held, bool]:
        """``record`` with its personal ``fields`` in plaintext, and whether they opened;
        when they never will, ``bare(record)`` (without them), with a warning that names
        no value; ``_NotNow`` while the key cannot be had."""
        try:
            return await self._open(record, f"{fields} at {where}"), True
        except DecodeError as exc:
            log.warning(
                "%s %s: its %s do not open (%s); passed on without them",
                self.topic,
                where,
                fields,
                exc.reason,
            )
            return bare(record), False
        except PrivopsError as exc:
            raise _NotNow(f"{where}: {exc}") from None

    async def _opened(self, record: LegalHoldState, where: str) -> tuple[LegalHoldState, bool]:
        """The record with its identifiers in plaintext, and whether they opened; when
        they never will, the record without them (its subject id and categories are
        enough to keep what the system found before)."""
        state, ok = await self._opening(record, "identifiers", where, _without_identifiers)
        if not ok:
            return state, False
        # A worker that had no key for the subject sends the fields blank.
        identifiers = {k: v for k, v in state.identifiers.items() if v}
        previous = {k: [v for v in vs if v] for k, vs in state.previous_identifiers.items()}
        previous = {k: vs for k, vs in previous.items() if vs}
        update = {"identifiers": identifiers, "previous_identifiers": previous}
        return state.model_copy(update=update), bool(identifiers or previous)

    async def _tell(self, call: Awaitable[None], where: str) -> None:
        """The connector's hold or release; whatever it raises (its database locked, a
        bug) leaves the record to be tried again, naming the exception's type only."""
        try:
            await call
        # The contract's boundary: a hold the connector cannot take now must not be
        # skipped, or its deletion by age would take what it keeps.
        except Exception as exc:  # noqa: BLE001
            self._count("failed")
            raise _NotNow(f"{where}: the connector raised {type(exc).__name__}") from None

    async def _holding(self, into: set[str]) -> None:
        """What the connector holds now (``Connector.holding``) and the requests it
        preserves for (``Connector.preserving``, as their keys), added to ``into``."""
        try:
            into.update(await self.connector.holding())
            into.update(preservation_key(r) for r in await self.connector.preserving())
        except Exception as exc:  # noqa: BLE001  (as _tell: tried again)
            raise _NotNow(f"the connector's holding() raised {type(exc).__name__}") from None

    async def _release_stale(self, kept: set[str]) -> None:
        """Release the holds the connector ``kept`` (before the end offsets were taken)
        that the topic no longer has. A subject whose tombstone this reading applied is
        released already: one held again since was held by another instance sharing the
        holds, from a record this reading has yet to reach."""
        stale = sorted(kept - self._seen)
        for key in stale:
            await self._release(key, "a hold no longer on the topic")
        if stale:
            log.info("%s: released %d holds the topic no longer has", self.topic, len(stale))

    def _count(self, outcome: str) -> None:
        HOLD_RECORDS.labels(self.system, outcome).inc()
        HOLDS.labels(self.system).set(len(self.kept) if self.honoured else 0)

    def _skip(self, where: str, why: str) -> None:
        self._count("skipped")
        log.warning("%s: skipped %s (%s)", self.topic, where, why)


def _without_identifiers(record: LegalHoldState) -> LegalHoldState:
    return record.model_copy(update={"identifiers": {}, "previous_identifiers": {}})


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def stopped(stop: asyncio.Event | None, seconds: float) -> bool:
    """Wait ``seconds``, less if ``stop`` is set meanwhile; whether it is."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
