"""The worker's tables (RocksDB in production, changelogged to Kafka).

Values are JSON dicts of the pydantic models in ``privops``. A key is always written
while processing the partition that owns it (subject-keyed tables by the ingest agent,
request-keyed ones by the workflow agent), so the local store and the changelog agree.
The workflow also *reads* subject-keyed tables (identity map, facts, holds): those reads
go through ``read_any``, which looks in every local partition instead of only the one
being processed. That needs all partitions on this worker: the reference deployment runs
one worker (see README, "Operating privops").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import faust
from faust.streams import _current_event, current_event
from faust.types import TableT

from streams.app import app, settings


def _table(name: str, help_: str) -> TableT[Any, Any]:
    return app.Table(
        name,
        default=None,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
        partitions=settings.topic_partitions,
        help=help_,
    )


identities = _table("identities", "subject id -> IdentityMap (raw identifiers per system)")
consent = _table("consent", "subject id -> SubjectConsent")
subject_facts = _table("subject-facts", "subject id -> SubjectFacts (retention inputs)")
suppression = _table("suppression", "suppression key (HMAC) -> subject ref")
legal_holds = _table("legal-holds", "subject id -> list of LegalHold")
requests = _table("requests", "request id -> RequestRecord")
audit_chains = _table("audit-chains", "audit chain key -> [seq, hash]")


@contextmanager
def any_partition() -> Iterator[None]:
    """Table reads (``get``, ``in``) inside this block look in every local partition.

    Inside an agent, faust's RocksDB store only looks in the current event's partition;
    without a current event it looks the key up in every partition it holds. Writes must
    not happen inside the block (they need the event's partition).
    """
    token = _current_event.set(None)
    try:
        yield
    finally:
        _current_event.reset(token)


def read_any(table: TableT[Any, Any], key: str) -> Any:
    """``table.get(key)`` from any partition, not only the current event's."""
    with any_partition():
        return table.get(key)


V = TypeVar("V")
_MISSING: Any = object()


class DecodedCache(Generic[V]):
    """Decoded values of one table, so a hot key is not read and validated per event.

    The table stays the source of truth: every write to it goes through ``put`` right
    after the table write, a miss reads the table, and the whole cache is dropped on any
    rebalance (recovery may change the table under it). Keys carry the current event's
    partition, because inside an agent the table itself only looks in that partition.
    Only the agent that writes a table may cache it (one agent, one event loop).
    On the in-memory store (agent tests, which edit and clear tables directly) every
    read goes to the table.
    """

    def __init__(self, table: TableT[Any, Any], decode: Callable[[Any], V], size: int) -> None:
        self.table = table
        self.decode = decode
        self.size = size if not settings.store.startswith("memory:") else 0
        self._items: OrderedDict[tuple[int | None, Any], V | None] = OrderedDict()
        _CACHES.append(self)

    @staticmethod
    def _key(key: Any) -> tuple[int | None, Any]:
        event = current_event()
        return (event.message.partition if event is not None else None, key)

    def get(self, key: Any) -> V | None:
        """The decoded value of ``key`` (None when the table has none)."""
        if not self.size:
            raw = self.table.get(key)
            return self.decode(raw) if raw else None
        ckey = self._key(key)
        value = self._items.get(ckey, _MISSING)
        if value is not _MISSING:
            self._items.move_to_end(ckey)
            return value
        raw = self.table.get(key)
        decoded = self.decode(raw) if raw else None
        self._remember(ckey, decoded)
        return decoded

    def put(self, key: Any, value: V | None) -> None:
        """Record what was just written to the table for ``key``."""
        if self.size:
            self._remember(self._key(key), value)

    def _remember(self, ckey: tuple[int | None, Any], value: V | None) -> None:
        self._items[ckey] = value
        self._items.move_to_end(ckey)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


_CACHES: list[DecodedCache[Any]] = []


def clear_caches(*_: Any, **__: Any) -> None:
    """Drop every decoded cache (a rebalance may hand over or recover partitions)."""
    for cache in _CACHES:
        cache.clear()


app.on_partitions_revoked.connect(clear_caches)
app.on_partitions_assigned.connect(clear_caches)
app.on_rebalance_complete.connect(clear_caches)
