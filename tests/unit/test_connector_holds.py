"""The runner's legal holds without Kafka: ``privacy.legal-holds.<system>`` read whole.

The topic stands in as partitions of (key, value) pairs served a record per fetch, so
readiness is seen to wait for the end offsets; keys are real (a ``KeyRing`` and a key
service, as in test_connector_sealing) and so is the runner's opening of the records;
only the Avro bytes are stood in for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

import privops.connectors.holds as holds_mod
import privops.connectors.runner as runner_mod
from privops.adapters.settings import Settings
from privops.connectors import Answer, Connector, ConnectorRunner, TransientRetry
from privops.connectors.base import honours_holds
from privops.connectors.encryption import RingKeySource, encrypt_record
from privops.connectors.ledger import Ledger
from privops.connectors.metrics import metric_value
from privops.core import records as r
from privops.core.errors import DecodeError, RuntimeUnavailable
from privops.core.fieldcrypt import DataKey, is_encrypted
from privops.core.topics import legal_holds_topic
from privops.core.vocab import Category, System
from tests.unit.test_connector_sealing import KeyService

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
FAST = TransientRetry(retries=1, first_delay=0.001)
TEL = System.telephony
TOPIC = legal_holds_topic(TEL)
ANN, BOB = "CUST-0001", "CUST-0002"
PHONES = {ANN: "+447700900001", BOB: "+447700900002"}


def state(subject: str, *categories: Category, system: System = TEL) -> r.LegalHoldState:
    return r.LegalHoldState(
        subject_id=subject,
        system=system,
        categories=list(categories or [Category.interactions]),
        hold_ids=["HOLD-1"],
        identifiers={"phone": PHONES.get(subject, "+447700900009"), "system_ref": "TEL-1"},
        previous_identifiers={"phone": ["+447700900099"]},
        updated_at=NOW,
    )


class Recording(Connector):
    """Telephony, recording what it is told; ``fail`` raises on that many calls first."""

    system = TEL

    def __init__(self, kept_before: Collection[str] = (), fail: int = 0) -> None:
        self.told: list[tuple[str, Any]] = []
        self.kept_before = list(kept_before)
        self.fail = fail

    async def hold(self, state: r.LegalHoldState) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError(f"db locked for {state.identifiers}")
        self.told.append(("hold", state))

    async def release(self, subject_id: str) -> None:
        self.told.append(("release", subject_id))

    async def holding(self) -> Collection[str]:
        return self.kept_before

    def subjects(self) -> list[tuple[str, str]]:
        return [(kind, s if isinstance(s, str) else s.subject_id) for kind, s in self.told]


class Topic:
    """The compacted topic as a consumer in no group sees it, a record per fetch."""

    def __init__(self, partitions: int = 2) -> None:
        self.logs: dict[int, list[tuple[bytes | None, bytes | None]]] = {
            p: [] for p in range(partitions)
        }
        self.records: dict[bytes, Any] = {}

    def put(self, partition: int, key: str | None, record: Any | None) -> None:
        value = None
        if record is not None:
            value = f"v{len(self.records)}".encode()
            self.records[value] = record
        self.logs[partition].append((None if key is None else key.encode(), value))

    def consumer(self, _client: Any) -> Consumer:
        return Consumer(self)


class Consumer:
    def __init__(self, topic: Topic) -> None:
        self.topic = topic
        self.at: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def partitions_for_topic(self, name: str) -> set[int] | None:
        return set(self.topic.logs) if name == TOPIC else None

    def assign(self, partitions: list[TopicPartition]) -> None:
        assert {tp.topic for tp in partitions} == {TOPIC}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at[tp] = offset

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.at[tp] = 0

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.topic.logs[tp.partition]) for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.at[tp]

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0.005)
        for tp, offset in sorted(self.at.items(), key=lambda i: i[0].partition):
            log = self.topic.logs[tp.partition]
            if offset < len(log):
                self.at[tp] = offset + 1
                key, value = log[offset]
                return {
                    tp: [
                        SimpleNamespace(partition=tp.partition, offset=offset, key=key, value=value)
                    ]
                }
        return {}


class Serde:
    def __init__(self, topic: Topic) -> None:
        self.topic = topic

    async def decode_async(self, value: bytes | None) -> r.Record:
        if value not in self.topic.records:
            raise DecodeError("undecodable", "no such schema")
        record: r.Record = self.topic.records[value]
        return record

    def encode(self, record: r.Record) -> bytes:
        return f"answer to {getattr(record, 'task_id', '?')}".encode()


class Flaky:
    """A key source whose first ``failures`` reads cannot be had (the key service down)."""

    def __init__(self, keys: RingKeySource, failures: int) -> None:
        self.keys = keys
        self.failures = failures

    def current_key(self, subject_id: str, scope: str) -> DataKey:
        return self.keys.current_key(subject_id, scope)

    def key(self, key_id: str) -> DataKey | None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeUnavailable("privops' key service is unreachable")
        return self.keys.key(key_id)


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(holds_mod, "RETRY_SECONDS", 0.01)


def runner_over(connector: Connector, topic: Topic, keys: Any) -> ConnectorRunner:
    runner = ConnectorRunner(connector, Settings(), keys=keys, retry=FAST)
    runner.serde = Serde(topic)  # type: ignore[assignment]
    runner.holds.consumer = topic.consumer  # type: ignore[method-assign,assignment]
    return runner


class Following:
    """The runner's hold reader running; what the connector had been told when the
    holds were first ready."""

    def __init__(self, runner: ConnectorRunner, connector: Recording) -> None:
        self.runner, self.connector = runner, connector
        self.stop = asyncio.Event()
        self.told_when_ready: list[tuple[str, str]] | None = None

    async def __aenter__(self) -> Following:
        self.task = asyncio.create_task(self.runner.holds.follow({}, self.stop))
        self.watch = asyncio.create_task(self._watch())
        await asyncio.wait_for(self.watch, 5)
        return self

    async def _watch(self) -> None:
        await self.runner.holds_ready.wait()
        self.told_when_ready = self.connector.subjects()

    async def __aexit__(self, *_exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 5)


def sealed(service: KeyService, record: r.LegalHoldState) -> r.LegalHoldState:
    return encrypt_record(record, service.reader())


async def test_holds_are_ready_only_once_the_topic_is_read_to_its_end() -> None:
    service, topic, connector = KeyService(), Topic(), Recording()
    topic.put(0, ANN, sealed(service, state(ANN)))
    topic.put(1, BOB, sealed(service, state(BOB)))
    topic.put(0, ANN, sealed(service, state(ANN, Category.interactions, Category.contact)))
    assert is_encrypted(topic.records[b"v0"].identifiers["phone"])
    runner = runner_over(connector, topic, service.reader())

    async with Following(runner, connector) as following:
        told = following.told_when_ready
        assert told is not None
        assert sorted(told) == [("hold", ANN), ("hold", ANN), ("hold", BOB)]
        assert metric_value("privops_connector_holds_ready", system="telephony") == 1

    anns = [s for kind, s in connector.told if s.subject_id == ANN]
    assert anns[0].identifiers == {"phone": PHONES[ANN], "system_ref": "TEL-1"}  # opened
    assert anns[0].previous_identifiers == {"phone": ["+447700900099"]}
    assert anns[1].categories == [Category.interactions, Category.contact]  # in its order
    assert runner.holds.held == {ANN, BOB}


async def test_a_tombstone_releases_and_a_hold_gone_from_the_topic_is_released() -> None:
    """A tombstone compacted away while the system was down leaves the hold it kept
    from before: released once the topic is read."""
    service, topic = KeyService(), Topic()
    connector = Recording(kept_before=[ANN, "CUST-GONE"])
    topic.put(0, ANN, sealed(service, state(ANN)))
    topic.put(1, BOB, sealed(service, state(BOB)))
    topic.put(1, BOB, None)
    runner = runner_over(connector, topic, service.reader())

    async with Following(runner, connector) as following:
        assert following.told_when_ready == [
            ("hold", ANN),
            ("hold", BOB),
            ("release", BOB),
            ("release", "CUST-GONE"),
        ]
    assert runner.holds.held == {ANN}
    assert metric_value("privops_connector_legal_holds", system="telephony") == 1


async def test_identifiers_that_never_open_still_reach_the_connector(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sealed under a key an erasure destroyed: the connector is told the subject and
    the categories (to keep what it found before), and the log names no one."""
    service, topic, connector = KeyService(), Topic(), Recording()
    topic.put(0, ANN, sealed(service, state(ANN)))
    service.shred(ANN)
    unopened = metric_value(
        "privops_connector_hold_records_total", system="telephony", outcome="unopened"
    )
    runner = runner_over(connector, topic, service.reader())

    with caplog.at_level(logging.INFO):
        async with Following(runner, connector) as following:
            assert following.told_when_ready == [("hold", ANN)]

    told = connector.told[0][1]
    assert (told.subject_id, told.categories) == (ANN, [Category.interactions])
    assert told.identifiers == {}
    assert told.previous_identifiers == {}
    assert "do not open (shredded_key)" in caplog.text
    assert ANN not in caplog.text
    assert "+44770090" not in caplog.text
    assert (
        metric_value("privops_connector_hold_records_total", system="telephony", outcome="unopened")
        == unopened + 1
    )


