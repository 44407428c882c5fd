"""The worker's tables (RocksDB in production, changelogged to Kafka).

Values are JSON dicts of the pydantic models in ``privops``. Every table uses the
partitioner for its changelog and is read by key from any agent: the request workflow
(keyed by request id) reads the subject-keyed identity map, facts and holds. One worker
owns all partitions in the reference deployment; see docs/operations.md.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TableT

from streams.app import app, settings


def _table(name: str, help_: str) -> TableT[Any, Any]:
    return app.Table(
        name,
        default=None,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
        partitions=settings.topic_partitions,
        use_partitioner=True,
        help=help_,
    )


identities = _table("identities", "subject id -> IdentityMap (raw identifiers per system)")
consent = _table("consent", "subject id -> SubjectConsent")
subject_facts = _table("subject-facts", "subject id -> SubjectFacts (retention inputs)")
suppression = _table("suppression", "suppression key (HMAC) -> subject ref")
legal_holds = _table("legal-holds", "subject id -> list of LegalHold")
requests = _table("requests", "request id -> RequestRecord")
audit_chains = _table("audit-chains", "audit chain key -> [seq, hash]")
