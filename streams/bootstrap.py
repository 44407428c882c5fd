"""Before the worker starts: every topic it will touch exists, with its partitions.

Faust creates table changelog topics itself at start-up, but its producer only knows the
topics in the metadata it fetched when it connected; a changelog created a moment later
reads as "0 partitions" and the first table write fails (PartitionsMismatch). Creating
them first, with the catalogue, avoids that race on a fresh deployment.
"""

from __future__ import annotations

import asyncio

from privops.adapters.kafka import TopicOutcome, create_topics
from privops.core.datamap import load_datamap
from privops.core.topics import TopicSpec, catalogue, compacted
from streams.app import app, settings


def changelog_specs() -> list[TopicSpec]:
    return [
        TopicSpec(
            f"{settings.app_id}-{name}-changelog",
            "table key",
            settings.topic_partitions,
            compacted(),
        )
        for name in app.tables
    ]


def ensure_topics() -> list[TopicOutcome]:
    app.discover()  # tables are declared by the agent modules
    datamap = load_datamap(settings.datamap)
    specs = catalogue(settings.topic_partitions, datamap) + changelog_specs()
    return asyncio.run(
        create_topics(
            settings.kafka_bootstrap, specs, replication_factor=settings.replication_factor
        )
    )