async def test_a_key_that_cannot_be_had_now_holds_deletion_back_until_it_can(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Passed on without identifiers, a hold would find nothing on a fresh system, and
    deletion by age would take what it keeps: the record waits for its key."""
    service, topic, connector = KeyService(), Topic(), Recording()
    topic.put(0, ANN, sealed(service, state(ANN)))
    keys = Flaky(service.reader(), failures=3)  # two tries per attempt (FAST)
    runner = runner_over(connector, topic, keys)

    with caplog.at_level(logging.INFO):
        async with Following(runner, connector) as following:
            assert following.told_when_ready == [("hold", ANN)]

    assert keys.failures == 0
    assert connector.told[0][1].identifiers["phone"] == PHONES[ANN]
    assert "trying again" in caplog.text
    assert ANN not in caplog.text


async def test_a_connector_that_raises_is_told_again_not_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, topic = KeyService(), Topic()
    connector = Recording(fail=2)
    topic.put(0, ANN, sealed(service, state(ANN)))
    failed = metric_value(
        "privops_connector_hold_records_total", system="telephony", outcome="failed"
    )
    runner = runner_over(connector, topic, service.reader())

    with caplog.at_level(logging.WARNING):
        async with Following(runner, connector) as following:
            assert following.told_when_ready == [("hold", ANN)]

    assert (
        metric_value("privops_connector_hold_records_total", system="telephony", outcome="failed")
        == failed + 2
    )
    assert "the connector raised RuntimeError" in caplog.text
    assert "+44770090" not in caplog.text  # the exception's message quoted the phone


async def cleared(event: asyncio.Event) -> None:
    while event.is_set():  # noqa: ASYNC110  (the reader's progress, no event for it)
        await asyncio.sleep(0.005)


async def test_a_hold_read_later_pauses_deletion_until_it_applies() -> None:
    service, topic = KeyService(), Topic()
    connector = Recording()
    topic.put(0, ANN, sealed(service, state(ANN)))
    runner = runner_over(connector, topic, service.reader())

    async with Following(runner, connector):
        connector.fail = 3
        topic.put(1, BOB, sealed(service, state(BOB)))
        await asyncio.wait_for(cleared(runner.holds_ready), 5)
        assert metric_value("privops_connector_holds_ready", system="telephony") == 0
        await asyncio.wait_for(runner.holds_ready.wait(), 5)

    assert connector.subjects() == [("hold", ANN), ("hold", BOB)]


async def test_records_that_are_not_this_systems_holds_are_skipped() -> None:
    service, topic, connector = KeyService(), Topic(), Recording()
    crm_state = state(ANN, system=System.crm)
    task = r.Erase(
        task_id="R-1:telephony:erase",
        request_id="R-1",
        subject_id=ANN,
        system=TEL,
        issued_at=NOW,
        identifiers={},
    )
    topic.put(0, ANN, crm_state)  # another system's hold
    topic.put(0, ANN, task)  # not a hold state
    topic.put(0, BOB, state(ANN))  # keyed by another subject: no tombstone could lift it
    topic.put(1, None, state(BOB))  # no key (a compacted topic refuses it anyway)
    skipped = metric_value(
        "privops_connector_hold_records_total", system="telephony", outcome="skipped"
    )
    runner = runner_over(connector, topic, service.reader())

    async with Following(runner, connector) as following:
        assert following.told_when_ready == []

    assert (
        metric_value("privops_connector_hold_records_total", system="telephony", outcome="skipped")
        == skipped + 4
    )
    assert runner.holds.held == set()


class Unknown(Serde):
    """As the real serde answers a record under a schema version newer than this
    connector's (or an id the registry does not have yet), until ``known``."""

    def __init__(self, topic: Topic) -> None:
        super().__init__(topic)
        self.known = False

    async def decode_async(self, value: bytes | None) -> r.Record:
        if not self.known:
            raise DecodeError("unknown_schema", "schema id 42 is not a committed version")
        return await super().decode_async(value)


async def test_a_hold_that_does_not_decode_holds_deletion_back_and_is_never_released(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker upgraded first, the topic compacted to its newer record: skipped, the
    hold the system kept from before would be released as stale and its data deleted
    by age (second review, session 28). It waits, and deletion by age with it."""
    service, topic = KeyService(), Topic()
    connector = Recording(kept_before=[ANN])
    topic.put(0, ANN, sealed(service, state(ANN)))
    runner = runner_over(connector, topic, service.reader())
    serde = Unknown(topic)
    runner.serde = serde  # type: ignore[assignment]
    stop = asyncio.Event()

    with caplog.at_level(logging.WARNING):
        following = asyncio.create_task(runner.holds.follow({}, stop))
        await asyncio.sleep(0.3)
        assert not runner.holds_ready.is_set()
        assert metric_value("privops_connector_holds_ready", system="telephony") == 0
        assert connector.told == []  # above all, no release of ANN
        serde.known = True  # the connector upgraded (here: the registry caught up)
        await asyncio.wait_for(runner.holds_ready.wait(), 5)
        stop.set()
        await asyncio.wait_for(following, 5)

    assert connector.subjects() == [("hold", ANN)]
    assert "offset 0 does not decode (unknown_schema" in caplog.text
    assert "upgrade it" in caplog.text


async def test_a_hold_applied_by_another_instance_after_the_end_offsets_is_not_released() -> None:
    """Instances sharing one holds table: what the connector holds is read before the
    end offsets are taken, so a hold another instance applied from a record past them
    is not taken for stale (second review, session 28); nor is a subject whose
    tombstone this reading applied released twice."""
    service, topic = KeyService(), Topic()
    topic.put(0, ANN, sealed(service, state(ANN)))
    topic.put(0, "CUST-0003", sealed(service, state("CUST-0003")))
    topic.put(0, "CUST-0003", None)
    bob = sealed(service, state(BOB))
    shared = Recording(kept_before=[ANN, "CUST-0003", "CUST-GONE"])

    class Racing(Consumer):
        raced = False

        async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            ends = await super().end_offsets(tps)
            if not self.raced:  # the reading's first ends (it asks again once caught up)
                self.raced = True
                topic.put(1, BOB, bob)  # written just after the ends were taken,
                shared.kept_before.append(BOB)  # and applied by the other instance at once
            return ends

    runner = runner_over(shared, topic, service.reader())
    runner.holds.consumer = lambda _client: Racing(topic)  # type: ignore[method-assign,assignment]

    async with Following(runner, shared) as following:
        assert following.told_when_ready is not None
        assert ("release", BOB) not in following.told_when_ready
    assert shared.subjects() == [
        ("hold", ANN),
        ("hold", "CUST-0003"),
        ("release", "CUST-0003"),
        ("release", "CUST-GONE"),
        ("hold", BOB),
    ]


async def test_holds_are_not_ready_once_the_reading_ends() -> None:
    """Stopped, or ended by an error of the runner: a purge keyed on the event would
    otherwise go on deleting with the holds no longer read (second review, session 28)."""
    service, topic = KeyService(), Topic()
    topic.put(0, ANN, sealed(service, state(ANN)))
    connector = Recording()
    runner = runner_over(connector, topic, service.reader())
    async with Following(runner, connector):
        assert runner.holds_ready.is_set()
    assert not runner.holds_ready.is_set()
    assert metric_value("privops_connector_holds_ready", system="telephony") == 0

    async def failing(*_args: Any) -> None:
        await runner.holds_ready.wait()
        raise RuntimeError("ledger disk full")

    runner._consume = failing  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError, match="disk full"):
        await asyncio.wait_for(
            runner._consume_with_holds(None, {}, None, asyncio.Event()),  # type: ignore[arg-type]
            5,
        )
    assert not runner.holds_ready.is_set()
    assert metric_value("privops_connector_holds_ready", system="telephony") == 0


# --- a connector that ignores holds --------------------------------------------------------------


class Ignoring(Connector):
    system = TEL


class HoldsOnly(Connector):
    system = TEL

    async def hold(self, state: r.LegalHoldState) -> None:
        return None


async def test_a_connector_without_hold_and_release_is_named_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Deleting by age while ignoring holds deletes held data: it must be visible."""
    assert not honours_holds(Ignoring())
    assert not honours_holds(HoldsOnly())  # holds it never lifts
    assert honours_holds(Recording())
    service, topic = KeyService(), Topic()
    topic.put(0, ANN, sealed(service, state(ANN)))
    topic.put(0, ANN, None)
    connector = Ignoring()
    ignored = metric_value(
        "privops_connector_hold_records_total", system="telephony", outcome="ignored"
    )
    runner = runner_over(connector, topic, service.reader())
    assert metric_value("privops_connector_holds_ignored", system="telephony") == 1

    with caplog.at_level(logging.WARNING):
        stop = asyncio.Event()
        following = asyncio.create_task(runner.holds.follow({}, stop))
        await asyncio.wait_for(runner.holds_ready.wait(), 5)
        stop.set()
        await following

    warnings = [m for m in caplog.records if m.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "does not implement hold and release" in warnings[0].getMessage()
    assert TOPIC in warnings[0].getMessage()
    assert (
        metric_value("privops_connector_hold_records_total", system="telephony", outcome="ignored")
        == ignored + 2
    )
    assert metric_value("privops_connector_legal_holds", system="telephony") == 0

    ConnectorRunner(Recording(), Settings())
    assert metric_value("privops_connector_holds_ignored", system="telephony") == 0


async def test_the_defaults_keep_nothing_and_hold_nothing() -> None:
    connector = Ignoring()
    await connector.hold(state(ANN))  # nothing kept: no error either
    await connector.release(ANN)
    assert list(await connector.holding()) == []


async def test_a_reader_not_confirmed_current_pauses_deletion_by_age_until_it_is(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker the client rides out without an error (the end offsets not answered) or
    partitions it stops getting: ``ready`` is cleared once the reader has gone
    ``STALE_SECONDS`` without confirming it has applied everything written up to a
    recent moment, and set again once it has (the hold written meanwhile applied)."""
    monkeypatch.setattr(holds_mod, "CONFIRM_SECONDS", 0.02)
    monkeypatch.setattr(holds_mod, "CONFIRM_TIMEOUT_SECONDS", 0.02)
    monkeypatch.setattr(holds_mod, "STALE_SECONDS", 0.3)
    service, topic, connector = KeyService(), Topic(), Recording()
    topic.put(0, ANN, sealed(service, state(ANN)))
    cut = asyncio.Event()

    class CutOff(Consumer):
        async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            if cut.is_set():
                await asyncio.sleep(1)  # no answer
            return await super().end_offsets(tps)

        async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
            if cut.is_set():
                await asyncio.sleep(0.005)
                return {}  # nothing arrives
            return await super().getmany(timeout_ms, max_records)

    runner = runner_over(connector, topic, service.reader())
    runner.holds.consumer = lambda _client: CutOff(topic)  # type: ignore[method-assign,assignment]
    async with Following(runner, connector):
        await asyncio.sleep(0.5)
        assert runner.holds_ready.is_set()  # confirmed again and again while connected
        cut.set()
        topic.put(1, BOB, sealed(service, state(BOB)))  # written while cut off

        async def cleared() -> None:
            while runner.holds_ready.is_set():  # noqa: ASYNC110 (no event says "cleared")
                await asyncio.sleep(0.01)

        await asyncio.wait_for(cleared(), 1.0)
        assert metric_value("privops_connector_holds_ready", system="telephony") == 0
        assert "not confirmed current" in caplog.text
        cut.clear()
        await asyncio.wait_for(runner.holds_ready.wait(), 2)
        assert ("hold", BOB) in connector.subjects()


class Erasing(Recording):
    """Telephony that also erases: what each erase it executed was to delete."""

    def __init__(self) -> None:
        super().__init__()
        self.erased: list[tuple[str, set[Category]]] = []

    async def erase(self, task: r.Erase) -> Answer:
        kept = {k.category for k in task.keep}
        deleted = (set(task.categories) or {Category.contact, Category.interactions}) - kept
        self.erased.append((task.subject_id, deleted))
        return Answer.completed()


def erase_task(
    subject: str,
    attempt: int,
    categories: list[Category],
    keep: Sequence[Category] = (),
    issued_at: datetime = NOW,
) -> r.Erase:
    return r.Erase(
        task_id=f"R-{subject}:telephony:erase",
        request_id=f"R-{subject}",
        subject_id=subject,
        system=TEL,
        attempt=attempt,
        issued_at=issued_at,
        identifiers={"phone": PHONES[subject]},
        categories=categories,
        keep=[r.Retention(category=c, ground="legal_claims: legal hold H-1") for c in keep],
    )


async def test_an_erasure_a_hold_read_here_keeps_part_of_waits_for_the_resend_that_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connector backlogged while the DPO placed a hold reads the first attempt,
    planned before the hold, after the hold: executed, it deleted what the hold keeps
    (what an erasure deletes does not come back), and the re-send that keeps it was
    answered from the ledger. Now the first attempt is answered retryable, unexecuted and
    not kept, and the re-send goes ahead; so does an erasure while the holds are not read
    only once they are (connector review, session 33)."""
    service, topic, connector = KeyService(), Topic(), Erasing()
    topic.put(0, ANN, sealed(service, state(ANN, Category.interactions)))
    runner = runner_over(connector, topic, service.reader())
    ledger = Ledger(tmp_path / "ledger.db")
    answers: list[r.TaskResult | None] = []
    runner.on_answer = lambda _task, result, _dup: answers.append(result)
    sent: list[tuple[str, bytes]] = []

    async def send(key: str, value: bytes) -> None:
        sent.append((key, value))

    async def commit(_offset: int) -> None:
        return None

    async def deliver(task: r.Erase) -> r.TaskResult | None:
        value = f"task-{len(topic.records)}".encode()
        topic.records[value] = task
        await runner._handle([SimpleNamespace(value=value, offset=1)], ledger, send, commit)
        return answers[-1]

    everything = [Category.contact, Category.interactions]
    monkeypatch.setattr(runner_mod, "HOLDS_WAIT_SECONDS", 0.05)
    first = await deliver(erase_task(BOB, 1, everything))  # the holds not read yet
    assert isinstance(first, r.TaskFailed)
    assert first.retryable
    assert "not read yet" in first.reason
    assert connector.erased == []

    async with Following(runner, connector):
        again = await deliver(erase_task(BOB, 2, everything))
        assert isinstance(again, r.TaskCompleted)  # not held: erased in full
        held_back = await deliver(erase_task(ANN, 1, everything))
        assert isinstance(held_back, r.TaskFailed)
        assert held_back.retryable
        assert "interactions" in held_back.reason
        all_of_it = await deliver(erase_task(ANN, 2, []))  # "all you hold", none kept
        assert isinstance(all_of_it, r.TaskFailed)
        assert connector.erased == [(BOB, set(everything))]
        resent = await deliver(erase_task(ANN, 3, [Category.contact], keep=[Category.interactions]))
        assert isinstance(resent, r.TaskCompleted)
        # Issued after privops wrote the hold, so planned knowing it: privops' decision
        # stands (the worker keeps what its holds keep; this hold is not one of them).
        later = NOW + timedelta(minutes=5)
        another = erase_task(ANN, 1, everything, issued_at=later).model_copy(
            update={"task_id": "R-2:telephony:erase", "request_id": "R-2"}
        )
        planned_after = await deliver(another)
        assert isinstance(planned_after, r.TaskCompleted)
    assert connector.erased == [
        (BOB, set(everything)),
        (ANN, {Category.contact}),
        (ANN, set(everything)),
    ]
    assert [k for k, _ in sent] == [BOB, BOB, ANN, ANN, ANN, ANN]  # each keyed by subject


async def test_an_erasure_that_comes_before_the_holds_are_read_waits_for_them(
    tmp_path: Path,
) -> None:
    """Answered retryable at once, each such erasure spent one of privops' attempts:
    at a connector's start they were escalated as silent within seconds (review,
    session 33). It waits for the holds, then goes ahead."""
    service, topic, connector = KeyService(), Topic(), Erasing()
    topic.put(0, ANN, sealed(service, state(ANN, Category.interactions)))
    runner = runner_over(connector, topic, service.reader())
    answers: list[r.TaskResult | None] = []
    runner.on_answer = lambda _task, result, _dup: answers.append(result)
    topic.records[b"bob"] = erase_task(BOB, 1, [Category.contact, Category.interactions])

    async def send(_key: str, _value: bytes) -> None:
        return None

    async def commit(_offset: int) -> None:
        return None

    message = SimpleNamespace(value=b"bob", offset=1)
    waiting = asyncio.create_task(
        runner._handle([message], Ledger(tmp_path / "l.db"), send, commit)
    )
    await asyncio.sleep(0.1)
    assert not waiting.done()  # held, not answered
    async with Following(runner, connector):
        await asyncio.wait_for(waiting, timeout=5)
    assert isinstance(answers[-1], r.TaskCompleted)
    assert connector.erased == [(BOB, {Category.contact, Category.interactions})]


async def test_erasures_share_one_wait_for_the_holds_and_a_stop_ends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per erasure, a fetch of fifty waited fifty minutes for holds that could not be
    read, past the consumer's poll interval, and a stop waited for each (review,
    session 33). Now the erasures share one wait, and ``stop`` ends it with nothing
    answered or committed (the fetch is read again at the next start)."""
    monkeypatch.setattr(runner_mod, "HOLDS_WAIT_SECONDS", 0.3)
    topic, connector = Topic(), Erasing()
    runner = runner_over(connector, topic, KeyService().reader())
    answers: list[r.TaskResult | None] = []
    runner.on_answer = lambda _task, result, _dup: answers.append(result)
    committed: list[int] = []

    async def send(_key: str, _value: bytes) -> None:
        return None

    async def commit(offset: int) -> None:
        committed.append(offset)

    everything = [Category.contact, Category.interactions]
    for n in range(5):
        task = erase_task(BOB, 1, everything).model_copy(
            update={"task_id": f"R-{n}:telephony:erase", "request_id": f"R-{n}"}
        )
        topic.records[f"t{n}".encode()] = task
    fetch = [SimpleNamespace(value=f"t{n}".encode(), offset=n) for n in range(5)]
    started = asyncio.get_running_loop().time()
    await runner._handle(fetch, Ledger(tmp_path / "l.db"), send, commit, asyncio.Event())
    took = asyncio.get_running_loop().time() - started
    assert took < 1.0  # one wait of 0.3 s, not five
    assert [type(a) for a in answers] == [r.TaskFailed] * 5
    assert connector.erased == []

    stop = asyncio.Event()
    runner._holds_wait_until = None  # a new time the holds are not read
    later = [SimpleNamespace(value=b"t0", offset=9)]
    waiting = asyncio.create_task(
        runner._handle(later, Ledger(tmp_path / "m.db"), send, commit, stop)
    )
    await asyncio.sleep(0.05)
    stop.set()
    with pytest.raises(runner_mod._Stopping):
        await asyncio.wait_for(waiting, timeout=2)
    assert committed == [1, 2, 3, 4, 5]  # the stopped fetch's offset stays uncommitted
