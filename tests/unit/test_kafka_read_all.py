"""``read_all`` reads a topic to its end or says it could not (review, session 25): the
audit CLI verifies and anchors what it returns, so a prefix taken for the whole topic
was an "OK" over records never read."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition

from privops.adapters import kafka
from privops.core.errors import RuntimeUnavailable

TOPIC = "privacy.audit"
TP = TopicPartition(TOPIC, 0)


@dataclass
class _Record:
    offset: int
    partition: int = 0
    timestamp: int = 0
    key: bytes = b"k"
    value: bytes = b"v"


class _Broker:
    """A consumer over one partition of ``end`` records, served ``per_fetch`` at a time;
    after ``stall_after`` records it serves nothing more (a leader moving, a slow
    broker)."""

    def __init__(
        self, end: int, per_fetch: int, stall_after: int | None = None, start: int = 0
    ) -> None:
        self.end, self.per_fetch, self.stall_after = end, per_fetch, stall_after
        self.log_start = self.at = start
        self.idle_fetches = 0
        self._client = self

    def __call__(self, **_options: Any) -> _Broker:
        return self

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def partitions_for_topic(self, _topic: str) -> set[int]:
        return {0}

    def assign(self, _tps: object) -> None: ...

    async def seek_to_beginning(self, *_tps: object) -> None: ...

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tps[0]: self.end}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tps[0]: self.log_start}

    async def position(self, _tp: object) -> int:
        return self.at

    async def getmany(self, *_tps: object, timeout_ms: int) -> dict[Any, Any]:
        limit = self.end if self.stall_after is None else self.stall_after
        upto = min(self.at + self.per_fetch, limit)
        if (
            self.idle_fetches < 2 and self.at == self.log_start + self.per_fetch
        ):  # two idle fetches mid-way
            self.idle_fetches += 1
            return {}
        served = [_Record(offset) for offset in range(self.at, upto)]
        self.at = upto
        return {TP: served} if served else {}


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(
        end: int, per_fetch: int, stall_after: int | None = None, start: int = 0
    ) -> _Broker:
        found = _Broker(end, per_fetch, stall_after, start)
        monkeypatch.setattr(kafka, "AIOKafkaConsumer", found)
        monkeypatch.setattr(kafka, "resolve", lambda _client: {})
        return found

    return install


async def test_a_pause_mid_topic_is_waited_out(broker: Any) -> None:
    """Before, the first empty fetch ended the read: 10 records of 1,000, no error."""
    broker(end=1000, per_fetch=10)
    out = await kafka.read_all({}, TOPIC, idle_ms=1)
    assert [c.offset for c in out] == list(range(1000))


async def test_a_broker_that_stops_serving_is_an_error_not_a_short_topic(broker: Any) -> None:
    broker(end=1000, per_fetch=10, stall_after=990)
    with pytest.raises(RuntimeUnavailable, match="up to 990 of 1000"):
        await kafka.read_all({}, TOPIC, idle_ms=1)


async def test_a_scan_says_where_each_partition_starts(broker: Any) -> None:
    """What retention removed shows as the log start: `audit verify` counts chains that
    began before it as aged out, not broken."""
    broker(end=1000, per_fetch=100, start=600)
    seen: list[int] = []
    spans = await kafka.scan({}, TOPIC, lambda c: seen.append(c.offset), idle_ms=1)
    assert spans == [kafka.Span(0, 600, 1000)]
    assert seen == list(range(600, 1000))


class _SlowStart:
    """A client whose start takes ``seconds`` (aiokafka's bootstrap waiting out a silent
    broker before it tries the next)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.stopped = False

    async def start(self) -> None:
        await asyncio.sleep(self.seconds)

    async def stop(self) -> None:
        self.stopped = True


async def test_a_start_gets_a_hosts_time_for_each_further_broker_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One broker: ``CONNECT_SECONDS``; aiokafka tries several one after another, so one
    silent broker of three must not fail a start the next would answer (diff review,
    session 35)."""
    monkeypatch.setattr(kafka, "CONNECT_SECONDS", 0.2)
    monkeypatch.setattr(kafka, "BOOTSTRAP_HOST_SECONDS", 0.4)
    await kafka.started(_SlowStart(0.5), {"bootstrap_servers": "a:9092,b:9092"})
    alone = _SlowStart(0.5)
    with pytest.raises(RuntimeUnavailable, match="a:9092"):
        await kafka.started(alone, {"bootstrap_servers": "a:9092"})
    assert alone.stopped
