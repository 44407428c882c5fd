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

from typing import Any

import faust
from faust.streams import _current_event
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


def read_any(table: TableT[Any, Any], key: str) -> Any:
    """``table.get(key)`` from any partition, not only the current event's.

    Inside an agent, faust's RocksDB store only looks in the current event's partition.
    Without a current event it looks the key up in every partition it holds.
    """
    token = _current_event.set(None)
    try:
        return table.get(key)
    finally:
        _current_event.reset(token)
