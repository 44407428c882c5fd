"""What a flush hands the broker first, and when the tables say an input was decided
(streams.state; issue #11, at-least-once on the batched path).

A flush's outputs go first; its changelog records only once they, and every earlier
flush's outputs, are delivered; its values reach the local store only once those are
delivered too; its inputs are acknowledged last. So however a flush fails part-way (the
broker refuses a record, the worker is killed), no table says an input was decided
whose outputs were not delivered, and the restart that replays the input sends them. On
the old order (the store written and every record queued at the flush) a restart on the
same store found the input already folded in (its event id remembered) and sent
nothing: its consent-state and audit records were lost for good, and its change never
reached the changelog that standbys and the partition's next owner read.

A flush dropped because the partitions are moving (``Unsealable``) holds back every
acknowledgement until the rebalance: a later flush's, acknowledged in the same
generation, would let Faust commit past the dropped inputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import pytest
from aiokafka.errors import KafkaError
from faust.types import Message

from privops.core.fieldcrypt import DataKey
from streams import batching
from streams.state import Slot, State, StateFailed, Unsealable
from streams.tables import identities
from tests.agents.test_batching import message

OUT = "privacy.consent-state"
CHANGELOG_OF = batching.changelog_topic


class Broker:
    """``State.queue_all`` as the producer answers it: each call's records, and a
    delivery the test resolves (offsets) or fails."""

    def __init__(self) -> None:
        self.calls: list[list[batching.Outgoing]] = []
        self.deliveries: list[asyncio.Future[list[int]]] = []

    async def queue_all(self, records: Sequence[batching.Outgoing]) -> Awaitable[list[int]]:
        self.calls.append(list(records))
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]

    def topics(self, call: int) -> set[str]:
        return {topic for topic, _, _, _ in self.calls[call]}

    def deliver(self, call: int) -> None:
        self.deliveries[call].set_result(list(range(len(self.calls[call]))))


@pytest.fixture
def broker(app: Any) -> Broker:
    return Broker()


def view_over(broker: Broker, acknowledged: list[Message]) -> State:
    view = State()
    view.queue_all = broker.queue_all
    view.acknowledge = acknowledged.extend
    return view


SLOT: Slot[dict[str, int]] = Slot(identities, dict, dict)


def decide(view: State, offset: int, key: str, *, output: bool = True) -> Message:
    """One input: ``key``'s new value in the table and, with ``output``, a record out."""
    item = message("crm.events", offset)
    view.message = item
    view.put(SLOT, key, {"n": offset})
    if output:
        view.emit(OUT, key.encode(), b"{}")
    view.done(item)
    view.message = None
    return item


async def turns() -> None:
    await asyncio.sleep(0.01)


async def test_the_changelog_follows_the_outputs_and_the_store_follows_both(
    broker: Broker,
) -> None:
    acknowledged: list[Message] = []
    view = view_over(broker, acknowledged)
    item = decide(view, 0, "S1")
    await view.flush()
    assert [broker.topics(0)] == [{OUT}]  # the outputs alone
    await turns()
    assert len(broker.calls) == 1  # no changelog record before the outputs are delivered
    assert view.get_at(SLOT, 0, "S1") == {"n": 0}  # read back before it is stored
    assert identities.data.get("S1") is None

    broker.deliver(0)
    await turns()
    assert broker.topics(1) == {CHANGELOG_OF(identities)}
    assert identities.data.get("S1") is None  # not before its changelog record is delivered
    assert view.get_at(SLOT, 0, "S1") == {"n": 0}
    assert acknowledged == []

    broker.deliver(1)
    await view.settle()
    assert identities.data["S1"] == {"n": 0}
    assert view.get_at(SLOT, 0, "S1") == {"n": 0}
    assert view._held == {}  # reads go to the store again
    assert acknowledged == [item]


