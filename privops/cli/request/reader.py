"""Reading the worker's answers to the commands this CLI run published.

The end offsets of privacy.command-results are noted before anything is published, so
the answer, which can only come after its command, is at or past them: the CLI reads a
few records, never the topic's history, and matches them by command id. No consumer
group: nothing to commit, nothing left behind on the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from privops.adapters.acls import DPO
from privops.adapters.kafka import (
    Client,
    partitions_of,
    resolve,
    started,
    stop_client,
    unreachable,
)
from privops.core.errors import DecodeError, RuntimeUnavailable
from privops.core.records import CommandAnswer, CommandRejected, Record
from privops.core.request import Reason
from privops.core.topics import COMMAND_RESULTS

Decode = Callable[[bytes | None], Awaitable[Record]]
POLL_S = 0.5
PROVISIONAL: Final = frozenset(
    {
        Reason.unsigned,
        Reason.unknown_signer,
        Reason.revoked_key,
        Reason.bad_signature,
        Reason.unbound_signature,
        Reason.signer_mismatch,
        Reason.wrong_key,
    }
)
"""Rejections given before a command is decided: of an altered copy or one put on
another partition, whoever sent it, with the real command's id (``collect``)."""


class Fetcher(Protocol):
    """The one consumer call the reader needs (a fake one in tests)."""

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0) -> dict[Any, Any]: ...


class AnswerReader:
    def __init__(self, fetcher: Fetcher, decode: Decode) -> None:
        self._fetcher = fetcher
        self._decode = decode

    async def collect(self, keys: Mapping[str, bytes], wait: float) -> dict[str, CommandAnswer]:
        """The answers to the commands ``keys`` names (command id -> the message key it
        was sent under) that arrive within `wait` seconds, by command id.

        Records that are not answers, answers to other commands (another DPO's) and
        undecodable bytes are skipped: none of them is this run's business. So is an
        answer under another key than the command's: the worker answers a command under
        its own key, and a copy of it put on the topic under another (its bytes read by
        someone who may read privacy.commands) is rejected ``wrong_key`` with the same
        command id. Taken first, that rejection told the DPO a command the worker had
        accepted was refused, and they sent it again (review, session 44). A copy under
        the same key, on another partition or altered, is rejected before it is decided
        (``PROVISIONAL``): such a rejection is taken only if no other answer comes
        within the wait, so one of the CLI's own (a signers file without its key) is
        told the wait's length later.
        """
        wanted = set(keys)
        found: dict[str, CommandAnswer] = {}
        provisional: dict[str, CommandAnswer] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while wanted - found.keys():
            left = deadline - loop.time()
            if left <= 0:
                break
            batch = await self._fetcher.getmany(timeout_ms=max(1, int(min(left, POLL_S) * 1000)))
            for messages in batch.values():
                for message in messages:
                    answer = await self._answer(message.value)
                    if answer is None or answer.command_id not in wanted:
                        continue
                    if message.key != keys[answer.command_id]:
                        continue
                    if isinstance(answer, CommandRejected) and answer.reason in PROVISIONAL:
                        provisional.setdefault(answer.command_id, answer)
                    else:
                        found.setdefault(answer.command_id, answer)
        return {**provisional, **found}

    async def _answer(self, raw: bytes | None) -> CommandAnswer | None:
        try:
            record = await self._decode(raw)
        except DecodeError:
            return None
        return record if isinstance(record, CommandAnswer) else None


@asynccontextmanager
async def answer_reader(client: Client, decode: Decode) -> AsyncIterator[AnswerReader]:
    """A reader positioned at the current end of privacy.command-results, connected as
    ``client`` (``client_options(settings, default=DPO)``; a bare bootstrap address: as
    PRIVOPS_KAFKA_PRINCIPAL, else ``dpo``)."""
    options = resolve(client, default=DPO)
    bootstrap = str(options["bootstrap_servers"])
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await started(consumer, options)
    try:
        try:
            partitions = await _partitions(consumer, bootstrap)
            consumer.assign(partitions)
            for tp, offset in (await consumer.end_offsets(partitions)).items():
                consumer.seek(tp, offset)
        except KafkaError as exc:
            raise unreachable(options, exc) from exc
        yield AnswerReader(consumer, decode)
    finally:
        await stop_client(consumer)


async def _partitions(consumer: AIOKafkaConsumer, bootstrap: str) -> list[TopicPartition]:
    partitions = await partitions_of(consumer, COMMAND_RESULTS)
    if not partitions:
        raise RuntimeUnavailable(
            f"topic {COMMAND_RESULTS} does not exist on the Kafka broker at {bootstrap} (or "
            "this principal may not read it): create the topics with `privops topics "
            "create` (a worker creates them on start)"
        )
    return [TopicPartition(COMMAND_RESULTS, p) for p in sorted(partitions)]
