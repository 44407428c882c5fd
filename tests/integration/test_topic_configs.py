"""Topics that exist with other configs than the catalogue's, on the real broker (review,
session 44): Kafka keeps a topic's configs as it was created, so one made by hand or by
an earlier release kept them unsaid. ``create_topics`` reports each config that differs
(``privops topics create`` prints it, the worker logs it), and the worker refuses to start
on a privacy.subject-keys that would delete the only copy of the data keys."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from privops.adapters.acls import WORKER
from privops.adapters.kafka import TopicOutcome, client_options, create_topics
from privops.adapters.settings import Settings
from privops.core.topics import SUBJECT_KEYS, TopicSpec, bounded, compacted
from streams.bootstrap import config_fix, keys_topic_problem

pytestmark = pytest.mark.integration


async def _deleted(client: dict[str, Any], name: str) -> None:
    admin = AIOKafkaAdminClient(**client)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


def test_an_existing_topic_with_other_configs_is_reported_and_a_deleting_keys_topic_refused(
    local_runtime: Settings,
) -> None:
    client = client_options(local_runtime, WORKER)
    name = f"privops-scratch-configs-{uuid.uuid4().hex[:8]}"  # the worker may describe it
    made_by_hand = TopicSpec(name, "key", 1, bounded(timedelta(days=7)))
    asyncio.run(create_topics(client, [made_by_hand]))
    (outcome,) = asyncio.run(create_topics(client, [TopicSpec(name, "key", 1, compacted())]))
    assert not outcome.created
    assert outcome.drift["cleanup.policy"] == ("delete", "compact")
    assert "cleanup.policy=delete (catalogue: compact)" in outcome.note
    assert set(outcome.drift) >= {"max.compaction.lag.ms", "delete.retention.ms"}
    assert f"--entity-name {name} --add-config cleanup.policy=compact" in config_fix(outcome)
    (same,) = asyncio.run(create_topics(client, [made_by_hand]))
    assert (same.drift, same.note) == ({}, "")  # as the catalogue says: nothing to report
    asyncio.run(_deleted(client, name))

    keys = TopicOutcome(SUBJECT_KEYS, False, 1, outcome.note, outcome.drift)
    problem = keys_topic_problem([keys])
    assert problem is not None
    assert "the only copy of the subjects' data keys" in problem
    lags_only = {k: v for k, v in outcome.drift.items() if k != "cleanup.policy"}
    assert keys_topic_problem([TopicOutcome(SUBJECT_KEYS, False, 1, "", lags_only)]) is None