async def test_a_refused_output_leaves_no_table_saying_its_input_was_decided(
    broker: Broker,
) -> None:
    """The restart replays the input onto a store without it, so it is decided again
    and its outputs sent again."""
    acknowledged: list[Message] = []
    view = view_over(broker, acknowledged)
    decide(view, 0, "S1")
    await view.flush()
    broker.deliveries[0].set_exception(KafkaError("refused"))
    with pytest.raises(StateFailed):
        await view.settle()
    assert len(broker.calls) == 1  # no changelog record was handed over
    assert identities.data.get("S1") is None
    assert acknowledged == []


async def test_a_flush_logs_its_changes_only_after_every_earlier_flushs_outputs(
    broker: Broker,
) -> None:
    """The second flush built on the first's values: its changelog record of S1 holds
    the first's change too, so it must not be logged while the first's outputs may
    still be refused."""
    acknowledged: list[Message] = []
    view = view_over(broker, acknowledged)
    first = decide(view, 0, "S1")
    await view.flush()
    second = decide(view, 1, "S1")
    await view.flush()
    broker.deliver(1)  # the second flush's outputs are delivered first
    await turns()
    assert len(broker.calls) == 2  # its changelog waits for the first's outputs
    broker.deliver(0)
    await turns()
    assert [broker.topics(2), broker.topics(3)] == [{CHANGELOG_OF(identities)}] * 2
    assert [broker.calls[2][0][2], broker.calls[3][0][2]] == [b'{"n": 0}', b'{"n": 1}']
    broker.deliver(3)
    await turns()
    assert acknowledged == []  # in flush order
    broker.deliver(2)
    await view.settle()
    assert acknowledged == [first, second]
    assert identities.data["S1"] == {"n": 1}


async def test_an_earlier_flushs_refused_outputs_keep_a_later_flush_out_of_the_changelog(
    broker: Broker,
) -> None:
    acknowledged: list[Message] = []
    view = view_over(broker, acknowledged)
    decide(view, 0, "S1")
    await view.flush()
    decide(view, 1, "S1")
    await view.flush()
    broker.deliver(1)
    broker.deliveries[0].set_exception(KafkaError("refused"))
    with pytest.raises(StateFailed):
        await view.settle()
    await turns()
    assert len(broker.calls) == 2  # neither flush's changelog was handed over
    assert identities.data.get("S1") is None
    assert acknowledged == []


class MovingSealer:
    """The key store of a worker whose partitions began to move: the first flush that
    needs a storage key cannot have it."""

    def __init__(self) -> None:
        self.asked = 0

    async def ready(self) -> None:
        return None

    async def storage_keys(self, wanted: Mapping[str, int]) -> dict[str, DataKey | None]:
        self.asked += 1
        if self.asked == 1:
            raise Unsealable("partition 0 of privacy.subject-keys is not this worker's")
        return dict.fromkeys(wanted)

    def lookup(self, key_id: str) -> DataKey | None:
        return None


async def test_a_dropped_flush_holds_back_every_acknowledgement_until_the_rebalance(
    broker: Broker,
) -> None:
    """Offset 0 (sealed output) is dropped with its flush; offset 1 is then flushed and
    delivered in the same generation, but acknowledging it would let Faust commit past
    offset 0 (its acknowledgements of a revoked partition start afresh). After the
    rebalance (every partition sought to its commit) acknowledging resumes."""
    acknowledged: list[Message] = []
    view = view_over(broker, acknowledged)
    view.sealer = MovingSealer()
    item = message("crm.events", 0)
    view.message = item
    view.emit_sealed(OUT, b"S1", "S1", lambda _key: b"{}", lambda: b"{}")
    view.done(item)
    view.message = None
    await view.flush()
    assert broker.calls == []  # dropped: nothing sent

    decide(view, 1, "S2")
    await view.flush()
    broker.deliver(0)
    await turns()
    broker.deliver(1)
    await view.settle()
    assert identities.data["S2"] == {"n": 1}  # delivered and stored
    assert acknowledged == []  # but not acknowledged

    view.rebalanced()
    after = decide(view, 2, "S3")
    await view.flush()
    broker.deliver(2)
    await turns()
    broker.deliver(3)
    await view.settle()
    assert acknowledged == [after]
