"""The worker's tables (RocksDB in production, changelogged to Kafka), and its global views.

Values are JSON dicts of the pydantic models in ``privops``; keys are raw strings, the
same bytes the topics are keyed by, so Faust's router finds a key's owner by the same
partitioner the producers used. Every input is keyed by subject id (DESIGN.md section
4), so a key is written and read only while processing the partition that owns it: a
subject's identity, consent, facts and holds, and every request and request-chain of
that subject, live on the subject's partition. What is not about one subject is a
global view (streams.global_view): the suppression list and the request index.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import faust
from faust.streams import current_event
from faust.types import TableT

from privops.core.topics import REQUEST_INDEX, SUPPRESSION
from streams.app import app, settings
from streams.global_view import GlobalView


def _table(name: str, help_: str) -> TableT[Any, Any]:
    return app.Table(
        name,
        default=None,
        schema=faust.Schema(key_serializer="raw", value_serializer="json"),
        partitions=settings.topic_partitions,
        help=help_,
    )


identities = _table("identities", "subject id -> IdentityMap (raw identifiers per system)")
consent = _table("consent", "subject id -> SubjectConsent")
subject_facts = _table("subject-facts", "subject id -> SubjectFacts (retention inputs)")
legal_holds = _table("legal-holds", "subject id -> list of LegalHold")
requests = _table("requests", "request id -> RequestRecord (on its subject's partition)")
audit_chains = _table("audit-chains", "audit chain key -> [seq, hash]")

suppression = GlobalView(SUPPRESSION)  # suppression key (keyed hash) -> subject ref
request_index = GlobalView(REQUEST_INDEX)  # request id -> subject id
GLOBAL_VIEWS = (suppression, request_index)


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
